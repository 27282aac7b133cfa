"""The filter job: keep the pairs a curation rule keeps: SQL rules, an absolute threshold, a top fraction.

    clipscore filter --input SCORED --output KEPT [--where "SQL" | --preset datacomp-basic]
                     [--min-score X | --top-fraction F [--per COLUMN]]

* ``--where "SQL"`` keeps rows for which a Spark SQL predicate over any columns is true (scores,
  signals, your own columns: ``caption_language = 'en' AND image_width >= 256``); null fails it.
* ``--preset datacomp-basic``: DataComp's basic filtering (English, > 2 words, > 5 characters, shorter
  side >= 200 px, aspect ratio <= 3; ``jobs/rules.py``) and then the top 30 % by score, as its
  "basic + CLIP score" baseline intersects them (``--top-fraction``/``--min-score`` override the cut).

* ``--min-score X`` keeps rows whose score is at least X (LAION kept ViT-B/32 pairs >= 0.28).
* ``--top-fraction F`` keeps the best F of the scored rows (DataComp kept the top 30 %): the cut is
  Spark's ``percentile_approx(score, 1 - F, accuracy)``, whose rank error is at most
  ``n / accuracy`` rows (default accuracy 10,000: within 0.01 % of the rows), computed by the
  executors; with ``--per COLUMN`` one cut per group. Rows tied at the cut are all kept.

With ``--where`` (or a preset) and a fraction, the fraction is taken among the rows that pass the
rules, as DataComp's intersection baselines do. Rows without a score (null or NaN: ``score_error``)
are never kept and do not count in the fraction. The output
is the kept rows, or every row with a boolean ``keep`` column (``--keep-column``). The rule, the
cut(s) and the source are recorded: as ``clipscore.filter.*`` table properties on a Delta output, in
``_clipscore_filter.json`` beside a Parquet output.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from clipscore.config.choices import INPUT_FORMATS, OUTPUT_FORMATS, WRITE_MODES
from clipscore.config.coerce import ConfigError, Options, choice, coerce_fields
from clipscore.jobs.columns import has_score
from clipscore.jobs.names import col, is_table_name
from clipscore.jobs.provenance import set_table_properties
from clipscore.jobs.rules import PRESETS, checked, combined
from clipscore.jobs.tables import read_table, resolve_input_format
from clipscore.jobs.writes import write_table

log = logging.getLogger("clipscore")

KEEP_COLUMN = "keep"
SIDECAR = "_clipscore_filter.json"


@dataclass(frozen=True)
class FilterOptions(Options):
    input: str | None = None
    output: str | None = None
    min_score: float | None = None
    top_fraction: float | None = None
    per: str | None = None  # a column: one cut per group (top_fraction only)
    score_col: str = "similarity"
    keep_column: bool = False  # write every row with a boolean `keep` instead of the kept rows
    accuracy: int = 10_000  # percentile_approx accuracy: rank error <= rows / accuracy
    input_format: str = "auto"
    output_format: str = "delta"
    mode: str = "error"
    where: str | None = None  # a Spark SQL predicate over any columns
    preset: str | None = None  # a named list of rules (+ a default cut): jobs/rules.py PRESETS

    def __post_init__(self) -> None:
        coerce_fields(self)
        choice(self, "input_format", INPUT_FORMATS)
        choice(self, "output_format", OUTPUT_FORMATS)
        choice(self, "mode", WRITE_MODES)
        if self.where is not None and not self.where.strip():
            raise ConfigError("--where is empty; give a Spark SQL predicate, e.g. \"caption_language = 'en'\".")
        if self.preset is not None:
            if self.preset not in PRESETS:
                raise ConfigError(f"Unknown --preset '{self.preset}'; presets: {', '.join(PRESETS)}.")
            if self.min_score is None and self.top_fraction is None and PRESETS[self.preset].top_fraction:
                object.__setattr__(self, "top_fraction", PRESETS[self.preset].top_fraction)
        if self.min_score is not None and self.top_fraction is not None:
            raise ConfigError("Pass one of --min-score X (an absolute threshold) or --top-fraction F "
                              "(the best F of the scored rows), not both.")
        if self.min_score is None and self.top_fraction is None and not self.rules():
            raise ConfigError("Pass --where \"SQL\", --preset NAME, --min-score X (an absolute threshold) or "
                              "--top-fraction F (the best F of the scored rows), or a rule and a cut together.")
        if self.top_fraction is not None and not (0 < self.top_fraction <= 1):
            raise ConfigError(f"--top-fraction must be in (0, 1], e.g. 0.3 for the top 30 %; got {self.top_fraction}.")
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise ConfigError(f"--min-score must be a finite number; got {self.min_score}.")
        if self.per and self.top_fraction is None:
            raise ConfigError("--per applies to --top-fraction (one cut per group); a --min-score is the same for all.")
        if self.accuracy < 100:
            raise ConfigError(f"Option 'accuracy' must be at least 100; got {self.accuracy}.")

    def rules(self) -> tuple[tuple[str, str], ...]:
        """The SQL rules: the preset's, then ``--where``."""
        rules = PRESETS[self.preset].rules if self.preset else ()
        return (*rules, *((("where", self.where.strip()),) if self.where else ()))

    def rule(self) -> str:
        parts = []
        if self.rules():
            parts.append(combined(self.rules()))
        if self.min_score is not None:
            parts.append(f"{self.score_col} >= {self.min_score:g}")
        elif self.top_fraction is not None:
            among = " among them" if self.rules() else ""
            parts.append(f"top {self.top_fraction:g} by {self.score_col}{among}" + (f" per {self.per}" if self.per else ""))
        else:
            parts.append(f"{self.score_col} is not null")
        return " THEN ".join(parts)


def cuts(scored: DataFrame, options: FilterOptions) -> dict[Any, float | None]:
    """The score cut per group (key None for the whole table), computed by Spark over the rows that
    pass the rules (``scored`` is already restricted to them)."""
    if options.min_score is not None:
        return {None: options.min_score}
    if options.top_fraction is None:  # rules alone: every scored row that passes them
        return {None: float("-inf")}
    quantile = F.percentile_approx(col(options.score_col), 1.0 - options.top_fraction, options.accuracy)
    present = scored.filter(has_score(options.score_col))
    if not options.per:
        return {None: present.agg(quantile.alias("cut")).first()["cut"]}
    rows = present.groupBy(col(options.per).alias("group")).agg(quantile.alias("cut")).collect()
    return {r["group"]: r["cut"] for r in rows}


def with_keep(scored: DataFrame, options: FilterOptions, cut: dict[Any, float | None],
              passes: Column | None = None) -> DataFrame:
    score = col(options.score_col)
    if not options.per:
        threshold = F.lit(cut[None])
    else:
        spark = scored.sparkSession
        cut_rows = [(k, v) for k, v in cut.items()]
        group_type = scored.schema[options.per].dataType.simpleString()
        table = spark.createDataFrame(cut_rows, f"`_group` {group_type}, `_cut` double")
        scored = scored.join(F.broadcast(table), col(options.per).eqNullSafe(F.col("_group")), "left").drop("_group")
        threshold = F.col("_cut")
    keep = has_score(options.score_col) & threshold.isNotNull() & (score >= threshold)
    if passes is not None:
        keep = keep & passes
    return scored.withColumn(KEEP_COLUMN, F.coalesce(keep, F.lit(False))).drop("_cut")


def run_filter(spark: SparkSession, options: FilterOptions) -> dict[str, Any]:
    """Compute the cut(s), write the kept rows (or the ``keep`` column) and record the rule; returns it."""
    if not options.input or not options.output:
        raise ConfigError("clipscore filter needs --input (a scored table) and --output (where the kept rows go).")
    fmt = resolve_input_format(spark, options.input, options.input_format)
    scored = read_table(spark, options.input, fmt)
    for name in filter(None, (options.score_col, options.per)):
        if name not in scored.columns:
            raise ConfigError(f"Column '{name}' is not in {options.input}; columns: {', '.join(scored.columns)}.")
    if options.preset:
        _check_preset_columns(scored, options)
    rules = checked(scored, options.rules(), options.input)
    passes = None
    for rule in rules:
        passes = rule if passes is None else passes & rule
    cut = cuts(scored.filter(passes) if passes is not None else scored, options)
    marked = with_keep(scored, options, cut, passes)
    out = marked if options.keep_column else marked.filter(F.col(KEEP_COLUMN)).drop(KEEP_COLUMN)
    partition = ["score_band"] if "score_band" in scored.columns else []
    write_table(out, options.output, options.output_format, options.mode, partition)
    counts = _counts(marked, options)
    record = {"source": options.input, "rule": options.rule(), "score_col": options.score_col,
              "where": combined(options.rules()), "preset": options.preset,
              "min_score": options.min_score, "top_fraction": options.top_fraction, "per": options.per,
              "accuracy": options.accuracy if options.top_fraction is not None else None,
              "cuts": {("all" if k is None else str(k)): v for k, v in cut.items()}, **counts}
    _record(spark, options, record)
    log.info("filter %s: kept %s of %s scored rows (%s)\n%s", options.rule(), f"{counts['kept']:,}",
             f"{counts['scored']:,}", json.dumps(record["cuts"]), _format(counts))
    return record


def _check_preset_columns(scored: DataFrame, options: FilterOptions) -> None:
    preset = PRESETS[options.preset]
    needed = {"caption_language", "caption_words", "caption_chars", "image_width", "image_height"}
    missing = sorted(needed - set(scored.columns))
    if missing:
        raise ConfigError(f"--preset {options.preset} needs the signal columns {', '.join(missing)}, which "
                          f"{options.input} lacks: score it with --set signals=[{', '.join(preset.signals)}].")


def _counts(marked: DataFrame, options: FilterOptions) -> dict[str, Any]:
    keys = [c for c in ("score_band", options.per) if c and c in marked.columns]
    rows = marked.groupBy(*[col(k).alias(k) for k in keys]).agg(
        F.sum(F.col(KEEP_COLUMN).cast("long")).alias("kept"),
        F.count(F.when(has_score(options.score_col), 1)).alias("scored"), F.count(F.lit(1)).alias("rows")).collect()
    by = {}
    for r in rows:
        key = " / ".join(str(r[k]) for k in keys) or "all"
        by[key] = {"kept": int(r["kept"] or 0), "scored": int(r["scored"]), "rows": int(r["rows"])}
    return {"rows": sum(v["rows"] for v in by.values()), "scored": sum(v["scored"] for v in by.values()),
            "kept": sum(v["kept"] for v in by.values()), "by": dict(sorted(by.items()))}


def _format(counts: dict[str, Any]) -> str:
    width = max((len(k) for k in counts["by"]), default=3)
    return "\n".join(f"  {k:<{width}}  kept {v['kept']:>9,} of {v['scored']:>9,} scored" for k, v in counts["by"].items())


def _record(spark: SparkSession, options: FilterOptions, record: dict[str, Any]) -> None:
    if options.output_format == "delta":
        set_table_properties(spark, options.output, {f"clipscore.filter.{k}": json.dumps(v) if not isinstance(v, str)
                                                     else v for k, v in record.items() if k != "by"})
    elif not is_table_name(options.output) and "://" not in options.output:
        with open(os.path.join(options.output, SIDECAR), "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)
    else:
        log.warning("the filter rule is not recorded for a Parquet output at %s (no table properties); use Delta",
                    options.output)
