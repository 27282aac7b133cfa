"""Near-duplicates: the grouping core against brute force. The Spark job on images scored by the shipped model,
with planted copies: tests/spark/test_dedup_job.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clipscore.retrieval.dedup import DUPLICATE_OF, GROUP_SIZE, assign, groups_bounded, groups_in_cluster, train_centroids


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _greedy_reference(vectors: np.ndarray, keys, scores, threshold: float) -> dict:
    """The rule, row by row in plain Python: key -> (kept row's key, cosine with it)."""
    order = sorted(range(len(keys)), key=lambda i: (-scores[i], keys[i]))
    kept: list[int] = []
    out = {}
    for i in order:
        near = [(float(vectors[i] @ vectors[k]), k) for k in kept if float(vectors[i] @ vectors[k]) >= threshold]
        if near:
            cosine, k = max(near, key=lambda t: (t[0], -order.index(t[1])))
            out[keys[i]] = (keys[k], cosine)
        else:
            kept.append(i)
            out[keys[i]] = (keys[i], 1.0)
    return out


# -------------------------------------------------------------------------------------------------
# Core
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("block_elements", [1 << 24, 900])  # one block, or many small ones
def test_groups_follow_the_greedy_rule_exactly(block_elements):
    rng = np.random.default_rng(1)
    base = _unit(rng.normal(size=(150, 16)))
    copies = _unit(base[:40] + 0.08 * rng.normal(size=(40, 16)))  # some within 0.95 of each other, some not
    vectors = np.vstack([base, copies, base[:3], base[:3]])  # and bit-identical triples
    keys = np.array([f"k{i:04d}" for i in range(len(vectors))], dtype=object)
    scores = rng.uniform(size=len(vectors))
    scores[-3:] = scores[:3]  # identical vectors, identical scores: the smaller key wins
    found = groups_in_cluster(vectors, keys, scores, threshold=0.95, block_elements=block_elements)
    expected = _greedy_reference(vectors, keys, scores, 0.95)
    sizes = pd.Series([k for k, _ in expected.values()]).value_counts()
    grouped = {key for key, (kept, _) in expected.items() if sizes[kept] > 1}
    assert set(found.key) == grouped and 0 < len(grouped) < len(keys)
    for row in found.itertuples(index=False):
        kept, cosine = expected[row.key]
        assert row.duplicate_group_size == sizes[kept]
        if kept == row.key:
            assert pd.isna(row.duplicate_of) and np.isnan(row.duplicate_similarity)
        else:
            assert row.duplicate_of == kept and row.duplicate_similarity == pytest.approx(cosine, abs=1e-5)
    duplicates = found[found.duplicate_of.notna()]
    assert (duplicates.duplicate_similarity >= 0.95).all()  # no chains: each within the threshold of its kept row
    kept_rows = [i for i, k in enumerate(keys) if expected[k][0] == k]
    cross = vectors[kept_rows] @ vectors[kept_rows].T
    assert (cross[~np.eye(len(kept_rows), dtype=bool)] < 0.95).all()  # no two kept rows are near-duplicates


def test_a_large_group_keeps_one_row_in_bounded_blocks():
    rng = np.random.default_rng(2)
    centre = _unit(rng.normal(size=(1, 16)))
    group = _unit(centre + 0.01 * rng.normal(size=(500, 16)))  # 500 mutual near-duplicates
    scores = rng.uniform(size=500)
    found = groups_in_cluster(group, np.arange(500), scores, 0.95, block_elements=64)
    assert len(found) == 500 and (found[GROUP_SIZE] == 500).all() and found[DUPLICATE_OF].isna().sum() == 1
    assert found.loc[found[DUPLICATE_OF].isna(), "key"].item() == int(np.argmax(scores))  # the best-scored is kept
    assert groups_in_cluster(group[:1], [0], None, 0.95).empty


def test_a_skewed_cluster_is_split_and_keeps_the_rule():
    rng = np.random.default_rng(4)
    base = _unit(rng.normal(size=(3000, 16)))
    copies = _unit(base[:300] + 0.005 * rng.normal(size=(300, 16)))
    vectors = np.vstack([base, copies, base[:50]])  # and 50 bit-identical copies
    keys = np.arange(len(vectors))
    found = groups_bounded(vectors, keys, None, 0.98, max_rows=500).set_index("key")
    kept_of = {k: (k if pd.isna(d) else d) for k, d in found[DUPLICATE_OF].items()}
    assert all(kept_of.get(3300 + i, 3300 + i) == kept_of.get(i, i) for i in range(50))  # identical: same part
    together = np.mean([kept_of.get(3000 + i, 3000 + i) == kept_of.get(i, i) for i in range(300)])
    assert together >= 0.9  # copies mostly land with their original despite the split
    dups = found[found[DUPLICATE_OF].notna()]
    cosine = np.einsum("ij,ij->i", vectors[dups.index.to_numpy(int)], vectors[dups[DUPLICATE_OF].to_numpy(int)])
    assert (cosine >= 0.98 - 1e-6).all()  # the rule holds in every part
    # 2,000 near copies of one image with parts of 100: at most one kept row per part, every row grouped.
    blob = _unit(base[:1] + 0.001 * rng.normal(size=(2000, 16)))
    whole = groups_bounded(blob, np.arange(2000), None, 0.98, max_rows=100)
    assert whole[DUPLICATE_OF].isna().sum() <= 40 and (whole[GROUP_SIZE] > 1).all()


def test_clusters_keep_near_duplicates_together():
    rng = np.random.default_rng(3)
    base = _unit(rng.normal(size=(2000, 32)))
    copies = _unit(base[:200] + 0.01 * rng.normal(size=(200, 32)))
    centroids = train_centroids(np.vstack([base, copies]), 8, seed=0)
    assert centroids.shape == (8, 32) and np.allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-4)
    assert (assign(base[:200], centroids) == assign(copies, centroids)).mean() >= 0.9
    assert train_centroids(base[:5], 1).shape == (1, 32)
