"""The merge job: score a source and MERGE the scores into an existing Delta table by key.

    clipscore merge --input SRC --target DST --keys id            (or shard,id)
    spark-submit jobs/merge.py --input SRC --target DST --keys id

``run_merge(spark, cfg)`` reads ``cfg.input``, scores it and upserts it into ``cfg.output`` by
``cfg.merge_keys``: matched rows get the source's columns, ``similarity``/``score_band``/``score_error``
and the provenance columns (``clipscore.jobs.provenance``); unmatched rows are inserted. Columns the
target lacks are added (Delta schema evolution: ``MERGE WITH SCHEMA EVOLUTION`` plus
``schema.autoMerge`` for the MERGE statement only).

How a run goes, and why:

1. **Preflight** (no model runs): options, model files, source columns, key columns in source and
   target, and one aggregation over the source keys. **Duplicate or null keys fail fast** with
   examples: which of two rows with one key is right is the caller's decision, and a silent
   "keep one" would hide an upstream bug (Delta would also refuse a MERGE where several source rows
   match one target row).
2. **Incremental:** with ``skip_scored`` (default) a left anti-join drops source rows whose key is in
   the target with the same ``score_fingerprint`` (model, revision, precision, pixel options, band
   edges) and the same ``score_input_hash`` (image and caption). Changed rows therefore get
   re-scored; unchanged ones are counted in ``RunSummary.skipped``. Rows that were processed but
   got a ``score_error`` are skipped too: rerunning never changes a table. ``skip_scored=false``
   (``--rescore-all``) scores everything.
3. **Resumable:** the rows left to score are cut by a hash of the key into chunks of about
   ``merge_chunk_rows`` rows; each chunk is scored and MERGEd as one Delta commit. A MERGE commit is
   atomic, so a run killed at any point leaves the target with whole chunks only; rerunning skips
   them (step 2) and scores the rest. Upsert by key means no duplicates, whatever was committed.
   Nothing to score means no commit at all, so a rerun leaves the table version unchanged.
4. **Summary:** rows scored by *this* run are those with its ``scored_at``; one aggregation over the
   target gives the usual summary (rows per band, errors by reason) plus ``skipped``.

Everything goes through DataFrames and SQL (no ``DeltaTable`` JVM handle, no SparkContext), so the
job also runs on Spark Connect sessions.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from typing import Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from clipscore.config.coerce import ConfigError
from clipscore.config.job import ScoreConfig
from clipscore.schema.columns import is_score_column
from clipscore.schema.errors import TRANSIENT_CODES, first_line
from clipscore.jobs import staging
from clipscore.jobs.columns import error_code
from clipscore.jobs.layout import sample_row_bytes
from clipscore.jobs.names import col, delta_identifier, quote_identifier
from clipscore.jobs.pipeline import add_scores, arrow_settings, early_checks, observed_runtimes, preflight, runtime_metrics
from clipscore.jobs.provenance import (
    PROVENANCE_COLUMNS,
    expected_runtime,
    input_hash,
    record_provenance,
    score_fingerprint,
    with_provenance_columns,
)
from clipscore.jobs.session import session_conf
from clipscore.jobs.summary import RunSummary, summary_from_metrics, summary_metrics
from clipscore.jobs.tables import read_table

log = logging.getLogger("clipscore")

AUTO_MERGE_KEY = "spark.databricks.delta.schema.autoMerge.enabled"
MAX_EXAMPLES = 5
HASH_BYTES = 64  # score_input_hash, staged with each row


# -------------------------------------------------------------------------------------------------
# Checks
# -------------------------------------------------------------------------------------------------
def target_columns(spark: SparkSession, target: str) -> list[str]:
    """Columns of the existing Delta target; ConfigError when there is no Delta table there."""
    ident = delta_identifier(target)
    try:
        detail = spark.sql(f"DESCRIBE DETAIL {ident}").select("format").first()
    except Exception as exc:  # noqa: BLE001 - surfaced as a configuration error
        raise ConfigError(
            f"Merge target '{target}' is not an existing Delta table ({first_line(exc)}). Create it first, e.g. with "
            "`clipscore score --output TARGET` or `CREATE TABLE ... USING delta`, or pass --target with an existing one."
        ) from None
    if detail is None or (detail["format"] or "").lower() != "delta":
        fmt = detail["format"] if detail is not None else "unknown"
        raise ConfigError(f"Merge target '{target}' is a {fmt} table; MERGE needs a Delta table. "
                          "Convert it (CONVERT TO DELTA) or pick a Delta target.")
    return read_table(spark, target, "delta").columns


def check_keys(cfg: ScoreConfig, source_cols: list[str], target_cols: list[str]) -> None:
    keys = list(cfg.merge_keys)
    if not keys:
        raise ConfigError("No merge keys: pass --keys with the column(s) that identify a row, e.g. --keys id.")
    reserved = set(PROVENANCE_COLUMNS) | {cfg.image_col, cfg.caption_col}
    for key in keys:
        if key in reserved or is_score_column(key):
            raise ConfigError(f"Merge key '{key}' is a score, provenance, image or caption column; "
                              "pass --keys with the column(s) that identify a row.")
        if key not in source_cols:
            raise ConfigError(f"Merge key '{key}' is not in the input. Input columns: {', '.join(source_cols)}.")
        if key not in target_cols:
            raise ConfigError(f"Merge key '{key}' is not in the target. Target columns: {', '.join(target_cols)}.")


def check_unique_keys(source: DataFrame, keys: list[str]) -> int:
    """Number of source rows; ConfigError with examples when a key is null or occurs more than once."""
    any_null = F.lit(False)
    for key in keys:
        any_null = any_null | col(key).isNull()
    per_key = source.groupBy(*[col(k) for k in keys]).agg(F.count(F.lit(1)).alias("n"))
    stats = per_key.agg(
        F.coalesce(F.sum("n"), F.lit(0)).alias("rows"),
        F.coalesce(F.sum(F.when(F.col("n") > 1, 1)), F.lit(0)).alias("duplicated_keys"),
        F.coalesce(F.sum(F.when(any_null, F.col("n"))), F.lit(0)).alias("null_key_rows"),
    ).first()
    if stats["null_key_rows"]:
        raise ConfigError(
            f"{stats['null_key_rows']:,} input row(s) have a null merge key ({', '.join(keys)}); a MERGE cannot "
            "match them and would insert them again on every run. Filter them out or fill the key first."
        )
    if stats["duplicated_keys"]:
        examples = (per_key.filter(F.col("n") > 1).orderBy(F.col("n").desc(), *[col(k) for k in keys])
                    .limit(MAX_EXAMPLES).collect())
        shown = "; ".join(
            ", ".join(f"{k}={row[k]!r}" for k in keys) + f" ({row['n']} rows)" for row in examples
        )
        raise ConfigError(
            f"{stats['duplicated_keys']:,} merge key value(s) occur more than once in the input, e.g. {shown}. "
            "Each key must identify one row: deduplicate the input (e.g. keep the latest per key) or pass "
            "--keys with more columns."
        )
    return int(stats["rows"])


# -------------------------------------------------------------------------------------------------
# Planning
# -------------------------------------------------------------------------------------------------
def transient_error(column: Column) -> Column:
    """True where a stored ``score_error`` is one a later run may fix (timeouts, 429, 5xx ...)."""
    return error_code(column).isin(*TRANSIENT_CODES)


def rows_to_score(spark: SparkSession, cfg: ScoreConfig, source: DataFrame, target_cols: list[str],
                  fingerprint: str) -> DataFrame:
    """Source rows (with ``score_input_hash``) that the target does not already hold as this run would score them.

    A target row counts as done when it has this run's (expected) ``fingerprint``, the same input
    hash, and no transient error: rows that timed out, were rate-limited or met a 5xx are tried again.
    """
    keys = list(cfg.merge_keys)
    hashed = source.drop(*[c for c in PROVENANCE_COLUMNS if c in source.columns]).withColumn(
        "score_input_hash", input_hash(cfg)
    )
    if not cfg.skip_scored or not {"score_fingerprint", "score_input_hash"} <= set(target_cols):
        return hashed
    target = read_table(spark, cfg.output, "delta")
    not_transient = F.col("score_error").isNull() | ~transient_error(F.col("score_error")) \
        if "score_error" in target_cols else F.lit(True)
    done = (
        target.filter((F.col("score_fingerprint") == F.lit(fingerprint)) & not_transient)
        .select(*[col(k) for k in keys], F.col("score_input_hash"))
    )
    return hashed.join(done, on=[*keys, "score_input_hash"], how="left_anti")


# -------------------------------------------------------------------------------------------------
# MERGE
# -------------------------------------------------------------------------------------------------
def merge_sql(target: str, view: str, keys: list[str], only_changed: bool) -> str:
    on = " AND ".join(f"t.{quote_identifier(k)} = s.{quote_identifier(k)}" for k in keys)
    # Guard for concurrent writers: never rewrite a row that already holds this exact score (a
    # transient error is not a score: its retry is written).
    transient = ", ".join(f"'{code}'" for code in TRANSIENT_CODES)
    guard = (
        " AND (t.score_fingerprint IS DISTINCT FROM s.score_fingerprint"
        " OR t.score_input_hash IS DISTINCT FROM s.score_input_hash"
        f" OR substring_index(t.score_error, ':', 1) IN ({transient}))"
        if only_changed else ""
    )
    # Schema evolution two ways: the SQL clause (Databricks, newer Delta) and the session option
    # (delta-spark 4.0.x parses the clause but only honours the option); either adds missing columns.
    return (
        f"MERGE WITH SCHEMA EVOLUTION INTO {delta_identifier(target)} AS t USING {quote_identifier(view)} AS s ON {on} "
        f"WHEN MATCHED{guard} THEN UPDATE SET * "
        "WHEN NOT MATCHED THEN INSERT *"
    )


def merge_chunk(spark: SparkSession, cfg: ScoreConfig, scored: DataFrame, only_changed: bool) -> dict[str, int]:
    """One atomic MERGE commit of ``scored`` into the target; returns Delta's row counts."""
    view = f"_clipscore_merge_{uuid.uuid4().hex[:12]}"
    scored.createOrReplaceTempView(view)
    try:
        settings = {AUTO_MERGE_KEY: "true", **arrow_settings(cfg)}
        with session_conf(spark, settings, optional=(AUTO_MERGE_KEY,)):
            row = spark.sql(merge_sql(cfg.output, view, list(cfg.merge_keys), only_changed)).first()
    finally:
        spark.catalog.dropTempView(view)
    counts = row.asDict() if row is not None else {}
    return {k: int(v or 0) for k, v in counts.items()}


def run_merge(
    spark: SparkSession,
    cfg: ScoreConfig,
    on_chunk_committed: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Score ``cfg.input`` and MERGE it into the Delta table ``cfg.output`` by ``cfg.merge_keys``.

    Reads of the source per run: one of the key columns (uniqueness check, row count) and one full
    read (input hash, anti-join against the target) whose result is staged once; each chunk then
    reads only its own staged files. ``on_chunk_committed(chunk_index, chunks)`` is called after each
    MERGE commit (progress reports).
    """
    if not cfg.output:
        raise ConfigError("No merge target: pass --target with an existing Delta table (path or catalog name).")
    started = time.perf_counter()
    source, cfg = preflight(spark, cfg)
    target_cols = target_columns(spark, cfg.output)
    keys = list(cfg.merge_keys)
    check_keys(cfg, source.columns, target_cols)
    source_rows = check_unique_keys(source, keys)

    device, precision = expected_runtime(spark, cfg)
    todo = rows_to_score(spark, cfg, source, target_cols, score_fingerprint(cfg, device, precision))
    only_changed = cfg.skip_scored and {"score_fingerprint", "score_input_hash"} <= set(target_cols)
    scored_at = dt.datetime.now(dt.timezone.utc)  # one timestamp per run: it also identifies this run's rows
    root = staging.staging_root(spark, cfg)
    row_bytes = (sample_row_bytes(source, source.columns) or 0.0) + HASH_BYTES
    staged = staging.stage_rows(spark, todo, root, cfg, source_rows, row_bytes)
    try:
        skipped = source_rows - staged.rows
        chunks = len(staged.chunks) if staged.rows else 0
        log.info("merge %s -> %s by %s: %s rows, %s already scored, %s to score in %s commit(s) (staged in %s; "
                 "expected to run as %s/%s)", cfg.input, cfg.output, ",".join(keys), f"{source_rows:,}",
                 f"{skipped:,}", f"{staged.rows:,}", chunks, staged.path, device, precision)
        totals: dict[str, int] = {}
        for index in range(chunks):
            part = staging.read_chunk(spark, staged, index)
            scored = with_provenance_columns(add_scores(part, cfg, runtime=True), cfg, scored_at)
            counts = merge_chunk(spark, cfg, scored, only_changed)
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
            log.info("merge commit %d/%d: %s", index + 1, chunks, counts)
            staging.heartbeat(spark, staged)
            if on_chunk_committed is not None:
                on_chunk_committed(index, chunks)
    finally:
        staging.remove(spark, staged.path)

    summary, runtimes = _summary(spark, cfg, scored_at if chunks else None, time.perf_counter() - started, skipped)
    if chunks:
        record_provenance(spark, cfg.output, cfg, runtimes)
    summary.extra.update({
        "commits": chunks,
        "rows inserted": totals.get("num_inserted_rows", 0),
        "rows updated": totals.get("num_updated_rows", 0),
    })
    log.info("clipscore merge summary for %s\n%s", cfg.output, summary.format())
    return summary


def _summary(spark: SparkSession, cfg: ScoreConfig, scored_at, seconds: float, skipped: int):
    """This run's rows are the target rows carrying its ``scored_at``: one aggregation, no model."""
    if scored_at is None:
        return summary_from_metrics({}, seconds, skipped=skipped), []
    this_run = read_table(spark, cfg.output, "delta").filter(F.col("scored_at") == F.lit(scored_at).cast("timestamp"))
    metrics = this_run.agg(*summary_metrics(cfg.band_edges), *runtime_metrics()).first().asDict()
    return summary_from_metrics(metrics, seconds, skipped=skipped), observed_runtimes(metrics)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``jobs/merge.py`` takes the flags of ``clipscore merge``."""
    from clipscore.jobs.entry import submit

    return submit("merge", run_merge, argv, check=early_checks)


if __name__ == "__main__":
    raise SystemExit(main())
