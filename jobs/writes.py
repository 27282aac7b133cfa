"""Writing tables: paths or catalog tables, Delta or Parquet; an overwrite never loses the previous output.

Spark and Delta do all the writing (``partitionBy``, ``saveAsTable``, MERGE); nothing is written from
inside a task.

* Delta (path or table): an overwrite is one commit; a failed run commits nothing, readers keep
  seeing the previous version.
* Parquet path: Spark's own overwrite deletes the old files *before* writing. We write to a hidden
  staging sibling (``.<name>.__clipscore_staging_<id>``) instead and swap only after the write
  succeeded: rename the old output to a backup sibling, rename staging to the output, delete the
  backup. A failed write deletes staging and leaves the old output untouched. This goes through the
  Hadoop ``FileSystem`` of the path, so it works on every Hadoop filesystem; renames are atomic
  metadata operations on local disks, HDFS and ABFS (hierarchical namespace), but a copy on object
  stores (s3a, gs): slower, proportional to the data, and not atomic. Between the two renames the
  output path is briefly absent; a crash right there leaves the old output in the backup sibling.
  A killed overwrite leaves its staging folder (the output untouched): the next overwrite of the same
  output removes it once unchanged for ``stale_after_s`` (``clipscore.jobs.stale``; or ``clipscore clean``).
  With ``spark.sql.sources.partitionOverwriteMode=dynamic`` Spark stages partitions itself and is
  left to do so. On Spark Connect (no JVM handle) an overwrite of an *existing* Parquet path is
  refused: use Delta output or a new path.
* Parquet catalog table: overwriting an existing one is refused (Spark would drop it first); use Delta.
* Append: Delta appends are one commit. Parquet appends are as safe as the output committer: Spark's
  default (FileOutputCommitter v1) publishes files only at job commit, but committer v2, direct
  committers, or a crash *during* job commit can leave part files of a failed run behind.
"""
from __future__ import annotations

import logging
import uuid

from pyspark.sql import DataFrame, SparkSession

from clipscore.config.coerce import ConfigError
from clipscore.schema.errors import first_line
from clipscore.jobs.filesystem import hadoop_fs
from clipscore.jobs.names import is_table_name, table_identifier
from clipscore.jobs.stale import BACKUP_TAG, STAGING_TAG, STALE_AFTER_S, remove_stale
from clipscore.jobs.tables import output_exists

log = logging.getLogger("clipscore")

# Delta refuses these in column names unless the table uses column mapping.
_DELTA_RESERVED_CHARS = set(" ,;{}()\n\t=")
__all__ = ["BACKUP_TAG", "STAGING_TAG", "hadoop_fs", "write_table", "writer_for"]  # the tags live in stale


def writer_for(df: DataFrame, fmt: str, mode: str, partition_cols: list[str], columns: list[str] | None = None,
               options: dict[str, str] | None = None):
    # "error", not its alias "errorifexists": the Spark Connect client accepts only the short name.
    writer = df.write.format(fmt).mode(mode)
    for key, value in (options or {}).items():  # e.g. maxRecordsPerFile, optimizeWrite (clipscore.jobs.layout)
        writer = writer.option(key, value)
    if fmt == "delta" and any(_DELTA_RESERVED_CHARS & set(c) for c in (df.columns if columns is None else columns)):
        # Delta stores such names only with column mapping; the option applies when the table is created
        # (an existing table keeps its settings, and Delta says so if it lacks column mapping).
        log.info("column names with spaces or ,;{}()= : a new Delta table gets delta.columnMapping.mode=name")
        writer = writer.option("delta.columnMapping.mode", "name")
    if fmt == "delta" and mode == "overwrite":
        # An overwrite replaces the table, schema and partitioning included (new columns such as the
        # embeddings, a different band column): still one atomic commit, the old version stays readable.
        writer = writer.option("overwriteSchema", "true")
    if partition_cols:
        writer = writer.partitionBy(*partition_cols)
    return writer


def write_table(df: DataFrame, target: str, fmt: str, mode: str, partition_cols: list[str],
                columns: list[str] | None = None, options: dict[str, str] | None = None,
                stale_after_s: float = STALE_AFTER_S) -> None:
    """Write ``df`` to a path or catalog table; an overwrite that fails keeps the previous output.

    ``columns``: ``df``'s column names, when ``df`` carries an ``Observation``: on Spark Connect, asking
    an observed frame for its schema before the write leaves the observation empty. ``options``: the
    writer's. ``stale_after_s``: a Parquet overwrite removes staging folders of killed overwrites of the
    same output unchanged for longer.
    """
    spark = df.sparkSession
    try:
        if is_table_name(target):
            ident = table_identifier(target, "output")
            if fmt == "parquet" and mode == "overwrite" and spark.catalog.tableExists(ident):
                raise ConfigError(
                    f"Output table '{target}' exists and is overwritten only by dropping it first: a failed run would "
                    "lose it. Pass --output-format delta (an overwrite is one atomic commit), or a new table name."
                )
            writer_for(df, fmt, mode, partition_cols, columns, options).saveAsTable(ident)
        elif fmt == "parquet" and mode == "overwrite":
            _overwrite_parquet_path(spark, df, target, partition_cols, options, stale_after_s)
        else:
            writer_for(df, fmt, mode, partition_cols, columns, options).save(target)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001
        text = str(exc)
        if "already exists" in text or "PATH_ALREADY_EXISTS" in text or "TABLE_OR_VIEW_ALREADY_EXISTS" in text:
            raise ConfigError(
                f"Output '{target}' already exists. Pass --mode overwrite to replace it or --mode append to add to it."
            ) from None
        raise


def _overwrite_parquet_path(spark: SparkSession, df: DataFrame, target: str, partition_cols: list[str],
                            options: dict[str, str] | None, stale_after_s: float) -> None:
    """Overwrite a Parquet path through a staging sibling, so a failed write leaves the old files whole."""
    dynamic = str(spark.conf.get("spark.sql.sources.partitionOverwriteMode", "static")).lower() == "dynamic"
    if partition_cols and dynamic:
        # Spark itself writes to a staging folder and replaces only the partitions written, at job commit.
        writer_for(df, "parquet", "overwrite", partition_cols, options=options).save(target)
        return
    handle = hadoop_fs(spark, target)
    if handle is None:
        if output_exists(spark, target, "parquet"):
            raise ConfigError(
                f"Output '{target}' exists, and on Spark Connect a Parquet overwrite cannot be made safe (Spark "
                "deletes the old files before writing; there is no filesystem handle to stage the new ones). Pass "
                "--output-format delta (an atomic commit) or a new --output path."
            )
        writer_for(df, "parquet", "overwrite", partition_cols, options=options).save(target)
        return
    fs, path, jvm = handle
    if not fs.exists(path):  # nothing to lose
        writer_for(df, "parquet", "overwrite", partition_cols, options=options).save(target)
        return
    parent = path.getParent()
    if parent is None:
        raise ConfigError(f"Output '{target}' is the root of its filesystem; write to a folder below it.")
    remove_stale(spark, parent.toString(), stale_after_s, prefix=f".{path.getName()}{STAGING_TAG}")
    token = uuid.uuid4().hex[:12]
    # Hidden names (leading '.'): Spark and Hadoop skip them when listing the parent folder.
    staging = jvm.org.apache.hadoop.fs.Path(parent, f".{path.getName()}{STAGING_TAG}{token}")
    backup = jvm.org.apache.hadoop.fs.Path(parent, f".{path.getName()}{BACKUP_TAG}{token}")
    try:
        writer_for(df, "parquet", "error", partition_cols, options=options).save(staging.toString())
    except BaseException:
        _delete_quietly(fs, staging)
        raise
    _swap_in(fs, path, staging, backup)
    try:
        spark.catalog.refreshByPath(path.toString())  # drop cached listings of the old files
    except Exception:  # noqa: BLE001 - a stale cache entry is no reason to fail a finished write
        pass
    log.info("replaced %s (written to a staging folder, then swapped in)", target)


def _swap_in(fs, path, staging, backup) -> None:
    """Old output -> backup, staging -> output, delete backup; on any failure the old output stays readable."""
    if not _rename(fs, path, backup):
        _delete_quietly(fs, staging)
        raise RuntimeError(f"Could not move the old output {path} aside; it is unchanged and the new output "
                           "was discarded. Check permissions on its folder.")
    if not _rename(fs, staging, path):
        if _rename(fs, backup, path):
            _delete_quietly(fs, staging)
            raise RuntimeError(f"Could not move the new output into {path}; the old output is back in place "
                               "and the new output was discarded.")
        raise RuntimeError(f"Could not move the new output into {path}: the new output is in {staging} and the "
                           f"old one in {backup}; rename one of them to {path}.")
    if not _delete_quietly(fs, backup):
        log.warning("new output is in %s; the old one is left in %s: delete it", path, backup)


def _rename(fs, src, dst) -> bool:
    try:
        return bool(fs.rename(src, dst))
    except Exception as exc:  # noqa: BLE001 - Hadoop signals failures both ways
        log.warning("rename %s -> %s failed: %s", src, dst, first_line(exc))
        return False


def _delete_quietly(fs, path) -> bool:
    try:
        return bool(fs.delete(path, True)) or not fs.exists(path)
    except Exception:  # noqa: BLE001
        return False
