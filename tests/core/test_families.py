"""Model families: each scored exactly as its own library scores it, through one interface.

Tiny randomly initialised models of every family are built offline in the fixtures (SigLIP's and
SigLIP2's SentencePiece tokenizers are trained there too); ``family_reference`` scores one pair at a
time the way each family's model card does.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipscore.scoring.plan import planned_columns
from clipscore.config.coerce import ConfigError
from clipscore.config.job import ScoreConfig
from clipscore.models import describe, family_of
from clipscore.scoring.scorer import PairScorer
from support.family_reference import reference_clip, reference_open_clip, reference_siglip, reference_siglip2

REPO = Path(__file__).resolve().parents[2]

IMAGES = ("jpeg", "png", "rgba", "very_wide", "grayscale", "cmyk_jpeg")
CAPTIONS = ("a red dog", "a cat on the grass", "the sea", "a photo of a blue car", "two birds", "a tree")
FAMILIES = ("clip", "siglip", "siglip2", "open_clip")


@pytest.fixture(scope="module")
def models(tiny_model_dir, family_dirs) -> dict[str, str]:
    """Family -> the model name clipscore takes for it."""
    return {"clip": tiny_model_dir, "siglip": family_dirs["siglip"], "siglip2": family_dirs["siglip2"],
            "open_clip": "open_clip:" + family_dirs["open_clip"]}


def _reference(family: str, model: str, image: Image.Image, caption: str) -> tuple[float, float | None]:
    if family == "clip":
        return reference_clip(model, image, caption), None
    if family == "siglip":
        return reference_siglip(model, image, caption)
    if family == "siglip2":
        return reference_siglip2(model, image, caption)
    return reference_open_clip(model.removeprefix("open_clip:"), image, caption)


def _cfg(tiny_cfg: ScoreConfig, *models: str, **changes) -> ScoreConfig:
    if len(models) == 1:
        return tiny_cfg.replace(model=models[0], **changes)
    return tiny_cfg.replace(models=list(models), **changes)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_read_from_the_model(models, family):
    assert family_of(models[family]) == family
    assert describe(models[family]).has_probability == (family in ("siglip", "siglip2"))


@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_scores_equal_the_family_reference(models, tiny_cfg, odd_images, family):
    images = [odd_images[name] for name in IMAGES]
    scorer = PairScorer.from_config(_cfg(tiny_cfg, models[family]))
    try:
        out = scorer.score_frame(pd.Series(images), pd.Series(CAPTIONS))
    finally:
        scorer.close()
    assert out["score_error"].isna().all()
    refs = [_reference(family, models[family], Image.open(io.BytesIO(b)).convert("RGB"), c)
            for b, c in zip(images, CAPTIONS)]
    np.testing.assert_allclose(out["similarity"], [r[0] for r in refs], atol=1e-5, rtol=0)
    assert np.ptp(out["similarity"]) > 1e-3  # not a constant: the comparison means something
    if family in ("siglip", "siglip2"):
        np.testing.assert_allclose(out["probability"], [r[1] for r in refs], atol=1e-5, rtol=0)
        assert list(out.columns) == ["similarity", "probability", "score_band", "score_error"]
    else:
        assert list(out.columns) == ["similarity", "score_band", "score_error"]


@pytest.mark.parametrize("family", FAMILIES)
def test_long_captions_are_truncated_to_the_model(models, tiny_cfg, odd_images, family):
    scorer = PairScorer.from_config(_cfg(tiny_cfg, models[family]))
    try:
        out = scorer.score_frame(pd.Series([odd_images["jpeg"]] * 3),
                                 pd.Series(["a red dog " * 300, "a red dog " * 60, "a red dog"]))
    finally:
        scorer.close()
    assert out["score_error"].isna().all()
    assert out["similarity"][0] == pytest.approx(out["similarity"][1], abs=1e-6)  # both cut at the context
    assert out["similarity"][0] != pytest.approx(out["similarity"][2], abs=1e-6)  # a short one is not
    ref = _reference(family, models[family], Image.open(io.BytesIO(odd_images["jpeg"])).convert("RGB"), "a red dog " * 60)
    assert out["similarity"][1] == pytest.approx(ref[0], abs=1e-5)


@pytest.mark.parametrize("family", ("siglip", "siglip2"))
def test_siglip_captions_run_at_the_fixed_length_whatever_the_batch(models, tiny_cfg, odd_images, family):
    """SigLIP pools the last of a fixed-length, bidirectional sequence: no length buckets, no batch effects."""
    scorer = PairScorer.from_config(_cfg(tiny_cfg, models[family], batch_size=8))
    try:
        run = scorer.primary
        assert not run.model.bucket_captions
        tokens = run.tokenize(["a dog", "a red dog on the grass near the sea with a cat"])
        assert tokens["input_ids"].shape[1] == run.model.max_length
        alone = scorer.score_frame(pd.Series([odd_images["jpeg"]]), pd.Series(["a dog"]))
        mixed = scorer.score_frame(pd.Series([odd_images["jpeg"]] * 3),
                                   pd.Series(["a dog", "a red dog on the grass near the sea", "a dog " * 40]))
    finally:
        scorer.close()
    assert mixed["similarity"][0] == pytest.approx(alone["similarity"][0], abs=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_inputs_still_give_reasons(models, tiny_cfg, odd_images, bad_images, family):
    images = [odd_images["jpeg"], bad_images["truncated"][0], None, odd_images["png"], b"", bad_images["bomb"][0]]
    captions = ["a dog", "a dog", "a dog", None, "a dog", "a dog"]
    scorer = PairScorer.from_config(_cfg(tiny_cfg, models[family]))
    try:
        out = scorer.score_frame(pd.Series(images, dtype=object), pd.Series(captions, dtype=object))
    finally:
        scorer.close()
    codes = [None if e is None else e.split(":")[0] for e in out["score_error"]]
    assert codes[0] is None and codes[2:5] == ["image_null", "caption_null", "image_empty"]
    assert codes[1] in ("image_truncated", "image_undecodable") and codes[5] == "image_too_large"
    assert out["similarity"].notna().tolist() == [True, False, False, False, False, False]
    if "probability" in out:
        assert out["probability"].notna().tolist() == [True, False, False, False, False, False]


@pytest.mark.parametrize("family", FAMILIES)
def test_precision_and_device_are_the_runs(models, tiny_cfg, odd_images, family):
    """bf16 on a CPU runs under autocast (close to fp32, not equal); the key records what ran."""
    images = pd.Series([odd_images[name] for name in IMAGES[:4]])
    scores = {}
    for precision in ("fp32", "bf16"):
        scorer = PairScorer.from_config(_cfg(tiny_cfg, models[family], precision=precision))
        try:
            assert scorer.precision == precision and str(scorer.device) == "cpu"
            scores[precision] = scorer.score_frame(images, pd.Series(CAPTIONS[:4]))["similarity"].to_numpy(np.float64)
        finally:
            scorer.close()
    assert np.abs(scores["bf16"] - scores["fp32"]).max() < 0.05
    assert not np.array_equal(scores["bf16"], scores["fp32"])


def test_two_models_share_one_decode_and_equal_each_alone(models, tiny_cfg, odd_images, monkeypatch):
    images = pd.Series([odd_images[name] for name in IMAGES] + [None])
    captions = pd.Series([*CAPTIONS, "a dog"])
    alone = {}
    for name, family in (("clip", "clip"), ("sig", "siglip")):
        scorer = PairScorer.from_config(_cfg(tiny_cfg, models[family]))
        alone[name] = scorer.score_frame(images, captions)
        scorer.close()

    cfg = _cfg(tiny_cfg, f"clip={models['clip']}", f"sig={models['siglip']}")
    scorer = PairScorer.from_config(cfg)
    decodes = []
    decode = scorer.loader.decode
    monkeypatch.setattr(scorer.loader, "decode", lambda data, reduce=None: decodes.append(1) or decode(data, reduce))
    try:
        both = scorer.score_frame(images, captions)
    finally:
        scorer.close()
    assert len(decodes) == len(IMAGES)  # one decode per distinct image serves both models
    assert list(both.columns) == ["similarity", "similarity_clip", "similarity_sig", "probability_sig",
                                  "score_band", "score_error"]
    np.testing.assert_array_equal(both["similarity"], both["similarity_clip"])
    np.testing.assert_allclose(both["similarity_clip"], alone["clip"]["similarity"], atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(both["similarity_sig"], alone["sig"]["similarity"], atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(both["probability_sig"], alone["sig"]["probability"], atol=1e-6, equal_nan=True)
    assert both["score_band"].tolist() == alone["clip"]["score_band"].tolist()
    assert both["score_error"].tolist() == alone["clip"]["score_error"].tolist()


def test_bands_follow_the_configured_column(models, tiny_cfg, odd_images):
    cfg = _cfg(tiny_cfg, models["siglip"], band_column="probability", band_edges=[1e-5, 0.5])
    assert "probability" in planned_columns(cfg)
    scorer = PairScorer.from_config(cfg)
    try:
        out = scorer.score_frame(pd.Series([odd_images["jpeg"], odd_images["png"]]), pd.Series(["a dog", "a cat"]))
    finally:
        scorer.close()
    from clipscore.schema.bands import assign_bands

    assert out["score_band"].tolist() == assign_bands(out["probability"], (1e-5, 0.5)).tolist()
    with pytest.raises(ConfigError, match="gives no probability"):
        planned_columns(_cfg(tiny_cfg, models["clip"], band_column="probability", band_edges=[0.5]))
    with pytest.raises(ConfigError, match=r"must lie in \[0, 1\] \(probability\)"):
        ScoreConfig(band_column="probability", band_edges=[-0.2, 0.5])


def test_an_unknown_model_type_fails_fast(tmp_path, tiny_model_dir):
    import json
    import shutil

    folder = tmp_path / "bert"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(ConfigError, match="'bert' checkpoint; supported: CLIP"):
        describe(str(folder))


# -------------------------------------------------------------------------------------------------
# open_clip names (the Spark job and the command line: tests/spark/test_families_job.py)
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, message", [
    ("open_clip:ViT-B-32", "names no weights"),
    ("open_clip:ViT-Q-99/laion2b_s34b_b79k", "no architecture 'ViT-Q-99'"),
    ("open_clip:ViT-B-32/no_such_tag", "not a pretrained tag of ViT-B-32 .tags: .*laion2b_s34b_b79k"),
    ("open_clip:ViT-B-32/{tmp}/weights.pt", "pickled checkpoint.*safetensors only.*st.save_file"),
    ("open_clip:ViT-B-32/{tmp}/missing.safetensors", "does not exist"),
    ("open_clip:{tmp}/pickled", "no .safetensors weights"),
])
def test_open_clip_names_fail_fast_and_refuse_pickles(tmp_path, name, message):
    (tmp_path / "weights.pt").write_bytes(b"not unpickled")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "open_clip_config.json").write_text("{}")
    (tmp_path / "pickled" / "open_clip_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match=message):
        describe(name.format(tmp=tmp_path))


def test_open_clip_checkpoint_file_scores_like_the_folder(models, family_dirs, tiny_cfg, odd_images):
    """open_clip:ARCH/file.safetensors (a registered architecture) = the same model as its folder."""
    from clipscore.devtools.random_families import register_tiny_open_clip_arch

    arch = register_tiny_open_clip_arch(family_dirs["open_clip"])
    weights = f"{family_dirs['open_clip']}/open_clip_model.safetensors"
    images, captions = pd.Series([odd_images["jpeg"], odd_images["png"]]), pd.Series(["a dog", "a cat"])
    scores = []
    for model in (f"open_clip:{arch}/{weights}", models["open_clip"]):
        scorer = PairScorer.from_config(tiny_cfg.replace(model=model))
        scores.append(scorer.score_frame(images, captions)["similarity"].to_numpy())
        scorer.close()
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-6)


def test_open_clip_causal_text_runs_in_length_buckets_exactly(models, family_dirs, tiny_cfg):
    """open_clip's CLIP text tower is causal and pooled at end-of-text: cut to each bucket's length (and
    run sequence-first) it gives open_clip's own encode_text over all 77 positions, on the model as
    open_clip builds it (batch-first; fp32, 1e-6); a SigLIP-style tower never buckets."""
    import open_clip
    import torch

    captions = ["a dog", "a red dog on the grass near the sea", "a photo " * 20, "two cats"]
    scorer = PairScorer.from_config(_cfg(tiny_cfg, models["open_clip"]))
    try:
        run = scorer.primary
        assert run.model.bucket_captions
        tokens = run.tokenize(captions)
        widths = []
        original = run.model.text_features

        def spy(**inputs):
            widths.append(inputs["text"].shape[1])
            return original(**inputs)

        run.model.text_features = spy
        bucketed = run.encoder.embed_texts(**tokens)
        assert not run.model.model.transformer.batch_first  # ours runs sequence-first
    finally:
        scorer.close()
    reference, _, _ = open_clip.create_model_and_transforms(f"local-dir:{family_dirs['open_clip']}")
    assert reference.transformer.batch_first  # open_clip's own layout
    with torch.inference_mode():
        full = torch.nn.functional.normalize(reference.eval().encode_text(tokens["text"]).float(), dim=-1)
    assert max(widths) < 77 and min(widths) < max(widths)  # shorter than the context, several buckets
    np.testing.assert_allclose(bucketed.numpy(), full.numpy(), atol=1e-6, rtol=0)


def test_cpu_bf16_is_each_familys_measured_choice(models, tiny_cfg, monkeypatch):
    """Each family runs bf16 on a CPU the way benchmarks/families.py measured fastest within the stated
    deviation bound (its committed results), and each loader follows its class's choice: cast weights
    are bf16 with no autocast, autocast keeps fp32 weights (flipped below, as the benchmark does)."""
    import json

    import torch

    from clipscore.models.cache import MODEL_CACHE
    from clipscore.models.registry import FAMILIES
    from clipscore.models.runtime import BF16_MAX_ABS

    measured = json.loads((REPO / "benchmarks" / "results" / "families.json").read_text())
    assert measured["bound_max_abs"] == BF16_MAX_ABS
    for family, row in measured["families"].items():
        assert FAMILIES[family].cpu_bf16 == row["fastest_within_bound"], family
    for family in ("clip", "open_clip", "siglip"):
        for mode in ("cast", "autocast"):
            monkeypatch.setattr(FAMILIES[family], "cpu_bf16", mode)
            MODEL_CACHE.clear()  # a cached copy would be the other way
            scorer = PairScorer.from_config(_cfg(tiny_cfg, models[family], precision="bf16"))
            try:
                model = scorer.primary.model
                weights = {p.dtype for p in model.model.parameters()}
                if mode == "cast":
                    assert model.autocast is None and model.dtype == torch.bfloat16 and weights == {torch.bfloat16}
                else:
                    assert model.autocast == torch.bfloat16 and weights == {torch.float32}
            finally:
                scorer.close()
    MODEL_CACHE.clear()  # no flipped copy left for later tests
