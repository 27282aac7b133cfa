"""Near-duplicates among stored embeddings (numpy and FAISS; no Spark).

Two steps, each usable alone:

* ``train_centroids`` / ``assign``: spherical k-means (FAISS) on a sample, then each vector's nearest
  centroid. Near-duplicates (cosine close to 1) almost always share their nearest centroid, so
  comparing rows only within their cluster finds them at linear cost; a pair split by a cluster
  boundary is missed (the benchmark measures how often against brute force).
* ``groups_in_cluster``: the exact comparison within one cluster, greedy in score order (SemDeDup's
  rule): the best-scored row is kept; each next row is a duplicate when its cosine with a row kept so
  far is at least ``threshold`` (``duplicate_of`` = the nearest such kept row), else it is kept too.
  So every duplicate is within the threshold of the row it points to (no chains: a group never holds
  two rows that only meet through a third), and no two kept rows of a cluster are near-duplicates.
  Bit-identical vectors are one node (a placeholder image repeated a million times costs one
  comparison). Rows are compared with the kept rows in blocks of at most ``block_elements`` values,
  so memory stays bounded whatever the cluster's size.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from clipscore.retrieval.vectors import BLOCK_ELEMENTS

DUPLICATE_OF = "duplicate_of"
GROUP_SIZE = "duplicate_group_size"
DUPLICATE_SIMILARITY = "duplicate_similarity"
MIN_POINTS_PER_CENTROID = 39  # FAISS warns below this many training points per centroid


def train_centroids(sample: np.ndarray, clusters: int, seed: int = 0, iterations: int = 20) -> np.ndarray:
    """Unit-length centroids of a spherical k-means on ``sample`` (at most one per sampled row)."""
    import faiss

    sample = np.ascontiguousarray(sample, dtype=np.float32)
    clusters = max(1, min(clusters, len(sample)))
    if clusters == 1:
        centre = sample.mean(axis=0)
        return (centre / (np.linalg.norm(centre) or 1.0)).reshape(1, -1).astype(np.float32)
    kmeans = faiss.Kmeans(sample.shape[1], clusters, niter=iterations, spherical=True, seed=seed, verbose=False,
                          min_points_per_centroid=1)
    kmeans.train(sample)
    return kmeans.centroids.astype(np.float32)


def assign(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Each vector's nearest centroid by cosine (int64 cluster ids)."""
    import faiss

    if len(centroids) == 1:
        return np.zeros(len(vectors), dtype=np.int64)
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, nearest = index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return nearest[:, 0].astype(np.int64)


def keep_greedily(matrix: np.ndarray, threshold: float, block_elements: int = BLOCK_ELEMENTS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``matrix`` in priority order: (kept row of each row, its cosine with it).

    Row 0 is kept. Row i is a duplicate of the nearest earlier-kept row within ``threshold``, else it
    is kept (its own kept row, cosine 1). Rows are taken in blocks: first against the rows kept in
    earlier blocks (one matrix product), then the block's remaining rows among themselves in order.
    """
    n = len(matrix)
    kept_by = np.arange(n, dtype=np.int64)
    similarity = np.ones(n, dtype=np.float32)
    kept: list[np.ndarray] = []  # indices of kept rows, block by block
    kept_matrix = np.zeros((0, matrix.shape[1]), dtype=np.float32)
    start = 0
    while start < n:
        size = int(max(1, min(4096, block_elements // max(len(kept_matrix), 1))))
        rows = np.arange(start, min(n, start + size))
        best = np.full(len(rows), -np.inf, dtype=np.float32)
        best_at = np.full(len(rows), -1, dtype=np.int64)
        if len(kept_matrix):
            scores = matrix[rows] @ kept_matrix.T
            best_at = scores.argmax(axis=1)
            best = scores[np.arange(len(rows)), best_at]
            best_at = np.concatenate(kept)[best_at]
        open_rows = np.flatnonzero(best < threshold)  # not covered by an earlier block's kept row
        if len(open_rows):
            inner = matrix[rows[open_rows]] @ matrix[rows[open_rows]].T
            leader = np.zeros(len(open_rows), dtype=bool)
            covered = np.zeros(len(open_rows), dtype=bool)
            for i in range(len(open_rows)):  # in priority order: kept unless an earlier kept row covers it
                if not covered[i]:
                    leader[i] = True
                    covered |= inner[i] >= threshold
            new = rows[open_rows[leader]]
            own = inner[:, leader]  # every open row against this block's kept rows
            nearest = own.argmax(axis=1)
            nearest_score = own[np.arange(len(open_rows)), nearest]
            better = nearest_score > best[open_rows]
            best[open_rows[better]] = nearest_score[better]
            best_at[open_rows[better]] = new[nearest[better]]
            kept.append(new)
            kept_matrix = np.vstack([kept_matrix, matrix[new]])
        duplicate = best >= threshold
        kept_by[rows[duplicate]] = best_at[duplicate]
        similarity[rows[duplicate]] = best[duplicate]
        if len(open_rows):  # a kept row is its own (its best score above is its cosine with itself)
            kept_by[new], similarity[new] = new, 1.0
        start = rows[-1] + 1
    return kept_by, similarity


def groups_in_cluster(vectors: np.ndarray, keys, scores=None, threshold: float = 0.95,
                      block_elements: int = BLOCK_ELEMENTS) -> pd.DataFrame:
    """The near-duplicate groups of one cluster's rows (priority: the highest score, then the smallest key).

    Returns one row per member of a group of two or more: ``key``, ``duplicate_of`` (the kept row's
    key; null for the kept row itself), ``duplicate_group_size`` and ``duplicate_similarity``
    (cosine to the kept row; null for it).
    """
    keys = np.asarray(keys, dtype=object)
    n = len(keys)
    empty = pd.DataFrame({"key": keys[:0], DUPLICATE_OF: keys[:0], GROUP_SIZE: np.zeros(0, dtype=np.int64),
                          DUPLICATE_SIMILARITY: np.zeros(0, dtype=np.float32)})
    if n < 2:
        return empty
    score = np.zeros(n) if scores is None else np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    order = pd.DataFrame({"score": score, "key": keys}).sort_values(["score", "key"], ascending=[False, True],
                                                                    kind="stable").index.to_numpy()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)[order]
    # Identical vectors: one node each, placed where its best row is (first in priority order).
    distinct, first, node = np.unique(vectors, axis=0, return_index=True, return_inverse=True)
    node = node.reshape(-1)
    by_priority = np.argsort(first)
    rank = np.empty_like(by_priority)
    rank[by_priority] = np.arange(len(by_priority))
    kept_node, node_similarity = keep_greedily(distinct[by_priority], threshold, block_elements)
    row_node = rank[node]  # each row's node, in priority order of nodes
    head = first[by_priority]  # each node's best row (positions in `order`)
    kept_row = head[kept_node[row_node]]
    similarity = np.where(kept_node[row_node] == row_node, 1.0, node_similarity[row_node]).astype(np.float32)
    size = np.bincount(kept_row, minlength=n)[kept_row]
    members = np.flatnonzero(size > 1)
    if not len(members):
        return empty
    is_kept = kept_row[members] == members
    return pd.DataFrame({
        "key": keys[order[members]],
        DUPLICATE_OF: np.where(is_kept, None, keys[order[kept_row[members]]]),
        GROUP_SIZE: size[members].astype(np.int64),
        DUPLICATE_SIMILARITY: np.where(is_kept, np.nan, similarity[members]).astype(np.float32),
    })


def groups_bounded(vectors: np.ndarray, keys, scores=None, threshold: float = 0.95, max_rows: int = 50_000,
                   seed: int = 0, block_elements: int = BLOCK_ELEMENTS) -> pd.DataFrame:
    """``groups_in_cluster``, first splitting a cluster of more than ``max_rows`` rows by k-means.

    The greedy rule costs rows x kept rows, so a skewed cluster of a million distinct rows would cost
    a trillion products; split into parts of about ``max_rows / 2`` rows, it costs rows x ``max_rows``
    at most (pairs split by the new boundaries are missed, as between clusters). Bit-identical
    vectors always land in the same part. A cluster k-means cannot split (its rows are near copies
    of each other: cheap for the greedy rule, which keeps few of them) is compared whole, and so is
    one whose largest part would keep over 90 % of it (no runaway recursion).
    """
    keys = np.asarray(keys, dtype=object)
    if len(keys) <= max_rows:
        return groups_in_cluster(vectors, keys, scores, threshold, block_elements)
    parts = int(np.ceil(2 * len(keys) / max_rows))
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(keys), min(len(keys), MIN_POINTS_PER_CENTROID * parts * 4), replace=False)
    label = assign(vectors, train_centroids(vectors[sample], parts, seed))
    if np.bincount(label).max() > 0.9 * len(keys):  # k-means found no real split: compare it whole
        return groups_in_cluster(vectors, keys, scores, threshold, block_elements)
    scores = None if scores is None else np.asarray(scores)
    frames = [groups_bounded(vectors[label == part], keys[label == part],
                             None if scores is None else scores[label == part], threshold, max_rows, seed + 1,
                             block_elements) for part in np.unique(label)]
    return pd.concat(frames, ignore_index=True)
