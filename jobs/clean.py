"""The clean job: remove the staging folders that killed runs left under a folder, on any filesystem.

    clipscore clean --staging ROOT [--older-than 1d] [--dry-run]

Lists the staging folders directly under ``ROOT`` (a merge's ``run_*`` folders: its staging root, as the
merge logs it; and ``.<output>.__clipscore_staging_*`` beside Parquet outputs: their parent folder) with
size and age (time since anything in them changed), and deletes those older than ``--older-than``
unless ``--dry-run``. Backups of a Parquet swap (``.<output>.__clipscore_backup_*``) are listed, never
deleted. Merge and score do the same on their own at the start of a run (``staging_stale_after``);
this is for operators, and for Spark Connect, where a run cannot delete. It goes through Hadoop's
FileSystem, so it needs a classic session (the one ``clipscore`` starts, or spark-submit).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession

from clipscore.config.coerce import ConfigError
from clipscore.config.durations import parse_duration
from clipscore.jobs.filesystem import delete_tree
from clipscore.jobs.stale import OVERWRITE_BACKUP, leftovers

log = logging.getLogger("clipscore")


@dataclass(frozen=True)
class CleanOptions:
    staging: str
    older_than: str = "1d"
    dry_run: bool = False

    def __post_init__(self) -> None:
        check_options(self)

    @property
    def older_than_s(self) -> float:
        return parse_duration(self.older_than, "--older-than")


def check_options(options: CleanOptions) -> None:
    """Fails before any work: a missing root, an age that is not a duration."""
    if not str(options.staging or "").strip():
        raise ConfigError("--staging needs a folder: a merge's staging root (the merge logs it) or the folder "
                          "that holds Parquet outputs.")
    parse_duration(options.older_than, "--older-than")


@dataclass(frozen=True)
class CleanRow:
    path: str
    kind: str
    bytes: int
    age: str
    action: str  # removed | would remove | kept (younger) | kept (backup) | failed


def run_clean(spark: SparkSession, options: CleanOptions) -> list[CleanRow]:
    """List the staging folders under ``options.staging`` and delete those older than ``options.older_than``."""
    found = leftovers(spark, options.staging)
    if found is None:
        raise ConfigError(f"'{options.staging}' cannot be listed from this session (Spark Connect has no Hadoop "
                          "FileSystem handle). Run clipscore clean from a classic session: the `clipscore` command "
                          "or spark-submit on the cluster.")
    rows = []
    for item in sorted(found, key=lambda f: f.path):
        if item.kind == OVERWRITE_BACKUP:
            action = "kept (backup)"
        elif item.age_s is None or item.age_s <= options.older_than_s:
            action = "kept (younger)" if item.age_s is not None else "kept (age unknown)"
        elif options.dry_run:
            action = "would remove"
        else:
            log.info("removing %s (%s, %s bytes, unchanged for %s)", item.path, item.kind, f"{item.bytes:,}", item.age)
            action = "removed" if delete_tree(spark, item.path) else "failed"
        rows.append(CleanRow(item.path, item.kind, item.bytes, item.age, action))
    return rows


def format_rows(rows: list[CleanRow], options: CleanOptions) -> str:
    """The listing the command prints: path, size, age, what was done; then a total."""
    if not rows:
        return f"no staging folders under {options.staging}"
    lines = [f"{'bytes':>15}  {'unchanged for':>13}  {'action':<18}  path"]
    for row in rows:
        lines.append(f"{row.bytes:>15,}  {row.age:>13}  {row.action:<18}  {row.path}")
    gone = [r for r in rows if r.action in ("removed", "would remove")]
    verb = "would remove" if options.dry_run else "removed"
    lines.append(f"{verb} {len(gone)} of {len(rows)} folder(s), {sum(r.bytes for r in gone):,} bytes "
                 f"(older than {options.older_than})")
    return "\n".join(lines)
