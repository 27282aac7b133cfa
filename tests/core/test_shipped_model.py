"""The small CLIP shipped in ``models/clipscore-shapes``: its scores mean something on fresh data.

A property of the committed file (trained by the recipe in its TRAINING.md), checked on a split the
generator draws now with a seed the training never saw.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clipscore.config.job import ScoreConfig
from clipscore.scoring.scorer import PairScorer
from clipscore.devtools.synthetic import generate, swapped_captions
from clipscore.training.metrics import roc_auc

MODEL = Path(__file__).resolve().parents[2] / "models" / "clipscore-shapes"


def test_shipped_model_separates_true_from_swapped_captions_on_a_fresh_split():
    df = generate(400, seed=987_654)
    wrong = swapped_captions(df, seed=3)
    scorer = PairScorer.from_config(ScoreConfig(model=str(MODEL), device="cpu", precision="fp32", batch_size=100))
    try:
        true = scorer.score_frame(df.image, df.caption)["similarity"].to_numpy(np.float64)
        swapped = scorer.score_frame(df.image, pd.Series(wrong.to_numpy()))["similarity"].to_numpy(np.float64)
    finally:
        scorer.close()
    auc = roc_auc(torch.from_numpy(true), torch.from_numpy(swapped))
    assert auc >= 0.95, auc
    assert np.median(true) > np.median(swapped) + 0.1


def test_shipped_model_is_small_and_documented():
    weights = MODEL / "model.safetensors"
    assert weights.stat().st_size < 8 * 1024 * 1024
    card = (MODEL / "TRAINING.md").read_text()
    assert "AUC" in card and "clipscore train" in card
