"""Suggest better captions for low-scoring rows, from the table's own captions and stored embeddings.

    clipscore suggest --input SCORED --below T [--margin 0.02] [--candidates N] [--output OUT]

1. Candidates: the table's distinct caption texts with their stored text embeddings. All of them
   when there are at most ``candidates`` (default 200,000); otherwise a seeded uniform sample of that
   many (the summary says so). They reach the driver once (``candidates`` x dim x 2 bytes) and go to
   the executors as one broadcast variable (inside the task closure on Spark Connect).
2. Every row scoring below ``below`` (with an image embedding) gets the candidate caption nearest its
   image embedding, other than its own text, as ``suggested_caption``/``suggested_similarity`` when
   it beats the row's own score by more than ``margin``; null otherwise. An iterator pandas UDF sees
   only the three columns it needs (image embedding, caption, score) and builds its index once per
   task; the other columns stay in the JVM.

The output is the whole table with the two columns (Delta or Parquet); without ``--output`` the best
suggestions (largest gain) are printed.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clipscore.config.choices import OUTPUT_FORMATS, WRITE_MODES
from clipscore.config.coerce import ConfigError, Options, choice, coerce_fields
from clipscore.jobs.broadcast import share
from clipscore.jobs.columns import has_score
from clipscore.jobs.embeddings import StoredEmbeddings, open_embeddings
from clipscore.jobs.names import col
from clipscore.jobs.suggestions import best_suggestions, collect_candidates
from clipscore.jobs.tables import read_table, resolve_input_format
from clipscore.jobs.writes import write_table
from clipscore.retrieval.suggest import SUGGESTED_CAPTION, SUGGESTED_SIMILARITY, Candidates, suggest
from clipscore.retrieval.vectors import decode_matrix

log = logging.getLogger("clipscore")


@dataclass(frozen=True)
class SuggestOptions(Options):
    input: str | None = None
    below: float | None = None  # rows whose score is below this get a suggestion
    margin: float = 0.02  # a suggestion must beat the row's own score by more than this
    candidates: int = 200_000  # distinct captions searched (a seeded sample beyond this)
    output: str | None = None
    output_format: str = "delta"
    mode: str = "error"
    score_col: str = "similarity"
    caption_col: str = "caption"
    image_col: str = "image"  # shown beside the printed suggestions when it is a path or URL
    model_name: str | None = None  # with several models' embeddings: whose (default the primary's)
    show: int = 20  # suggestions printed
    seed: int = 0
    input_format: str = "auto"

    def __post_init__(self) -> None:
        coerce_fields(self)
        choice(self, "output_format", OUTPUT_FORMATS)
        choice(self, "mode", WRITE_MODES)
        if self.below is None or not math.isfinite(self.below):
            raise ConfigError("Pass --below T: rows scoring below T get a suggested caption (e.g. 0.28 for "
                              "CLIP ViT-B/32, LAION's cut).")
        if not math.isfinite(self.margin) or self.margin < 0:
            raise ConfigError(f"--margin must be 0 or more; got {self.margin}.")
        if self.candidates < 1 or self.show < 0:
            raise ConfigError("--candidates must be at least 1 and --show at least 0.")


def suggestion_column(spark: SparkSession, stored: StoredEmbeddings, options: SuggestOptions, candidates: Candidates):
    """A struct column (suggested_caption, suggested_similarity) for each row of ``stored.df``."""
    get = share(spark, (candidates.captions, candidates.vectors.astype(np.float16)))
    dtype, below, margin = stored.dtype, options.below, options.margin
    schema = T.StructType([T.StructField(SUGGESTED_CAPTION, T.StringType()),
                           T.StructField(SUGGESTED_SIMILARITY, T.FloatType())])

    @F.pandas_udf(schema)
    def suggest_udf(batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        captions, vectors = get()
        pool = Candidates(captions, vectors.astype(np.float32))  # once per task
        for cells, own_caption, own_score in batches:
            out_caption = np.full(len(cells), None, dtype=object)
            out_score = np.full(len(cells), np.nan, dtype=np.float32)
            score = own_score.astype("float64").to_numpy()
            wanted = np.flatnonzero(cells.notna().to_numpy() & ~np.isnan(score) & (score < below))
            if len(wanted):
                images, present = decode_matrix(cells.iloc[wanted].tolist(), dtype)
                rows = wanted[present]
                text, sim = suggest(images, own_caption.iloc[rows].to_numpy(dtype=object), score[rows], pool, margin)
                out_caption[rows], out_score[rows] = text, sim
            yield pd.DataFrame({SUGGESTED_CAPTION: out_caption, SUGGESTED_SIMILARITY: out_score})

    return suggest_udf(col(stored.image_col), col(options.caption_col), col(options.score_col).cast("double"))


def with_suggestions(spark: SparkSession, stored: StoredEmbeddings, options: SuggestOptions,
                     candidates: Candidates) -> DataFrame:
    """``stored.df`` without earlier suggestion columns, plus ``suggested_caption`` and ``suggested_similarity``."""
    df = stored.df.drop(SUGGESTED_CAPTION, SUGGESTED_SIMILARITY)
    packed = suggestion_column(spark, dataclasses.replace(stored, df=df), options, candidates)
    return (df.withColumn("_suggestion", packed)
            .withColumn(SUGGESTED_CAPTION, F.col("_suggestion").getField(SUGGESTED_CAPTION))
            .withColumn(SUGGESTED_SIMILARITY, F.col("_suggestion").getField(SUGGESTED_SIMILARITY))
            .drop("_suggestion"))


def run_suggest(spark: SparkSession, options: SuggestOptions) -> dict[str, Any]:
    """Compute the suggestions; write the table with them (``output``) and return the counts and the best ones."""
    started = time.perf_counter()
    stored = open_embeddings(spark, options.input, options.input_format, options.model_name)
    for name in (options.score_col, options.caption_col):
        if name not in stored.df.columns:
            raise ConfigError(f"Column '{name}' is not in {options.input}; columns: {', '.join(stored.df.columns)}.")
    candidates, distinct = collect_candidates(stored, options.caption_col, options.candidates, options.seed)
    log.info("suggest: %s candidate captions (%s distinct in the table)", f"{len(candidates):,}", f"{distinct:,}")
    result = with_suggestions(spark, stored, options, candidates)
    source = result
    if options.output:
        partition = ["score_band"] if "score_band" in result.columns else []
        write_table(result, options.output, options.output_format, options.mode, partition)
        source = read_table(spark, options.output, resolve_input_format(spark, options.output, options.output_format))
    below = has_score(options.score_col) & (col(options.score_col) < F.lit(options.below))
    counts = source.agg(F.count(F.when(below, 1)).alias("below"),
                        F.count(F.col(SUGGESTED_CAPTION)).alias("suggested")).first()
    shown = [c for c in ("id", options.image_col) if c in source.columns
             and not isinstance(source.schema[c].dataType, T.BinaryType)]
    best = best_suggestions(source, options.score_col, options.caption_col, options.show, shown)
    summary = {"rows_below": int(counts["below"]), "suggested": int(counts["suggested"]),
               "candidates": len(candidates), "distinct_captions": distinct,
               "seconds": round(time.perf_counter() - started, 1), "best": best}
    log.info("suggest: %s of %s rows below %g got a caption that beats theirs by > %g (%.1f s)",
             f"{summary['suggested']:,}", f"{summary['rows_below']:,}", options.below, options.margin,
             summary["seconds"])
    return summary
