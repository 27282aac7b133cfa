"""Score bands: readable, path-safe labels that sort in score order; edges are half-open."""
import re

import numpy as np
import pandas as pd

from clipscore.schema.bands import ERROR_BAND, assign_bands, band_labels

EDGES = (0.15, 0.20, 0.25, 0.28, 0.30, 0.35)


def test_labels_are_path_safe_and_sort_in_score_order():
    labels = band_labels(EDGES)
    assert labels[0] == "b0_below_0.15" and labels[-1] == "b6_0.35_and_above"
    assert labels == sorted(labels)
    assert all(re.fullmatch(r"[A-Za-z0-9_.]+", label) for label in labels)


def test_labels_sort_with_ten_or_more_bands_and_negative_edges():
    edges = [round(-0.5 + 0.1 * i, 2) for i in range(12)]
    labels = band_labels(edges)
    assert labels == sorted(labels) and len(labels) == 13
    assert "neg" in labels[0] and "-" not in "".join(labels)


def test_assignment_boundaries_and_errors():
    scores = pd.Series([-1.0, 0.1499, 0.15, 0.2799, 0.28, 0.35, 1.0, np.nan, None], dtype="float64")
    got = assign_bands(scores, EDGES).tolist()
    assert got == [
        "b0_below_0.15", "b0_below_0.15", "b1_0.15_to_0.20", "b3_0.25_to_0.28", "b4_0.28_to_0.30",
        "b6_0.35_and_above", "b6_0.35_and_above", ERROR_BAND, ERROR_BAND,
    ]


def test_assignment_keeps_the_index():
    scores = pd.Series([0.3, 0.1], index=[10, 20], dtype="float32")
    assert list(assign_bands(scores, EDGES).index) == [10, 20]
