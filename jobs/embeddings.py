"""A scored table's stored embeddings, as the search, suggest and dedup jobs (and the report) read them.

Finds the ``image_embedding``/``text_embedding`` columns (``_<name>`` per model when several models
ran: the primary's by default), their format (``array<float>`` columns: dtype ``array``; binary cells:
the ``clipscore.embeddings`` property of a Delta table, else detected from one stored cell: the dtype
under which it decodes to a unit vector) and the model that wrote them (the ``clipscore.models``
property, or ``--model``), before any scan.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from clipscore.config.coerce import ConfigError
from clipscore.jobs.names import col
from clipscore.jobs.tables import read_table, resolve_input_format
from clipscore.retrieval.vectors import ARRAY, DTYPES, detect_dtype

log = logging.getLogger("clipscore")


@dataclass(frozen=True)
class StoredEmbeddings:
    df: DataFrame
    fmt: str
    image_col: str  # the image_embedding column used
    text_col: str
    dtype: str
    dim: int
    model: str | None  # the model that wrote them (to embed queries), when known
    revision: str | None
    provenance: dict

    def column(self, kind: str) -> str:
        return self.image_col if kind == "image" else self.text_col


def open_embeddings(spark: SparkSession, source: str, input_format: str = "auto", model_name: str | None = None,
                    model: str | None = None, dtype: str | None = None) -> StoredEmbeddings:
    """Read ``source`` and locate its stored embeddings; ``ConfigError`` (what to do) when it has none."""
    if not source:
        raise ConfigError("Pass --input: a table scored with --set write_embeddings=true.")
    fmt = resolve_input_format(spark, source, input_format)
    df = read_table(spark, source, fmt)
    provenance: dict[str, str] = {}
    if fmt in ("delta", "parquet", "table"):  # Delta properties, or a Parquet output's sidecar
        from clipscore.jobs.provenance import table_provenance

        provenance = table_provenance(spark, source)
    specs = json.loads(provenance.get("clipscore.models", "[]") or "[]")
    suffix = _suffix(df, model_name, specs, source)
    image_col, text_col = f"image_embedding{suffix}", f"text_embedding{suffix}"
    for name in (image_col, text_col):
        kind = df.schema[name].dataType
        if not (isinstance(kind, T.BinaryType) or (isinstance(kind, T.ArrayType)
                                                   and isinstance(kind.elementType, (T.FloatType, T.DoubleType)))):
            raise ConfigError(f"Column '{name}' of {source} is {kind.simpleString()}, not an embedding column "
                              "(array<float>, or the binary cells of embedding_format: binary16/binary32) as "
                              "clipscore score writes with --set write_embeddings=true.")
    spec = next((s for s in specs if f"_{s['name']}" == suffix), specs[0] if specs and not suffix else None)
    found_model = model or (spec["model"] if spec else provenance.get("clipscore.model") or None)
    revision = None if model else (spec.get("revision") if spec else provenance.get("clipscore.model_revision") or None)
    dtype, dim = _dtype_and_dim(df, image_col, dtype or provenance.get("clipscore.embeddings") or None, source)
    return StoredEmbeddings(df, fmt, image_col, text_col, dtype, dim, found_model, revision, provenance)


def _suffix(df: DataFrame, model_name: str | None, specs: list, source: str) -> str:
    columns = set(df.columns)
    if model_name:
        if f"image_embedding_{model_name}" in columns:
            return f"_{model_name}"
        if "image_embedding" in columns and (not specs or specs[0]["name"] == model_name):
            return ""
        raise ConfigError(f"No embeddings of model '{model_name}' in {source}: it has "
                          f"{', '.join(sorted(c for c in columns if c.startswith('image_embedding'))) or 'none'}.")
    if "image_embedding" in columns:
        return ""
    named = [c.removeprefix("image_embedding_") for c in df.columns if c.startswith("image_embedding_")]
    if not named:
        raise ConfigError(f"{source} has no stored embeddings (no image_embedding column). Score it with "
                          "--set write_embeddings=true (or merge with it) first.")
    primary = specs[0]["name"] if specs and specs[0]["name"] in named else named[0]
    return f"_{primary}"


def _dtype_and_dim(df: DataFrame, column: str, recorded: str | None, source: str) -> tuple[str, int]:
    first = df.filter(col(column).isNotNull()).select(col(column)).limit(1).collect()
    if not first:
        raise ConfigError(f"Column '{column}' of {source} holds no embedding (every row failed to score?).")
    value = first[0][0]
    if not isinstance(value, (bytes, bytearray, memoryview)):  # array<float>: nothing to detect
        if detect_dtype(value) != ARRAY:
            raise ConfigError(f"Column '{column}' of {source} does not hold unit vectors ({len(value)} values, "
                              f"norm {float(sum(v * v for v in value)) ** 0.5:.3f}).")
        return ARRAY, len(value)
    cell = bytes(value)
    detected = detect_dtype(cell)
    if recorded == ARRAY:  # a binary column in a table whose later run wrote arrays: judge the cell
        recorded = None
    if recorded and recorded not in DTYPES:
        raise ConfigError(f"embedding_dtype must be one of {', '.join(DTYPES)}; got '{recorded}'.")
    dtype = recorded or detected
    if dtype is None or (recorded and detected and recorded != detected):
        raise ConfigError(f"Column '{column}' of {source} does not hold unit vectors as "
                          f"{recorded or ' or '.join(DTYPES)} ({len(cell)} bytes per cell); pass the dtype it was "
                          "written with (--set embedding_dtype=...).")
    import numpy as np

    return dtype, len(cell) // np.dtype(dtype).itemsize
