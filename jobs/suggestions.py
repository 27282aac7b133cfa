"""The suggestion columns (``suggested_caption``, ``suggested_similarity``) as the suggest job makes them and
the report reads them: the candidate captions, from a table's stored embeddings, and the best suggestions."""
from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clipscore.jobs.embeddings import StoredEmbeddings
from clipscore.jobs.names import col
from clipscore.retrieval.suggest import SUGGESTED_CAPTION, SUGGESTED_SIMILARITY, Candidates


def collect_candidates(stored: StoredEmbeddings, caption_col: str, limit: int, seed: int) -> tuple[Candidates, int]:
    """(up to ``limit`` distinct captions with their text embeddings, how many distinct captions there are)."""
    distinct = (stored.df.filter(col(stored.text_col).isNotNull())
                .select(col(caption_col).alias("caption"), col(stored.text_col).alias("cell"))
                .dropDuplicates(["caption"]))
    rows = distinct.limit(limit + 1).toPandas()  # one pass when they all fit (the common case)
    total = len(rows)
    if total > limit:
        total = distinct.count()
        # A little over the wanted fraction, then cut: sample() draws a random count around fraction * total.
        rows = distinct.sample(fraction=min(1.0, 1.1 * limit / total), seed=seed).limit(limit).toPandas()
    return Candidates.from_cells(rows["caption"], rows["cell"], stored.dtype), total


def best_suggestions(df: DataFrame, score_col: str, caption_col: str, n: int, extra: list[str] = ()) -> pd.DataFrame:
    """The ``n`` suggestions with the largest gain over the row's own score (Spark orders, n rows return)."""
    gain = (F.col(SUGGESTED_SIMILARITY) - col(score_col)).alias("gain")
    keep = [c for c in dict.fromkeys([*extra, caption_col, score_col]) if c in df.columns]
    return (df.filter(F.col(SUGGESTED_CAPTION).isNotNull())
            .select(*[col(c).alias(c) for c in keep], F.col(SUGGESTED_CAPTION), F.col(SUGGESTED_SIMILARITY), gain)
            .orderBy(F.desc("gain")).limit(n).toPandas())
