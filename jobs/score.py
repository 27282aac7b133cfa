"""The scoring job: read a table, add ``similarity``/``score_band``/``score_error``, write it by band.

    spark-submit jobs/score.py --input SRC --output DST [same flags as `clipscore score`]

``run_score(spark, cfg)`` is the library entry point (notebooks, Python); ``main()`` only parses
arguments, gets a session and stops it only if it created it.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from clipscore.config.coerce import ConfigError
from clipscore.config.job import ScoreConfig
from clipscore.jobs.provenance import record_provenance
from clipscore.jobs.tables import check_names, col, read_source, validate_columns, write_table
from clipscore.jobs.session import session_conf
from clipscore.jobs.summary import RunSummary, summary_from_metrics, summary_metrics
from clipscore.scoring.plan import planned_columns
from clipscore.models import describe
from clipscore.udfs.clip_udf import RUNTIME_COLUMNS, make_score_udf

log = logging.getLogger("clipscore")

MAX_RECORDS_KEY = "spark.sql.execution.arrow.maxRecordsPerBatch"
MAX_BYTES_KEY = "spark.sql.execution.arrow.maxBytesPerBatch"
# Lean band write: a few concurrent writers per task instead of sorting every row (image bytes
# included) by band first. Spark falls back to sorting only beyond this many open writers. Planned
# writes (Parquet outputs) would insert that sort in the logical plan, so they are switched off here.
CONCURRENT_WRITERS_KEY = "spark.sql.maxConcurrentOutputFileWriters"
PLANNED_WRITE_KEY = "spark.sql.optimizer.plannedWrite.enabled"


def arrow_settings(cfg: ScoreConfig) -> dict[str, str]:
    """Session options that bound each Arrow batch a scoring Python worker receives, in rows and bytes."""
    return {MAX_RECORDS_KEY: str(cfg.max_records_per_batch), MAX_BYTES_KEY: str(cfg.max_bytes_per_batch)}


def bound_arrow_batches(spark: SparkSession, cfg: ScoreConfig) -> None:
    """Lower the session's Arrow batch limits to ``cfg``'s where they are higher (never raises them).

    Spark's default of 10,000 rows per batch with an image-bytes column is gigabytes per batch in a
    Python worker; the limits are read when the query runs, so they are set on the session.
    """
    for key, value in arrow_settings(cfg).items():
        current = spark.conf.get(key, None)
        try:
            lower = current is None or int(current) <= 0 or int(current) > int(value)
        except ValueError:
            lower = True
        if lower:
            spark.conf.set(key, value)
            log.info("set %s=%s on the session (was %s) to bound Arrow batches for scoring", key, value, current)


def add_scores(df: DataFrame, cfg: ScoreConfig, runtime: bool = False) -> DataFrame:
    """``df`` with the score columns, ``score_band`` and ``score_error`` appended (older ones replaced). Lazy.

    The score columns are ``similarity`` (and ``probability`` for SigLIP families), and with several
    models ``similarity_<name>``/``probability_<name>`` per model (``clipscore.schema.columns``).

    Safe by default: it lowers the session's ``spark.sql.execution.arrow.maxRecordsPerBatch`` and
    ``maxBytesPerBatch`` to ``cfg.max_records_per_batch``/``cfg.max_bytes_per_batch`` when they are
    higher (also on Spark Connect), so no Python worker receives an unbounded batch of image bytes;
    the UDF then re-slices each batch to ``batch_size``. Columns in ``cfg.drop_columns`` (e.g. the
    image bytes, already in the source table) are not carried into the result. With ``runtime``,
    ``score_device`` and ``score_precision`` (what ran on the executor) are kept too.
    """
    validate_columns(df, cfg)
    missing = [c for c in cfg.drop_columns if c not in df.columns]
    if missing:
        raise ConfigError(f"drop_columns names {', '.join(map(repr, missing))}, not in the input. "
                          f"Input columns: {', '.join(df.columns)}.")
    columns = planned_columns(cfg)
    bound_arrow_batches(df.sparkSession, cfg)
    replaced = set(columns) | set(RUNTIME_COLUMNS)
    base = df.drop(*[c for c in df.columns if c in replaced])
    if cfg.repartition:
        base = base.repartition(cfg.repartition)
    udf = make_score_udf(cfg, columns)
    scored = base.withColumn("_clipscore", udf(col(cfg.image_col), col(cfg.caption_col)))
    extra = RUNTIME_COLUMNS if runtime else ()
    return scored.select(
        *[col(c) for c in base.columns if c not in cfg.drop_columns],
        *[F.col(f"_clipscore.{name}").alias(name) for name in (*columns, *extra)],
    )


def preflight(spark: SparkSession, cfg: ScoreConfig) -> tuple[DataFrame, ScoreConfig]:
    """Every check that can fail before Spark runs a task: names, models, source, columns.

    Returns the source and the config with each model's revision pinned to the commit the hub
    resolved (unchanged for local files), so every executor loads the same weights.
    """
    if not cfg.input:
        raise ConfigError("No input: pass --input with a path (Delta, Parquet or CSV) or a catalog table name.")
    check_names(cfg)
    cfg = pin_models(cfg)
    planned_columns(cfg)  # band_column against the primary model's columns
    source = read_source(spark, cfg)
    validate_columns(source, cfg)
    return source, cfg


def pin_models(cfg: ScoreConfig) -> ScoreConfig:
    """Check every model on the driver (fails fast) and pin hub models to the commit resolved now."""
    pinned = []
    for spec in cfg.models:
        commit = describe(spec.model, spec.revision).revision
        if commit and commit != spec.revision:
            log.info("model %s revision %s resolved to commit %s; executors load that commit",
                     spec.model, spec.revision or "main", commit)
            spec = dataclasses.replace(spec, revision=commit)
        pinned.append(spec)
    return cfg if tuple(pinned) == cfg.models else cfg.replace(models=tuple(pinned))


def runtime_metrics() -> list:
    """Observed with the summary: the (device, precision) pairs the executors actually ran."""
    # One string, not an array: classic PySpark's Observation hands arrays back as py4j objects.
    pairs = F.collect_set(F.concat_ws("|", F.col("score_device"), F.col("score_precision")))
    return [F.concat_ws(",", F.array_sort(pairs)).alias("runtimes")]


def observed_runtimes(metrics: dict) -> list[tuple[str, str]]:
    text = metrics.get("runtimes") or ""
    return sorted(tuple(item.split("|", 1)) for item in text.split(",") if "|" in item)


def lean_write_settings(cfg: ScoreConfig) -> dict[str, str]:
    if not cfg.partition_by_band:
        return {}
    return {CONCURRENT_WRITERS_KEY: str(len(cfg.band_edges) + 2), PLANNED_WRITE_KEY: "false"}


def run_score(spark: SparkSession, cfg: ScoreConfig) -> RunSummary:
    """Score ``cfg.input`` and write ``cfg.output`` partitioned by ``score_band``; returns the summary."""
    if not cfg.output:
        raise ConfigError("No output: pass --output with a path or a catalog table name.")
    source, cfg = preflight(spark, cfg)
    observation = Observation("clipscore_summary")
    scored = add_scores(source, cfg, runtime=True)
    columns = [c for c in scored.columns if c not in RUNTIME_COLUMNS]
    # Read the columns before observing: on Spark Connect, analysing the observed frame empties the observation.
    scored = scored.observe(observation, *summary_metrics(cfg.band_edges), *runtime_metrics()).select(
        *[col(c) for c in columns])
    partition_cols = ["score_band"] if cfg.partition_by_band else []
    log.info("scoring %s -> %s with %s (%s, %s)", cfg.input, cfg.output,
             ", ".join(f"{m.name}={m.model}" for m in cfg.models), cfg.device, cfg.precision)
    started = time.perf_counter()
    lean = lean_write_settings(cfg)
    with session_conf(spark, {**arrow_settings(cfg), **lean}, optional=tuple(lean)):
        write_table(scored, cfg.output, cfg.output_format, cfg.mode, partition_cols, columns)
    metrics = observation.get
    log.debug("observed metrics: %s", metrics)
    if cfg.output_format == "delta":
        try:  # model, revision, what ran, bands, version as table properties
            record_provenance(spark, cfg.output, cfg, observed_runtimes(metrics))
        except Exception as exc:  # noqa: BLE001 - the scores are written; missing metadata must not fail the run
            log.warning("scores written, but provenance properties could not be set on %s: %s",
                        cfg.output, str(exc).splitlines()[0][:300])
    summary = summary_from_metrics(metrics, time.perf_counter() - started)
    log.info("clipscore summary for %s\n%s", cfg.output, summary.format())
    return summary


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``jobs/score.py`` takes the flags of ``clipscore score``."""
    import sys

    from clipscore.jobs.cli import main as cli_main

    return cli_main(["score", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
