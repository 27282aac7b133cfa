"""The columns a scoring run adds, from its models: one place for the core, the UDF and the jobs.

One model: ``similarity`` (cosine of the two embeddings), plus ``probability`` for sigmoid-trained
families (SigLIP: sigmoid(exp(logit_scale) * cos + logit_bias)). Several models: the primary's (the
first) under those names, and every model's under ``similarity_<name>``/``probability_<name>``.
With ``write_embeddings``: ``image_embedding`` and ``text_embedding`` (``array<float>`` by default, or
binary: the unit-length vector's ``embedding_dtype`` values, little-endian; ``_<name>`` per model when several run). Then the curation
signals asked for (``signal_columns``: row facts, ``concept_<name>``, ``head_<name>``), then
``score_band`` (the bands of the primary's ``band_column``) and ``score_error``.
"""
from __future__ import annotations

from typing import Sequence

PRIMARY_COLUMNS = ("similarity", "probability")
STATUS_COLUMNS = ("score_band", "score_error")
EMBEDDING_COLUMNS = ("image_embedding", "text_embedding")
ALL_MODEL_COLUMN_PREFIXES = ("similarity_", "probability_", "image_embedding", "text_embedding")


# Signal groups -> their columns, in output order (clipscore.signals computes them).
SIGNAL_COLUMNS = {
    "image": ("image_width", "image_height", "image_format", "image_bytes"),
    "caption": ("caption_chars", "caption_words", "caption_tokens", "caption_truncated"),
    "language": ("caption_language", "caption_language_score"),
    "phash": ("image_phash",),
}
_TYPES = {"image_width": "int", "image_height": "int", "image_bytes": "bigint", "image_format": "string",
          "caption_chars": "int", "caption_words": "int", "caption_tokens": "int", "caption_truncated": "boolean",
          "caption_language": "string", "caption_language_score": "float", "image_phash": "string"}


def signal_columns(groups: Sequence[str] = (), concepts: Sequence[str] = (), heads: Sequence[str] = ()) -> tuple[str, ...]:
    """The signal columns of a run: each group's facts (fixed order), ``concept_<name>``, ``head_<name>``."""
    facts = [c for group in SIGNAL_COLUMNS if group in groups for c in SIGNAL_COLUMNS[group]]
    return (*facts, *(f"concept_{n}" for n in concepts), *(f"head_{n}" for n in heads))


def score_columns(models: Sequence[tuple[str, bool]], embeddings: bool = False) -> tuple[str, ...]:
    """Score (and embedding) columns in output order, for (name, has_probability) per model, primary first."""
    (primary, primary_probability), *_ = models
    columns = ["similarity", *(["probability"] if primary_probability else [])]
    if len(models) > 1:
        for name, probability in models:
            columns += [f"similarity_{name}", *([f"probability_{name}"] if probability else [])]
    if embeddings:
        suffixes = [f"_{name}" for name, _ in models] if len(models) > 1 else [""]
        columns += [f"{kind}{suffix}" for suffix in suffixes for kind in EMBEDDING_COLUMNS]
    return tuple(columns)


def output_columns(models: Sequence[tuple[str, bool]], embeddings: bool = False,
                   signals: Sequence[str] = ()) -> tuple[str, ...]:
    return (*score_columns(models, embeddings), *signals, *STATUS_COLUMNS)


def column_type(name: str, embedding_format: str = "array") -> str:
    """The Spark type of an output column: embeddings (array<float> or binary), string status, typed facts,
    float scores."""
    if name.startswith(EMBEDDING_COLUMNS):
        return "array<float>" if embedding_format == "array" else "binary"
    if name in _TYPES:
        return _TYPES[name]
    return "string" if name in STATUS_COLUMNS else "float"


def pandas_dtype(name: str) -> str | type:
    """The pandas dtype the core gives a column: nullable ints and booleans, so a null stays null in Arrow."""
    return {"float": "float32", "int": "Int32", "bigint": "Int64", "boolean": "boolean"}.get(column_type(name, "binary"), object)


def is_signal_column(name: str) -> bool:
    return name in _TYPES or name.startswith(("concept_", "head_"))


def decode_embedding(value, dtype: str = "float16"):
    """A stored embedding cell (binary bytes, or an array<float> cell) back to a float32 numpy vector (None stays None)."""
    import numpy as np

    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray, memoryview)):  # array<float>: a list or numpy array already
        return np.asarray(value, dtype=np.float32)
    return np.frombuffer(value, dtype=np.dtype(dtype).newbyteorder("<")).astype(np.float32)


def is_score_column(name: str) -> bool:
    """Whether a column is one a scoring run writes (replaced when a table is scored again)."""
    return (name in PRIMARY_COLUMNS or name in STATUS_COLUMNS or name.startswith(ALL_MODEL_COLUMN_PREFIXES)
            or is_signal_column(name))
