"""Reading sources and writing scored tables: paths (local, dbfs:/, s3a:// ...) or catalog tables.

Spark and Delta do all the writing (``partitionBy``, ``saveAsTable``, MERGE); nothing is written from
inside a task.

**Names.** Column names, merge keys and table names come from users and may hold spaces, dots or
backticks. Every one of them enters a Column expression through ``col(name)`` and SQL text through
``quote_identifier(name)`` (backticks, inner backticks doubled), never as bare text: ``F.col("cap.tion")``
would read a struct field. A ``--input``/``--output`` without ``/`` or a scheme is a catalog table
(``table``, ``schema.table``, ``catalog.schema.table``; a part may be backtick-quoted) unless it ends
in ``.csv`` or ``.parquet``; ``./name`` forces a path. Table names are checked part by part before any
work (``parse_table_name``) and always reach Spark re-quoted.

**Overwrite never loses the previous output.**

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
import os
import re
import uuid

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clipscore.config.coerce import ConfigError
from clipscore.config.job import ScoreConfig

log = logging.getLogger("clipscore")

FILE_SUFFIXES = (".csv", ".parquet")
MAX_TABLE_PARTS = 3  # catalog.schema.table
_PLAIN_PART = re.compile(r"\w+")  # letters, digits, _ (Unicode letters too: parts are re-quoted anyway)
_NEVER_IN_TABLE_NAMES = re.compile(r"['\";\x00-\x1f\x7f]")  # quotes, semicolons, control characters
# Delta refuses these in column names unless the table uses column mapping.
_DELTA_RESERVED_CHARS = set(" ,;{}()\n\t=")
STAGING_TAG = ".__clipscore_staging_"
BACKUP_TAG = ".__clipscore_backup_"


# -------------------------------------------------------------------------------------------------
# Names
# -------------------------------------------------------------------------------------------------
def quote_identifier(name: str) -> str:
    """``name`` as one SQL identifier: in backticks, inner backticks doubled (``we`ird`` -> ```we``ird```)."""
    return "`" + name.replace("`", "``") + "`"


def col(name: str) -> Column:
    """The top-level column called exactly ``name`` (dots, spaces and backticks are part of the name)."""
    return F.col(quote_identifier(name))


def is_table_name(target: str) -> bool:
    """Whether ``target`` is taken as a catalog table: no ``/``, no scheme, no ``.csv``/``.parquet`` suffix.

    Only a classification; ``parse_table_name`` says whether the name is usable.
    """
    return "/" not in target and ":" not in target and not target.lower().endswith(FILE_SUFFIXES)


def _split_parts(name: str) -> list[tuple[str, bool]] | None:
    """``(text, quoted)`` per dot-separated part, backtick-quoted parts unquoted; None when backticks are unbalanced."""
    parts: list[tuple[str, bool]] = []
    i, n = 0, len(name)
    while True:
        if i < n and name[i] == "`":
            text, j = [], i + 1
            while True:
                k = name.find("`", j)
                if k < 0:
                    return None
                text.append(name[j:k])
                if not name.startswith("``", k):
                    break
                text.append("`")  # a doubled backtick is one backtick of the name
                j = k + 2
            parts.append(("".join(text), True))
            i = k + 1
        else:
            k = name.find(".", i)
            k = n if k < 0 else k
            if "`" in name[i:k]:
                return None
            parts.append((name[i:k], False))
            i = k
        if i == n:
            return parts
        if name[i] != ".":  # text right after a closing backtick
            return None
        i += 1
        if i == n:
            parts.append(("", False))  # a trailing dot: an empty last part
            return parts


def parse_table_name(name: str, role: str = "table") -> list[str]:
    """The parts of a catalog table name, unquoted; ConfigError saying what to change when unusable."""
    parts = _split_parts(name)
    problem = None
    if _NEVER_IN_TABLE_NAMES.search(name):
        problem = "holds a quote, a semicolon or a control character"
    elif parts is None:
        problem = "has an unbalanced backtick (inside a quoted part, write a backtick as ``)"
    elif len(parts) > MAX_TABLE_PARTS:
        problem = f"has {len(parts)} dot-separated parts"
    else:
        for index, (text, quoted) in enumerate(parts, 1):
            if not text:
                problem = f"has an empty part (part {index})"
            elif not quoted and not _PLAIN_PART.fullmatch(text):
                problem = f"has the part '{text}', which needs backticks (spaces, '-' and other symbols)"
            if problem:
                break
    if problem:
        shown = name if name.isprintable() else repr(name)[1:-1]  # a newline must not cut the message
        raise ConfigError(
            f"Table name '{shown}' ({role}) {problem}. Use up to {MAX_TABLE_PARTS} dot-separated parts (table, "
            "schema.table or catalog.schema.table) of letters, digits and _, or put a part in backticks "
            "(`my-table`); quotes, semicolons and control characters are never allowed. "
            f"For a path, write ./{shown}."
        )
    return [text for text, _ in parts]


def table_identifier(name: str, role: str = "table") -> str:
    """A validated catalog name with every part quoted, for SQL text and ``spark.read.table``."""
    return ".".join(quote_identifier(part) for part in parse_table_name(name, role))


def describe_target(target: str, role: str) -> None:
    """Validate a table name, and say (INFO) how a name without ``/`` or scheme was taken: it is ambiguous."""
    if is_table_name(target):
        log.info("%s '%s' has no '/' or scheme: taken as the catalog table %s; for a path, write ./%s",
                 role, target, table_identifier(target, role), target)
    elif "/" not in target and ":" not in target:
        log.info("%s '%s' has no '/': taken as a path (by its suffix); for a catalog table, write %s",
                 role, target, ".".join(quote_identifier(p) for p in target.split(".")))


def check_names(cfg: ScoreConfig) -> None:
    """Before any work: input and output names usable, and how each was taken (table or path) logged."""
    if cfg.input and cfg.input_format in ("auto", "table"):  # an explicit file format makes --input a path
        describe_target(cfg.input, "input")
    if cfg.output:
        describe_target(cfg.output, "output")


# -------------------------------------------------------------------------------------------------
# Reading
# -------------------------------------------------------------------------------------------------
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
    if fmt == "table":
        source_ident = table_identifier(source, "input")  # a ConfigError of its own, before the read
    try:
        if fmt == "table":
            return spark.read.table(source_ident)
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


def read_table(spark: SparkSession, target: str, fmt: str) -> DataFrame:
    if is_table_name(target):
        return spark.read.table(table_identifier(target))
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


# -------------------------------------------------------------------------------------------------
# Writing
# -------------------------------------------------------------------------------------------------
def writer_for(df: DataFrame, fmt: str, mode: str, partition_cols: list[str], columns: list[str] | None = None):
    # "error", not its alias "errorifexists": the Spark Connect client accepts only the short name.
    writer = df.write.format(fmt).mode(mode)
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
                columns: list[str] | None = None) -> None:
    """Write ``df`` to a path or catalog table; an overwrite that fails keeps the previous output.

    ``columns``: ``df``'s column names, when ``df`` carries an ``Observation``: on Spark Connect, asking
    an observed frame for its schema before the write leaves the observation empty.
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
            writer_for(df, fmt, mode, partition_cols, columns).saveAsTable(ident)
        elif fmt == "parquet" and mode == "overwrite":
            _overwrite_parquet_path(spark, df, target, partition_cols)
        else:
            writer_for(df, fmt, mode, partition_cols, columns).save(target)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001
        text = str(exc)
        if "already exists" in text or "PATH_ALREADY_EXISTS" in text or "TABLE_OR_VIEW_ALREADY_EXISTS" in text:
            raise ConfigError(
                f"Output '{target}' already exists. Pass --mode overwrite to replace it or --mode append to add to it."
            ) from None
        raise


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


def _overwrite_parquet_path(spark: SparkSession, df: DataFrame, target: str, partition_cols: list[str]) -> None:
    """Overwrite a Parquet path through a staging sibling, so a failed write leaves the old files whole."""
    dynamic = str(spark.conf.get("spark.sql.sources.partitionOverwriteMode", "static")).lower() == "dynamic"
    if partition_cols and dynamic:
        # Spark itself writes to a staging folder and replaces only the partitions written, at job commit.
        writer_for(df, "parquet", "overwrite", partition_cols).save(target)
        return
    handle = hadoop_fs(spark, target)
    if handle is None:
        if output_exists(spark, target, "parquet"):
            raise ConfigError(
                f"Output '{target}' exists, and on Spark Connect a Parquet overwrite cannot be made safe (Spark "
                "deletes the old files before writing; there is no filesystem handle to stage the new ones). Pass "
                "--output-format delta (an atomic commit) or a new --output path."
            )
        writer_for(df, "parquet", "overwrite", partition_cols).save(target)
        return
    fs, path, jvm = handle
    if not fs.exists(path):  # nothing to lose
        writer_for(df, "parquet", "overwrite", partition_cols).save(target)
        return
    parent = path.getParent()
    if parent is None:
        raise ConfigError(f"Output '{target}' is the root of its filesystem; write to a folder below it.")
    token = uuid.uuid4().hex[:12]
    # Hidden names (leading '.'): Spark and Hadoop skip them when listing the parent folder.
    staging = jvm.org.apache.hadoop.fs.Path(parent, f".{path.getName()}{STAGING_TAG}{token}")
    backup = jvm.org.apache.hadoop.fs.Path(parent, f".{path.getName()}{BACKUP_TAG}{token}")
    try:
        writer_for(df, "parquet", "error", partition_cols).save(staging.toString())
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
        log.warning("rename %s -> %s failed: %s", src, dst, str(exc).splitlines()[0][:300] if str(exc) else exc)
        return False


def _delete_quietly(fs, path) -> bool:
    try:
        return bool(fs.delete(path, True)) or not fs.exists(path)
    except Exception:  # noqa: BLE001
        return False
