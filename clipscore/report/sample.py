"""The report's sample, re-embedded: every sampled image against every sampled caption, and likely mislabels.

Pure pandas and torch (no Spark). The embeddings come from the scorer itself (``PairScorer.prepare``
and the primary model's encoder), with the model the table was scored with, so the matrix's diagonal
is the table's own ``similarity`` for those rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from clipscore.config.options import ScoringOptions
from clipscore.scoring.scorer import PairScorer


@dataclass
class SampleMatrix:
    rows: pd.DataFrame  # the sampled rows that could be embedded, in matrix order
    matrix: np.ndarray  # [n, n]: image i against caption j; the diagonal is each row's own pair


def similarity_matrix(sample: pd.DataFrame, options: ScoringOptions, image_col: str, caption_col: str) -> SampleMatrix:
    """Embed the sample's images and captions once each with the primary model; cosine of every pair."""

    scorer = PairScorer.from_config(options)
    try:
        prepared = scorer.prepare(sample[image_col], sample[caption_col])
        ok = np.flatnonzero(prepared.text_index >= 0)
        if len(ok) == 0:
            return SampleMatrix(sample.iloc[[]], np.zeros((0, 0), dtype=np.float32))
        run = scorer.primary
        images = run.encoder.embed_images(prepared.pixel_values[0], run.preprocess.finish)
        texts = run.encoder.embed_texts(**prepared.text_inputs[0])
    finally:
        scorer.close()
    image_rows = images[torch.from_numpy(prepared.image_index[ok])]
    text_rows = texts[torch.from_numpy(prepared.text_index[ok])]
    return SampleMatrix(sample.iloc[ok].reset_index(drop=True), (image_rows @ text_rows.T).numpy())


def likely_mislabels(sample: SampleMatrix, caption_col: str, margin: float) -> pd.DataFrame:
    """Rows where another sampled caption beats the row's own by more than ``margin``.

    Columns: the row, ``own_score``, ``suggested_caption``, ``suggested_score``, ``margin``; the
    largest margins first. Identical caption texts are not counted as "another caption".
    """
    if len(sample.rows) < 2:
        return sample.rows.assign(own_score=[], suggested_caption=[], suggested_score=[], margin=[])
    captions = sample.rows[caption_col].to_numpy()
    m = sample.matrix.copy()
    same_text = captions[None, :] == captions[:, None]
    own = np.diag(m).copy()
    m[same_text] = -np.inf
    best = m.argmax(axis=1)
    best_score = m[np.arange(len(m)), best]
    gap = best_score - own
    found = np.flatnonzero(gap > margin)
    found = found[np.argsort(-gap[found])]
    out = sample.rows.iloc[found].copy()
    out["own_score"] = own[found]
    out["suggested_caption"] = captions[best[found]]
    out["suggested_score"] = best_score[found]
    out["margin"] = gap[found]
    return out.reset_index(drop=True)
