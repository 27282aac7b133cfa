"""The export job: the rows of a table as training shards a trainer streams, or as one Parquet dataset.

    clipscore export --input KEPT --output DIR [--format webdataset|parquet] [--shard-rows 10000]
                     [--shard-bytes 1GB] [--key key] [--mode error|overwrite]

WebDataset (the default; what open_clip's trainer, NeMo and most text-to-image trainers read): tar
shards of at most ``--shard-rows`` samples and ``--shard-bytes`` bytes, each sample ``<key>.<ext>`` (the
original image bytes, never re-encoded; the extension from the real format), ``<key>.txt`` (the
caption), ``<key>.json`` (the row's other non-binary columns: scores, signals, provenance), plus
``_index/`` (Parquet: key, shard, member offset) and ``_SUCCESS`` (counts). Written by the Spark tasks
through the ``webdataset`` data source (``clipscore.jobs.webdataset``): into a staging folder, published
only when every task succeeded, so a failed run leaves a previous export whole. Rows are range-
partitioned and sorted by key first: the same input and options give the same shards, byte for byte.

Parquet (``--format parquet``): key, image bytes inline, caption and the other columns: what Hugging
Face ``datasets`` and MosaicML streaming's converters read.

Keys come from ``--key`` (default ``key``, else ``id``); they must be unique, non-null and tar-safe
(letters, digits, ``_``, ``-``), all checked before any shard is written. Images that are paths or
URLs are fetched through the scorer's bounded loader (size, time, address guard); a row whose image
cannot be read is exported without its image, with the reason in its ``.json`` (``export_error``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import uuid
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clipscore.config.choices import INPUT_FORMATS, WRITE_MODES
from clipscore.config.coerce import ConfigError, Options, choice, coerce_fields
from clipscore.config.options import ScoringOptions
from clipscore.io.webdataset import TAR_SAFE_KEY
from clipscore.jobs.names import col, is_table_name
from clipscore.jobs.tables import read_table, resolve_input_format
from clipscore.jobs.webdataset import register
from clipscore.jobs.writes import write_table

log = logging.getLogger("clipscore")

EXPORT_FORMATS = ("webdataset", "parquet")
EXPORT_ERROR = "export_error"
_EMBEDDINGS = ("image_embedding", "text_embedding")


@dataclass(frozen=True)
class ExportOptions(Options):
    input: str | None = None
    output: str | None = None
    format: str = "webdataset"
    shard_rows: int = 10_000
    shard_bytes: int = 1 << 30
    key: str | None = None  # default: key, else id
    image_col: str = "image"
    caption_col: str = "caption"
    include_embeddings: bool = False  # embedding columns in each .json (large: off by default)
    mode: str = "error"
    input_format: str = "auto"
    image_base_path: str = ""
    allow_private_urls: bool = False

    def __post_init__(self) -> None:
        coerce_fields(self)
        choice(self, "format", EXPORT_FORMATS)
        choice(self, "mode", tuple(m for m in WRITE_MODES if m != "append"))
        choice(self, "input_format", INPUT_FORMATS)
        if not self.input or not self.output:
            raise ConfigError("clipscore export needs --input (a table) and --output (a folder for the shards).")
        if self.shard_rows < 1 or self.shard_bytes < 1 << 20:
            raise ConfigError(f"--shard-rows must be at least 1 and --shard-bytes at least 1 MiB; got "
                              f"{self.shard_rows} and {self.shard_bytes}.")
        if self.format == "webdataset" and (is_table_name(self.output) or "://" in self.output):
            raise ConfigError(f"--output {self.output}: WebDataset shards are written to a folder the executors share "
                              "(a local path, or a FUSE mount such as /dbfs/... or /Volumes/...).")


def key_column(df: DataFrame, options: ExportOptions) -> str:
    key = options.key or ("key" if "key" in df.columns else "id" if "id" in df.columns else None)
    if key is None or key not in df.columns:
        raise ConfigError(f"No key column{f' {options.key!r}' if options.key else ''} in {options.input}: pass --key "
                          f"with a unique column (columns: {', '.join(df.columns)}).")
    return key


def check_keys(df: DataFrame, key: str, source: str) -> None:
    """Unique, non-null, tar-safe keys, or a ConfigError that names a few offenders (Spark does the work)."""
    text = col(key).cast("string")
    bad = df.filter(text.isNull() | ~text.rlike(TAR_SAFE_KEY.pattern)).select(text.alias("k")).limit(5).collect()
    if bad:
        raise ConfigError(f"Keys of {source} must be non-null and tar-safe (letters, digits, _ and -, at most 200): "
                          f"found {', '.join(repr(r['k']) for r in bad)}. Pass --key with another column.")
    repeated = df.groupBy(text.alias("k")).count().filter(F.col("count") > 1).limit(5).collect()
    if repeated:
        raise ConfigError(f"Keys of {source} must be unique: {', '.join(repr(r['k']) for r in repeated)} repeat. "
                          "Pass --key with a unique column (or dedup first).")


def with_image_bytes(df: DataFrame, options: ExportOptions) -> DataFrame:
    """Binary images as they are; paths and URLs fetched by the scorer's bounded loader (reason on failure)."""
    if isinstance(df.schema[options.image_col].dataType, T.BinaryType):
        return df.withColumn(EXPORT_ERROR, F.lit(None).cast("string"))
    fetch_options = ScoringOptions(image_base_path=options.image_base_path, device="cpu",
                                   allow_private_urls=options.allow_private_urls)
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("struct<bytes: binary, error: string>")
    def fetch(refs):
        import pandas as pd

        from clipscore.io.fetch import FetchError, Fetcher

        fetcher = Fetcher(fetch_options)
        out = []
        try:
            for ref in refs:
                try:
                    out.append((fetcher.read_bytes(ref), None))
                except FetchError as failed:
                    out.append((None, str(failed)))
        finally:
            fetcher.close()
        return pd.DataFrame(out, columns=["bytes", "error"])

    fetched = df.withColumn("_fetched", fetch(col(options.image_col)))
    return (fetched.withColumn(options.image_col, F.col("_fetched.bytes"))
            .withColumn(EXPORT_ERROR, F.col("_fetched.error")).drop("_fetched"))


def run_export(spark: SparkSession, options: ExportOptions) -> dict[str, Any]:
    fmt = resolve_input_format(spark, options.input, options.input_format)
    df = read_table(spark, options.input, fmt)
    for name in (options.image_col, options.caption_col):
        if name not in df.columns:
            raise ConfigError(f"Column '{name}' is not in {options.input}; columns: {', '.join(df.columns)}.")
    key = key_column(df, options)
    if os.path.exists(options.output) and options.mode == "error":
        raise ConfigError(f"--output {options.output} exists. Pass --mode overwrite to replace it (the old export "
                          "stays until the new one is complete).")
    check_keys(df, key, options.input)
    return export_frame(spark, df, key, options)


def export_frame(spark: SparkSession, df: DataFrame, key: str, options: ExportOptions) -> dict[str, Any]:
    """Export ``df`` (keys already checked): range-partition and sort by key, then write."""
    rows = df.count()
    skipped = set(_EMBEDDINGS) if not options.include_embeddings else set()
    data = with_image_bytes(df, options)
    meta = [f.name for f in data.schema.fields if f.name not in (key, options.image_col, options.caption_col)
            and not isinstance(f.dataType, T.BinaryType) and not f.name.startswith(tuple(skipped))]
    parts = max(1, min(math.ceil(rows / options.shard_rows), 1024))  # about one shard per task
    ordered = data.repartitionByRange(parts, col(key)).sortWithinPartitions(col(key))
    if options.format == "parquet":
        keep = [key, options.image_col, options.caption_col, *meta]
        write_table(ordered.select(*[col(c) for c in keep]), options.output, "parquet", options.mode, [])
        summary = {"format": "parquet", "samples": rows, "output": options.output}
    else:
        register(spark)
        staging = f"{options.output.rstrip('/')}.__clipscore_export_{uuid.uuid4().hex[:8]}"
        (ordered.write.format("webdataset").mode("overwrite")
         .option("staging", staging).option("shard_rows", str(options.shard_rows))
         .option("shard_bytes", str(options.shard_bytes)).option("key_col", key)
         .option("image_col", options.image_col).option("caption_col", options.caption_col)
         .option("meta_cols", json.dumps(meta)).save(options.output))
        with open(os.path.join(options.output, "_SUCCESS"), encoding="utf-8") as handle:
            summary = {"format": "webdataset", **json.load(handle), "output": options.output}
    log.info("exported %s rows of %s to %s (%s)", f"{rows:,}", options.input, options.output,
             ", ".join(f"{k} {v}" for k, v in summary.items() if k not in ("output", "format")))
    return summary
