"""Better captions from stored embeddings: for an image, the nearest caption among a set of candidates (no Spark).

A row's suggestion is the candidate caption whose text embedding has the highest cosine with the row's
image embedding, other than the row's own caption text, kept only when it beats the row's own score by
more than ``margin``. Candidates are distinct caption texts with their stored text embeddings; the
search is exact (``vectors.best_matches``: FAISS flat inner product).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clipscore.retrieval.vectors import best_matches, decode_matrix

SUGGESTED_CAPTION = "suggested_caption"
SUGGESTED_SIMILARITY = "suggested_similarity"


@dataclass
class Candidates:
    """Distinct caption texts and their unit text embeddings (float32 [n, dim])."""

    captions: np.ndarray  # object
    vectors: np.ndarray

    @classmethod
    def from_cells(cls, captions, cells, dtype: str) -> "Candidates":
        """From a frame's caption texts and stored text embedding cells (nulls and repeated texts dropped)."""
        frame = pd.DataFrame({"caption": list(captions), "cell": list(cells)}).dropna()
        frame = frame.drop_duplicates("caption")
        matrix, present = decode_matrix(frame["cell"].tolist(), dtype)
        return cls(frame["caption"].to_numpy(dtype=object)[present], matrix)

    def __len__(self) -> int:
        return len(self.captions)


def suggest(images: np.ndarray, own_captions, own_scores, candidates: Candidates,
            margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(suggested caption or None, its cosine or NaN) per query image.

    The two best candidates are enough: at most one of them has the row's own text (candidates are
    distinct), so the best other one is among them.
    """
    n = len(images)
    captions = np.full(n, None, dtype=object)
    scores = np.full(n, np.nan, dtype=np.float32)
    if n == 0 or len(candidates) == 0:
        return captions, scores
    found, index = best_matches(images, candidates.vectors, min(2, len(candidates)))
    own_captions = np.asarray(own_captions, dtype=object)
    own_scores = np.asarray(own_scores, dtype=np.float64)
    for slot in range(index.shape[1] - 1, -1, -1):  # the best slot last, so it wins where both qualify
        ok = index[:, slot] >= 0
        text = np.where(ok, candidates.captions[np.maximum(index[:, slot], 0)], None)
        other = ok & (text != own_captions)
        captions[other] = text[other]
        scores[other] = found[other, slot]
    better = ~np.isnan(scores) & (scores > own_scores + margin)
    captions[~better] = None
    scores[~better] = np.nan
    return captions, scores
