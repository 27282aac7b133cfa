"""Reading sources and writing scored tables: paths (local, dbfs:/, s3a:// ...) or catalog tables.

Spark and Delta do all the writing (``partitionBy``, ``saveAsTable``, MERGE); nothing is written from
inside a task.
"""
from __future__ import annotations

import os
import re

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from clipscore.config import ConfigError, ScoreConfig

_TABLE_NAME = re.compile(r"^[A-Za-z_][\w$]*(\.[A-Za-z_`][\w$`-]*){0,2}$")


def is_table_name(target: str) -> bool:
    """``table``, ``schema.table`` or ``catalog.schema.table`` (no slash, no scheme, no file suffix)."""
    if "/" in target or ":" in target or target.lower().endswith((".csv", ".parquet")):
        return False
    return bool(_TABLE_NAME.match(target))


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
    if is_delta_path(spark, source):
        return "delta"
    return "parquet"


def read_source(spark: SparkSession, cfg: ScoreConfig) -> DataFrame:
    source = cfg.input
    fmt = resolve_input_format(spark, source, cfg.input_format)
    try:
        if fmt == "table":
            return spark.read.table(source)
        reader = spark.read.format(fmt)
        if fmt == "csv":
            # Captions hold commas, quotes and newlines; RFC 4180 quoting is what exporters write.
            reader = reader.option("header", True).option("multiLine", True).option("escape", '"')
        return reader.load(source)
    except Exception as exc:  # noqa: BLE001 - surfaced as a configuration error, before any scoring
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"Could not read --input '{source}' as {fmt}: {first_line[:400]}. "
            "Check the path or table name, and --input-format (delta, parquet, csv or table)."
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


def writer_for(df: DataFrame, fmt: str, mode: str, partition_cols: list[str]):
    # "error", not its alias "errorifexists": the Spark Connect client accepts only the short name.
    writer = df.write.format(fmt).mode(mode)
    if partition_cols:
        writer = writer.partitionBy(*partition_cols)
    return writer


def write_table(df: DataFrame, target: str, fmt: str, mode: str, partition_cols: list[str]) -> None:
    writer = writer_for(df, fmt, mode, partition_cols)
    try:
        if is_table_name(target):
            writer.saveAsTable(target)
        else:
            writer.save(target)
    except Exception as exc:  # noqa: BLE001
        text = str(exc)
        if "already exists" in text or "PATH_ALREADY_EXISTS" in text or "TABLE_OR_VIEW_ALREADY_EXISTS" in text:
            raise ConfigError(
                f"Output '{target}' already exists. Pass --mode overwrite to replace it or --mode append to add to it."
            ) from None
        raise


def read_table(spark: SparkSession, target: str, fmt: str) -> DataFrame:
    if is_table_name(target):
        return spark.read.table(target)
    return spark.read.format(fmt).load(target)


def output_exists(spark: SparkSession, target: str, fmt: str) -> bool:
    if is_table_name(target):
        return spark.catalog.tableExists(target)
    if "://" not in target and not target.startswith("dbfs:"):
        return os.path.exists(target)
    try:
        spark.read.format(fmt).load(target).schema  # noqa: B018 - raises when nothing is there
        return True
    except Exception:  # noqa: BLE001
        return False
