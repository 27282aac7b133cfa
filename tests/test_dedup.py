"""Near-duplicates: the grouping core against brute force, then the Spark job on images scored by the shipped
model, with planted copies (re-encoded, resized, slightly cropped) among images of distinct colours."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipscore.config.coerce import ConfigError
from clipscore.retrieval.dedup import DUPLICATE_OF, GROUP_SIZE, assign, groups_bounded, groups_in_cluster, train_centroids
from clipscore.devtools.synthetic import COPY_KINDS, generate, near_copy

MODEL = str(Path(__file__).resolve().parents[1] / "models" / "clipscore-shapes")
THRESHOLD = 0.97


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


# -------------------------------------------------------------------------------------------------
# The job on real images
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted(spark, tmp_path_factory, tiny_cfg):
    """One image per colour (8 distinct images), three copies of each of the first four, a broken row."""
    from clipscore.jobs.score import run_score

    root = tmp_path_factory.mktemp("dedup")
    pool = generate(80, seed=31, size=128)
    distinct = pool.drop_duplicates("color").reset_index(drop=True)
    rows = [(f"d{i}", r.image, r.caption, f"d{i}") for i, r in distinct.iterrows()]
    for i in range(4):
        for how in COPY_KINDS:
            rows.append((f"d{i}-{how}", near_copy(distinct.image[i], how), distinct.caption[i], f"d{i}"))
    rows.append(("broken", b"not an image", "a red circle", None))
    table = pd.DataFrame(rows, columns=["id", "image", "caption", "original"])
    table.to_parquet(root / "src.parquet")
    run_score(spark, tiny_cfg.replace(model=MODEL, input=str(root / "src.parquet"), output=str(root / "scored"),
                                      write_embeddings=True))
    return str(root / "scored"), table


@pytest.mark.parametrize("clusters", [1, 3])
def test_dedup_finds_planted_copies_and_no_false_groups(spark, planted, tmp_path, clusters):
    from clipscore.jobs.dedup import DedupOptions, run_dedup

    path, table = planted
    out = str(tmp_path / "deduped")
    summary = run_dedup(spark, DedupOptions(input=path, threshold=THRESHOLD, output=out, clusters=clusters))
    marked = spark.read.format("delta").load(out).toPandas().set_index("id")
    assert len(marked) == len(table)  # every row kept
    truth = table.set_index("id")
    for i in range(8):
        members = truth.index[truth.original == f"d{i}"]
        group = marked.loc[members]
        if i < 4:  # the original and its three copies: one group of four, one kept row
            assert (group[GROUP_SIZE] == 4).all() and group[DUPLICATE_OF].isna().sum() == 1, group
            kept = group.index[group[DUPLICATE_OF].isna()][0]
            assert (group.drop(index=kept)[DUPLICATE_OF] == kept).all()
            assert group.loc[kept, "similarity"] == group.similarity.max()  # the best-captioned copy is kept
            assert (group.drop(index=kept).duplicate_similarity >= THRESHOLD).all()
        else:  # distinct images: alone
            assert (group[GROUP_SIZE] == 1).all() and group[DUPLICATE_OF].isna().all()
    assert pd.isna(marked.loc["broken", GROUP_SIZE]) and pd.isna(marked.loc["broken", DUPLICATE_OF])  # not compared
    assert summary["duplicates"] == 12 and summary["groups"] == 4 and summary["rows_compared"] == len(table) - 1
    assert summary["largest"][GROUP_SIZE].tolist() == [4, 4, 4, 4] and summary["clusters"] == clusters
    properties = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{out}`").collect()}
    assert properties["clipscore.dedup.threshold"] == str(THRESHOLD) and properties["clipscore.dedup.key"] == "id"


def test_dedup_refuses_a_repeated_key_and_a_bad_threshold(spark, planted, tmp_path):
    from clipscore.jobs.dedup import DedupOptions, run_dedup

    path, _ = planted
    with pytest.raises(ConfigError, match="repeats values"):
        run_dedup(spark, DedupOptions(input=path, threshold=0.9, key="caption"))
    with pytest.raises(ConfigError, match="--key 'nope'"):
        run_dedup(spark, DedupOptions(input=path, threshold=0.9, key="nope"))
    for bad in (0, 1.5, float("nan"), None):
        with pytest.raises(ConfigError, match="--threshold"):
            DedupOptions(input=path, threshold=bad)


def test_dedup_cli_prints_the_groups(spark, planted, capsys):
    from clipscore.jobs.cli import main

    path, _ = planted
    assert main(["dedup", "--input", path, "--threshold", str(THRESHOLD)]) == 0
    printed = capsys.readouterr().out
    assert "12 of 20 rows are near-duplicates" in printed and "in 4 groups" in printed
    assert main(["dedup", "--input", path, "--threshold", "2"]) == 2
    # --kind text: the copies share their original's caption, so identical caption embeddings group them.
    assert main(["dedup", "--input", path, "--threshold", "0.999", "--kind", "text"]) == 0
    assert "12 of 20 rows are near-duplicates" in capsys.readouterr().out
