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
stages into its own folder and removes it at the end; a killed run's folder is removed by the next
run when it is older than a day (younger ones may belong to a run still going).
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clipscore.config.job import ScoreConfig
from clipscore.schema.errors import first_line
from clipscore.jobs.names import is_table_name
from clipscore.jobs.writes import hadoop_fs

log = logging.getLogger("clipscore")

STAGING_SUFFIX = "__clipscore_staging"
RUN_PREFIX = "run_"
STALE_AFTER_S = 24 * 3600
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


def stage_rows(spark: SparkSession, todo: DataFrame, root: str, chunk_rows: int, expected_rows: int) -> StagedRows:
    """Write ``todo`` once under ``root`` and pack its files into chunks of about ``chunk_rows`` rows."""
    remove_stale_runs(spark, root)
    path = f"{root}/{RUN_PREFIX}{int(time.time())}_{uuid.uuid4().hex[:8]}"
    # Files small enough that a chunk is many read tasks (and packs evenly into chunks).
    per_file = max(1, math.ceil(min(chunk_rows, max(expected_rows, 1)) / FILES_PER_CHUNK))
    todo.write.mode("error").option("maxRecordsPerFile", per_file).parquet(path)
    counts = (
        spark.read.parquet(path)
        .groupBy(F.col("_metadata.file_path").alias("file"))
        .count()
        .orderBy("file")
        .collect()
    )
    files = [(row["file"], int(row["count"])) for row in counts]
    rows = sum(n for _, n in files)
    return StagedRows(path, rows, pack_chunks(files, chunk_rows))


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
    """Delete a staging folder: directly when the driver sees it, else through Hadoop's FileSystem."""
    local = path[len("file:"):] if path.startswith("file:") else path
    if "://" not in local and not local.startswith("dbfs:"):
        shutil.rmtree(local, ignore_errors=True)
        return
    handle = hadoop_fs(spark, path)
    try:
        if handle is None:
            raise RuntimeError("no JVM handle (Spark Connect)")
        fs, hpath, _ = handle
        fs.delete(hpath, True)
    except Exception as exc:  # noqa: BLE001 - leaving the folder costs only storage
        log.warning("could not remove the staging folder %s (%s); delete it when the run is over",
                    path, first_line(exc, 200))


def remove_stale_runs(spark: SparkSession, root: str) -> None:
    """Remove staging folders of killed runs (older than a day) under ``root``."""
    local = root[len("file:"):] if root.startswith("file:") else root
    if "://" in local or local.startswith("dbfs:") or not os.path.isdir(local):
        return  # remote roots: the run's own cleanup handles them; stale ones are reported, not guessed at
    now = time.time()
    for name in os.listdir(local):
        folder = os.path.join(local, name)
        if name.startswith(RUN_PREFIX) and os.path.isdir(folder) and now - os.path.getmtime(folder) > STALE_AFTER_S:
            log.info("removing the staging folder of an earlier, unfinished run: %s", folder)
            shutil.rmtree(folder, ignore_errors=True)
