"""Signals through the whole job: typed Spark columns, nulls that stay null, values equal to the pure core."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pyspark.sql import types as T
from safetensors.torch import save_file

from clipscore.jobs.score import run_score
from clipscore.scoring.scorer import score_pandas


def test_signals_are_typed_columns_equal_to_the_core(spark, tmp_path, tiny_cfg, odd_images, bad_images):
    head = tmp_path / "h.safetensors"
    torch.manual_seed(0)
    save_file({"layers.0.weight": torch.randn(4, 16), "layers.0.bias": torch.randn(4),
               "layers.2.weight": torch.randn(1, 4), "layers.2.bias": torch.randn(1)}, str(head))
    frame = pd.DataFrame({
        "id": ["a", "b", "c", "d", "e"],
        "image": [odd_images["jpeg"], odd_images["png"], bad_images["truncated"][0], None, odd_images["webp"]],
        "caption": ["a red dog on the grass", None, "ein Hund auf der Wiese", "a cat", "x " * 100],
    })
    source = tmp_path / "src.parquet"
    schema = T.StructType([T.StructField("id", T.StringType()), T.StructField("image", T.BinaryType()),
                           T.StructField("caption", T.StringType())])
    spark.createDataFrame(frame, schema).repartition(2).write.parquet(str(source))
    cfg = tiny_cfg.replace(input=str(source), output=str(tmp_path / "out"), signals=("image", "caption", "language", "phash"),
                           concepts={"dog": ["a dog"], "shot": {"positive": ["a screenshot"], "negative": ["a photo"]}},
                           heads={"h": str(head)})
    run_score(spark, cfg)
    table = spark.read.format("delta").load(cfg.output)
    types = {f.name: f.dataType for f in table.schema.fields}
    assert types["image_width"] == T.IntegerType() and types["image_bytes"] == T.LongType()
    assert types["caption_truncated"] == T.BooleanType() and types["image_phash"] == T.StringType()
    assert types["caption_language_score"] == T.FloatType() and types["concept_shot"] == T.FloatType()
    got = table.toPandas().sort_values("id").reset_index(drop=True)
    expected = score_pandas(frame, cfg).sort_values("id").reset_index(drop=True)
    for column in ("image_width", "image_height", "image_format", "image_bytes", "caption_chars", "caption_words",
                   "caption_tokens", "caption_truncated", "caption_language", "image_phash"):
        assert got[column].astype(object).where(got[column].notna(), None).tolist() == \
            expected[column].astype(object).where(expected[column].notna(), None).tolist(), column
    for column in ("caption_language_score", "concept_dog", "concept_shot", "head_h"):
        np.testing.assert_allclose(got[column].to_numpy(np.float64), expected[column].to_numpy(np.float64),
                                   atol=1e-6, equal_nan=True)
    # Nulls are nulls in Spark (not NaN, not 0): an unloadable image, a null caption.
    assert table.filter("id = 'c' AND image_width IS NULL AND caption_chars = 22").count() == 1
    assert table.filter("id = 'b' AND caption_tokens IS NULL AND image_width = 64").count() == 1
    assert table.filter("id = 'c' AND concept_dog IS NULL AND head_h IS NULL").count() == 1
    assert table.filter("id = 'e' AND caption_truncated").count() == 1
    assert got.loc[got.id == "b", "concept_dog"].notna().all()  # described though its caption is null
