"""Reading tables: paths (local, dbfs:/, s3a:// ...) or catalog tables, their format sniffed when not given.

``resolve_input_format`` takes ``auto`` to ``table`` (a name without ``/`` or scheme), ``csv`` (by the
suffix), ``delta`` (a ``_delta_log`` folder) or ``parquet``; ``read_source`` reads a scoring input (CSV
with RFC 4180 quoting) and turns a failed read into a ``ConfigError``; ``validate_columns`` checks the
image and caption columns before any work. Names are checked and quoted by ``clipscore.jobs.names``;
writing is ``clipscore.jobs.writes``.
"""
from __future__ import annotations

import os

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from clipscore.config.coerce import ConfigError
from clipscore.config.job import ScoreConfig
from clipscore.schema.errors import first_line
# Re-exported: the names' home is clipscore.jobs.names; tests and older code import them from here.
from clipscore.jobs.webdataset import SHARD_SUFFIXES, read_shards
from clipscore.jobs.names import check_names, col, is_table_name, parse_table_name, quote_identifier, table_identifier

__all__ = ["check_names", "col", "is_delta_path", "is_table_name", "output_exists", "parse_table_name",
           "quote_identifier", "read_source", "read_table", "resolve_input_format", "table_identifier",
           "validate_columns"]


def is_delta_path(spark: SparkSession, path: str) -> bool:
    if "://" not in path and not path.startswith("dbfs:"):
        return os.path.isdir(os.path.join(path, "_delta_log"))
    try:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(spark, path)
    except Exception:  # noqa: BLE001 - no Delta on the classpath: not a Delta table for us
        return False


def resolve_input_format(spark: SparkSession, source: str, requested: str) -> str:
    if requested != "auto":
        return requested
    if is_table_name(source):
        return "table"
    if source.lower().rstrip("/").endswith(".csv"):
        return "csv"
    if source.lower().rstrip("/").endswith(SHARD_SUFFIXES) or (".tar" in source.lower() and "{" in source):
        return "webdataset"
    if is_delta_path(spark, source):
        return "delta"
    return "parquet"


def read_source(spark: SparkSession, cfg: ScoreConfig) -> DataFrame:
    source = cfg.input
    fmt = resolve_input_format(spark, source, cfg.input_format)
    if fmt == "table":
        source_ident = table_identifier(source, "input")  # a ConfigError of its own, before the read
    if fmt == "webdataset":  # its own errors are ConfigErrors already (no shard, not a tar, a scheme)
        return read_shards(spark, source, cfg.max_image_bytes, cfg.fsspec_schemes)
    try:
        if fmt == "table":
            return spark.read.table(source_ident)
        reader = spark.read.format(fmt)
        if fmt == "csv":
            # Captions hold commas, quotes and newlines; RFC 4180 quoting is what exporters write.
            reader = reader.option("header", True).option("multiLine", True).option("escape", '"')
        return reader.load(source)
    except Exception as exc:  # noqa: BLE001 - surfaced as a configuration error, before any scoring
        raise ConfigError(
            f"Could not read --input '{source}' as {fmt}: {first_line(exc, 400)}. "
            "Check the path or table name, and --input-format (delta, parquet, csv, webdataset or table)."
        ) from None


def validate_columns(df: DataFrame, cfg: ScoreConfig) -> None:
    """Fail fast when the image or caption column is missing or of the wrong type."""
    fields = {f.name: f.dataType for f in df.schema.fields}
    available = ", ".join(fields) or "(none)"
    for option, flag, name in (("image_col", "--image-col", cfg.image_col), ("caption_col", "--caption-col", cfg.caption_col)):
        if name not in fields:
            raise ConfigError(f"Column '{name}' ({option}) is not in the input. Available columns: {available}. "
                              f"Pass {flag} NAME.")
    image_type = fields[cfg.image_col]
    if not isinstance(image_type, (T.BinaryType, T.StringType)):
        raise ConfigError(
            f"Image column '{cfg.image_col}' is {image_type.simpleString()}; it must be binary (encoded image bytes) "
            "or string (a path or an http(s) URL). Pass --image-col with such a column."
        )
    if not isinstance(fields[cfg.caption_col], T.StringType):
        raise ConfigError(
            f"Caption column '{cfg.caption_col}' is {fields[cfg.caption_col].simpleString()}; it must be a string. "
            "Pass --caption-col with a text column, or cast it first."
        )


def read_table(spark: SparkSession, target: str, fmt: str) -> DataFrame:
    if is_table_name(target):
        return spark.read.table(table_identifier(target))
    if fmt == "webdataset":
        from clipscore.config.options import ScoringOptions

        defaults = ScoringOptions(device="cpu")
        return read_shards(spark, target, defaults.max_image_bytes, defaults.fsspec_schemes)
    return spark.read.format(fmt).load(target)


def output_exists(spark: SparkSession, target: str, fmt: str) -> bool:
    if is_table_name(target):
        return spark.catalog.tableExists(table_identifier(target))
    if "://" not in target and not target.startswith("dbfs:"):
        return os.path.exists(target)
    try:
        spark.read.format(fmt).load(target).schema  # noqa: B018 - raises when nothing is there
        return True
    except Exception:  # noqa: BLE001
        return False
