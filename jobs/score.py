"""The scoring job: read a table, add ``similarity``/``score_band``/``score_error``, write it by band.

    spark-submit jobs/score.py --input SRC --output DST [same flags as `clipscore score`]

``run_score(spark, cfg)`` is the library entry point (notebooks, Python); ``main()`` only parses
arguments, gets a session and stops it only if it created it.
"""
from __future__ import annotations

import logging
import time

from pyspark.sql import Observation, SparkSession

from clipscore.config.coerce import ConfigError
from clipscore.config.durations import parse_duration
from clipscore.config.job import ScoreConfig
from clipscore.schema.errors import first_line
from clipscore.jobs.layout import (data_files, delta_commit_files, layout_for_write, optimized_write_available,
                                   plan_files, score_bytes, written_files)
from clipscore.jobs.names import col
from clipscore.jobs.provenance import record_parquet_provenance, record_provenance
from clipscore.jobs.session import session_conf
from clipscore.jobs.summary import RunSummary, summary_from_metrics, summary_metrics
from clipscore.jobs.tables import output_exists, read_table, resolve_input_format
from clipscore.jobs.writes import write_table
from clipscore.udfs.clip_udf import RUNTIME_COLUMNS
# The pipeline lives in clipscore.jobs.pipeline (merge shares it); these names stay importable from here.
from clipscore.jobs.pipeline import (  # noqa: F401 - re-exported
    MAX_BYTES_KEY,
    MAX_RECORDS_KEY,
    add_scores,
    arrow_settings,
    bound_arrow_batches,
    early_checks,
    observed_runtimes,
    pin_models,
    preflight,
    runtime_metrics,
)

log = logging.getLogger("clipscore")

# Lean band write: a few concurrent writers per task instead of sorting every row (image bytes
# included) by band first. Spark falls back to sorting only beyond this many open writers. Planned
# writes (Parquet outputs) would insert that sort in the logical plan, so they are switched off here.
CONCURRENT_WRITERS_KEY = "spark.sql.maxConcurrentOutputFileWriters"
PLANNED_WRITE_KEY = "spark.sql.optimizer.plannedWrite.enabled"


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
    # Files near target_file_mb, one band per write task (clipscore.jobs.layout).
    added = score_bytes(cfg, tuple(c for c in columns if c not in source.columns))
    webdataset = resolve_input_format(spark, cfg.input, cfg.input_format) == "webdataset"
    optimized = cfg.output_format == "delta" and optimized_write_available(spark)
    # Rows decide the buckets of our own layout only (Delta's optimized write bins by real sizes);
    # counting WebDataset shards would read them twice.
    plan = plan_files(source, cfg, added, count=not (webdataset or optimized))
    scored, options, sized = layout_for_write(scored, cfg, plan, optimized, "score_band" if partition_cols else None,
                                              columns)
    before = _files_before(spark, cfg)
    lean = lean_write_settings(cfg)
    with session_conf(spark, {**arrow_settings(cfg), **lean, **sized}, optional=(*lean, *sized)):
        write_table(scored, cfg.output, cfg.output_format, cfg.mode, partition_cols, columns, options,
                    parse_duration(cfg.staging_stale_after))
    files_written, bytes_written = _files_written(spark, cfg, before)  # before the provenance commit
    metrics = observation.get
    log.debug("observed metrics: %s", metrics)
    if cfg.output_format == "parquet":
        record_parquet_provenance(cfg.output, cfg, observed_runtimes(metrics))
    elif cfg.output_format == "delta":
        try:  # model, revision, what ran, bands, version as table properties
            record_provenance(spark, cfg.output, cfg, observed_runtimes(metrics))
        except Exception as exc:  # noqa: BLE001 - the scores are written; missing metadata must not fail the run
            log.warning("scores written, but provenance properties could not be set on %s: %s",
                        cfg.output, first_line(exc))
    summary = summary_from_metrics(metrics, time.perf_counter() - started)
    summary.files_written, summary.bytes_written = files_written, bytes_written
    log.info("clipscore summary for %s\n%s", cfg.output, summary.format())
    return summary


def _files_before(spark: SparkSession, cfg: ScoreConfig) -> set[str]:
    """A Parquet output's data files before an append (the files this run writes are the new ones)."""
    if cfg.output_format == "delta" or cfg.mode != "append" or not output_exists(spark, cfg.output, cfg.output_format):
        return set()
    return data_files(spark, read_table(spark, cfg.output, cfg.output_format))


def _files_written(spark: SparkSession, cfg: ScoreConfig, before: set[str]) -> tuple[int | None, int | None]:
    """(files, bytes) the write added: a Delta commit's own metrics (listing the table would replay its
    whole log), or a Parquet output's files less those there ``before``."""
    if cfg.output_format == "delta":
        return delta_commit_files(spark, cfg.output)
    return written_files(spark, data_files(spark, read_table(spark, cfg.output, cfg.output_format)) - before)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``jobs/score.py`` takes the flags of ``clipscore score``."""
    from clipscore.jobs.entry import submit

    return submit("score", run_score, argv, check=early_checks)


if __name__ == "__main__":
    raise SystemExit(main())
