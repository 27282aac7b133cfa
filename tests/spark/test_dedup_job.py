"""Near-duplicates: the Spark job on images scored by the shipped model, with planted copies (re-encoded, resized,
slightly cropped) among images of distinct colours. The grouping core: tests/core/test_dedup.py."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clipscore.config.coerce import ConfigError
from clipscore.retrieval.dedup import DUPLICATE_OF, GROUP_SIZE
from clipscore.devtools.synthetic import COPY_KINDS, generate, near_copy

MODEL = str(Path(__file__).resolve().parents[2] / "models" / "clipscore-shapes")
THRESHOLD = 0.97


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
