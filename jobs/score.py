"""The scoring job: read a table, add ``similarity``/``score_band``/``score_error``, write it by band.

    spark-submit jobs/score.py --input SRC --output DST [same flags as `clipscore score`]

``run_score(spark, cfg)`` is the library entry point (notebooks, Python); ``main()`` only parses
arguments, gets a session and stops it only if it created it.
"""
from __future__ import annotations

import logging
import time

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from clipscore.config import ConfigError, ScoreConfig
from clipscore.jobs.provenance import record_provenance
from clipscore.jobs.tables import check_names, col, read_source, validate_columns, write_table
from clipscore.jobs.session import session_conf
from clipscore.jobs.summary import RunSummary, summary_from_metrics, summary_metrics
from clipscore.model import check_model_loadable
from clipscore.scorer import OUTPUT_COLUMNS
from clipscore.udfs.clip_udf import make_score_udf

log = logging.getLogger("clipscore")

MAX_RECORDS_KEY = "spark.sql.execution.arrow.maxRecordsPerBatch"


def add_scores(df: DataFrame, cfg: ScoreConfig) -> DataFrame:
    """``df`` with the three score columns appended (replacing older ones of the same names). Lazy."""
    validate_columns(df, cfg)
    base = df.drop(*[c for c in OUTPUT_COLUMNS if c in df.columns])
    if cfg.repartition:
        base = base.repartition(cfg.repartition)
    udf = make_score_udf(cfg)
    scored = base.withColumn("_clipscore", udf(col(cfg.image_col), col(cfg.caption_col)))
    return scored.select(
        *[col(c) for c in base.columns],
        F.col("_clipscore.similarity").alias("similarity"),
        F.col("_clipscore.score_band").alias("score_band"),
        F.col("_clipscore.score_error").alias("score_error"),
    )


def preflight(spark: SparkSession, cfg: ScoreConfig) -> DataFrame:
    """Every check that can fail before Spark runs a task: names, model, source, columns."""
    if not cfg.input:
        raise ConfigError("No input: pass --input with a path (Delta, Parquet or CSV) or a catalog table name.")
    check_names(cfg)
    check_model_loadable(cfg.model, cfg.model_revision)
    source = read_source(spark, cfg)
    validate_columns(source, cfg)
    return source


def run_score(spark: SparkSession, cfg: ScoreConfig) -> RunSummary:
    """Score ``cfg.input`` and write ``cfg.output`` partitioned by ``score_band``; returns the summary."""
    if not cfg.output:
        raise ConfigError("No output: pass --output with a path or a catalog table name.")
    source = preflight(spark, cfg)
    observation = Observation("clipscore_summary")
    scored = add_scores(source, cfg)
    columns = scored.columns  # now: on Spark Connect, analysing the observed frame would empty the observation
    scored = scored.observe(observation, *summary_metrics(cfg.band_edges))
    partition_cols = ["score_band"] if cfg.partition_by_band else []
    log.info("scoring %s -> %s with %s (%s, %s)", cfg.input, cfg.output, cfg.model, cfg.device, cfg.precision)
    started = time.perf_counter()
    with session_conf(spark, {MAX_RECORDS_KEY: str(cfg.max_records_per_batch)}):
        write_table(scored, cfg.output, cfg.output_format, cfg.mode, partition_cols, columns)
    if cfg.output_format == "delta":
        try:  # model, revision, precision, bands, version as table properties
            record_provenance(spark, cfg.output, cfg)
        except Exception as exc:  # noqa: BLE001 - the scores are written; missing metadata must not fail the run
            log.warning("scores written, but provenance properties could not be set on %s: %s",
                        cfg.output, str(exc).splitlines()[0][:300])
    metrics = observation.get
    log.debug("observed metrics: %s", metrics)
    summary = summary_from_metrics(metrics, time.perf_counter() - started)
    log.info("clipscore summary for %s\n%s", cfg.output, summary.format())
    return summary


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``jobs/score.py`` takes the flags of ``clipscore score``."""
    import sys

    from clipscore.cli import main as cli_main

    return cli_main(["score", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
