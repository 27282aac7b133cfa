"""The curation report: one self-contained HTML file about a scored table (works offline).

    clipscore report --input SCORED [--output report.html] [--category-col C] [--sample N] [--figures DIR]

Spark computes every aggregate (counts, errors by reason, the score histogram, rows per band, per
category statistics) and picks the few rows shown (lowest, highest, borderline, and a sample ordered by
a seeded random order); only those rows reach the driver. The sample's similarity matrix comes from
the table's stored embeddings (``write_embeddings``), else the sample is re-embedded with the model the
table was scored with (its provenance, or ``--model``). The likely mislabels come from the table's
``suggested_caption`` column (``clipscore suggest``), else from the stored embeddings (the sample's
images against the table's captions), else from the re-embedded sample (``sample_and_mislabels``).
The page itself is the core's, with no Spark: ``clipscore.report.render`` (figures with matplotlib,
embedded as data URIs with the thumbnails; the HTML from ``clipscore/report/templates/report.html``),
and ``clipscore.report.mislabels`` (the strategies above on numpy and pandas). Nothing in the page
refers to the network.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clipscore.config.coerce import ConfigError, Options, coerce_fields
from clipscore.report import figures, mislabels, render
from clipscore.jobs.columns import error_code, has_score
from clipscore.jobs.names import col
from clipscore.jobs.rules import PRESETS, drop_counts
from clipscore.jobs.tables import read_table, resolve_input_format
from clipscore.schema.columns import is_signal_column

log = logging.getLogger("clipscore")


@dataclass(frozen=True)
class ReportOptions(Options):
    input: str | None = None
    output: str = "report.html"
    category_col: str | None = None
    sample: int = 48  # rows re-embedded for the matrix and the mislabel search
    figures: str | None = None  # also write the figures as PNG files here
    score_col: str = "similarity"
    image_col: str = "image"
    caption_col: str = "caption"
    image_base_path: str = ""
    thresholds: tuple[float, ...] = ()  # marked on the histogram; the first one centres the borderline grid
    grid: int = 12  # pairs per grid
    bins: int = 50
    margin: float = 0.02  # another caption must beat the row's own by more than this to count as a mislabel
    seed: int = 0
    model: str | None = None  # re-embed the sample with this model instead of the table's provenance
    candidates: int = 10_000  # with stored embeddings: distinct captions the sample's images are matched against
    input_format: str = "auto"
    where: tuple[str, ...] = ()  # rules whose drops the report counts (besides --preset's)
    preset: str | None = None  # default: datacomp-basic when the table has its signal columns

    def __post_init__(self) -> None:
        coerce_fields(self)
        for key in ("sample", "grid", "bins"):
            if getattr(self, key) < 1:
                raise ConfigError(f"Option '{key}' must be at least 1; got {getattr(self, key)}.")
        if not math.isfinite(self.margin) or self.margin < 0:
            raise ConfigError(f"Option 'margin' must be 0 or more; got {self.margin}.")


# -------------------------------------------------------------------------------------------------
# Aggregates (Spark)
# -------------------------------------------------------------------------------------------------
def summary(df: DataFrame, score: str) -> dict[str, Any]:
    reason = error_code("score_error")
    valid = F.when(has_score(score), col(score))
    first = df.agg(F.count(F.lit(1)).alias("rows"), F.count(valid).alias("scored"),
                   F.min(valid).alias("lo"), F.max(valid).alias("hi")).first()
    reasons = []
    if "score_error" in df.columns:
        reasons = [(r["reason"], r["count"]) for r in
                   df.filter(F.col("score_error").isNotNull()).groupBy(reason.alias("reason")).count()
                   .orderBy(F.desc("count")).collect()]
    return {"rows": first["rows"], "scored": first["scored"], "errors": first["rows"] - first["scored"],
            "errors_by_reason": reasons, "lo": first["lo"], "hi": first["hi"]}


def _bucket(score: str, lo: float, hi: float, bins: int):
    width = (hi - lo) / bins if hi > lo else 1.0
    return F.least(F.floor((col(score) - F.lit(lo)) / F.lit(width)).cast("int"), F.lit(bins - 1))


def histogram(df: DataFrame, score: str, lo: float, hi: float, bins: int, by: str | None = None) -> pd.DataFrame:
    """Rows per score bin (and per ``by`` value), computed by Spark."""
    keys = [col(by).alias(by)] if by else []
    rows = (df.filter(has_score(score)).groupBy(*keys, _bucket(score, lo, hi, bins).alias("bin")).count()
            .toPandas())
    width = (hi - lo) / bins if hi > lo else 1.0
    rows["bin_lo"] = lo + rows["bin"] * width
    rows["bin_hi"] = rows["bin_lo"] + width
    return rows.rename(columns={"count": "rows"})


_CATEGORICAL = ("caption_language", "image_format", "caption_truncated")


def signal_distributions(df: DataFrame, bins: int, figs: dict[str, bytes], top: int = 15) -> list[dict[str, Any]]:
    """A figure per signal column present (histogram, or bars of the most frequent values), from Spark aggregates."""
    names = [c for c in df.columns if is_signal_column(c) and c != "image_phash"]
    if not names:
        return []
    numeric = [c for c in names if c not in _CATEGORICAL]
    first = df.agg(*[F.min(col(c)).alias(f"lo_{i}") for i, c in enumerate(numeric)],
                   *[F.max(col(c)).alias(f"hi_{i}") for i, c in enumerate(numeric)],
                   *[F.count(col(c)).alias(f"n_{i}") for i, c in enumerate(names)],
                   *([F.approx_count_distinct(col("image_phash")).alias("phash_distinct"),
                      F.count(col("image_phash")).alias("phash_n")] if "image_phash" in df.columns else [])).first()
    items = []
    for i, name in enumerate(names):
        present = int(first[f"n_{i}"])
        if name in _CATEGORICAL:
            rows = (df.filter(col(name).isNotNull()).groupBy(col(name).alias("value")).count()
                    .orderBy(F.desc("count")).limit(top).toPandas().rename(columns={"count": "rows"}))
            kind = "categorical"
        else:
            j = numeric.index(name)
            lo, hi = first[f"lo_{j}"], first[f"hi_{j}"]
            if lo is None:
                continue
            lo, hi = float(lo), float(hi)
            rows = histogram(df.filter(col(name).isNotNull()), name, lo, hi if hi > lo else lo + 1, bins)
            kind = "numeric"
        if rows.empty:
            continue
        figs[f"signal_{name}"] = figures.signal(name, kind, rows)
        items.append({"name": name, "figure": f"signal_{name}", "present": present, "distinct": None})
    if "image_phash" in df.columns and first["phash_n"]:
        items.append({"name": "image_phash", "figure": None, "present": int(first["phash_n"]),
                      "distinct": int(first["phash_distinct"])})
    return items


def rule_table(df: DataFrame, options: ReportOptions) -> dict[str, Any] | None:
    """Rows each rule would drop (alone and together): --preset and --where, else datacomp-basic when the
    table has its signals, plus the first --threshold as a score rule."""
    preset = options.preset
    needed = {"caption_language", "caption_words", "caption_chars", "image_width", "image_height"}
    if preset is None and not options.where and needed <= set(df.columns):
        preset = "datacomp-basic"
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"Unknown --preset '{preset}'; presets: {', '.join(PRESETS)}.")
    rules = [*(PRESETS[preset].rules if preset else ()), *((f"where {i + 1}", w) for i, w in enumerate(options.where))]
    if options.thresholds:
        rules.append((f"{options.score_col} >= {options.thresholds[0]:g}", f"`{options.score_col}` >= {options.thresholds[0]!r}"))
    if not rules:
        return None
    table = drop_counts(df, rules)
    table["source"] = f"preset {preset}" if preset else "the rules given"
    return table


def bands(df: DataFrame) -> list[tuple[str, int, float]]:
    if "score_band" not in df.columns:
        return []
    rows = df.groupBy("score_band").count().collect()
    total = sum(r["count"] for r in rows) or 1
    ordered = sorted(rows, key=lambda r: (r["score_band"] == "error", r["score_band"] or ""))
    return [(r["score_band"], r["count"], r["count"] / total) for r in ordered]


def categories(df: DataFrame, score: str, category: str) -> list[dict[str, Any]]:
    rows = (df.groupBy(col(category).alias("name")).agg(
        F.count(F.lit(1)).alias("rows"), F.count(F.when(has_score(score), 1)).alias("scored"),
        F.avg(F.when(has_score(score), col(score))).alias("mean"),
        F.percentile_approx(F.when(has_score(score), col(score)), 0.5, 10_000).alias("median"))
        .orderBy(F.desc("rows")).collect())
    fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
    return [{"name": r["name"], "rows": r["rows"], "scored": r["scored"], "mean": fmt(r["mean"]),
             "median": fmt(r["median"])} for r in rows]


def pick_rows(df: DataFrame, options: ReportOptions, centre: float, extra: tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """Lowest, highest and borderline (nearest ``centre``) scored rows, and the seeded sample (with ``extra``)."""
    score = col(options.score_col)
    keep = [c for c in (options.image_col, options.caption_col, options.score_col, options.category_col, *extra) if c]
    scored = df.filter(has_score(options.score_col)).select(*[col(c).alias(c) for c in dict.fromkeys(keep)])
    # rand(seed) rather than a hash of the row: duplicated rows (common in crawled data) would hash
    # alike and crowd the sample; rand is fixed for a given seed and table layout.
    seeded = F.rand(options.seed)
    return {
        "lowest": scored.orderBy(score.asc()).limit(options.grid).toPandas(),
        "highest": scored.orderBy(score.desc()).limit(options.grid).toPandas(),
        "borderline": scored.orderBy(F.abs(score - F.lit(centre)).asc()).limit(options.grid).toPandas(),
        "sample": scored.orderBy(seeded).limit(options.sample).toPandas(),
    }


# -------------------------------------------------------------------------------------------------
# The sample's model, embeddings and mislabels
# -------------------------------------------------------------------------------------------------
def scoring_model(spark: SparkSession, options: ReportOptions, fmt: str) -> tuple[str | None, str | None, dict]:
    """(model, revision, provenance shown) from ``--model`` or the table's ``clipscore.*`` properties."""
    provenance: dict[str, str] = {}
    if fmt in ("delta", "parquet", "table"):  # Delta properties, or a Parquet output's sidecar
        from clipscore.jobs.provenance import table_provenance

        provenance = table_provenance(spark, options.input)
    if options.model:
        return options.model, None, provenance
    models = json.loads(provenance.get("clipscore.models", "[]") or "[]")
    if models:
        return models[0]["model"], models[0].get("revision"), provenance
    return provenance.get("clipscore.model") or None, provenance.get("clipscore.model_revision") or None, provenance


def stored_embeddings(spark: SparkSession, options: ReportOptions, fmt: str):
    """The table's stored embeddings (``write_embeddings``), or None when it has none."""
    from clipscore.jobs.embeddings import open_embeddings

    try:
        return open_embeddings(spark, options.input, fmt)
    except ConfigError:
        return None


def sample_and_mislabels(spark: SparkSession, df: DataFrame, picked: dict, stored, model: str | None,
                         revision: str | None, options: ReportOptions) -> tuple:
    """(the sample's similarity matrix or None, the likely mislabels, a note on each: where they come from).

    The matrix comes from the stored embeddings when the table has them, else from the sample
    re-embedded with the table's model. The mislabels, in order of preference: the table's own
    ``suggested_caption`` column (``clipscore suggest``, over every row); the sample's images
    against up to ``candidates`` of the table's distinct captions, by stored embeddings (no model
    needed); the sample's images against the sample's own captions, re-embedded
    (``clipscore.report.mislabels``).
    """
    from clipscore.retrieval.suggest import SUGGESTED_CAPTION
    from clipscore.retrieval.vectors import decode_matrix

    sample = picked["sample"]
    matrix = sample_images = None
    found = mislabels.no_mislabels(options.image_col, options.caption_col)
    sample_note, mislabel_note = mislabels.NO_MATRIX_NOTE, mislabels.NO_MISLABELS_NOTE
    if stored is not None and len(sample) >= 2:
        images, with_image = decode_matrix(sample[stored.image_col].tolist(), stored.dtype)
        texts, with_text = decode_matrix(sample[stored.text_col].tolist(), stored.dtype)
        matrix, sample_images, sample_note = mislabels.stored_matrix(
            sample, images, with_image, texts, with_text, [stored.image_col, stored.text_col], options.seed)
    elif model is not None and len(sample) >= 2:
        from clipscore.config.options import ScoringOptions
        from clipscore.report.sample import similarity_matrix

        scoring = ScoringOptions(model=model, model_revision=revision, device="auto",
                                 image_base_path=options.image_base_path)
        matrix = similarity_matrix(sample, scoring, options.image_col, options.caption_col)
        sample_note = mislabels.reembedded_note(matrix, options.seed, model)
    if SUGGESTED_CAPTION in df.columns:
        from clipscore.jobs.suggestions import best_suggestions

        best = best_suggestions(df, options.score_col, options.caption_col, options.grid, [options.image_col])
        found, mislabel_note = mislabels.from_suggestions(best, options.score_col)
    elif sample_images is not None:
        from clipscore.jobs.suggestions import collect_candidates
        from clipscore.retrieval.suggest import suggest

        pool, distinct = collect_candidates(stored, options.caption_col, options.candidates, options.seed)
        own = matrix.rows[options.score_col].astype(float).to_numpy()
        text, score = suggest(sample_images, matrix.rows[options.caption_col].to_numpy(dtype=object), own, pool,
                              options.margin)
        found, mislabel_note = mislabels.ranked_by_gain(matrix.rows, own, text, score, len(pool), distinct,
                                                        options.margin)
    elif matrix is not None:
        found, mislabel_note = mislabels.within_sample(matrix, options.caption_col, options.margin)
    return matrix, found, sample_note, mislabel_note


# -------------------------------------------------------------------------------------------------
# The report
# -------------------------------------------------------------------------------------------------
def run_report(spark: SparkSession, options: ReportOptions) -> dict[str, Any]:
    """Write the HTML report (and the PNG figures with ``figures``); returns what it found."""
    if not options.input:
        raise ConfigError("clipscore report needs --input: a scored table (path or catalog name).")
    started = time.perf_counter()
    fmt = resolve_input_format(spark, options.input, options.input_format)
    df = read_table(spark, options.input, fmt)
    needed = [options.score_col, options.image_col, options.caption_col, options.category_col]
    missing = [c for c in needed if c and c not in df.columns]
    if missing:
        raise ConfigError(f"Column(s) {', '.join(missing)} not in {options.input}; columns: {', '.join(df.columns)}.")
    model, revision, provenance = scoring_model(spark, options, fmt)
    stats = summary(df, options.score_col)
    lo, hi = (stats["lo"], stats["hi"]) if stats["scored"] else (0.0, 1.0)
    edges, counts = render.histogram_arrays(histogram(df, options.score_col, lo, hi, options.bins), lo, hi,
                                            options.bins)
    band_edges = json.loads(provenance.get("clipscore.band_edges", "[]") or "[]")
    marks = {f"threshold {t:g}": t for t in options.thresholds}
    centre = render.borderline_centre(options.thresholds, edges, counts)
    figs: dict[str, bytes] = {"histogram": figures.histogram(edges, counts, band_edges, marks, options.score_col)}
    cats = []
    if options.category_col:
        cats = categories(df, options.score_col, options.category_col)
        figs["per_category"] = figures.per_category(
            histogram(df, options.score_col, lo, hi, options.bins, options.category_col), options.category_col,
            options.score_col)
    stored = stored_embeddings(spark, options, fmt)
    picked = pick_rows(df, options, centre, (stored.image_col, stored.text_col) if stored else ())
    grids = []
    for key, title in (("lowest", "Lowest-scoring pairs"), ("highest", "Highest-scoring pairs"),
                       ("borderline", f"Borderline pairs (nearest {centre:.3f})")):
        figs[f"grid_{key}"], section = render.grid_section(key, title, picked[key], options.image_col,
                                                           options.caption_col, options.score_col,
                                                           options.image_base_path)
        grids.append(section)
    matrix, found, sample_note, mislabel_note = sample_and_mislabels(spark, df, picked, stored, model, revision,
                                                                     options)
    if matrix is not None:
        figs["matrix"] = figures.matrix(matrix.matrix, matrix.rows[options.caption_col].tolist())
    cards = render.mislabel_cards(found, options.image_col, options.caption_col, options.image_base_path)
    signal_items = signal_distributions(df, options.bins, figs)
    rules = rule_table(df, options)
    html = render.render_page(
        source=options.input, score_col=options.score_col, category_col=options.category_col, summary=stats,
        provenance=provenance, figs=figs, categories=cats, grids=grids, mislabels=cards, sample_note=sample_note,
        mislabel_note=mislabel_note, bands=bands(df), seconds=round(time.perf_counter() - started, 1),
        signals=signal_items, rules=rules)
    render.write_report(options.output, html, figs, options.figures)
    seconds = round(time.perf_counter() - started, 1)
    log.info("wrote report %s in %.1f s (%d rows, %d likely mislabels in the sample)", options.output, seconds,
             stats["rows"], len(cards))
    return {"output": options.output, "seconds": seconds, "rows": stats["rows"], "mislabels": cards,
            "figures": sorted(figs)}
