"""Staging folders that killed runs leave behind: recognised by name, aged, listed, removed.

Two kinds, both only ever holding copies:

* ``run_<time>_<id>`` under a merge's staging root (``clipscore.jobs.staging``): the rows a merge
  planned to score. A finished or failed merge removes its own; a killed one (its driver gone)
  leaves it.
* ``.<output>.__clipscore_staging_<id>`` beside a Parquet output that was being overwritten
  (``clipscore.jobs.writes``): a killed overwrite leaves it; the output itself is untouched.

A folder is stale once nothing in it changed for the age (``staging_stale_after``, one day by default;
a merge touches a heartbeat file in its folder after each commit, so a long run never looks stale).
Younger ones may belong to a run still going and are only reported. ``.<output>.__clipscore_backup_<id>``
(the previous output, if a crash fell between the two renames of a swap) is never removed automatically:
it may be the only copy.

Everything goes through ``clipscore.jobs.filesystem``: Hadoop's FileSystem (any scheme) with a JVM; on
Spark Connect only a warning that names what it can see and the command that removes it.
"""
from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass

from pyspark.sql import SparkSession

from clipscore.config.durations import format_duration
from clipscore.schema.errors import first_line
from clipscore.jobs.filesystem import Folder, delete_tree, spark_listing, subfolders

log = logging.getLogger("clipscore")

RUN_PREFIX = "run_"
STAGING_TAG = ".__clipscore_staging_"
BACKUP_TAG = ".__clipscore_backup_"
HEARTBEAT = "_clipscore_alive"  # a leading underscore: Spark's readers skip it
STALE_AFTER_S = 24 * 3600

MERGE_RUN, OVERWRITE_STAGING, OVERWRITE_BACKUP = "merge staging", "overwrite staging", "overwrite backup"


@dataclass(frozen=True)
class Leftover:
    path: str
    kind: str
    age_s: float | None  # None: no modification time anywhere in it
    bytes: int

    @property
    def age(self) -> str:
        return "unknown" if self.age_s is None else format_duration(self.age_s)


def kind_of(name: str) -> str | None:
    """Which staging folder a name is, or None for anything else."""
    if name.startswith(RUN_PREFIX):
        return MERGE_RUN
    if name.startswith(".") and STAGING_TAG in name:
        return OVERWRITE_STAGING
    if name.startswith(".") and BACKUP_TAG in name:
        return OVERWRITE_BACKUP
    return None


def leftovers(spark: SparkSession, root: str, prefix: str = "") -> list[Leftover] | None:
    """Staging folders directly under ``root`` whose names start with ``prefix``; None when unlistable here."""
    folders = subfolders(spark, root, lambda name: bool(kind_of(name)) and name.startswith(prefix))
    if folders is None:
        return None
    return _leftovers(folders, prefix)


def _leftovers(folders: list[Folder], prefix: str) -> list[Leftover]:
    now = time.time()
    found = []
    for folder in folders:
        kind = kind_of(folder.name)
        if kind and folder.name.startswith(prefix):
            age = None if folder.changed is None else max(0.0, now - folder.changed)
            found.append(Leftover(folder.path, kind, age, folder.bytes))
    return found


def clean_command(root: str, older_than: str) -> str:
    return f"clipscore clean --staging {shlex.quote(root)} --older-than {older_than}"


def remove_stale(spark: SparkSession, root: str, older_than_s: float, prefix: str = "",
                 older_than: str | None = None) -> list[Leftover]:
    """Remove the staging folders of earlier runs under ``root`` unchanged for longer than ``older_than_s``.

    Logs each removed path with its size, and each younger one (left alone: it may belong to a run still
    going). On Spark Connect, where nothing can be deleted from here, a warning names the stale folders it
    can see and the command that removes them. Never raises: leaving a folder costs only storage.
    """
    spelled = older_than or format_duration(older_than_s)
    try:
        found = leftovers(spark, root, prefix)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not list %s for stale staging folders (%s); `%s` removes them", root,
                    first_line(exc, 200), clean_command(root, spelled))
        return []
    if found is None:
        _warn_unremovable(spark, root, older_than_s, prefix, spelled)
        return []
    removed = []
    for item in found:
        if item.kind == OVERWRITE_BACKUP:
            log.warning("found %s (%s, %s bytes): the previous output, left by a run killed during its swap; "
                        "it is never removed automatically. Rename it back if the output is missing, else delete it.",
                        item.path, item.age, f"{item.bytes:,}")
        elif item.age_s is not None and item.age_s > older_than_s:
            log.info("removing a stale staging folder of an earlier, unfinished run (%s, unchanged for %s, more "
                     "than %s): %s (%s bytes)", item.kind, item.age, spelled, item.path, f"{item.bytes:,}")
            if _delete(spark, item.path):
                removed.append(item)
        else:
            log.info("found the staging folder of another run (%s, unchanged for %s): %s (%s bytes); left alone, it "
                     "may belong to a run still going. A later run removes it once unchanged for more than %s, as "
                     "does `%s`.", item.kind, item.age, item.path, f"{item.bytes:,}", spelled,
                     clean_command(root, spelled))
    return removed


def _delete(spark: SparkSession, path: str) -> bool:
    try:
        if delete_tree(spark, path):
            return True
        log.warning("could not remove %s; delete it yourself", path)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not remove %s (%s); delete it yourself", path, first_line(exc, 200))
    return False


def _warn_unremovable(spark: SparkSession, root: str, older_than_s: float, prefix: str, spelled: str) -> None:
    """Spark Connect: list what a Spark read can see, and name the one command that removes it."""
    command = clean_command(root, spelled)
    try:
        seen = _leftovers(spark_listing(spark, root), prefix)
    except Exception as exc:  # noqa: BLE001 - an absent root, or no binaryFile: say what we could not do
        text = first_line(exc, 200)
        if "PATH_NOT_FOUND" in text or "does not exist" in text:
            return
        log.warning("on Spark Connect the staging folders under %s cannot be listed or removed from here (%s); "
                    "stale ones (killed runs) stay until `%s` runs where Hadoop's FileSystem is reachable.",
                    root, text, command)
        return
    stale = [s for s in seen if s.kind != OVERWRITE_BACKUP and s.age_s is not None and s.age_s > older_than_s]
    if stale:
        names = "; ".join(f"{s.path} ({s.bytes:,} bytes, unchanged for {s.age})" for s in stale)
        log.warning("stale staging folder(s) of earlier, unfinished runs that Spark Connect cannot remove: %s. "
                    "Remove them with: %s", names, command)
