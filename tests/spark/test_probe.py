"""``clipscore probe``: a linear head on stored embeddings learns a label, and ``heads:`` then scores new rows.

The shipped shapes model (models/clipscore-shapes) on generated shapes: the label is "the shape is red".
The head's validation ROC AUC is MLlib's; here it is also recomputed independently on a new table (the
rank statistic written out with numpy), scored with the head through ``heads:``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from clipscore.config.coerce import ConfigError
from clipscore.devtools.synthetic import generate
from clipscore.jobs.cli import main as cli_main
from clipscore.jobs.probe import ProbeOptions, run_probe
from clipscore.jobs.score import run_score

MODEL = str(Path(__file__).resolve().parents[2] / "models" / "clipscore-shapes")


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: P(score of a positive > score of a negative), ties count half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


@pytest.fixture(scope="module")
def labelled_table(spark, tmp_path_factory, tiny_cfg):
    root = tmp_path_factory.mktemp("probe")
    df = generate(600, seed=21).drop(columns=["template"])
    df["is_red"] = (df.color == "red").astype(int)
    source = str(root / "src.parquet")
    spark.createDataFrame(df).write.parquet(source)
    scored = str(root / "scored")
    run_score(spark, tiny_cfg.replace(model=MODEL, input=source, output=scored, write_embeddings=True))
    return scored, root


def test_probe_learns_a_colour_and_the_head_scores_a_new_table(spark, labelled_table, tiny_cfg):
    scored, root = labelled_table
    head = str(root / "red.safetensors")
    record = run_probe(spark, ProbeOptions(input=scored, label_col="is_red", output=head))
    assert record["val_auc"] >= 0.95
    with safe_open(head, framework="pt") as handle:
        meta = handle.metadata()
    assert float(meta["clipscore.probe.val_auc"]) == pytest.approx(record["val_auc"], abs=1e-6)
    assert meta["clipscore.output"] == "sigmoid" and meta["clipscore.probe.label_col"] == "is_red"

    fresh = generate(200, seed=99).drop(columns=["template"])
    source = str(root / "fresh.parquet")
    spark.createDataFrame(fresh).write.parquet(source)
    out = str(root / "fresh_scored")
    run_score(spark, tiny_cfg.replace(model=MODEL, input=source, output=out, heads={"red": head}))
    got = spark.read.format("delta").load(out).select("id", "color", "head_red").toPandas()
    assert got.head_red.between(0, 1).all()
    assert _auc((got.color == "red").astype(int).to_numpy(), got.head_red.to_numpy()) >= 0.95


def test_probe_on_binary_cells_and_from_the_cli(spark, labelled_table, tiny_cfg, tmp_path):
    scored, root = labelled_table
    binary = str(tmp_path / "binary")
    src = spark.read.format("delta").load(scored).select("id", "image", "caption", "color", "is_red")
    src.write.parquet(str(tmp_path / "src2.parquet"))
    run_score(spark, tiny_cfg.replace(model=MODEL, input=str(tmp_path / "src2.parquet"), output=binary,
                                      write_embeddings=True, embedding_format="binary16"))
    head = str(tmp_path / "red16.safetensors")
    assert cli_main(["probe", "--input", binary, "--label-col", "is_red", "--output", head]) == 0
    with safe_open(head, framework="pt") as handle:
        assert float(handle.metadata()["clipscore.probe.val_auc"]) >= 0.95


def test_probe_refuses_what_it_cannot_learn_from(spark, labelled_table, tmp_path):
    scored, _ = labelled_table
    with pytest.raises(ConfigError, match="not in"):
        run_probe(spark, ProbeOptions(input=scored, label_col="nope", output=str(tmp_path / "h.safetensors")))
    with pytest.raises(ConfigError, match="at least 5 of each"):
        run_probe(spark, ProbeOptions(input=scored, label_col="count", output=str(tmp_path / "h.safetensors")))
    with pytest.raises(ConfigError, match=".safetensors"):
        ProbeOptions(input=scored, label_col="is_red", output=str(tmp_path / "h.pt"))
