"""Looking at a scored table: rows per band and the lowest-scoring pairs (for notebooks).

Both read a scored table (path or catalog name, Delta or Parquet) and return small results; the
pairs come back as pandas with their image and caption for ``clipscore.report.pairs_html``.
"""
from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from clipscore.config import ScoreConfig
from clipscore.jobs.tables import col, read_table


def rows_per_band(spark: SparkSession, table: str, fmt: str = "delta") -> DataFrame:
    """``score_band, rows, share`` in band order (the labels sort in score order; ``error`` last)."""
    scored = read_table(spark, table, fmt)
    counts = scored.groupBy("score_band").agg(F.count(F.lit(1)).alias("rows"))
    total = F.sum("rows").over(Window.partitionBy())
    return (
        counts.withColumn("share", F.round(F.col("rows") / total, 4))
        .orderBy((F.col("score_band") == "error").asc(), F.col("score_band"))
    )


def lowest_scoring(spark: SparkSession, cfg: ScoreConfig, table: str, n: int = 20, fmt: str = "delta") -> pd.DataFrame:
    """The ``n`` scored pairs with the lowest similarity: image, caption and score columns, as pandas."""
    scored = read_table(spark, table, fmt)
    keep = [c for c in scored.columns if c in (cfg.image_col, cfg.caption_col, "similarity", "score_band", "score_error")]
    lowest = scored.filter(F.col("similarity").isNotNull()).orderBy(F.col("similarity").asc()).limit(n)
    return lowest.select(*[col(c) for c in keep]).toPandas()
