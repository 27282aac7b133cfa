"""Column expressions over a scored table that several jobs share."""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from clipscore.jobs.names import col


def has_score(column: str) -> Column:
    """A usable score: not null and not NaN (a NaN written by another tool is no score either)."""
    return col(column).isNotNull() & ~F.isnan(col(column))


def error_code(column: str | Column = "score_error") -> Column:
    """The category of a row error (``"code: detail"`` -> ``code``; ``clipscore.schema.errors``); null without one."""
    return F.substring_index(col(column) if isinstance(column, str) else column, ":", 1)
