"""The merge plan, materialised once: the rows left to score, staged as Parquet and cut into chunks.

Why: a merge of 100 M rows in 1 M-row commits must not re-read (and re-hash) the whole source for
every commit. ``stage_rows`` runs the plan (source read, input hash, anti-join against the target)
exactly once and writes its result, image bytes included, to a staging folder; the files are then
packed into chunks of about ``merge_chunk_rows`` rows, and each chunk reads only its own files.

    source --(1 read: hash, anti-join)--> staging/*.parquet --(chunk i: its files only)--> score -> MERGE

Plain Parquet at a path, not a table: we wrote it ourselves (no deletion vectors, no column mapping),
so reading a chunk's files directly is safe, and listing them (``DataFrame.inputFiles``) and counting
their rows (``_metadata.file_path``) work on classic Spark and on Spark Connect alike.

Where: ``merge_staging_dir`` when set (on Unity Catalog: a Volume, ``/Volumes/cat/schema/vol/tmp``),
else a hidden sibling of a path target, else ``<spark.sql.warehouse.dir>/_clipscore_staging``. Each run
stages into its own folder and removes it at the end, also when it fails. A run whose driver is killed
leaves exactly that one folder; the next run removes it once nothing in it changed for
``staging_stale_after`` (a day by default; younger ones may belong to a run still going, and a running
merge touches a heartbeat file there after each commit), on any filesystem Hadoop reaches
(``clipscore.jobs.stale``), and ``clipscore clean --staging ROOT`` does it on demand.

File sizes: at most ``target_file_mb`` per staged file (from the estimated bytes per row), and small
enough that a chunk is ``FILES_PER_CHUNK`` read tasks; the plan's partitions are coalesced (no shuffle)
to about the number of files, so a plan with many small partitions does not write many small files.
"""
from __future__ import annotations

import logging
import math
import os
import time
import uuid
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clipscore.config.durations import parse_duration
from clipscore.config.job import ScoreConfig
from clipscore.schema.errors import first_line
from clipscore.jobs.filesystem import delete_tree, touch
from clipscore.jobs.names import is_table_name
from clipscore.jobs.stale import HEARTBEAT, RUN_PREFIX, STALE_AFTER_S, remove_stale  # noqa: F401 - re-exported

log = logging.getLogger("clipscore")

STAGING_SUFFIX = "__clipscore_staging"
# Files per chunk when writing: enough read tasks per chunk to keep a cluster busy, few enough
# files to list cheaply.
FILES_PER_CHUNK = 32


@dataclass(frozen=True)
class StagedRows:
    path: str
    rows: int
    chunks: tuple[tuple[str, ...], ...]  # staged files per chunk, each chunk about merge_chunk_rows rows


def staging_root(spark: SparkSession, cfg: ScoreConfig) -> str:
    """The folder that holds this target's staging runs."""
    if cfg.merge_staging_dir:
        return cfg.merge_staging_dir.rstrip("/")
    target = cfg.output or ""
    if not is_table_name(target):
        if "://" not in target and not target.startswith("dbfs:"):
            target = os.path.abspath(target)
        head, name = target.rstrip("/").rsplit("/", 1)
        return f"{head}/.{name}{STAGING_SUFFIX}"
    warehouse = spark.conf.get("spark.sql.warehouse.dir", "spark-warehouse")
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in target)
    return f"{warehouse.rstrip('/')}/_clipscore_staging/{safe}"


def stage_rows(spark: SparkSession, todo: DataFrame, root: str, cfg: ScoreConfig, expected_rows: int,
               row_bytes: float = 0.0) -> StagedRows:
    """Write ``todo`` once under ``root`` and pack its files into chunks of about ``cfg.merge_chunk_rows`` rows.

    Stale folders of killed runs under ``root`` are removed first. ``row_bytes``: the estimated bytes per
    staged row, which caps each file at about ``cfg.target_file_mb``.
    """
    chunk_rows = cfg.merge_chunk_rows
    remove_stale(spark, root, parse_duration(cfg.staging_stale_after), prefix=RUN_PREFIX,
                 older_than=cfg.staging_stale_after)
    path = f"{root}/{RUN_PREFIX}{int(time.time())}_{uuid.uuid4().hex[:8]}"
    per_file = staged_rows_per_file(chunk_rows, expected_rows, cfg.target_file_mb * 1024 * 1024, row_bytes)
    files = max(1, math.ceil(max(expected_rows, 1) / per_file))
    todo.coalesce(files).write.mode("error").option("maxRecordsPerFile", per_file).parquet(path)
    counts = (
        spark.read.parquet(path)
        .groupBy(F.col("_metadata.file_path").alias("file"))
        .count()
        .orderBy("file")
        .collect()
    )
    found = [(row["file"], int(row["count"])) for row in counts]
    rows = sum(n for _, n in found)
    return StagedRows(path, rows, pack_chunks(found, chunk_rows))


def staged_rows_per_file(chunk_rows: int, expected_rows: int, target_bytes: int, row_bytes: float) -> int:
    """Rows per staged file: a chunk is ``FILES_PER_CHUNK`` read tasks, and no file is past the target size."""
    per_file = max(1, math.ceil(min(chunk_rows, max(expected_rows, 1)) / FILES_PER_CHUNK))
    if row_bytes > 0:
        per_file = min(per_file, max(1, int(target_bytes // row_bytes)))
    return per_file


def heartbeat(spark: SparkSession, staged: StagedRows) -> None:
    """Mark the run's folder as alive (after each commit), so another run never takes it for a killed one's."""
    try:
        touch(spark, f"{staged.path}/{HEARTBEAT}")
    except Exception as exc:  # noqa: BLE001 - without it the folder only looks older
        log.debug("could not touch the heartbeat in %s: %s", staged.path, first_line(exc))


def pack_chunks(files: list[tuple[str, int]], chunk_rows: int) -> tuple[tuple[str, ...], ...]:
    """Consecutive files grouped so that each group holds at most ``chunk_rows`` rows (or one file)."""
    chunks: list[tuple[str, ...]] = []
    current: list[str] = []
    held = 0
    for name, count in files:
        if current and held + count > chunk_rows:
            chunks.append(tuple(current))
            current, held = [], 0
        current.append(name)
        held += count
    if current:
        chunks.append(tuple(current))
    return tuple(chunks)


def read_chunk(spark: SparkSession, staged: StagedRows, index: int) -> DataFrame:
    """The staged rows of chunk ``index``: a read of its own files only."""
    schema = spark.read.parquet(staged.path).schema
    return spark.read.schema(schema).parquet(*staged.chunks[index])


def remove(spark: SparkSession, path: str) -> None:
    """Delete this run's staging folder (through Hadoop's FileSystem, or directly on a local disk)."""
    try:
        if not delete_tree(spark, path):
            raise RuntimeError("no filesystem handle here (Spark Connect)")
    except Exception as exc:  # noqa: BLE001 - leaving the folder costs only storage
        log.warning("could not remove the staging folder %s (%s); delete it when the run is over",
                    path, first_line(exc, 200))


def remove_stale_runs(spark: SparkSession, root: str, older_than: str = "1d") -> list:
    """Remove the staging folders of killed runs under ``root`` unchanged for longer than ``older_than``."""
    return remove_stale(spark, root, parse_duration(older_than), prefix=RUN_PREFIX, older_than=older_than)
