"""Files of a useful size: how a run lays out its output before Spark writes it, and what it wrote.

Left alone, each write task opens one file per score band it meets: tasks x bands small files (128 for
2,000 rows on 16 cores), and as many Parquet writers open at once per task, each holding a row group
in memory. Instead, aiming at ``target_file_mb``:

* **Estimate** (``plan_files``): rows (counted: Delta and Parquet answer from metadata; or known, as in
  a merge) x bytes per output row (the kept input columns measured on a sample of ``ROW_SAMPLE`` rows:
  bytes of strings and binaries, the type's size otherwise; plus the score columns). Uncompressed
  bytes: text-heavy tables get somewhat smaller files than the target.
* **Cap**: ``maxRecordsPerFile`` = target / bytes per row, so no file grows past the target.
* **One band per task**: with Delta's optimized write in this runtime (``DeltaOptimizedWriterExec``:
  OSS Delta >= 3.1, Databricks; checked through the JVM), Delta shuffles by band itself and bins each
  band's rows into files of ``binSize`` = the target, from the real shuffle sizes (skewed bands
  included). Otherwise (Parquet, Spark Connect, older Delta) ``band_layout`` repartitions the scored
  rows so that each task holds one band: partition = band x buckets + bucket, buckets per band from
  the estimate, the bucket a hash of the image and caption (deterministic, so a retried task gets the
  same rows). Spark routes a key to ``pmod(hash(key), n)``; ``_slot_keys`` finds once, with Spark's
  own hash, a key for every partition, so slot i lands on partition i and no two bands share a task.

Either way a task has one file open at a time, and the shuffle spills rather than holds: memory stays
bounded whatever the table's size. ``written_files`` lists what the write produced (``inputFiles`` of
the written table; sizes through Hadoop's FileSystem, or a ``binaryFile`` read on Spark Connect).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clipscore.config.job import ScoreConfig
from clipscore.models import describe
from clipscore.schema.bands import ERROR_BAND, band_labels
from clipscore.schema.errors import first_line
from clipscore.jobs.filesystem import file_sizes
from clipscore.jobs.names import col, delta_identifier

log = logging.getLogger("clipscore")

MIB = 1024 * 1024
ROW_SAMPLE = 1000
SCORE_COLUMN_BYTES = 24   # a float score, a band label, a mostly-null error: per planned column, roughly
MAX_PARTITIONS = 4096     # band x bucket partitions at most; beyond, files roll over at the cap within a task
OPTIMIZED_WRITER_CLASSES = ("org.apache.spark.sql.delta.perf.DeltaOptimizedWriterExec",
                            "com.databricks.sql.transaction.tahoe.perf.DeltaOptimizedWriterExec")
OPTIMIZE_WRITE_KEYS = ("spark.databricks.delta.optimizeWrite.enabled", "spark.databricks.delta.optimizeWrite.binSize")


@dataclass(frozen=True)
class FilePlan:
    rows: int | None      # None: not counted (a WebDataset source would be read twice)
    row_bytes: float      # estimated bytes per output row
    target_bytes: int

    @property
    def rows_per_file(self) -> int:
        return max(1, int(self.target_bytes // max(self.row_bytes, 1.0)))

    @property
    def files(self) -> int | None:
        """Files the whole output fills at the target size (None when the rows are unknown)."""
        return None if self.rows is None else max(1, math.ceil(self.rows * self.row_bytes / self.target_bytes))


# Spark's DataType.defaultSize, which PySpark's types do not carry; 8 bytes for anything else fixed-size.
_DEFAULT_SIZE = {T.BooleanType: 1, T.ByteType: 1, T.ShortType: 2, T.IntegerType: 4, T.LongType: 8,
                 T.FloatType: 4, T.DoubleType: 8, T.DateType: 4, T.TimestampType: 8, T.NullType: 1}


def _default_size(dtype: T.DataType) -> int:
    return next((size for kind, size in _DEFAULT_SIZE.items() if isinstance(dtype, kind)), 8)


def _value_bytes(name: str, dtype: T.DataType) -> Column:
    if isinstance(dtype, (T.StringType, T.BinaryType)):
        return F.coalesce(F.octet_length(col(name)), F.lit(0))
    if isinstance(dtype, T.ArrayType) and not isinstance(dtype.elementType, (T.StringType, T.BinaryType)):
        return F.coalesce(F.size(col(name)), F.lit(0)) * F.lit(_default_size(dtype.elementType))
    return F.lit(_default_size(dtype))


def sample_row_bytes(df: DataFrame, columns: list[str]) -> float | None:
    """Average bytes of ``columns`` over the first ``ROW_SAMPLE`` rows (one small read); None for no rows."""
    fields = {f.name: f.dataType for f in df.schema.fields}
    parts = [_value_bytes(c, fields[c]) for c in columns if c in fields]
    if not parts:
        return 0.0
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    row = df.limit(ROW_SAMPLE).agg(F.avg(total).alias("bytes")).first()
    return None if row is None or row["bytes"] is None else float(row["bytes"])


def score_bytes(cfg: ScoreConfig, columns: tuple[str, ...]) -> int:
    """Bytes per row the run adds: its score, band and status columns, and embeddings when written."""
    extra = SCORE_COLUMN_BYTES * len(columns)
    if cfg.write_embeddings:
        width = 4 if cfg.embedding_format in ("array", "binary32") else 2
        for spec in cfg.models:
            dim = describe(spec.model, spec.revision).embedding_dim or 512
            extra += 2 * dim * width
    return extra


def plan_files(source: DataFrame, cfg: ScoreConfig, added_bytes: int, rows: int | None = None,
               count: bool = True) -> FilePlan:
    """The output's size per row and, counted when not given (and ``count``), its rows."""
    kept = [c for c in source.columns if c not in cfg.drop_columns]
    sampled = sample_row_bytes(source, kept)
    if rows is None and count:
        rows = source.count() if sampled is not None else 0
    row_bytes = max(1.0, (sampled or 0.0) + added_bytes)
    plan = FilePlan(rows, row_bytes, cfg.target_file_mb * MIB)
    log.info("output estimate: %s rows x %.0f bytes -> %s file(s) of %s MiB (at most %s rows each)",
             "?" if rows is None else f"{rows:,}", row_bytes, plan.files or "?", cfg.target_file_mb,
             f"{plan.rows_per_file:,}")
    return plan


def optimized_write_available(spark: SparkSession) -> bool:
    """Whether this runtime's Delta has optimized writes (seen through the JVM; False on Spark Connect)."""
    try:
        jvm = spark.sparkContext._jvm
    except Exception:  # noqa: BLE001 - Spark Connect: no JVM to ask
        return False
    for name in OPTIMIZED_WRITER_CLASSES:
        try:
            jvm.py4j.reflection.ReflectionUtil.classForName(name)  # the class loader py4j itself uses
            return True
        except Exception:  # noqa: BLE001 - ClassNotFoundException
            continue
    return False


def band_layout(df: DataFrame, cfg: ScoreConfig, plan: FilePlan, band_col: str | None,
                columns: list[str] | None = None) -> DataFrame:
    """``df`` repartitioned so that each task holds rows of one band (or, without ``band_col``, one bucket).

    ``columns``: ``df``'s column names when ``df`` carries an ``Observation`` (asking an observed frame for
    its schema on Spark Connect empties the observation).
    """
    labels = [*band_labels(cfg.band_edges), ERROR_BAND] if band_col else [None]
    spark = df.sparkSession
    if plan.files is not None:
        buckets = math.ceil(plan.files / len(labels))
    else:  # rows unknown: as many write tasks as Spark's shuffle would make
        buckets = math.ceil(int(spark.conf.get("spark.sql.shuffle.partitions", "200")) / len(labels))
    buckets = max(1, min(buckets, MAX_PARTITIONS // len(labels)))
    partitions = len(labels) * buckets
    present = set(df.columns if columns is None else columns)
    hashed = [col(c) for c in dict.fromkeys((cfg.image_col, cfg.caption_col, cfg.band_column)) if c in present]
    bucket = F.pmod(F.xxhash64(*hashed), F.lit(buckets)) if hashed and buckets > 1 else F.lit(0)
    slot = F.lit(0)
    if band_col:
        index = F.array_position(F.array(*[F.lit(label) for label in labels]), col(band_col)).cast("int")
        slot = F.when(index > 0, index - 1).otherwise(F.lit(len(labels) - 1))
    slot = slot * F.lit(buckets) + bucket.cast("int")
    keys = _slot_keys(spark, partitions)
    key = F.element_at(F.array(*[F.lit(k).cast("long") for k in keys]), slot + 1) if keys else slot
    log.info("write layout: %d partition(s), %d per band, one band per task", partitions, buckets)
    return df.repartition(partitions, key)


def _slot_keys(spark: SparkSession, partitions: int) -> list[int] | None:
    """For each partition p, a long key that Spark's hash partitioning sends to p (None if not found)."""
    upper = 16 * partitions
    for _ in range(3):
        rows = (spark.range(0, upper).select("id", F.pmod(F.hash("id"), F.lit(partitions)).alias("p"))
                .groupBy("p").agg(F.min("id").alias("key")).collect())
        found = {int(r["p"]): int(r["key"]) for r in rows}
        if len(found) == partitions:
            return [found[p] for p in range(partitions)]
        upper *= 8
    log.warning("no key for every one of %d partitions; bands may share write tasks", partitions)
    return None


def layout_for_write(scored: DataFrame, cfg: ScoreConfig, plan: FilePlan, optimized: bool, band_col: str | None,
                     columns: list[str] | None = None) -> tuple[DataFrame, dict[str, str], dict[str, str]]:
    """The frame to write, the writer's options and the session options for the write (``optimized``: Delta's;
    ``columns``: see ``band_layout``)."""
    options = {"maxRecordsPerFile": str(plan.rows_per_file)}
    if optimized:
        log.info("write layout: Delta optimized write, bins of %d MiB", cfg.target_file_mb)
        settings = dict(zip(OPTIMIZE_WRITE_KEYS, ("true", str(cfg.target_file_mb))))
        return scored, {**options, "optimizeWrite": "true"}, settings
    return band_layout(scored, cfg, plan, band_col, columns), options, {}


def data_files(spark: SparkSession, df: DataFrame) -> set[str]:
    """The data files of a table as read (``inputFiles``: a Delta table's current version only)."""
    try:
        return set(df.inputFiles())
    except Exception as exc:  # noqa: BLE001 - a listing is a report, never a reason to fail
        log.debug("could not list the output's files: %s", first_line(exc))
        return set()


def written_files(spark: SparkSession, files: set[str]) -> tuple[int, int | None]:
    """(number of files, their bytes in all) of ``files``; the bytes are None when sizes are unknown."""
    if not files:
        return 0, None
    try:
        sizes = file_sizes(spark, sorted(files))
    except Exception as exc:  # noqa: BLE001
        log.debug("could not size the output's files: %s", first_line(exc))
        return len(files), None
    return len(files), sum(sizes) if len(sizes) == len(files) else None


# Delta operations that add a write's data files (DESCRIBE HISTORY's ``operation``).
DELTA_WRITE_OPERATIONS = ("WRITE", "CREATE TABLE AS SELECT", "REPLACE TABLE AS SELECT",
                          "CREATE OR REPLACE TABLE AS SELECT", "STREAMING UPDATE")


def delta_commit_files(spark: SparkSession, target: str) -> tuple[int | None, int | None]:
    """(files, bytes) that the latest commit of the Delta table ``target`` added, if that commit is a write.

    Read from the commit's ``operationMetrics`` (``DESCRIBE HISTORY ... LIMIT 1``: the last commit file
    only). Listing the table's files instead (``inputFiles``) makes Delta rebuild the table's state from
    its whole log, a Spark job of ``snapshotPartitions`` (50) tasks: more than the write itself on a
    small run. Call it right after the write; (None, None) if the metrics are missing or unreadable.
    """
    try:
        row = spark.sql(f"DESCRIBE HISTORY {delta_identifier(target)} LIMIT 1").select(
            "operation", "operationMetrics").first()
    except Exception as exc:  # noqa: BLE001 - a report, never a reason to fail
        log.debug("could not read the history of %s: %s", target, first_line(exc))
        return None, None
    if row is None or row["operation"] not in DELTA_WRITE_OPERATIONS or not row["operationMetrics"]:
        return None, None
    metrics = dict(row["operationMetrics"])
    files, size = metrics.get("numFiles"), metrics.get("numOutputBytes")
    return (int(files) if files is not None else None), (int(size) if size is not None else None)
