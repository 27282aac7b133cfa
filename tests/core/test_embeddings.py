"""``write_embeddings``: each scored row's embeddings from the same pass, stored compactly, agreeing with similarity.

Formats: ``array`` (array<float>, the default) and ``binary16``/``binary32`` cells. The Spark job's columns:
tests/spark/test_embeddings_job.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipscore.schema.columns import decode_embedding
from clipscore.scoring.scorer import PairScorer
from clipscore.devtools.synthetic import generate

MODEL = str(Path(__file__).resolve().parents[2] / "models" / "clipscore-shapes")


@pytest.mark.parametrize("fmt, dtype, tolerance", [("binary16", "float16", 1e-3), ("binary32", "float32", 1e-6),
                                                  ("array", "float32", 1e-6)])
def test_stored_embeddings_agree_with_similarity(tiny_cfg, fmt, dtype, tolerance):
    df = generate(12, seed=4)
    images = pd.Series([*df.image, None, b"broken"], dtype=object)
    captions = pd.Series([*df.caption, "a red circle", "a red circle"])
    scorer = PairScorer.from_config(tiny_cfg.replace(model=MODEL, write_embeddings=True, embedding_format=fmt))
    try:
        out = scorer.score_frame(images, captions)
    finally:
        scorer.close()
    assert list(out.columns) == ["similarity", "image_embedding", "text_embedding", "score_band", "score_error"]
    image = [decode_embedding(v, dtype) for v in out.image_embedding[:12]]
    text = [decode_embedding(v, dtype) for v in out.text_embedding[:12]]
    dots = np.array([float(i @ t) for i, t in zip(image, text)])
    np.testing.assert_allclose(dots, out.similarity[:12], atol=tolerance, rtol=0)
    assert all(abs(np.linalg.norm(v) - 1) < 10 * tolerance for v in image + text)
    if fmt == "array":  # a float32 vector per cell: array<float> in Spark
        assert isinstance(out.image_embedding[0], np.ndarray) and out.image_embedding[0].dtype == np.float32
    else:
        assert len(out.image_embedding[0]) == image[0].size * np.dtype(dtype).itemsize  # the documented storage
    assert out.image_embedding[12:].isna().all() and out.text_embedding[12:].isna().all()  # no score, no embedding


def test_several_models_store_one_pair_of_columns_each(tiny_cfg, tiny_model_dir):
    df = generate(4, seed=5)
    cfg = tiny_cfg.replace(models=[f"a={MODEL}", f"b={tiny_model_dir}"], write_embeddings=True)
    scorer = PairScorer.from_config(cfg)
    try:
        out = scorer.score_frame(df.image, df.caption)
    finally:
        scorer.close()
    assert [c for c in out.columns if "embedding" in c] == ["image_embedding_a", "text_embedding_a",
                                                           "image_embedding_b", "text_embedding_b"]
    for name in ("a", "b"):
        dots = [float(decode_embedding(i) @ decode_embedding(t))
                for i, t in zip(out[f"image_embedding_{name}"], out[f"text_embedding_{name}"])]
        np.testing.assert_allclose(dots, out[f"similarity_{name}"], atol=1e-3)
