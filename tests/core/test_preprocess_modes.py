"""preprocess=exact equals the model's processor bit for bit; preprocess=fast stays within 1e-3 of it.

The fidelity checks use the ViT-B/32 image tower and preprocessing (random weights, built offline)
on the sample's real photos and on photo-like images in every allowed format.
"""
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor

from clipscore.config.job import ScoreConfig
from clipscore.images.frames import FrameDecoder
from clipscore.images.loader import ImageLoader
from clipscore.models.preprocess import ImagePreprocessor
from clipscore.scoring.scorer import PairScorer

from support.images import encode, photo_like

SAMPLE_IMAGES = Path(__file__).resolve().parents[2] / "data" / "sample" / "images"
REAL_PHOTOS = ["astronaut.jpg", "camera_gray.jpg", "chelsea.jpg", "clock.jpg", "coffee_palette.png",
               "hubble_deep_field.jpg", "immunohistochemistry_cmyk.jpg", "retina.jpg", "rocket.jpg", "coins_16bit.png"]
FORMATS = {"JPEG": {"quality": 88}, "PNG": {}, "WEBP": {"quality": 90}, "BMP": {}, "TIFF": {}, "GIF": {}}


@pytest.fixture(scope="session")
def b32_dir(tmp_path_factory) -> str:
    from clipscore.devtools.random_model import build_random_clip

    return str(build_random_clip(tmp_path_factory.mktemp("models") / "b32", vit_b32=True, seed=0))


def real_photos() -> dict[str, bytes]:
    return {name: (SAMPLE_IMAGES / name).read_bytes() for name in REAL_PHOTOS}


def every_format() -> dict[str, bytes]:
    """Photo-like images large enough for the fast path to reduce them, in every format we allow."""
    out = {}
    for k, (fmt, options) in enumerate(FORMATS.items()):
        for width, height in ((640, 480), (1024, 768), (1000, 2000)):
            image = photo_like(width, height, seed=10 + k)
            out[f"{fmt.lower()}_{width}x{height}"] = encode(image, fmt, **options)
    return out


# -------------------------------------------------------------------------------------------------
# exact: the processor's own steps, split (per image uint8 resize+crop; per batch normalise)
# -------------------------------------------------------------------------------------------------
PROCESSORS = {
    "clip": CLIPImageProcessor(),  # shortest edge 224, bicubic, centre crop 224: OpenAI's ViT-B/32
    "squash": CLIPImageProcessor(size={"height": 224, "width": 224}, do_center_crop=False, resample=2,
                                 image_mean=[0.5] * 3, image_std=[0.5] * 3),  # SigLIP-like
    "uncropped": CLIPImageProcessor(size={"shortest_edge": 64}, do_center_crop=False),
    "crop_larger_than_resize": CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 48, "width": 40}),
}


@pytest.mark.parametrize("kind", sorted(PROCESSORS))
def test_split_steps_equal_one_processor_call(kind, odd_images):
    processor = PROCESSORS[kind]
    steps = ImagePreprocessor(processor)
    assert steps.split
    frames = {**odd_images, **{k: v for k, v in real_photos().items() if k.endswith(".jpg")}}
    loader = ImageLoader(ScoreConfig())
    for name, data in frames.items():
        rgb = Image.open(io.BytesIO(data)).convert("RGB")
        frame = loader.load(data).image
        want = processor(images=[rgb], return_tensors="pt")["pixel_values"]
        got = steps.finish(torch.stack([steps.one(frame)]))
        assert steps.one(frame).dtype == torch.uint8  # the batch holds small uint8 crops
        assert got.dtype == want.dtype == torch.float32 and got.shape == want.shape, name
        assert torch.equal(got, want), name
        # A model on the CPU: normalised per crop in the decode thread, alone or into a batch slot.
        on_cpu = ImagePreprocessor(processor, normalise_in_one=True)
        assert torch.equal(on_cpu.finish(torch.stack([on_cpu.one(frame)])), want), name
        batch = on_cpu.new_batch(2)
        if batch is not None:
            on_cpu.one(frame, out=batch[1])
            assert batch.dtype == torch.float32 and torch.equal(batch[1:], want), name
        else:
            assert kind == "uncropped"  # its output size follows each image's aspect ratio


def test_a_processor_with_its_own_pipeline_is_called_whole(odd_images):
    class Custom(CLIPImageProcessor):
        def _preprocess(self, images, **kwargs):
            out = super()._preprocess(images, **kwargs)
            out["pixel_values"] = out["pixel_values"] * 0 + 1.0  # a pipeline we must not second-guess
            return out

    steps = ImagePreprocessor(Custom())
    assert not steps.split
    frame = ImageLoader(ScoreConfig()).load(odd_images["jpeg"]).image
    pixels = steps.finish(torch.stack([steps.one(frame)]))
    assert pixels.dtype == torch.float32 and bool((pixels == 1.0).all())


# -------------------------------------------------------------------------------------------------
# fast: smaller frames, scores within 1e-3, the same reasons for bad input
# -------------------------------------------------------------------------------------------------
def test_fast_frames_are_reduced_but_still_cover_the_model_input():
    decoder = FrameDecoder("fast", 224, 224)
    loader = ImageLoader(ScoreConfig(preprocess="fast"))
    loader.set_target(224, 224)
    for name, data in every_format().items():
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        frame = loader.load(data).image
        h, w = frame.shape[1:]
        assert min(h, w) >= 224, name  # never upscaled into the resize
        if name.startswith("jpeg"):  # DCT-scaled: the smallest k/8 that still covers 224
            assert h * w < width * height and min(h, w) < 2 * 224, name
            with Image.open(io.BytesIO(data)) as image:
                assert decoder.frame_size(image) == (w, h), name  # the budget counts what is decoded
        elif min(width, height) >= 4 * 224:  # box-reduced by an integer factor, keeping a gap of 2
            assert 2 * 224 <= min(h, w) < min(width, height), name
        else:  # too small to reduce with a gap of 2: decoded whole
            assert (w, h) == (width, height), name


def test_fast_keeps_small_and_odd_images_whole(odd_images):
    loader = ImageLoader(ScoreConfig(preprocess="fast"))
    loader.set_target(224, 224)
    for name, data in odd_images.items():
        result = loader.load(data)
        assert result.error is None, (name, result.error)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        h, w = result.image.shape[1:]
        assert min(h, w) >= min(224, height, width), name


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_bad_bytes_give_the_same_reasons_in_both_modes(bad_images, mode):
    loader = ImageLoader(ScoreConfig(preprocess=mode))
    for name, (data, expected) in bad_images.items():
        result = loader.load(data)
        assert result.image is None and result.error.split(":", 1)[0] == expected, (mode, name, result.error)


def _scores(cfg: ScoreConfig, images: list[bytes]) -> pd.DataFrame:
    scorer = PairScorer.from_config(cfg)
    try:
        return scorer.score_frame(pd.Series(images), pd.Series(["a photo of something"] * len(images)))
    finally:
        scorer.close()


def test_fast_scores_within_1e3_of_exact_on_real_photos_and_every_format(b32_dir):
    images = {**real_photos(), **every_format()}
    cfg = ScoreConfig(model=b32_dir, device="cpu", precision="fp32", batch_size=16)
    exact = _scores(cfg, list(images.values()))
    fast = _scores(cfg.replace(preprocess="fast"), list(images.values()))
    assert exact.score_error.isna().all() and fast.score_error.isna().all()
    diff = (fast.similarity - exact.similarity).abs().to_numpy()
    worst = int(np.argmax(diff))
    assert diff.max() <= 1e-3, f"{list(images)[worst]}: {diff.max():.2e}"
    assert diff.max() > 0  # the fast path really ran (its pixels differ)


def test_exact_scores_equal_the_transformers_reference_on_real_photos(b32_dir):
    """The whole exact path (simplejpeg frames, split processor) against CLIPProcessor + CLIPModel."""
    from transformers import CLIPModel, CLIPProcessor

    photos = real_photos()
    caption = "a photo of something"
    processor = CLIPProcessor.from_pretrained(b32_dir)
    model = CLIPModel.from_pretrained(b32_dir).eval()
    reference = []
    with torch.no_grad():
        for data in photos.values():
            inputs = processor(text=[caption], images=[Image.open(io.BytesIO(data)).convert("RGB")],
                               return_tensors="pt", padding=True)
            out = model(**inputs)
            reference.append(float((out.image_embeds * out.text_embeds).sum()))
    ours = _scores(ScoreConfig(model=b32_dir, device="cpu", precision="fp32", batch_size=16), list(photos.values()))
    assert np.abs(ours.similarity.to_numpy() - np.array(reference)).max() <= 1e-5


@pytest.mark.parametrize("kind", ["cmyk", "progressive", "grayscale", "tall", "subsampling_444"])
def test_jpeg_variants_decode_exactly_and_fast(kind):
    """Every kind of JPEG a crawl holds: exact equals Pillow's frame; fast covers the model input."""
    image = photo_like(1024, 768, seed=3) if kind != "tall" else photo_like(300, 2000, seed=4)
    data = {
        "cmyk": lambda: encode(image.convert("CMYK"), "JPEG"),  # Pillow's own CMYK conversion path
        "progressive": lambda: encode(image, "JPEG", progressive=True, quality=85),
        "grayscale": lambda: encode(image.convert("L"), "JPEG"),
        "tall": lambda: encode(image, "JPEG"),
        "subsampling_444": lambda: encode(image, "JPEG", subsampling=0),
    }[kind]()
    exact = ImageLoader(ScoreConfig()).load(data)
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(exact.image.permute(1, 2, 0).numpy(), reference)
    fast_loader = ImageLoader(ScoreConfig(preprocess="fast"))
    fast_loader.set_target(224, 224)
    fast = fast_loader.load(data).image
    h, w = fast.shape[1:]
    assert 224 <= min(h, w) < min(reference.shape[:2])
    assert abs(w / h - reference.shape[1] / reference.shape[0]) < 0.02  # the same picture, scaled
