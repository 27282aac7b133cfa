"""SigLIP and SigLIP 2 scored as they trained, against a reference that does not share our assumptions.

The reference (``family_reference``) follows big_vision's training contract, not transformers' call:
the caption normalised as trained, tokenized by the ``sentencepiece`` library itself, EOS kept,
padded to the fixed length, the ids ALONE through a text tower written in plain torch from the saved
weights (no mask, last position pooled). Before the fix the core passed transformers' attention mask
and differed from it by up to 0.53 in cosine on these tiny models; the bound here is 1e-5 (fp32).

The models are built here with logit bias 0, so that random models' probabilities are mid-range
and the probability comparison bites.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import sentencepiece as spm
from PIL import Image

from clipscore.config.job import ScoreConfig
from clipscore.devtools.random_families import build_random_siglip, build_random_siglip2, build_random_siglip2_fixed
from clipscore.scoring.scorer import PairScorer
from support.images import encode, photo_like
from support.family_reference import _reference_sigmoid_family, big_vision_canonicalize

# (builder, transformers family the reference loads with, text generation: 1 = SigLIP, 2 = SigLIP 2)
KINDS = {
    "siglip": (build_random_siglip, "siglip", 1),
    "siglip2_fixed": (build_random_siglip2_fixed, "siglip", 2),
    "siglip2_naflex": (build_random_siglip2, "siglip2", 2),
}
LENGTH = 16  # the tiny models' text positions
CAPTIONS = (
    "a dog",
    "A Red Dog on the Grass!",
    "close up of a cat, near the lake.",
    "hot_dog on a table",
    "a photo of three big old brown cows running across a beach at sunset in the morning",
    "there is a bird",
    "a photo of a tiny bright car parked by the street during winter on a rainy day near the city",
    "two sleepy kittens",
)


@pytest.fixture(scope="module")
def sigmoid_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("sigmoid-models")
    return {name: str(build(root / name, seed=i + 1, logit_bias=0.0)) for i, (name, (build, _, _)) in enumerate(KINDS.items())}


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return [encode(photo_like(64, 48, seed=s), "JPEG", quality=90) for s in range(len(CAPTIONS))]


def _score(folder: str, images, captions, **options) -> pd.DataFrame:
    scorer = PairScorer.from_config(ScoreConfig(model=folder, device="cpu", precision="fp32", batch_size=3, **options))
    try:
        return scorer.score_frame(pd.Series(list(images)), pd.Series(list(captions)))
    finally:
        scorer.close()


def _token_count(folder: str, caption: str, generation: int) -> int:
    sp = spm.SentencePieceProcessor(model_file=f"{folder}/{'spiece.model' if generation == 1 else 'tokenizer.model'}")
    text = big_vision_canonicalize(caption) if generation == 1 else caption.lower()
    return len(sp.encode(text)) + 1  # + EOS


def _caption_of_exactly(folder: str, generation: int, n: int) -> str:
    """A caption whose ids, EOS included, number exactly ``n``: words added while they do not overshoot."""
    pool = "a photo of the red dog on grass near a big old house with two cats and a blue car by the sea".split()
    words: list[str] = []
    for word in pool * 3:
        count = _token_count(folder, " ".join(words + [word]), generation)
        if count <= n:
            words.append(word)
        if count == n:
            return " ".join(words)
    raise AssertionError(f"no caption of exactly {n} tokens")


@pytest.mark.parametrize("kind", KINDS)
def test_scores_equal_the_training_contract_reference(sigmoid_models, photos, kind):
    folder, (_, family, generation) = sigmoid_models[kind], KINDS[kind]
    captions = list(CAPTIONS[:-1]) + [_caption_of_exactly(folder, generation, LENGTH)]
    lengths = [_token_count(folder, c, generation) for c in captions]
    # The captions cover shorter than, exactly and longer than the fixed length (EOS included).
    assert min(lengths) < LENGTH // 2 and max(lengths) > LENGTH and LENGTH in lengths
    out = _score(folder, photos, captions)
    assert out["score_error"].isna().all()
    refs = [_reference_sigmoid_family(family, generation, folder, Image.open(io.BytesIO(b)).convert("RGB"), c)
            for b, c in zip(photos, captions)]
    np.testing.assert_allclose(out["similarity"], [r[0] for r in refs], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["probability"], [r[1] for r in refs], atol=1e-5, rtol=0)
    assert np.ptp(out["probability"]) > 0.05  # mid-range probabilities: the comparison means something


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_ids_reach_the_text_tower_at_the_fixed_length(sigmoid_models, kind):
    scorer = PairScorer.from_config(ScoreConfig(model=sigmoid_models[kind], device="cpu", precision="fp32"))
    try:
        tokens = scorer.primary.tokenize(["a dog", "a photo of a tiny bright car parked by the street " * 3])
    finally:
        scorer.close()
    assert list(tokens) == ["input_ids"]  # no attention mask: SigLIP trained with the padding visible
    assert tuple(tokens["input_ids"].shape) == (2, LENGTH)


@pytest.mark.parametrize("kind", KINDS)
def test_case_scores_the_same_and_punctuation_as_the_generation_trained(sigmoid_models, photos, kind):
    generation = KINDS[kind][2]
    captions = ["a red dog on the grass", "A RED Dog On The Grass", "a red dog, on the grass!", "a red_dog on the grass"]
    out = _score(sigmoid_models[kind], [photos[0]] * 4, captions)["similarity"].to_numpy()
    assert out[1] == pytest.approx(out[0], abs=1e-6)  # lower case in both generations
    if generation == 1:  # big_vision canonicalize: punctuation gone, "_" a space
        assert out[2] == pytest.approx(out[0], abs=1e-6) and out[3] == pytest.approx(out[0], abs=1e-6)
    else:  # SigLIP 2 trained on lower-cased text with its punctuation
        assert out[2] != pytest.approx(out[0], abs=1e-6)


def test_clip_scores_do_not_depend_on_padding(tiny_cfg, photos):
    """CLIP's tower is causal and pools EOS: a caption scores the same alone (no padding) and padded to
    the longest caption of a batch (73 more positions), whatever the length buckets do."""
    captions = ["a dog", "a cat on the grass"]
    alone = [_score(tiny_cfg.model, [photos[0]], [c])["similarity"][0] for c in captions]
    with_long = _score(tiny_cfg.model, [photos[0]] * 3, captions + ["a red dog " * 40])["similarity"]
    np.testing.assert_allclose(with_long[:2], alone, atol=1e-6, rtol=0)

    import torch

    scorer = PairScorer.from_config(tiny_cfg)
    try:  # the tower itself, one caption padded to 77 against unpadded
        run = scorer.primary
        short = run.tokenize(["a dog"])
        padded = run.model.processor.tokenizer(["a dog"], padding="max_length", max_length=77, return_tensors="pt")
        assert padded["input_ids"].shape[1] == 77 > short["input_ids"].shape[1]
        with torch.inference_mode():
            a = run.model.text_features(**short)
            b = run.model.text_features(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"])
    finally:
        scorer.close()
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=0)


