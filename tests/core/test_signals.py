"""Curation signals from the scoring pass, each against an independent computation.

References: Pillow (size, format), ``len``/``str.split`` (chars, words), the model's own tokenizer called
directly without truncation (tokens), the ``imagehash`` library on the image opened by Pillow (pHash),
transformers' ``get_image_features``/``get_text_features`` with plain cosines and a softmax written out
here (concepts), and a plain ``torch.nn.Sequential`` built as LAION's aesthetic predictor builds it
(heads): fp32 within 1e-5.
"""
from __future__ import annotations

import io
import math

import imagehash
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from clipscore.config import ConfigError, ScoringOptions
from clipscore.schema.columns import column_type, signal_columns
from clipscore.scoring.plan import planned_columns
from clipscore.scoring.scorer import PairScorer
from support.images import encode, photo_like

CAPTIONS = ["a red dog", "A photo of two cats on the grass, near a lake", "x " * 120, None, "  ", "un chien rouge"]


def _score(cfg: ScoringOptions, images, captions) -> pd.DataFrame:
    scorer = PairScorer.from_config(cfg)
    try:
        return scorer.score_frame(pd.Series(images, dtype=object), pd.Series(captions, dtype=object))
    finally:
        scorer.close()


@pytest.fixture(scope="module")
def images(odd_images, bad_images) -> list:
    big = encode(photo_like(640, 480, seed=7), "JPEG", quality=92)
    return [odd_images["jpeg"], odd_images["png"], big, odd_images["webp"], bad_images["truncated"][0], odd_images["rgba"]]


def test_image_and_caption_facts_equal_pillow_len_and_the_tokenizer(tiny_cfg, images):
    from transformers import AutoTokenizer

    cfg = tiny_cfg.replace(signals=("image", "caption"))
    out = _score(cfg, images, CAPTIONS)
    assert list(out.columns[:-2]) == ["similarity", *signal_columns(("image", "caption"))]
    tokenizer = AutoTokenizer.from_pretrained(tiny_cfg.model)
    context = tokenizer.model_max_length if tokenizer.model_max_length < 10_000 else 77
    for row, (data, caption) in enumerate(zip(images, CAPTIONS)):
        if row == 4:  # the truncated file: its image facts are null, its caption facts are not
            assert out.loc[row, ["image_width", "image_height", "image_format", "image_bytes"]].isna().all()
        else:
            with Image.open(io.BytesIO(data)) as im:
                assert (out.at[row, "image_width"], out.at[row, "image_height"]) == im.size
                assert out.at[row, "image_format"] == im.format
            assert out.at[row, "image_bytes"] == len(data)
        if caption is None:  # a null caption has no caption facts; its image still has its facts
            assert out.loc[row, ["caption_chars", "caption_words", "caption_tokens", "caption_truncated"]].isna().all()
            assert out.at[row, "image_width"] == 64
            continue
        assert out.at[row, "caption_chars"] == len(caption)
        assert out.at[row, "caption_words"] == len(caption.split())
        tokens = len(tokenizer(caption, truncation=False)["input_ids"])
        assert out.at[row, "caption_tokens"] == tokens
        assert bool(out.at[row, "caption_truncated"]) == (tokens > context)
    assert bool(out.at[2, "caption_truncated"]) and not bool(out.at[0, "caption_truncated"])
    # Rows whose caption is bad still get no score: the signals never change what is scored.
    assert out["similarity"].notna().tolist() == [True, True, True, False, False, True]


@pytest.mark.parametrize("family", ["siglip", "open_clip"])
def test_caption_tokens_of_other_families(family_dirs, odd_images, family):
    """SigLIP: sentencepiece ids of the canonicalised caption + EOS (big_vision's count); open_clip: the
    non-padding ids of open_clip's own tokenizer output (captions that fit its context)."""
    import sentencepiece as spm

    from support.family_reference import big_vision_canonicalize

    captions = ["A red dog, on the grass!", "two cats", "a photo of a tiny bright car parked by the street at night"]
    model = family_dirs[family] if family == "siglip" else "open_clip:" + family_dirs[family]
    out = _score(ScoringOptions(model=model, device="cpu", precision="fp32", signals=("caption",)),
                 [odd_images["jpeg"]] * 3, captions)
    if family == "siglip":
        sp = spm.SentencePieceProcessor(model_file=f"{family_dirs['siglip']}/spiece.model")
        expected = [len(sp.encode(big_vision_canonicalize(c))) + 1 for c in captions]
        context = 16
    else:
        import open_clip

        ids = open_clip.get_tokenizer(f"local-dir:{family_dirs['open_clip']}")(captions)
        expected = (ids != 0).sum(dim=1).tolist()
        context = ids.shape[1]
    assert out["caption_tokens"].tolist() == expected
    assert out["caption_truncated"].tolist() == [n > context for n in expected]
    assert any(out["caption_truncated"]) == (family == "siglip")  # the 16-position SigLIP cuts the long one


def test_signal_column_types_are_nullable_and_typed(tiny_cfg, images):
    out = _score(tiny_cfg.replace(signals=("image", "caption", "phash")), images, CAPTIONS)
    assert str(out["image_width"].dtype) == "Int32" and str(out["image_bytes"].dtype) == "Int64"
    assert str(out["caption_truncated"].dtype) == "boolean" and out["caption_tokens"].isna().sum() == 1
    assert column_type("image_bytes") == "bigint" and column_type("caption_truncated") == "boolean"
    assert column_type("image_phash") == "string" and column_type("concept_x") == "float"


def _photos() -> list[bytes]:
    """The bundled photo sample (data/sample: scikit-image's test photos, JPEG/PNG/GIF, 1x1 to 4000x40)."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "data" / "sample" / "images"
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix.lower() in (".jpg", ".png", ".gif")]


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_phash_is_imagehash_on_the_image(tiny_cfg, images, mode):
    data = images + _photos()
    out = _score(tiny_cfg.replace(signals=("phash",), preprocess=mode), data, ["a dog"] * len(data))
    distances = {}
    for row, encoded in enumerate(data):
        if out.at[row, "image_phash"] is None:
            assert out.at[row, "score_error"] is not None  # only an unloadable image has no hash
            continue
        with Image.open(io.BytesIO(encoded)) as im:
            expected = imagehash.phash(im.convert("RGB"))
        got = imagehash.hex_to_hash(out.at[row, "image_phash"])
        assert len(out.at[row, "image_phash"]) == 16
        distances[row] = got - expected
    assert len(distances) >= 18
    if mode == "exact":  # the full frame: imagehash's own answer, bit for bit
        assert max(distances.values()) == 0, distances
    else:  # fast frames are DCT-reduced at decode; on the photos a few bits move (measured 0-4)
        photos = [d for row, d in distances.items() if row >= len(images)]
        assert len(photos) >= 12 and max(photos) <= 4 and np.mean(photos) <= 1.5, photos


def test_a_copy_has_the_same_phash_and_a_different_image_another(tiny_cfg):
    base = photo_like(200, 150, seed=3)
    copies = [encode(base, "PNG"), encode(base, "JPEG", quality=85), encode(base.resize((150, 112)), "PNG"),
              encode(photo_like(200, 150, seed=11), "PNG")]
    out = _score(tiny_cfg.replace(signals=("phash",)), copies, ["a"] * 4)
    hashes = [imagehash.hex_to_hash(h) for h in out["image_phash"]]
    assert hashes[0] - hashes[1] <= 4 and hashes[0] - hashes[2] <= 4
    assert hashes[0] - hashes[3] > 10


def test_language_columns(tiny_cfg, odd_images):
    captions = ["a photograph of a small red car parked in the street", "ein kleines rotes Auto auf der Straße",
                "12345 !!!", "", None]
    out = _score(tiny_cfg.replace(signals=("language",)), [odd_images["jpeg"]] * 5, captions)
    assert out["caption_language"].tolist()[:2] == ["en", "de"]
    assert out["caption_language"].tolist()[2:] == [None, None, None]
    assert 0.5 < out.at[0, "caption_language_score"] <= 1.0 and pd.isna(out.at[2, "caption_language_score"])


def _hf_embeddings(folder: str, images: list[bytes], texts: list[str]):
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(folder, dtype=torch.float32).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    with torch.no_grad():
        pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
        image = model.get_image_features(**processor(images=pil, return_tensors="pt"))
        text = model.get_text_features(**processor(text=texts, return_tensors="pt", padding=True))
    image = getattr(image, "pooler_output", image)
    text = getattr(text, "pooler_output", text)
    return (torch.nn.functional.normalize(image, dim=-1), torch.nn.functional.normalize(text, dim=-1),
            float(model.logit_scale.exp()))


def test_concepts_equal_plain_cosines_and_the_softmax(tiny_cfg, odd_images):
    images = [odd_images[k] for k in ("jpeg", "png", "rgba", "grayscale")]
    concepts = {"dog": ["a photo of a dog", "a dog"], "shot": {"positive": ["a screenshot"], "negative": ["a photo", "a drawing"]}}
    out = _score(tiny_cfg.replace(concepts=concepts), images, ["x", "y", None, "z"])
    image, text, scale = _hf_embeddings(tiny_cfg.model, images, ["a photo of a dog", "a dog", "a screenshot", "a photo", "a drawing"])
    cos = image @ text.T
    np.testing.assert_allclose(out["concept_dog"], cos[:, :2].max(dim=1).values.numpy(), atol=1e-5, rtol=0)
    shot = torch.softmax(scale * cos[:, 2:], dim=1)[:, 0]  # CLIP: softmax with its logit scale, mass on positive
    np.testing.assert_allclose(out["concept_shot"], shot.numpy(), atol=1e-5, rtol=0)
    assert out["concept_dog"].notna().all()  # the row with a null caption is still described
    assert out["similarity"].isna().tolist() == [False, False, True, False]


def test_siglip_contrast_concept_is_the_sigmoid_rule(family_dirs, odd_images):
    """p+ / (p+ + p-), each p = sigmoid(exp(logit_scale) * cos + logit_bias) with the saved scale and bias;
    the cosines are the pairs' own similarities (a prompt is embedded exactly as a caption is)."""
    from safetensors.torch import load_file

    cfg = ScoringOptions(model=family_dirs["siglip"], device="cpu", precision="fp32",
                         concepts={"c": {"positive": ["a red dog"], "negative": ["a blue car"]}})
    out = _score(cfg, [odd_images["jpeg"]] * 2, ["a red dog", "a blue car"])
    w = load_file(f"{family_dirs['siglip']}/model.safetensors")
    scale, bias = float(w["logit_scale"].exp()), float(w["logit_bias"])
    p_pos, p_neg = (1 / (1 + math.exp(-(scale * float(c) + bias))) for c in out["similarity"])
    assert out.at[0, "concept_c"] == pytest.approx(p_pos / (p_pos + p_neg), abs=1e-5)
    assert out.at[1, "concept_c"] == pytest.approx(out.at[0, "concept_c"], abs=1e-6)  # the image's, not the caption's


def _laion_head(dim: int, seed: int = 0) -> torch.nn.Sequential:
    """LAION improved-aesthetic-predictor's MLP, as its code builds it (dropout between, no activations)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(dim, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
        torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1)).eval()


def test_laion_layout_head_equals_a_plain_torch_mlp(tiny_cfg, odd_images, tmp_path):
    images = [odd_images[k] for k in ("jpeg", "png", "grayscale")]
    image, _, _ = _hf_embeddings(tiny_cfg.model, images, ["a"])
    mlp = _laion_head(image.shape[1])
    path = tmp_path / "aesthetic.safetensors"
    # The one-line conversion of docs/curation.md: the state dict's keys are layers.0/2/4/6/7.*
    save_file({f"layers.{k}": v.contiguous() for k, v in mlp.state_dict().items()}, str(path))
    out = _score(tiny_cfg.replace(heads={"aesthetic": str(path)}), images, ["a", "b", "c"])
    with torch.no_grad():
        expected = mlp(image)[:, 0].numpy()
    np.testing.assert_allclose(out["head_aesthetic"], expected, atol=1e-5, rtol=0)
    assert np.ptp(out["head_aesthetic"]) > 1e-4


def test_bad_signal_configuration_fails_before_any_work(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="unknown group"):
        tiny_cfg.replace(signals=("image", "colour"))
    with pytest.raises(ConfigError, match="does not exist"):
        planned_columns(tiny_cfg.replace(heads={"a": str(tmp_path / "missing.safetensors")}))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="not a readable .safetensors"):
        planned_columns(tiny_cfg.replace(heads={"a": str(tmp_path / "junk.safetensors")}))
    save_file({"layers.0.weight": torch.zeros(1, 768), "layers.0.bias": torch.zeros(1)}, str(tmp_path / "l14.safetensors"))
    with pytest.raises(ConfigError, match="takes 768-d embeddings"):
        planned_columns(tiny_cfg.replace(heads={"a": str(tmp_path / "l14.safetensors")}))
    save_file({"weight": torch.zeros(1, 8)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ConfigError, match="no layers"):
        planned_columns(tiny_cfg.replace(heads={"a": str(tmp_path / "other.safetensors")}))
    with pytest.raises(ConfigError, match="not a .safetensors file"):
        tiny_cfg.replace(heads={"a": "aesthetic.pth"})
    with pytest.raises(ConfigError, match="non-empty list"):
        tiny_cfg.replace(concepts={"w": []})
    with pytest.raises(ConfigError, match="lower-case"):
        tiny_cfg.replace(concepts={"Bad Name": ["x"]})


def test_planned_columns_match_the_scorer(tiny_cfg, tmp_path):
    dim = 16
    path = tmp_path / "h.safetensors"
    save_file({"layers.0.weight": torch.zeros(1, dim), "layers.0.bias": torch.zeros(1)}, str(path))
    cfg = tiny_cfg.replace(signals=("phash", "image"), concepts={"w": ["a"]}, heads={"h": str(path)})
    scorer = PairScorer.from_config(cfg)
    try:
        assert planned_columns(cfg) == (*scorer.columns, "score_band", "score_error")
    finally:
        scorer.close()
    assert scorer.columns[-4:] == ("image_bytes", "image_phash", "concept_w", "head_h")
