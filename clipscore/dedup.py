"""Near-duplicate groups among stored embeddings (numpy, FAISS and SciPy; no Spark).

Two steps, each usable alone:

* ``train_centroids`` / ``assign``: spherical k-means (FAISS) on a sample, then each vector's nearest
  centroid. Near-duplicates (cosine close to 1) almost always share their nearest centroid, so
  comparing rows only within their cluster finds them at linear cost; a pair split by a cluster
  boundary is missed (the benchmark measures how often against brute force).
* ``groups_in_cluster``: the exact comparison within one cluster. Rows with bit-identical vectors
  are one node (a placeholder image repeated a million times costs one comparison); the others are
  compared in blocks of bounded size, each row keeping at most ``max_neighbours`` of its neighbours
  at or above ``threshold`` (enough to connect any group: memory stays linear in the cluster). A
  group is a connected component of that graph; its representative is the row with the highest
  score (ties: the smallest key), and every other member gets ``duplicate_of`` = that key.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from clipscore.vectors import BLOCK_ELEMENTS, similarity_blocks

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


def neighbour_edges(matrix: np.ndarray, threshold: float, max_neighbours: int = 32,
                    block_elements: int = BLOCK_ELEMENTS) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) pairs with cosine >= ``threshold``, i != j, at most ``max_neighbours`` per row (its closest)."""
    sources, targets = [], []
    for start, block in similarity_blocks(matrix, block_elements):
        rows = np.arange(start, start + len(block))
        block[np.arange(len(block)), rows] = -np.inf  # not its own neighbour
        hits = block >= threshold
        counts = hits.sum(axis=1)
        if not counts.any():
            continue
        crowded = counts > max_neighbours
        if crowded.any():  # keep each crowded row's closest max_neighbours
            part = np.argpartition(-block[crowded], max_neighbours - 1, axis=1)[:, :max_neighbours]
            mask = np.zeros_like(hits[crowded])
            np.put_along_axis(mask, part, True, axis=1)
            hits[crowded] &= mask
        i, j = np.nonzero(hits)
        sources.append(rows[i])
        targets.append(j)
    if not sources:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(sources).astype(np.int64), np.concatenate(targets).astype(np.int64)


def groups_in_cluster(vectors: np.ndarray, keys, scores=None, threshold: float = 0.95,
                      max_neighbours: int = 32, block_elements: int = BLOCK_ELEMENTS) -> pd.DataFrame:
    """The near-duplicate groups of one cluster's rows.

    Returns one row per member of a group of two or more: ``key``, ``duplicate_of`` (the
    representative's key; null for the representative itself), ``duplicate_group_size`` and
    ``duplicate_similarity`` (cosine to the representative; null for it).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    keys = np.asarray(keys, dtype=object)
    n = len(keys)
    empty = pd.DataFrame({"key": keys[:0], DUPLICATE_OF: keys[:0], GROUP_SIZE: np.zeros(0, dtype=np.int64),
                          DUPLICATE_SIMILARITY: np.zeros(0, dtype=np.float32)})
    if n < 2:
        return empty
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    distinct, node = np.unique(vectors, axis=0, return_inverse=True)
    node = node.reshape(-1)
    i, j = neighbour_edges(distinct, threshold, max_neighbours, block_elements)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(len(distinct), len(distinct)))
    _, label = connected_components(graph, directed=False)
    frame = pd.DataFrame({"key": keys, "group": label[node],
                          "score": np.zeros(n) if scores is None else np.nan_to_num(np.asarray(scores, dtype=np.float64),
                                                                                      nan=-np.inf),
                          "row": np.arange(n)})
    size = frame.groupby("group")["key"].transform("size").to_numpy()
    frame = frame[size > 1].assign(**{GROUP_SIZE: size[size > 1]})
    if frame.empty:
        return empty
    frame = frame.sort_values(["group", "score", "key"], ascending=[True, False, True], kind="stable")
    first = ~frame["group"].duplicated()
    rep_row = frame["row"].where(first).ffill().astype(np.int64).to_numpy()
    rows = frame["row"].to_numpy()
    similarity = np.einsum("ij,ij->i", vectors[rows], vectors[rep_row]).astype(np.float32)
    return pd.DataFrame({
        "key": frame["key"].to_numpy(),
        DUPLICATE_OF: np.where(first.to_numpy(), None, keys[rep_row]),
        GROUP_SIZE: frame[GROUP_SIZE].to_numpy(np.int64),
        DUPLICATE_SIMILARITY: np.where(first.to_numpy(), np.nan, similarity).astype(np.float32),
    })
