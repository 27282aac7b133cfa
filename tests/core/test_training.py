"""``clipscore train``'s core: options that fail fast, the validation metrics on known embeddings.

The Spark staging, TorchDistributor, resume and the saved folder: tests/spark/test_train.py."""
from __future__ import annotations

import pytest
import torch

from clipscore.config.coerce import ConfigError
from clipscore.training.metrics import recall_at_k, roc_auc
from clipscore.training.options import TrainOptions


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 1}, "at least 2"),
    ({"val_fraction": 1.5}, "between 0 and 1"),
    ({"lr": 0}, "lr > 0"),
    ({"image_col": "x", "caption_col": "x"}, "same column"),
])
def test_bad_train_options_fail_fast(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainOptions(**changes)


def test_metrics_on_known_embeddings():
    eye = torch.eye(4)
    assert recall_at_k(eye, eye)["text_to_image_recall@1"] == 1.0
    shuffled = eye[[1, 0, 2, 3]]
    r = recall_at_k(eye, shuffled)
    assert r["image_to_text_recall@1"] == 0.5 and r["image_to_text_recall@5"] == 1.0
    assert roc_auc(torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.2])) == 1.0
    assert roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([0.9, 0.8])) == 0.0
    assert roc_auc(torch.tensor([0.5]), torch.tensor([0.5])) == 0.5
