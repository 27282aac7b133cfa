"""Search a scored table by text or by image, against its stored embeddings.

    clipscore search --input SCORED (--text "..." | --image PATH_OR_URL) [--k 20] [--against image|text]

The query is embedded once on the driver with the model that wrote the embeddings (the table's
``clipscore.models`` property, or ``--model``). Each partition decodes its embedding cells batch by
batch, scores them against the query (a dot product: both sides are unit vectors) and keeps only its
own top k; Spark's ``orderBy().limit(k)`` then merges those (at most k rows per partition) in one
step. Nothing else of the table reaches the driver. The query vector travels inside the task
closure (one small array: 4 bytes per dimension), which works the same on Spark Connect.

Directions: a text query searches images (``--against image``, the default) or captions; an image
query searches captions (the default: image -> text) or images (similar images).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clipscore.config.choices import EMBEDDING_KINDS, OUTPUT_FORMATS, WRITE_MODES
from clipscore.config.coerce import ConfigError, Options, choice, coerce_fields
from clipscore.jobs.embeddings import open_embeddings
from clipscore.jobs.names import col
from clipscore.jobs.writes import write_table
from clipscore.retrieval.vectors import TopK, decode_matrix, merge_top_k, top_k

log = logging.getLogger("clipscore")

SCORE = "search_score"
RANK = "search_rank"
MAX_K = 100_000  # the k rows are merged and returned on the driver


@dataclass(frozen=True)
class SearchOptions(Options):
    input: str | None = None
    text: str | None = None
    image: str | None = None  # a path or an http(s) URL
    k: int = 20
    against: str = "auto"  # image | text; auto: a text query searches images, an image query captions
    columns: tuple[str, ...] = ()  # returned columns; default: every non-binary column but the embeddings
    output: str | None = None  # write the k rows here; default: print them
    output_format: str = "delta"
    mode: str = "error"
    model: str | None = None  # embed the query with this model instead of the table's provenance
    model_name: str | None = None  # with several models' embeddings: whose (default the primary's)
    image_base_path: str = ""  # for a relative --image path
    input_format: str = "auto"
    device: str = "auto"  # where the query is embedded
    allow_private_urls: bool = False  # an --image URL on a private or loopback address (refused by default)

    def __post_init__(self) -> None:
        coerce_fields(self)
        choice(self, "against", ("auto", *EMBEDDING_KINDS))
        choice(self, "output_format", OUTPUT_FORMATS)
        choice(self, "mode", WRITE_MODES)
        if (self.text is None) == (self.image is None):
            raise ConfigError("Pass exactly one query: --text \"a red circle\" or --image PATH_OR_URL.")
        if not 1 <= self.k <= MAX_K:
            raise ConfigError(f"--k must be between 1 and {MAX_K:,}; got {self.k}.")

    @property
    def query_kind(self) -> str:
        return "text" if self.text is not None else "image"

    @property
    def target_kind(self) -> str:
        if self.against != "auto":
            return self.against
        return "image" if self.query_kind == "text" else "text"


def returned_columns(df: DataFrame, options: SearchOptions) -> list[str]:
    if options.columns:
        missing = [c for c in options.columns if c not in df.columns]
        if missing:
            raise ConfigError(f"--columns: {', '.join(missing)} not in {options.input}; columns: {', '.join(df.columns)}.")
        return list(dict.fromkeys(options.columns))
    # Binary columns (image bytes, embeddings) are left out by default: the scan then reads only the
    # embedding column and the small ones (Parquet/Delta prune columns). Name them in --columns to get them.
    return [f.name for f in df.schema.fields if not isinstance(f.dataType, T.BinaryType)
            and not f.name.startswith(("image_embedding", "text_embedding"))]


def top_k_rows(df: DataFrame, column: str, dtype: str, query: np.ndarray, k: int, keep: list[str]) -> DataFrame:
    """The k rows of ``df`` whose stored ``column`` vectors have the highest dot product with ``query``.

    Per partition: decode each Arrow batch, score it, keep a running top k. Then one ordered limit.
    Rows without an embedding are skipped.
    """
    query = np.asarray(query, dtype=np.float32)
    dim = len(query)
    fields = result_fields(df, keep)
    score_name = SCORE

    def partition_top_k(batches):
        kept: pd.DataFrame | None = None
        for pdf in batches:
            matrix, present = decode_matrix(pdf[column].tolist(), dtype, dim)
            if not len(present):
                continue
            best = top_k(matrix @ query, k, present)
            rows = pdf.iloc[best.positions][keep].assign(**{score_name: best.scores})
            if kept is not None:
                rows = pd.concat([kept, rows], ignore_index=True)
                best = merge_top_k([TopK(rows[score_name].to_numpy(), np.arange(len(rows)))], k)
                rows = rows.iloc[best.positions]
            kept = rows.reset_index(drop=True)
        if kept is not None:
            yield kept

    scan = df.select(*[col(c).alias(c) for c in dict.fromkeys([*keep, column])])
    return scan.mapInPandas(partition_top_k, T.StructType(fields)).orderBy(F.desc(SCORE)).limit(k)


def run_search(spark: SparkSession, options: SearchOptions) -> pd.DataFrame:
    """The top k rows (``search_rank``, ``search_score`` and the returned columns), best first."""
    from clipscore.config.options import ScoringOptions
    from clipscore.scoring.query import embed_query

    started = time.perf_counter()
    stored = open_embeddings(spark, options.input, options.input_format, options.model_name, options.model)
    if stored.model is None:
        raise ConfigError(f"{options.input} records no model (a Parquet table has no properties): pass --model, "
                          "the model it was scored with.")
    keep = returned_columns(stored.df, options)
    scoring = ScoringOptions(model=stored.model, model_revision=stored.revision, device=options.device,
                             image_base_path=options.image_base_path, allow_private_urls=options.allow_private_urls,
                             batch_size=1)
    opened = time.perf_counter()
    query = embed_query(scoring, text=options.text, image=options.image)
    if len(query) != stored.dim:
        raise ConfigError(f"The query embedding has {len(query)} values but {stored.image_col} holds {stored.dim}: "
                          f"{stored.model} is not the model that wrote these embeddings; pass --model.")
    embedded = time.perf_counter()
    column = stored.column(options.target_kind)
    found = top_k_rows(stored.df, column, stored.dtype, query, options.k, keep).toPandas()
    found.insert(0, RANK, np.arange(1, len(found) + 1))
    seconds = time.perf_counter() - started
    log.info("search %s -> %s over %s: %d rows in %.2f s (table opened in %.2f s, query embedded in %.2f s, "
             "scan and merge %.2f s)", options.query_kind, options.target_kind, column, len(found), seconds,
             opened - started, embedded - opened, seconds - (embedded - started))
    if options.output:
        schema = T.StructType([T.StructField(RANK, T.LongType(), False), *result_fields(stored.df, keep)])
        write_table(spark.createDataFrame(found, schema), options.output, options.output_format, options.mode, [])
        log.info("wrote the %d results to %s", len(found), options.output)
    return found


def result_fields(df: DataFrame, keep: list[str]) -> list[T.StructField]:
    return [df.schema[c] for c in keep] + [T.StructField(SCORE, T.FloatType(), False)]


def format_table(rows: pd.DataFrame, width: int = 60) -> str:
    """Rows as a plain-text table: long text cut to ``width`` characters, floats to 4 decimals, bytes as a size."""
    shown = rows.copy()
    for name in shown.columns:
        if shown[name].dtype == object:
            shown[name] = shown[name].map(lambda v: f"<{len(v):,} bytes>" if isinstance(v, (bytes, bytearray))
                                          else v if not isinstance(v, str) or len(v) <= width else v[:width - 1] + "…")
        elif shown[name].dtype.kind == "f":
            shown[name] = shown[name].map(lambda v: f"{v:.4f}")
    return shown.to_string(index=False)
