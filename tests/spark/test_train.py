"""``clipscore train``: staging with Spark, contrastive training, resume, TorchDistributor, the saved folder.

The options and the metrics alone: tests/core/test_training.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from clipscore.config.coerce import ConfigError
from clipscore.config.job import ScoreConfig
from clipscore.scoring.scorer import PairScorer
from clipscore.devtools.synthetic import generate
from clipscore.training.options import TrainOptions
from support.family_reference import reference_clip

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory) -> str:
    from clipscore.devtools.recipe import write_init

    return str(write_init(tmp_path_factory.mktemp("init") / "tiny", image_size=32, width=32, layers=2, projection=32, patch=8))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, bad_images) -> tuple[str, pd.DataFrame]:
    """320 synthetic pairs plus broken rows, as a Parquet table."""
    df = generate(320, seed=5, size=32)[["id", "image", "caption"]]
    broken = pd.DataFrame({"id": ["b1", "b2", "b3", "b4"],
                           "image": [None, bad_images["truncated"][0], df.image[0], b"not an image"],
                           "caption": ["a red circle", "a red circle", None, "a red circle"]})
    path = tmp_path_factory.mktemp("shapes") / "shapes.parquet"
    pd.concat([df, broken], ignore_index=True).to_parquet(path)
    return str(path), df


def _options(shapes, init_dir, out: Path, **changes) -> TrainOptions:
    values = dict(input=shapes[0], output=str(out), init=init_dir, epochs=3, batch_size=32, lr=3e-3,
                  val_fraction=0.2, checkpoint_every=4, seed=0)
    return TrainOptions(**{**values, **changes})


def test_training_lowers_the_loss_counts_bad_rows_and_round_trips_through_score(spark, shapes, init_dir, tmp_path):
    from transformers import CLIPModel

    from clipscore.jobs.train import run_train

    out = tmp_path / "model"
    record = run_train(spark, _options(shapes, init_dir, out))
    losses = [h["train_loss"] for h in record["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.05
    assert record["data"]["train"] + record["data"]["val"] == 320
    assert record["data"]["skipped"] == {"image_null": 1, "image_truncated": 1, "caption_null": 1,
                                         "image_undecodable": 1}
    assert {"auc_true_vs_swapped", "image_to_text_recall@5", "text_to_image_recall@1"} <= set(record["history"][-1]["val"])
    assert (out / "TRAINING.md").is_file() and json.loads((out / "training.json").read_text())["epoch"] == 3
    assert not Path(str(out) + ".clipscore-train").exists()  # the work dir is removed after success

    # The folder loads in `clipscore score` as it is, with exactly the trained weights.
    scorer = PairScorer.from_config(ScoreConfig(model=str(out), device="cpu", precision="fp32"))
    try:
        loaded = scorer.primary.model.model.state_dict()
        saved = CLIPModel.from_pretrained(out).state_dict()
        assert all(torch.equal(loaded[k], saved[k]) for k in saved)
        df = shapes[1].iloc[:6]
        scores = scorer.score_frame(df.image, df.caption)["similarity"].to_numpy()
    finally:
        scorer.close()
    from PIL import Image
    import io

    ref = [reference_clip(str(out), Image.open(io.BytesIO(b)).convert("RGB"), c) for b, c in zip(df.image, df.caption)]
    np.testing.assert_allclose(scores, ref, atol=1e-5)


def test_two_processes_through_torch_distributor(spark, shapes, init_dir, tmp_path):
    from transformers import CLIPModel

    from clipscore.jobs.train import run_train

    out = tmp_path / "ddp"
    record = run_train(spark, _options(shapes, init_dir, out, epochs=1, num_processes=2))
    assert record["world_size"] == 2 and record["history"][0]["train_loss"] > 0
    assert record["train_rows"] <= record["data"]["train"]
    CLIPModel.from_pretrained(out)  # the checkpoint it saved loads


def test_a_killed_run_resumes_from_its_checkpoint(spark, shapes, init_dir, tmp_path):
    from clipscore.jobs.train import run_train

    out = tmp_path / "resumed"
    work = Path(str(out) + ".clipscore-train")
    cmd = [sys.executable, "-m", "clipscore.jobs.cli", "train", "--input", shapes[0], "--init", init_dir, "--output", str(out),
           "--epochs", "3", "--batch-size", "32", "--lr", "3e-3", "--val-fraction", "0.2", "--set", "checkpoint_every=2",
           "--master", "local[1]"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    progress = work / "checkpoint" / "progress.json"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if progress.is_file() and json.loads(progress.read_text())["global_step"] >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the training finished before it could be killed"
        killed_at = json.loads(progress.read_text())["global_step"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "model.safetensors").exists()
    record = run_train(spark, _options(shapes, init_dir, out, checkpoint_every=2))
    assert record["resumed_from"] and record["resumed_from"][0] >= killed_at >= 2
    assert record["epoch"] == 3 and (out / "model.safetensors").is_file()


def test_only_clip_inits_are_trained(family_dirs, tmp_path):
    from clipscore.jobs.train import check_init

    with pytest.raises(ConfigError, match="siglip model; clipscore train trains CLIP"):
        check_init(family_dirs["siglip"])
    with pytest.raises(ConfigError, match="neither a saved model nor a usable config folder"):
        (tmp_path / "empty").mkdir()
        check_init(str(tmp_path / "empty"))
