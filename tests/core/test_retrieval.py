"""Search and suggested captions over stored embeddings: the pure core (numpy). The Spark jobs on a scored
table: tests/spark/test_retrieval_jobs.py."""
from __future__ import annotations

import numpy as np
import pytest

from clipscore.retrieval.suggest import Candidates, suggest
from clipscore.retrieval.vectors import TopK, decode_matrix, detect_dtype, merge_top_k, top_k


# -------------------------------------------------------------------------------------------------
# Core (numpy)
# -------------------------------------------------------------------------------------------------
def test_top_k_keeps_the_best_in_order_and_breaks_ties_by_position():
    scores = np.array([0.1, 0.9, 0.5, 0.9, -0.2, 0.7], dtype=np.float32)
    best = top_k(scores, 3, np.array([10, 11, 12, 13, 14, 15]))
    assert best.positions.tolist() == [11, 13, 15] and best.scores.tolist() == pytest.approx([0.9, 0.9, 0.7])
    merged = merge_top_k([top_k(scores[:3], 2, np.arange(3)), top_k(scores[3:], 2, np.arange(3, 6)),
                          TopK.empty()], 3)
    assert merged.positions.tolist() == [1, 3, 5]
    assert top_k(scores, 10).positions.tolist() == [1, 3, 5, 2, 0, 4]  # k beyond the rows: all of them


def test_decode_matrix_skips_nulls_detects_dtype_and_refuses_mixed_widths():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cells = [vectors[0].astype("<f2").tobytes(), None, vectors[2].astype("<f2").tobytes()]
    matrix, present = decode_matrix(cells, "float16")
    assert present.tolist() == [0, 2] and np.allclose(matrix, vectors[[0, 2]], atol=1e-3)
    assert detect_dtype(cells[0]) == "float16" and detect_dtype(vectors[1].astype("<f4").tobytes()) == "float32"
    assert detect_dtype(b"\x00" * 16) is None  # not a unit vector in either dtype
    with pytest.raises(ValueError, match="mixes models or dtypes"):
        decode_matrix([cells[0], vectors[1].astype("<f4").tobytes()], "float16")


def test_suggest_skips_the_row_own_text_and_needs_the_margin():
    axes = np.eye(3, dtype=np.float32)
    pool = Candidates(np.array(["own", "other", "far"], dtype=object), axes)
    image = np.array([[0.8, 0.6, 0.0]], dtype=np.float32)  # nearest "own" (0.8), then "other" (0.6)
    text, score = suggest(image, ["own"], [0.1], pool, margin=0.02)
    assert text.tolist() == ["other"] and score[0] == pytest.approx(0.6)
    text, score = suggest(image, ["own"], [0.59], pool, margin=0.02)  # 0.6 does not beat 0.59 by 0.02
    assert text.tolist() == [None] and np.isnan(score[0])
    text, _ = suggest(image, ["something else"], [0.1], pool, margin=0.02)
    assert text.tolist() == ["own"]  # another row's identical text is a fine suggestion for this one
