"""User names into Spark: column names, merge keys and table names, always quoted.

Column names, merge keys and table names come from users and may hold spaces, dots or backticks.
Every one of them enters a Column expression through ``col(name)`` and SQL text through
``quote_identifier(name)`` (backticks, inner backticks doubled), never as bare text: ``F.col("cap.tion")``
would read a struct field. A ``--input``/``--output`` without ``/`` or a scheme is a catalog table
(``table``, ``schema.table``, ``catalog.schema.table``; a part may be backtick-quoted) unless it ends
in ``.csv`` or ``.parquet``; ``./name`` forces a path. Table names are checked part by part before any
work (``parse_table_name``) and always reach Spark re-quoted (``table_identifier``, ``delta_identifier``).
"""
from __future__ import annotations

import logging
import os
import re

from pyspark.sql import Column
from pyspark.sql import functions as F

from clipscore.config.coerce import ConfigError
from clipscore.config.job import ScoreConfig

log = logging.getLogger("clipscore")

FILE_SUFFIXES = (".csv", ".parquet")
MAX_TABLE_PARTS = 3  # catalog.schema.table
_PLAIN_PART = re.compile(r"\w+")  # letters, digits, _ (Unicode letters too: parts are re-quoted anyway)
_NEVER_IN_TABLE_NAMES = re.compile(r"['\";\x00-\x1f\x7f]")  # quotes, semicolons, control characters


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


def delta_identifier(target: str) -> str:
    """SQL name of a Delta target: the validated catalog name, each part quoted, or ``delta.`path``` for a path."""
    if is_table_name(target):
        return table_identifier(target)
    if "://" not in target and not target.startswith("dbfs:"):
        target = os.path.abspath(target)  # delta.`path` does not resolve relative paths
    return "delta.`" + target.replace("`", "``") + "`"


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
