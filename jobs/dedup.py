"""Mark near-duplicate images (or captions) of a scored table from its stored embeddings.

    clipscore dedup --input SCORED --threshold 0.95 [--output OUT] [--key id] [--kind image|text]

1. Checks, before any heavy work: the key column exists, and no key is repeated (a ``groupBy`` of
   the key alone): results join back on it, so a repeated key would multiply rows.
2. Spherical k-means (FAISS) on a seeded sample of the embeddings, on the driver: ``clusters``
   centroids (default: one per ``cluster_rows`` rows), trained on ``sample`` rows (at least 39 per
   centroid).
3. Each row's nearest centroid (an iterator pandas UDF on the embedding column; the centroids are a
   broadcast variable), then ``groupBy(cluster).applyInPandas``: the exact comparison within each
   cluster (``clipscore.retrieval.dedup.groups_in_cluster``: greedy in score order, each duplicate within the
   threshold of the kept row it points to; a skewed cluster of more than ``max_cluster_rows`` rows
   is split by k-means first, so no cluster costs more than rows x ``max_cluster_rows``). Only the
   slim columns (key, embedding, score) are shuffled; only members of groups of two or more come back.
4. A left join on the key adds ``duplicate_of`` (the kept row's key; null for the kept row and for
   unique rows), ``duplicate_group_size`` (1 for unique rows) and ``duplicate_similarity`` to every row.
   Rows without an embedding (or without a key) are not compared: their three columns are null.

Rows are taken in order of ``similarity`` (the best-captioned copy first), ties by the smallest key: a
row is kept unless a row kept before it is within the threshold; ``duplicate_of IS NULL`` keeps one
row per group.
"""
from __future__ import annotations

import json
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

from clipscore.config.choices import EMBEDDING_KINDS, OUTPUT_FORMATS, WRITE_MODES
from clipscore.config.coerce import ConfigError, Options, choice, coerce_fields
from clipscore.jobs.broadcast import share
from clipscore.jobs.embeddings import open_embeddings
from clipscore.jobs.names import col
from clipscore.jobs.provenance import set_table_properties
from clipscore.jobs.tables import read_table, resolve_input_format
from clipscore.jobs.writes import write_table
from clipscore.retrieval.dedup import (
    DUPLICATE_OF,
    DUPLICATE_SIMILARITY,
    GROUP_SIZE,
    MIN_POINTS_PER_CENTROID,
    assign,
    groups_bounded,
    train_centroids,
)
from clipscore.retrieval.vectors import decode_matrix

log = logging.getLogger("clipscore")

CLUSTER = "_clipscore_cluster"
DEDUP_COLUMNS = (DUPLICATE_OF, GROUP_SIZE, DUPLICATE_SIMILARITY)


@dataclass(frozen=True)
class DedupOptions(Options):
    input: str | None = None
    threshold: float | None = None  # cosine at or above which two embeddings are duplicates
    output: str | None = None
    output_format: str = "delta"
    mode: str = "error"
    key: str | None = None  # a unique row key; default: `id`, else a string image column (path or URL)
    kind: str = "image"  # which embeddings: image (near-duplicate images) or text (near-duplicate captions)
    clusters: int = 0  # k-means centroids; 0: one per cluster_rows rows
    cluster_rows: int = 5_000  # the mean rows per cluster aimed at (each cluster costs rows^2 x dim)
    sample: int = 100_000  # rows the centroids are trained on (raised to 39 per centroid)
    max_cluster_rows: int = 50_000  # a bigger (skewed) cluster is split by k-means on its executor
    score_col: str = "similarity"  # the group keeps its highest-scoring row
    image_col: str = "image"
    caption_col: str = "caption"
    model_name: str | None = None
    show: int = 10  # largest groups printed
    seed: int = 0
    input_format: str = "auto"

    def __post_init__(self) -> None:
        coerce_fields(self)
        choice(self, "kind", EMBEDDING_KINDS)
        choice(self, "output_format", OUTPUT_FORMATS)
        choice(self, "mode", WRITE_MODES)
        if self.threshold is None or not math.isfinite(self.threshold) or not 0 < self.threshold <= 1:
            raise ConfigError("Pass --threshold T in (0, 1]: the cosine at or above which two embeddings are "
                              f"near-duplicates (0.95 to 0.98 for re-encoded or resized copies); got {self.threshold}.")
        for name, least in (("clusters", 0), ("cluster_rows", 2), ("sample", 1), ("max_cluster_rows", 2),
                            ("show", 0)):
            if getattr(self, name) < least:
                raise ConfigError(f"Option '{name}' must be at least {least}; got {getattr(self, name)}.")


def resolve_key(df: DataFrame, options: DedupOptions) -> str:
    if options.key:
        if options.key not in df.columns:
            raise ConfigError(f"--key '{options.key}' is not in {options.input}; columns: {', '.join(df.columns)}.")
        return options.key
    if "id" in df.columns:
        return "id"
    if options.image_col in df.columns and isinstance(df.schema[options.image_col].dataType, T.StringType):
        return options.image_col
    raise ConfigError(f"{options.input} has no `id` column and its image column is not a path: pass --key COLUMN, "
                      "a column that is unique per row.")


def check_unique(df: DataFrame, key: str, source: str) -> None:
    repeated = df.filter(col(key).isNotNull()).groupBy(col(key).alias("k")).count().filter("count > 1").limit(3).collect()
    if repeated:
        shown = ", ".join(f"{r['k']!r} ({r['count']} rows)" for r in repeated)
        raise ConfigError(f"Key column '{key}' of {source} repeats values ({shown}): dedup joins its results back on "
                          "the key. Pass --key with a column that is unique per row.")


def centroids_from_sample(slim: DataFrame, column: str, dtype: str, rows: int, options: DedupOptions) -> np.ndarray:
    clusters = options.clusters or max(1, math.ceil(rows / options.cluster_rows))
    wanted = min(rows, max(options.sample, MIN_POINTS_PER_CENTROID * clusters))
    sample = slim.select(col(column)).sample(fraction=min(1.0, 1.2 * wanted / max(rows, 1)), seed=options.seed)
    cells = sample.limit(wanted).toPandas()[column].tolist()
    matrix, _ = decode_matrix(cells, dtype)
    if not options.clusters and len(matrix) < MIN_POINTS_PER_CENTROID * clusters:
        clusters = max(1, len(matrix) // MIN_POINTS_PER_CENTROID)  # too few rows to train that many well
    return train_centroids(matrix, clusters, options.seed)


def cluster_column(spark: SparkSession, column: str, dtype: str, centroids: np.ndarray):
    get = share(spark, centroids)

    @F.pandas_udf(T.LongType())
    def nearest(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        centres = get()
        for cells in batches:
            matrix, present = decode_matrix(cells.tolist(), dtype)
            out = np.full(len(cells), -1, dtype=np.int64)
            out[present] = assign(matrix, centres)
            yield pd.Series(out)

    return nearest(col(column))


def duplicate_groups(slim: DataFrame, key_type: T.DataType, dtype: str, options: DedupOptions) -> DataFrame:
    """Members of groups of two or more: (_key, duplicate_of, duplicate_group_size, duplicate_similarity)."""
    threshold, max_rows, seed = options.threshold, options.max_cluster_rows, options.seed
    schema = T.StructType([T.StructField("_key", key_type), T.StructField(DUPLICATE_OF, key_type),
                           T.StructField(GROUP_SIZE, T.LongType()), T.StructField(DUPLICATE_SIMILARITY, T.FloatType())])

    def within_cluster(pdf: pd.DataFrame) -> pd.DataFrame:
        matrix, present = decode_matrix(pdf["_vector"].tolist(), dtype)
        rows = pdf.iloc[present]
        found = groups_bounded(matrix, rows["_key"].to_numpy(dtype=object), rows["_score"].to_numpy(dtype=np.float64),
                               threshold, max_rows, seed)
        return found.rename(columns={"key": "_key"})

    return slim.groupBy(CLUSTER).applyInPandas(within_cluster, schema)


def run_dedup(spark: SparkSession, options: DedupOptions) -> dict[str, Any]:
    """Mark the groups; write the table with the three columns (``output``); return the counts and largest groups."""
    started = time.perf_counter()
    stored = open_embeddings(spark, options.input, options.input_format, options.model_name)
    df = stored.df.drop(*DEDUP_COLUMNS)
    key = resolve_key(df, options)
    check_unique(df, key, options.input)
    column = stored.column(options.kind)
    score = col(options.score_col).cast("double") if options.score_col in df.columns else F.lit(0.0)
    slim = (df.filter(col(column).isNotNull() & col(key).isNotNull())
            .select(col(key).alias("_key"), col(column).alias("_vector"), score.alias("_score")))
    compared = slim.count()
    checked = time.perf_counter()
    centroids = centroids_from_sample(slim, "_vector", stored.dtype, compared, options) if compared else np.zeros((1, stored.dim), np.float32)
    trained = time.perf_counter()
    groups = duplicate_groups(slim.withColumn(CLUSTER, cluster_column(spark, "_vector", stored.dtype, centroids)),
                              df.schema[key].dataType, stored.dtype, options)
    compared_col = col(column).isNotNull() & col(key).isNotNull()
    marked = (df.join(groups, col(key) == F.col("_key"), "left")
              .withColumn(GROUP_SIZE, F.when(compared_col, F.coalesce(F.col(GROUP_SIZE), F.lit(1))))
              .drop("_key"))
    if options.output:
        partition = ["score_band"] if "score_band" in marked.columns else []
        write_table(marked, options.output, options.output_format, options.mode, partition)
        marked = read_table(spark, options.output, resolve_input_format(spark, options.output, options.output_format))
    summary = _summary(marked, key, options)
    summary.update(rows_compared=compared, clusters=len(centroids), key=key, embedding=column,
                   seconds={"checks": round(checked - started, 1), "kmeans": round(trained - checked, 1),
                            "total": round(time.perf_counter() - started, 1)})
    if options.output and options.output_format == "delta":
        record = {"threshold": options.threshold, "kind": options.kind, "embedding": column, "key": key,
                  "clusters": len(centroids), "source": options.input}
        set_table_properties(spark, options.output, {f"clipscore.dedup.{k}": v if isinstance(v, str) else json.dumps(v)
                                                     for k, v in record.items()})
    log.info("dedup %s >= %g: %s of %s rows are near-duplicates of another (%s groups; %d clusters; %.1f s)",
             column, options.threshold, f"{summary['duplicates']:,}", f"{compared:,}", f"{summary['groups']:,}",
             len(centroids), summary["seconds"]["total"])
    return summary


def _summary(marked: DataFrame, key: str, options: DedupOptions) -> dict[str, Any]:
    counts = marked.agg(F.count(F.col(DUPLICATE_OF)).alias("duplicates"),
                        F.count(F.when(F.col(GROUP_SIZE) > 1, 1)).alias("in_groups")).first()
    shown = [c for c in dict.fromkeys([key, options.caption_col, options.image_col]) if c in marked.columns
             and not isinstance(marked.schema[c].dataType, T.BinaryType)]
    largest = (marked.filter((F.col(GROUP_SIZE) > 1) & F.col(DUPLICATE_OF).isNull())
               .select(*[col(c).alias(c) for c in shown], F.col(GROUP_SIZE))
               .orderBy(F.desc(GROUP_SIZE), col(key)).limit(options.show).toPandas())
    duplicates, in_groups = int(counts["duplicates"]), int(counts["in_groups"])
    return {"duplicates": duplicates, "groups": in_groups - duplicates, "largest": largest}
