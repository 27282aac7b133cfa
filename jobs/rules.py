"""Curation rules as Spark SQL predicates: ``--where``, the presets, and how many rows each rule drops.

A rule is a named SQL predicate over any columns of a scored table (score, signals, your own). A row
passes a rule when the predicate is true: null (a missing signal) fails it, as in a SQL ``WHERE``.
Presets name published baselines; each is a list of rules plus an optional score cut:

* ``datacomp-basic`` (DataComp's "basic filtering", then the CLIP-score top 30 %): English captions
  (fastText), more than 2 words and more than 5 characters, images whose shorter side is at least 200 px
  and whose aspect ratio is at most 3. Needs ``signals: [image, caption, language]`` at scoring time.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from clipscore.config.coerce import ConfigError
from clipscore.schema.errors import first_line


@dataclass(frozen=True)
class Preset:
    rules: tuple[tuple[str, str], ...]  # (name, SQL predicate)
    top_fraction: float | None = None
    signals: tuple[str, ...] = ()


PRESETS = {
    "datacomp-basic": Preset(
        rules=(("english caption", "caption_language = 'en'"),
               ("more than 2 words", "caption_words > 2"),
               ("more than 5 characters", "caption_chars > 5"),
               # written without least()/greatest(), which skip nulls: a missing size must fail the rule
               ("shorter side >= 200 px", "image_width >= 200 AND image_height >= 200"),
               ("aspect ratio <= 3", "image_width <= 3 * image_height AND image_height <= 3 * image_width")),
        top_fraction=0.3, signals=("image", "caption", "language")),
}


def combined(rules) -> str | None:
    """One predicate: every rule's, parenthesised and ANDed (None when there is no rule)."""
    return " AND ".join(f"({sql})" for _, sql in rules) or None


def checked(df: DataFrame, rules, source: str = "the table") -> list[Column]:
    """Each rule as a Column, parsed and resolved against ``df`` now (before any work), or a ConfigError."""
    columns = []
    for name, sql in rules:
        try:
            column = F.expr(sql)
            df.select(column.alias("_rule")).schema  # analysis now, also on Spark Connect (lazy there)
        except Exception as exc:  # noqa: BLE001 - Spark's parse/analysis errors, re-raised with what to do
            raise ConfigError(f"The rule {name!r} ({sql}) does not apply to {source}: {first_line(exc, 300)}. "
                              f"Write a Spark SQL predicate over its columns: {', '.join(df.columns)}.") from None
        columns.append(F.coalesce(column.cast("boolean"), F.lit(False)))
    return columns


def drop_counts(df: DataFrame, rules) -> dict:
    """Rows each rule drops alone, and all of them together, in one aggregate pass."""
    columns = checked(df, rules)
    aggs = [F.count(F.when(~c, 1)).alias(f"r{i}") for i, c in enumerate(columns)]
    every = F.lit(True)
    for c in columns:
        every = every & c
    row = df.agg(F.count(F.lit(1)).alias("rows"), F.count(F.when(~every, 1)).alias("all"), *aggs).first()
    return {"rows": int(row["rows"]), "dropped_by_all": int(row["all"]),
            "rules": [{"rule": name, "sql": sql, "dropped": int(row[f"r{i}"])} for i, (name, sql) in enumerate(rules)]}
