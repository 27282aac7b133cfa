"""The pure scoring core on a tiny real CLIP: fidelity with plain transformers, errors as values."""
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clipscore.models import load_model
from clipscore.models.cache import MODEL_CACHE
from clipscore.models.runtime import ModelKey
from clipscore.scoring.scorer import PairScorer, score_pandas

CAPTIONS = ["a photo of a cat", "two dogs playing in the snow, with a red ball", "a diagram", "x" * 400]


def reference_scores(model_dir, images: list[bytes], captions: list[str]) -> list[float]:
    """The plain transformers computation: CLIPProcessor + CLIPModel, one pair at a time."""
    import io

    from transformers import CLIPModel, CLIPProcessor

    processor = CLIPProcessor.from_pretrained(model_dir)
    model = CLIPModel.from_pretrained(model_dir).eval()
    out = []
    for data, caption in zip(images, captions):
        image = Image.open(io.BytesIO(data)).convert("RGB")
        inputs = processor(text=[caption], images=[image], return_tensors="pt", padding=True, truncation=True,
                           max_length=model.config.text_config.max_position_embeddings)
        with torch.no_grad():
            result = model(**inputs)
        out.append(float((result.image_embeds * result.text_embeds).sum()))
    return out


@pytest.fixture()
def scorer(tiny_cfg):
    s = PairScorer.from_config(tiny_cfg)
    yield s
    s.close()


def test_fp32_scores_equal_the_transformers_reference(scorer, tiny_model_dir, odd_images):
    names = ["jpeg", "png", "cmyk_jpeg", "sixteen_bit", "palette", "rgba", "animated_gif", "one_pixel",
             "very_wide", "very_large", "grayscale", "webp"]
    images = [odd_images[n] for n in names]
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(len(names))]
    got = scorer.score_frame(pd.Series(images), pd.Series(captions))
    expected = reference_scores(tiny_model_dir, images, captions)
    assert got["score_error"].isna().all(), got["score_error"].tolist()
    diff = np.abs(got["similarity"].to_numpy(np.float64) - np.array(expected))
    assert diff.max() < 1e-5, diff
    # Random weights still spread the scores: a constant output would hide a broken pipeline.
    assert np.ptp(got["similarity"].to_numpy()) > 1e-3


def test_errors_are_values_and_rows_are_kept(scorer, odd_images, bad_images):
    images = [odd_images["jpeg"], bad_images["truncated"][0], None, odd_images["png"], odd_images["png"], b""]
    captions = ["a cat", "a cat", "a cat", None, "   ", "a cat"]
    out = scorer.score_frame(pd.Series(images, index=[5, 6, 7, 8, 9, 10]), pd.Series(captions, index=[5, 6, 7, 8, 9, 10]))
    assert len(out) == 6
    codes = [None if e is None else e.split(":")[0] for e in out["score_error"]]
    assert codes == [None, "image_truncated", "image_null", "caption_null", "caption_empty", "image_empty"]
    assert out["similarity"].notna().tolist() == [True, False, False, False, False, False]
    assert out["score_band"].tolist()[1:] == ["error"] * 5
    assert str(out["similarity"].dtype) == "float32"


def test_duplicates_are_encoded_once_and_score_the_same(scorer, odd_images):
    images = pd.Series([odd_images["jpeg"], odd_images["png"], odd_images["jpeg"], odd_images["jpeg"]])
    captions = pd.Series(["a cat", "a cat", "a dog", "a cat"])
    calls = {"images": 0, "texts": 0}
    encoder = scorer.primary.encoder
    embed_images, embed_texts = encoder.embed_images, encoder.embed_texts

    def count_images(pixels, finish=None):
        calls["images"] += len(pixels)
        return embed_images(pixels, finish)

    def count_texts(**inputs):
        calls["texts"] += len(inputs["input_ids"])
        return embed_texts(**inputs)

    encoder.embed_images, encoder.embed_texts = count_images, count_texts
    out = scorer.score_frame(images, captions)
    assert calls == {"images": 2, "texts": 2}
    assert out["similarity"][0] == out["similarity"][3]
    assert out["similarity"][0] != out["similarity"][2]


def test_prefetch_pipeline_gives_the_same_scores_in_order(tiny_cfg, odd_images):
    frames = [
        (pd.Series([odd_images["jpeg"], odd_images["rgba"]]), pd.Series(["a", "b"])),
        (pd.Series([None]), pd.Series(["c"])),
        (pd.Series([odd_images["webp"], odd_images["png"], odd_images["palette"]]), pd.Series(["d", "e", "f"])),
    ]
    results = {}
    for depth in (0, 2):
        s = PairScorer.from_config(tiny_cfg.replace(prefetch_batches=depth))
        results[depth] = pd.concat(list(s.score_batches(iter(frames))), ignore_index=True)
        s.close()
    assert len(results[0]) == 6
    pd.testing.assert_frame_equal(results[0], results[2])


def test_long_captions_are_truncated_to_the_model(scorer, odd_images):
    out = scorer.score_frame(pd.Series([odd_images["jpeg"]] * 2), pd.Series(["word " * 500, "word " * 100]))
    assert out["score_error"].isna().all()
    assert out["similarity"][0] == pytest.approx(out["similarity"][1], abs=1e-6)  # both cut at 77 tokens


def test_reduced_precisions_stay_close_to_fp32(tiny_cfg, odd_images):
    images = pd.Series([odd_images[n] for n in ("jpeg", "png", "rgba", "very_wide")])
    captions = pd.Series(CAPTIONS)
    scores = {}
    for precision in ("fp32", "bf16", "int8"):
        s = PairScorer.from_config(tiny_cfg.replace(precision=precision))
        scores[precision] = s.score_frame(images, captions)["similarity"].to_numpy(np.float64)
        s.close()
    assert np.abs(scores["bf16"] - scores["fp32"]).max() < 0.05
    assert np.abs(scores["int8"] - scores["fp32"]).max() < 0.05
    assert not np.array_equal(scores["bf16"], scores["fp32"])  # it really ran in bf16 (CPU autocast)
    assert not np.array_equal(scores["int8"], scores["fp32"])  # and quantised (torchao)


def test_model_cache_loads_each_key_once(tiny_model_dir):
    loads = []

    def factory(key):
        loads.append(key)
        return load_model(key)

    key = ModelKey(tiny_model_dir, None, "cpu", "fp32")
    MODEL_CACHE.clear()
    first = MODEL_CACHE.get(key, factory)
    assert MODEL_CACHE.get(key, factory) is first
    MODEL_CACHE.get(ModelKey(tiny_model_dir, None, "cpu", "bf16"), factory)
    assert len(loads) == 2


def test_score_pandas_appends_columns(tiny_cfg, odd_images):
    df = pd.DataFrame({"id": [1, 2], "image": [odd_images["jpeg"], None], "caption": ["a", "b"]}, index=[3, 4])
    out = score_pandas(df, tiny_cfg)
    assert list(out.columns) == ["id", "image", "caption", "similarity", "score_band", "score_error"]
    assert list(out.index) == [3, 4] and out["similarity"].notna().tolist() == [True, False]


def test_gpu_decode_path_runs_on_cpu_and_keeps_row_errors(tiny_cfg, odd_images, bad_images):
    """``gpu_decode`` decodes JPEGs with torchvision on the model's device (CPU here: libjpeg-turbo)."""
    names = ["jpeg", "very_wide", "cmyk_jpeg", "png", "grayscale"]
    images = [odd_images[n] for n in names] + [bad_images["truncated"][0], bad_images["bomb"][0]]
    captions = pd.Series([f"caption {i}" for i in range(len(images))])
    default = PairScorer.from_config(tiny_cfg)
    fast = PairScorer.from_config(tiny_cfg.replace(gpu_decode=True))
    deferred = [fast.loader.load(data).jpeg is not None for data in images]
    # CMYK and non-JPEGs stay on PIL; a truncated JPEG has a good header, so its failure shows at decode.
    assert deferred == [True, True, False, False, False, True, False]
    want = default.score_frame(pd.Series(images), captions)
    got = fast.score_frame(pd.Series(images), captions)
    default.close()
    fast.close()
    assert got["similarity"].notna().tolist() == [True] * 5 + [False, False]
    assert got["score_error"][5].startswith(("image_undecodable", "image_truncated"))
    assert got["score_error"][6].startswith("image_too_large")
    diff = np.abs(got["similarity"][:5].to_numpy(np.float64) - want["similarity"][:5].to_numpy(np.float64))
    assert diff.max() < 1e-2


def test_both_int8_backends_quantise_and_stay_close(tiny_model_dir):
    """torch.ao (deprecated, faster here) is used while torch ships it; torchao is the maintained fallback."""
    import copy

    import torch
    from transformers import CLIPModel

    from clipscore.models.runtime import int8_backend, quantize_int8

    assert int8_backend() == "torch.ao"
    model = CLIPModel.from_pretrained(tiny_model_dir).eval()
    pixels = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        ref = model.get_image_features(pixel_values=pixels)
        for backend in ("torch.ao", "torchao"):
            quantised = quantize_int8(copy.deepcopy(model), backend=backend)
            out = quantised.get_image_features(pixel_values=pixels)
            ref_t = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
            out_t = out if isinstance(out, torch.Tensor) else out.pooler_output
            assert not torch.equal(out_t, ref_t), backend  # really quantised
            cos = torch.nn.functional.cosine_similarity(out_t, ref_t).min()
            assert cos > 0.98, (backend, float(cos))
