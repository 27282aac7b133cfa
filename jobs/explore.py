"""Looking at a scored table: rows per band and the lowest-scoring pairs (for notebooks).

Both read a scored table (path or catalog name, Delta or Parquet) and return small results; the
pairs come back as pandas with their image and caption for ``clipscore.report.pairs_html``.
"""
from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from clipscore.config.job import ScoreConfig
from clipscore.jobs.names import col
from clipscore.jobs.tables import read_table


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


def bands_by(spark: SparkSession, table: str, column: str, fmt: str = "delta") -> pd.DataFrame:
    """Rows per band (columns, in band order) for each value of ``column`` (rows): a crosstab, as pandas."""
    scored = read_table(spark, table, fmt)
    if column not in scored.columns:
        raise ValueError(f"'{column}' is not a column of {table}; columns: {', '.join(scored.columns)}")
    counts = scored.groupBy(col(column).alias(column), "score_band").count().toPandas()
    table_ = counts.pivot_table(index=column, columns="score_band", values="count", fill_value=0, aggfunc="sum")
    order = sorted((c for c in table_.columns if c != "error")) + (["error"] if "error" in table_.columns else [])
    return table_[order].astype(int)


def main(argv: list[str] | None = None) -> int:
    """``python -m clipscore.jobs.explore TABLE [--by COLUMN]``: rows per band, optionally split by a column."""
    import argparse

    from clipscore.config.choices import OUTPUT_FORMATS
    from clipscore.jobs.entry import configure_logging, is_debug
    from clipscore.jobs.session import job_session

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("table")
    parser.add_argument("--by", help="a column to split the counts by (e.g. kind)")
    parser.add_argument("--format", default="delta", choices=OUTPUT_FORMATS)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--log-level", default="INFO", help="DEBUG also shows Spark's own output")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    with job_session("clipscore-explore", args.master, quiet=not is_debug(args.log_level)) as spark:
        if args.by and args.by in read_table(spark, args.table, args.format).columns:
            with pd.option_context("display.width", 200, "display.max_columns", 20):
                print(bands_by(spark, args.table, args.by, args.format).to_string())
        else:  # the photo sample has no `kind` column: plain rows per band
            rows_per_band(spark, args.table, args.format).show(truncate=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
