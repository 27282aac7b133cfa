"""Every row bounded: shape, size, format and caption limits, the pixel budget, invalid embeddings.

Memory is measured for real, in a child process (peak RSS growth while scoring), against a ceiling
derived from the documented bound, with a tiny CLIP whose own cost is negligible.
"""
import io
import json
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipscore.config.job import ScoreConfig
from clipscore.schema.errors import ERROR_CODES
from clipscore.images.loader import ImageLoader, PixelBudget
from clipscore.scoring.scorer import PairScorer
from support.images import encode, photo_like


def code(error):
    return None if error is None else error.split(":", 1)[0]


def strip_png(width: int, height: int) -> bytes:
    return encode(Image.new("RGB", (width, height), (120, 30, 200)), "PNG")


# -------------------------------------------------------------------------------------------------
# Shape, pixels, formats
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1, 100_000), (100_000, 1), (3000, 12)])
def test_aspect_bombs_are_refused_from_the_header(size):
    loader = ImageLoader(ScoreConfig())
    result = loader.load(strip_png(*size))
    assert code(result.error) == "image_aspect_ratio", result.error
    assert "max_aspect_ratio=200" in result.error


def test_aspect_limit_is_configurable_and_inclusive():
    assert ImageLoader(ScoreConfig(max_aspect_ratio=200)).load(strip_png(3000, 15)).error is None
    tight = ImageLoader(ScoreConfig(max_aspect_ratio=2))
    assert code(tight.load(strip_png(300, 100)).error) == "image_aspect_ratio"
    assert tight.load(strip_png(200, 100)).error is None


def test_pillow_bomb_limit_follows_max_image_pixels():
    ImageLoader(ScoreConfig(max_image_pixels=10_000))
    assert Image.MAX_IMAGE_PIXELS == 10_000
    loader = ImageLoader(ScoreConfig(max_image_pixels=10_000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert loader.load(strip_png(100, 100)).error is None  # at the limit: no warning noise
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    # Between our limit and Pillow's 2x error threshold: ours refuses; beyond it Pillow's own refuses.
    assert code(loader.load(strip_png(150, 100)).error) == "image_too_large"
    assert code(loader.load(strip_png(300, 100)).error) == "image_too_large"
    ImageLoader(ScoreConfig())  # restore the default for the other tests


def eps_bytes() -> bytes:
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
            b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")


def test_eps_is_never_decoded():
    result = ImageLoader(ScoreConfig()).load(eps_bytes())
    assert code(result.error) == "image_format_not_allowed", result.error
    assert "EPS" in result.error


def test_format_allow_list_is_configurable(odd_images):
    png_only = ImageLoader(ScoreConfig(image_formats=("PNG",)))
    assert png_only.load(odd_images["png"]).error is None
    result = png_only.load(odd_images["jpeg"])
    assert code(result.error) == "image_format_not_allowed" and "JPEG" in result.error


def test_eps_in_the_allow_list_is_a_config_error():
    from clipscore.config.coerce import ConfigError

    with pytest.raises(ConfigError, match="Ghostscript"):
        ScoreConfig(image_formats=("PNG", "EPS"))


def test_phone_jpegs_stored_as_mpo_decode(odd_images):
    # Pillow reports many camera JPEGs as MPO; they must not be refused by the allow-list.
    frames = [photo_like(64, 48, seed=s) for s in (1, 2)]
    buf = io.BytesIO()
    frames[0].save(buf, format="MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    assert ImageLoader(ScoreConfig()).load(buf.getvalue()).error is None


# -------------------------------------------------------------------------------------------------
# The pixel budget
# -------------------------------------------------------------------------------------------------
def test_pixel_budget_never_exceeds_its_limit_and_lets_a_large_image_through_alone():
    budget = PixelBudget(100)
    peak = [0]
    lock = threading.Lock()

    def work(pixels):
        taken = budget.acquire(pixels)
        with lock:
            peak[0] = max(peak[0], budget.in_use)
        time.sleep(0.01)
        budget.release(taken)

    threads = [threading.Thread(target=work, args=(p,)) for p in [40, 40, 40, 30, 500, 10, 60] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert peak[0] <= 100
    assert budget.in_use == 0


# -------------------------------------------------------------------------------------------------
# Memory, measured in a child process
# -------------------------------------------------------------------------------------------------
_CHILD = r"""
import io, json, sys, threading, time
import pandas as pd, psutil
from PIL import Image
from clipscore.config.job import ScoreConfig
from clipscore.scoring.scorer import score_pandas
spec = json.loads(sys.argv[1])
cfg = ScoreConfig(**spec["cfg"])
images = [open(p, "rb").read() for p in spec["paths"]]
small = io.BytesIO(); Image.new("RGB", (64, 64)).save(small, "PNG")
score_pandas(pd.DataFrame({"image": [small.getvalue()], "caption": ["x"]}), cfg)  # model load, warm-up
proc = psutil.Process()
baseline = proc.memory_info().rss
peak = [baseline]
running = True
def sample():
    while running:
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.002)
sampler = threading.Thread(target=sample); sampler.start()
out = score_pandas(pd.DataFrame({"image": images, "caption": ["a photo"] * len(images)}), cfg)
running = False; sampler.join()
print(json.dumps({"growth_mib": (peak[0] - baseline) / 2**20, "errors": out["score_error"].tolist()}))
"""


def peak_growth_mib(paths, cfg_kwargs) -> dict:
    spec = json.dumps({"paths": [str(p) for p in paths], "cfg": cfg_kwargs})
    done = subprocess.run([sys.executable, "-c", _CHILD, spec], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def large_pngs(folder, count: int, side: int) -> list:
    paths = []
    y, x = np.mgrid[0:side, 0:side]
    for seed in range(count):
        pixels = np.stack([(x * (seed + 1)) % 256, (y * (seed + 2)) % 256, ((x + y) * 3 + seed) % 256], axis=-1)
        path = folder / f"large_{seed}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path, compress_level=1)
        paths.append(path)
    return paths


def test_a_batch_of_large_images_stays_under_the_memory_bound(tmp_path, tiny_model_dir):
    """8 distinct 3000x3000 PNGs (27 MB of RGB each) in one batch.

    Bound (README): about 15 bytes per full-resolution pixel in flight (the decoded frame, its
    tensor copy and the resize's work buffers), at most ``max_pixels_in_flight`` pixels, plus
    ``batch_size`` small tensors: ~140 MB here. Without the budget (4 threads, 4 frames in flight)
    it measured 344 MB; holding the whole batch at full resolution (the old code) far more.
    """
    paths = large_pngs(tmp_path, 8, 3000)
    cfg = {"model": tiny_model_dir, "device": "cpu", "precision": "fp32", "batch_size": 8,
           "decode_threads": 4, "max_pixels_in_flight": 10_000_000}
    result = peak_growth_mib(paths, cfg)
    assert result["errors"] == [None] * 8
    assert result["growth_mib"] < 200, result


def test_aspect_bombs_cost_no_memory_in_a_batch(tmp_path, tiny_model_dir):
    paths = []
    for i, size in enumerate([(1, 100_000), (100_000, 1), (1, 200_000)]):
        path = tmp_path / f"strip_{i}.png"
        path.write_bytes(strip_png(*size))
        paths.append(path)
    normal = tmp_path / "normal.jpg"
    normal.write_bytes(encode(photo_like(640, 480, seed=3), "JPEG"))
    paths.append(normal)
    result = peak_growth_mib(paths, {"model": tiny_model_dir, "device": "cpu", "precision": "fp32"})
    assert [code(e) for e in result["errors"]] == ["image_aspect_ratio"] * 3 + [None]
    assert result["growth_mib"] < 100, result


# -------------------------------------------------------------------------------------------------
# Captions and embeddings
# -------------------------------------------------------------------------------------------------
def test_huge_caption_costs_no_more_than_its_first_characters(tiny_cfg, odd_images):
    scorer = PairScorer.from_config(tiny_cfg)
    try:
        head = "a red square on a blue background " * 300  # ~10 k characters
        huge = head + "z" * 5_000_000
        out = scorer.score_frame(pd.Series([odd_images["png"]] * 2), pd.Series([huge, head[: tiny_cfg.max_caption_chars]]))
    finally:
        scorer.close()
    assert out["score_error"].isna().all()
    assert out["similarity"][0] == pytest.approx(out["similarity"][1], abs=1e-6)


def test_zero_embedding_gets_its_own_reason(tiny_model_dir, odd_images, tmp_path):
    from transformers import CLIPModel, CLIPProcessor

    broken = tmp_path / "zero-projection"
    model = CLIPModel.from_pretrained(tiny_model_dir)
    model.visual_projection.weight.data.zero_()  # every image embedding is the zero vector
    model.save_pretrained(broken)
    CLIPProcessor.from_pretrained(tiny_model_dir).save_pretrained(broken)
    cfg = ScoreConfig(model=str(broken), device="cpu", precision="fp32")
    scorer = PairScorer.from_config(cfg)
    try:
        out = scorer.score_frame(pd.Series([odd_images["png"], None]), pd.Series(["a cat", "a cat"]))
    finally:
        scorer.close()
    assert [code(e) for e in out["score_error"]] == ["embedding_invalid", "image_null"]
    assert out["similarity"].isna().all()
    assert (out["score_band"] == "error").all()


def test_every_reason_the_core_writes_is_registered(tiny_cfg, odd_images, bad_images):
    scorer = PairScorer.from_config(tiny_cfg)
    try:
        images = [data for data, _ in bad_images.values()] + [None, 12, eps_bytes(), strip_png(1, 5000)]
        out = scorer.score_frame(pd.Series(images), pd.Series(["a cat"] * len(images)))
    finally:
        scorer.close()
    codes = {code(e) for e in out["score_error"]}
    assert None not in codes and codes <= set(ERROR_CODES)


# -------------------------------------------------------------------------------------------------
# Provenance: the hub revision is resolved to a commit on the driver
# -------------------------------------------------------------------------------------------------
_HUB_CHILD = r"""
import os, shutil, sys
cache, src, commit = sys.argv[1:4]
repo = os.path.join(cache, "models--acme--tiny-clip")
shutil.copytree(src, os.path.join(repo, "snapshots", commit))
os.makedirs(os.path.join(repo, "refs"))
open(os.path.join(repo, "refs", "main"), "w").write(commit)
from clipscore.models import check_model_loadable
print(check_model_loadable("acme/tiny-clip"), check_model_loadable(src))
"""


def test_hub_revision_resolves_to_its_commit(tiny_model_dir, tmp_path):
    """A hub id resolves (here from a real offline cache layout) to the commit the executors then load."""
    import os

    commit = "0123456789abcdef0123456789abcdef01234567"
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", _HUB_CHILD, str(tmp_path / "hub"), tiny_model_dir, commit],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == [commit, "None"]  # a local folder has no commit
