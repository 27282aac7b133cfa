"""Benchmark data: reproducible photo-like JPEGs and alt-text-like captions (shared by bench.py and scale.py)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

_SUBJECTS = ["a golden retriever", "two children", "an old fisherman", "a red vintage car", "a bowl of ramen",
             "a tabby cat", "a mountain biker", "a wooden sailboat", "a bride and groom", "a city skyline",
             "a plate of pancakes", "a herd of elephants", "a street musician", "a lighthouse", "a snowy owl",
             "a group of hikers", "a modern kitchen", "a vegetable market", "a steam locomotive", "a surfer"]
_ACTIONS = ["standing", "resting", "playing", "waiting", "walking", "shown", "photographed", "running", "sitting"]
_PLACES = ["on a sandy beach", "in a crowded market", "next to a quiet lake", "under a cloudy sky",
           "in front of a brick wall", "on a wooden table", "at the edge of a forest", "in a snowy field",
           "along a busy street", "inside a bright studio", "near an old stone bridge", "on a rooftop terrace"]
_LIGHT = ["at sunset", "in the morning light", "on a rainy afternoon", "at night under street lamps",
          "in soft window light", "on a foggy day", "in bright midday sun"]
_EXTRA = ["shallow depth of field", "shot on 35mm film", "high resolution stock photo", "award winning photography",
          "warm colours and long shadows", "wide angle view", "close-up with bokeh background",
          "free for commercial use", "royalty free image", "4k wallpaper", "editorial use only"]


def make_caption(rng: np.random.Generator) -> str:
    """Alt-text-like captions: mostly 8-25 words, some short labels, some long SEO strings (up to ~70 tokens)."""
    kind = rng.random()
    subject, action = rng.choice(_SUBJECTS), rng.choice(_ACTIONS)
    if kind < 0.15:
        return f"{subject} {rng.choice(_PLACES)}"
    text = f"{subject} {action} {rng.choice(_PLACES)} {rng.choice(_LIGHT)}"
    if kind > 0.55:
        text += ", " + ", ".join(rng.choice(_EXTRA, size=int(rng.integers(1, 3)), replace=False))
    if kind > 0.85:
        text += ". " + " ".join(f"{rng.choice(_SUBJECTS)} {rng.choice(_PLACES)}" for _ in range(int(rng.integers(1, 4))))
    return text[0].upper() + text[1:]


def photo_like(width: int, height: int, rng: np.random.Generator) -> "Image.Image":
    """Smooth colour gradients, soft blobs, a few hard-edged shapes and sensor noise: JPEG-compresses like a photo."""
    from PIL import Image, ImageDraw, ImageFilter

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x /= width
    y /= height
    img = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        a, b, p = rng.uniform(-1, 1, 3)
        img[..., c] = 110 + 70 * (a * x + b * y) + 40 * np.sin(2 * np.pi * (rng.uniform(0.5, 3) * x + p))
    for _ in range(6):  # soft blobs (out-of-focus objects)
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        blob = np.exp(-((x - cx) ** 2 + ((y - cy) * height / width) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-90, 90, 3)
    img += rng.normal(0, 4, img.shape)
    image = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 8))):  # sharp-edged objects: texture the encoder must keep
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        x1, y1 = x0 + int(rng.integers(20, width // 3)), y0 + int(rng.integers(20, height // 3))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
    return image.filter(ImageFilter.GaussianBlur(0.6))


def make_dataset(n: int, sizes: list[tuple[int, int]], seed: int, quality: int = 88):
    """``n`` distinct (jpeg bytes, caption, width, height) rows, image sizes cycling through ``sizes``."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        width, height = sizes[i % len(sizes)]
        buf = io.BytesIO()
        photo_like(width, height, rng).save(buf, format="JPEG", quality=quality)
        rows.append((i, buf.getvalue(), make_caption(rng), width, height))
    return pd.DataFrame(rows, columns=["id", "image", "caption", "width", "height"])


def cached_dataset(n: int, sizes, seed: int, cache_dir: Path):
    import pandas as pd

    tag = f"n{n}_s{seed}_" + "_".join(f"{w}x{h}" for w, h in sizes)
    path = cache_dir / f"pairs_{tag}.parquet"
    if path.is_file():
        return pd.read_parquet(path), path
    cache_dir.mkdir(parents=True, exist_ok=True)
    df = make_dataset(n, sizes, seed)
    df.to_parquet(path, index=False)
    return df, path


def reencode(data: bytes, fmt: str) -> bytes:
    """The same picture in another format (lossless where the format allows; GIF is paletted)."""
    from PIL import Image

    options = {"JPEG": {"quality": 88}, "WEBP": {"quality": 90}}.get(fmt, {})
    with Image.open(io.BytesIO(data)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, format=fmt, **options)
        return out.getvalue()
