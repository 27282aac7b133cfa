"""Model families in the jobs: two models in one Spark pass, repeated --model flags (the core: tests/core/test_families.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

CAPTIONS = ("a red dog", "a cat on the grass", "the sea", "a photo of a blue car", "two birds", "a tree")


@pytest.fixture(scope="module")
def models(tiny_model_dir, family_dirs) -> dict[str, str]:
    """Family -> the model name clipscore takes for it."""
    return {"clip": tiny_model_dir, "siglip": family_dirs["siglip"], "siglip2": family_dirs["siglip2"],
            "open_clip": "open_clip:" + family_dirs["open_clip"]}


def test_two_model_spark_job_equals_each_model_alone(spark, tmp_path, models, tiny_cfg, odd_images, bad_images):
    from clipscore.jobs.provenance import table_provenance
    from clipscore.jobs.score import run_score
    from clipscore.scoring.scorer import score_pandas

    names = ["jpeg", "png", "rgba", "very_wide", "grayscale"]
    frame = pd.DataFrame({"id": [f"g{i}" for i in range(len(names))] + ["bad", "null"],
                          "image": [odd_images[n] for n in names] + [bad_images["truncated"][0], None],
                          "caption": [*CAPTIONS[: len(names)], "a dog", "a cat"]})
    source = tmp_path / "src.parquet"
    spark.createDataFrame(frame).repartition(2).write.parquet(str(source))
    cfg = tiny_cfg.replace(input=str(source), output=str(tmp_path / "out"),
                           models=[f"sig={models['siglip']}", f"oc={models['open_clip']}"])
    run_score(spark, cfg)
    result = spark.read.format("delta").load(str(tmp_path / "out")).toPandas().sort_values("id").reset_index(drop=True)
    assert {"similarity", "probability", "similarity_sig", "probability_sig", "similarity_oc"} <= set(result.columns)
    assert "probability_oc" not in result.columns
    frame = frame.sort_values("id").reset_index(drop=True)
    for name, family in (("sig", "siglip"), ("oc", "open_clip")):
        alone = score_pandas(frame, tiny_cfg.replace(model=models[family]))
        np.testing.assert_allclose(result[f"similarity_{name}"], alone["similarity"], atol=1e-6, equal_nan=True)
        if family == "siglip":
            np.testing.assert_allclose(result["probability_sig"], alone["probability"], atol=1e-6, equal_nan=True)
            np.testing.assert_allclose(result["similarity"], alone["similarity"], atol=1e-6, equal_nan=True)
            assert result["score_error"].fillna("").tolist() == alone["score_error"].fillna("").tolist()
    props = table_provenance(spark, str(tmp_path / "out"))
    import json

    recorded = json.loads(props["clipscore.models"])
    assert [(m["name"], m["model"]) for m in recorded] == [("sig", models["siglip"]), ("oc", models["open_clip"])]
    assert props["clipscore.model"] == models["siglip"]


def test_cli_takes_repeated_models_and_fails_fast_on_a_bad_one(tmp_path, models, capsys):
    from clipscore.jobs.cli import build_parser, config_from_args, main

    args = build_parser().parse_args(["score", "--input", "x", "--output", "y", "--model", f"a={models['clip']}",
                                      "--model", models["siglip"]])
    cfg = config_from_args(args)
    assert [m.name for m in cfg.models] == ["a", "tiny_siglip"] and cfg.model == models["clip"]
    one = config_from_args(build_parser().parse_args(["score", "--input", "x", "--output", "y", "--model", "open_clip:ViT-B-32/laion2b_s34b_b79k"]))
    assert one.models[0].model == "open_clip:ViT-B-32/laion2b_s34b_b79k" and not one.multi_model
    code = main(["score", "--input", str(tmp_path / "none"), "--output", str(tmp_path / "o"),
                 "--model", models["clip"], "--model", str(tmp_path / "missing-model")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
