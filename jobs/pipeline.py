"""The scoring pipeline that ``score`` and ``merge`` share: checks, the lazy scored frame, what ran.

* ``early_checks``: names and models, before any Spark start-up cost (the CLI runs it first).
* ``preflight``: every check that can fail before Spark runs a task (names, models pinned to a
  commit, source read, columns).
* ``add_scores``: the source with the score columns from the UDF (``clipscore.udfs.clip_udf``), with
  each Python worker's Arrow batches bounded in rows and bytes (``arrow_settings``).
* ``runtime_metrics``/``observed_runtimes``: the (device, precision) pairs the executors actually ran,
  collected with the summary.
"""
from __future__ import annotations

import dataclasses
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clipscore.config.coerce import ConfigError
from clipscore.config.job import ScoreConfig
from clipscore.jobs.names import check_names, col
from clipscore.jobs.tables import read_source, validate_columns
from clipscore.models import describe
from clipscore.scoring.plan import planned_columns
from clipscore.udfs.clip_udf import RUNTIME_COLUMNS, make_score_udf

log = logging.getLogger("clipscore")

MAX_RECORDS_KEY = "spark.sql.execution.arrow.maxRecordsPerBatch"
MAX_BYTES_KEY = "spark.sql.execution.arrow.maxBytesPerBatch"


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
    image = col(cfg.image_col)
    known_bad = SOURCE_ERROR in base.columns  # a reader's reason (WebDataset shards): such rows skip the model
    if known_bad:
        image = F.when(F.col(SOURCE_ERROR).isNull(), image)
    scored = base.withColumn("_clipscore", udf(image, col(cfg.caption_col)))
    extra = RUNTIME_COLUMNS if runtime else ()

    def output(name: str):
        value = F.col(f"_clipscore.{name}")
        if known_bad and name == "score_error":
            value = F.coalesce(F.col(SOURCE_ERROR), value)
        return value.alias(name)

    return scored.select(*[col(c) for c in base.columns if c not in cfg.drop_columns],
                         *[output(name) for name in (*columns, *extra)])


SOURCE_ERROR = "source_error"  # a reason the reader found (clipscore.io.webdataset); it becomes score_error


def early_checks(cfg: ScoreConfig) -> None:
    """Names and models, before any Spark start-up cost: what the CLI checks before it gets a session."""
    check_names(cfg)
    planned_columns(cfg)


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
