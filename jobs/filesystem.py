"""Files and folders on any filesystem Spark writes to, listed and deleted the way Spark reaches them.

With a JVM on the driver (classic Spark, spark-submit, Databricks clusters) everything goes through
Hadoop's ``FileSystem`` of the path (local disks, HDFS, s3a, abfss, gs, dbfs, viewfs ...), configured
as Spark's own reads and writes are (``spark.hadoop.*``). Spark Connect has no JVM handle: there a
plain local path is read with ``os`` (it is only right where client and server share the disk), and
anything else can only be listed through a Spark read (``binaryFile``, metadata only), never deleted.

Ages: a folder's last change is the newest modification time of anything in it (its files, its
folders where the filesystem keeps one; object stores give folders no time). A folder with no time at
all has an unknown age.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlparse

from pyspark.sql import SparkSession


@dataclass(frozen=True)
class Folder:
    path: str              # as the filesystem spells it
    name: str
    changed: float | None  # seconds since the epoch: the newest modification inside; None when unknown
    bytes: int


def hadoop_fs(spark: SparkSession, path: str):
    """``(FileSystem, qualified Path, jvm)`` for ``path``, or None without a JVM handle (Spark Connect)."""
    try:
        sc = spark.sparkContext  # raises on Spark Connect
        jvm, conf = sc._jvm, sc._jsc.hadoopConfiguration()
    except Exception:  # noqa: BLE001 - no JVM here
        return None
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(conf)
    return fs, fs.makeQualified(hpath), jvm


def local_path(path: str) -> str | None:
    """The local path of a plain or ``file:`` path; None for any other scheme."""
    if path.startswith("file:"):
        return urlparse(path).path
    if "://" in path or path.startswith("dbfs:"):
        return None
    return os.path.abspath(path)


def subfolders(spark: SparkSession, root: str,
               accept: Callable[[str], bool] = lambda name: True) -> list[Folder] | None:
    """The folders directly under ``root`` whose names ``accept``, with their last change and size ([] when
    ``root`` is absent). Only accepted folders are walked and sized.

    None when this session cannot list ``root`` (Spark Connect and a non-local path).
    """
    handle = hadoop_fs(spark, root)
    if handle is not None:
        fs, hroot, _ = handle
        if not fs.exists(hroot):
            return []
        found = []
        for status in fs.listStatus(hroot):
            if status.isDirectory() and accept(status.getPath().getName()):
                hpath = status.getPath()
                found.append(Folder(hpath.toString(), hpath.getName(), _newest_hadoop(fs, status),
                                    int(fs.getContentSummary(hpath).getLength())))
        return found
    local = local_path(root)
    if local is None:
        return None
    if not os.path.isdir(local):
        return []
    return [Folder(os.path.join(local, name), name, *_walk_local(os.path.join(local, name)))
            for name in sorted(os.listdir(local)) if accept(name) and os.path.isdir(os.path.join(local, name))]


def _newest_hadoop(fs, status) -> float | None:
    """The newest modification time (seconds) under a folder's FileStatus, walking every level."""
    newest = 0
    pending = [status]
    while pending:
        current = pending.pop()
        newest = max(newest, int(current.getModificationTime()))
        if current.isDirectory():
            pending.extend(fs.listStatus(current.getPath()))
    return newest / 1000.0 if newest > 0 else None


def _walk_local(folder: str) -> tuple[float | None, int]:
    newest, size = os.path.getmtime(folder), 0
    for here, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                stat = os.stat(os.path.join(here, name))
            except OSError:
                continue
            newest = max(newest, stat.st_mtime)
            if name in files:
                size += stat.st_size
    return newest, size


def spark_listing(spark: SparkSession, root: str) -> list[Folder]:
    """The folders under ``root`` seen through a Spark read (files only, metadata only; hidden names skipped).

    What Spark Connect can see: each folder's size and the newest modification of its files.
    """
    rows = (spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(root)
            .select("path", "length", "modificationTime").collect())
    base = urlparse(root if "://" in root or root.startswith("file:") else os.path.abspath(root))
    prefix = base.path.rstrip("/") + "/"
    folders: dict[str, tuple[float, int]] = {}
    for row in rows:
        where = urlparse(row["path"])
        if where.netloc != base.netloc or not where.path.startswith(prefix):
            continue
        rest = where.path[len(prefix):]
        if "/" not in rest:
            continue  # a file directly under the root
        name = rest.split("/", 1)[0]
        changed, size = folders.get(name, (0.0, 0))
        folders[name] = (max(changed, row["modificationTime"].timestamp()), size + int(row["length"]))
    head = root.rstrip("/")
    return [Folder(f"{head}/{name}", name, changed, size) for name, (changed, size) in sorted(folders.items())]


def delete_tree(spark: SparkSession, path: str) -> bool:
    """Delete a folder and everything in it; False when this session cannot (Spark Connect, non-local path)."""
    handle = hadoop_fs(spark, path)
    if handle is not None:
        fs, hpath, _ = handle
        return bool(fs.delete(hpath, True)) or not fs.exists(hpath)
    local = local_path(path)
    if local is None:
        return False
    shutil.rmtree(local, ignore_errors=True)
    return not os.path.exists(local)


def touch(spark: SparkSession, path: str) -> None:
    """Create or overwrite an empty file (a heartbeat: its modification time says a run is alive)."""
    handle = hadoop_fs(spark, path)
    if handle is not None:
        fs, hpath, _ = handle
        fs.create(hpath, True).close()
        return
    local = local_path(path)
    if local is not None and os.path.isdir(os.path.dirname(local)):
        with open(local, "wb"):
            pass


def file_sizes(spark: SparkSession, files: list[str]) -> list[int]:
    """The sizes of ``files`` (data files of a table): one listing per folder through Hadoop, else a Spark read."""
    if not files:
        return []
    handle = hadoop_fs(spark, files[0])
    if handle is None:
        rows = spark.read.format("binaryFile").load(list(files)).select("length").collect()
        return [int(r["length"]) for r in rows]
    fs, _, jvm = handle
    wanted: dict[str, dict[str, str]] = {}
    for name in files:
        hpath = fs.makeQualified(jvm.org.apache.hadoop.fs.Path(name))
        wanted.setdefault(hpath.getParent().toString(), {})[hpath.getName()] = name
    sizes = []
    for parent, names in wanted.items():
        listed = {s.getPath().getName(): int(s.getLen()) for s in fs.listStatus(jvm.org.apache.hadoop.fs.Path(parent))}
        sizes.extend(listed[n] for n in names if n in listed)
    return sizes
