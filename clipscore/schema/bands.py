"""Score bands: turn a cosine similarity into a readable, path-safe label that sorts in score order.

With edges [0.15, 0.20, ..., 0.35] the labels are ``b0_below_0.15``, ``b1_0.15_to_0.20``, ...,
``b6_0.35_and_above``; a row that could not be scored goes to ``error``. The index prefix keeps
lexical order equal to score order (zero-padded when there are ten or more bands).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

ERROR_BAND = "error"


def _fmt(edge: float) -> str:
    text = f"{edge:.2f}" if round(edge, 2) == edge else f"{edge:g}"
    return text.replace("-", "neg")


def band_labels(edges: Sequence[float]) -> list[str]:
    """Labels for ``len(edges) + 1`` bands, lowest score first."""
    width = len(str(len(edges)))
    labels = [f"b{0:0{width}d}_below_{_fmt(edges[0])}"]
    for i, (lo, hi) in enumerate(zip(edges, edges[1:]), start=1):
        labels.append(f"b{i:0{width}d}_{_fmt(lo)}_to_{_fmt(hi)}")
    labels.append(f"b{len(edges):0{width}d}_{_fmt(edges[-1])}_and_above")
    return labels


def assign_bands(similarity: pd.Series, edges: Sequence[float]) -> pd.Series:
    """Band label per row; ``error`` where similarity is null. Band i holds edges[i-1] <= s < edges[i]."""
    labels = np.array(band_labels(edges), dtype=object)
    values = similarity.to_numpy(dtype=np.float64, na_value=np.nan)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    out = labels[np.clip(idx, 0, len(labels) - 1)]
    out[np.isnan(values)] = ERROR_BAND
    return pd.Series(out, index=similarity.index, dtype=object)
