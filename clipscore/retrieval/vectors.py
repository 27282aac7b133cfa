"""Stored embeddings as matrices, and exact nearest neighbours over them (numpy; no Spark, no model).

The shared machinery of ``search``, ``suggest`` and ``dedup``: decode a column of stored embedding
cells (``write_embeddings``: little-endian float16/float32 bytes of a unit vector) into one float32
matrix, keep the top k rows by cosine, and merge top-k lists. Cosine is the dot product: every stored
vector has unit length (checked when the dtype is detected).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

DTYPES = ("float16", "float32")
ARRAY = "array"  # an array<float> column: cells are lists or numpy arrays, no dtype to detect
UNIT_TOLERANCE = 0.02  # |norm - 1| of a stored vector decoded with the right dtype (float16 rounding is ~1e-3)
BLOCK_ELEMENTS = 1 << 24  # one similarity block holds at most this many float32 values (64 MiB)


def decode_matrix(cells: Sequence, dtype: str, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stored cells -> (float32 matrix [rows with a vector, dim], positions of those rows in ``cells``).

    Null cells are skipped. A cell whose length differs from the others (or from ``dim``) is a code or
    data-layout error, raised with the lengths found.
    """
    present = [i for i, c in enumerate(cells) if c is not None]
    if not present:
        return np.zeros((0, dim or 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    if dtype == ARRAY or not isinstance(cells[present[0]], (bytes, bytearray, memoryview)):
        lengths = {len(cells[i]) for i in present}
        if len(lengths) != 1 or (dim and lengths != {dim}):
            raise ValueError(f"stored embeddings of {sorted(lengths)} values where {dim or 'one length'} were "
                             "expected: the column mixes models")
        matrix = np.asarray([np.asarray(cells[i], dtype=np.float32) for i in present], dtype=np.float32)
        return matrix, np.asarray(present, dtype=np.int64)
    item = np.dtype(dtype).newbyteorder("<")
    width = (dim * item.itemsize) if dim else len(cells[present[0]])
    lengths = {len(cells[i]) for i in present}
    if lengths != {width}:
        raise ValueError(f"stored embeddings of {sorted(lengths)} bytes where {width} were expected "
                         f"({dtype}): the column mixes models or dtypes")
    raw = b"".join(bytes(cells[i]) for i in present)
    matrix = np.frombuffer(raw, dtype=item).reshape(len(present), width // item.itemsize).astype(np.float32)
    return matrix, np.asarray(present, dtype=np.int64)


def detect_dtype(cell, dim: int | None = None) -> str | None:
    """The dtype under which a stored cell decodes to a unit vector (of ``dim`` values, when known);
    ``array`` for an array<float> cell."""
    if not isinstance(cell, (bytes, bytearray, memoryview)):
        vector = np.asarray(cell, dtype=np.float64)
        ok = np.all(np.isfinite(vector)) and abs(np.linalg.norm(vector) - 1.0) < UNIT_TOLERANCE and (not dim or len(vector) == dim)
        return ARRAY if ok else None
    for dtype in DTYPES:
        size = np.dtype(dtype).itemsize
        if len(cell) % size or (dim and len(cell) != dim * size):
            continue
        vector = np.frombuffer(cell, dtype=np.dtype(dtype).newbyteorder("<")).astype(np.float64)
        if np.all(np.isfinite(vector)) and abs(np.linalg.norm(vector) - 1.0) < UNIT_TOLERANCE:
            return dtype
    return None


def unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("the query embedding is zero or not finite")
    return vector / norm


@dataclass
class TopK:
    """The best rows so far: their scores (descending) and positions (whatever the caller indexes by)."""

    scores: np.ndarray
    positions: np.ndarray

    @classmethod
    def empty(cls) -> "TopK":
        return cls(np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64))


def top_k(scores: np.ndarray, k: int, positions: np.ndarray | None = None) -> TopK:
    """The k highest of ``scores`` (ties: the lower position first), in descending order."""
    positions = np.arange(len(scores), dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
    if len(scores) > k:
        keep = np.argpartition(-scores, k - 1)[:k]
        # argpartition picks arbitrarily among ties at the cut: take every tie, then sort and cut.
        cut = scores[keep].min()
        keep = np.flatnonzero(scores >= cut)
        scores, positions = scores[keep], positions[keep]
    order = np.lexsort((positions, -scores))[:k]
    return TopK(scores[order].astype(np.float32), positions[order])


def merge_top_k(parts: Iterable[TopK], k: int) -> TopK:
    """One top-k of several (a partition's batches, or the partitions)."""
    parts = [p for p in parts if len(p.scores)]
    if not parts:
        return TopK.empty()
    return top_k(np.concatenate([p.scores for p in parts]), k, np.concatenate([p.positions for p in parts]))


def best_matches(queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the k candidate rows of highest cosine: (scores [q, k], indices [q, k]).

    Exact (FAISS's flat inner-product search: BLAS in blocks), so memory stays bounded for any
    number of queries. With fewer than k candidates the missing slots are -inf / -1.
    """
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    index = faiss.IndexFlatIP(candidates.shape[1])
    index.add(np.ascontiguousarray(candidates, dtype=np.float32))
    scores, indices = index.search(queries, k)
    scores[indices < 0] = -np.inf
    return scores, indices
