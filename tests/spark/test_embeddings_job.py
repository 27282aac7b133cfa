"""``write_embeddings`` in the Spark job: array<float> (default) or binary embedding columns that agree with
similarity (the core: tests/core/test_embeddings.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipscore.schema.columns import decode_embedding
from clipscore.devtools.synthetic import generate

MODEL = str(Path(__file__).resolve().parents[2] / "models" / "clipscore-shapes")


@pytest.mark.parametrize("fmt", ["array", "binary16"])
def test_spark_job_writes_embedding_columns(spark, tmp_path, tiny_cfg, fmt):
    from pyspark.sql import types as T

    from clipscore.jobs.score import run_score

    df = generate(10, seed=6)[["id", "image", "caption"]]
    spark.createDataFrame(df).write.parquet(str(tmp_path / "src"))
    run_score(spark, tiny_cfg.replace(model=MODEL, input=str(tmp_path / "src"), output=str(tmp_path / "out"),
                                      write_embeddings=True, embedding_format=fmt))
    table = spark.read.format("delta").load(str(tmp_path / "out"))
    expected = T.ArrayType(T.FloatType()) if fmt == "array" else T.BinaryType()
    assert table.schema["image_embedding"].dataType == expected
    rows = table.select("similarity", "image_embedding", "text_embedding").toPandas()
    dots = [float(decode_embedding(i) @ decode_embedding(t)) for i, t in zip(rows.image_embedding, rows.text_embedding)]
    np.testing.assert_allclose(dots, rows.similarity, atol=1e-3)
