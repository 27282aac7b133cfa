#!/usr/bin/env python3
"""Regenerate the bundled sample data used by ``make demo``.

Writes ``<out>/images/`` (photos shipped inside scikit-image's wheel, saved in
a spread of formats and modes, plus a few deliberately broken files),
``<out>/pairs.csv`` (``id,image,caption``; image paths are relative to
``<out>``) and ``<out>/README.md``.

Only ``skimage.data`` images that are part of the wheel are used, so this runs
offline. Output is deterministic for a given scikit-image/Pillow version.

    python scripts/make_sample_data.py --out data/sample
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image
from skimage import data as skdata

from clipscore.devtools.synthetic import csv_field  # one CSV quoting rule for both samples

log = logging.getLogger("make_sample_data")

MAX_SIDE = 512
JPEG_QUALITY = 90
TRUNCATE_FRACTION = 0.4
IMAGES_DIR = "images"


class Photo(NamedTuple):
    filename: str
    source: str  # skimage.data function the pixels come from
    caption: str
    build: Callable[[], Image.Image | list[Image.Image]]


Row = tuple[str, str | None, str | None, str]  # id, image, caption, kind


class BrokenRow(NamedTuple):
    image: str | None
    caption: str | None
    expected: str  # why the scorer should reject the row


# Licence / credit lines, taken from the skimage.data docstrings (0.26).
CREDITS = {
    "astronaut": "Eileen Collins, NASA Great Images database; no known copyright "
    "restrictions, public domain.",
    "chelsea": "Stefan van der Walt; CC0.",
    "clock": "Stefan van der Walt; released into the public domain.",
    "coffee": "Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0.",
    "camera": "Lav Varshney; CC0.",
    "coins": "Brooklyn Museum Collection; no known copyright restrictions.",
    "horse": "Andreas Preuss (marauder), openclipart; CC0.",
    "hubble_deep_field": "NASA / HubbleSite (Hubble eXtreme Deep Field); public domain.",
    "immunohistochemistry": "Center for Microscopy And Molecular Imaging (CMMI); "
    "no known copyright restrictions.",
    "logo": "scikit-image logo; part of scikit-image, BSD-3-Clause.",
    "retina": "Mikael Häggström, Wikimedia Commons; CC0 1.0.",
    "rocket": "SpaceX (DSCOVR launch on Falcon 9); released into the public domain.",
    "text": "Wikipedia File:Corner.png; no known copyright restrictions, public domain.",
}


def fit(img: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """Return a copy no larger than max_side on either axis."""
    img = img.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def load(name: str) -> Image.Image:
    return Image.fromarray(getattr(skdata, name)())


def horse_frames() -> list[Image.Image]:
    horse = Image.fromarray(np.where(skdata.horse(), 255, 0).astype(np.uint8))
    horse = fit(horse, 256)
    return [horse, horse.transpose(Image.Transpose.FLIP_LEFT_RIGHT), horse]


def hubble_strip(width: int = 4000, height: int = 40) -> Image.Image:
    full = load("hubble_deep_field")
    full = full.resize((width, round(full.height * width / full.width)), Image.Resampling.LANCZOS)
    top = (full.height - height) // 2
    return full.crop((0, top, width, top + height))


def coins_16bit() -> Image.Image:
    return Image.fromarray(skdata.coins().astype(np.uint16) * 257)  # mode "I;16"


PHOTOS = [
    Photo("astronaut.jpg", "astronaut",
          "a photo of an astronaut in a spacesuit with the american flag behind her",
          lambda: load("astronaut")),
    Photo("chelsea.jpg", "chelsea",
          "a close-up photo of a tabby cat's face with green eyes",
          lambda: load("chelsea")),
    Photo("coffee_palette.png", "coffee",
          "a cup of espresso on a red saucer on a wooden table",
          lambda: fit(load("coffee")).quantize(256)),
    Photo("rocket.jpg", "rocket",
          "a rocket standing on the launch pad at dusk between tall towers",
          lambda: load("rocket")),
    Photo("camera_gray.jpg", "camera",
          "a black and white photo of a man looking through a camera on a tripod",
          lambda: load("camera")),
    Photo("coins_16bit.png", "coins",
          "a grayscale photo of old greek coins laid out in rows",
          coins_16bit),
    Photo("horse_animated.gif", "horse",
          "a black silhouette of a horse on a white background",
          horse_frames),
    Photo("hubble_deep_field.jpg", "hubble_deep_field",
          "a telescope image of many distant galaxies in deep space",
          lambda: fit(load("hubble_deep_field"))),
    Photo("immunohistochemistry_cmyk.jpg", "immunohistochemistry",
          "a microscope image of tissue stained brown and blue",
          lambda: load("immunohistochemistry").convert("CMYK")),
    Photo("logo.png", "logo",
          "the scikit-image logo, a snake in a green and orange circle",
          lambda: fit(load("logo"), 256)),
    Photo("text.png", "text",
          "a grayscale photo of handwritten equations on a sheet of paper",
          lambda: load("text")),
    Photo("retina.jpg", "retina",
          "a medical photo of the back of a human eye showing blood vessels",
          lambda: fit(load("retina"))),
    Photo("clock.jpg", "clock",
          "a motion-blurred black and white photo of a round wall clock",
          lambda: load("clock").convert("RGB")),
    Photo("hubble_strip_wide.jpg", "hubble_deep_field",
          "a very long thin strip of a dark sky with faint galaxies",
          hubble_strip),
    Photo("chelsea_1x1.png", "chelsea",
          "a photo of a cat shrunk down to a single pixel",
          lambda: load("chelsea").resize((1, 1), Image.Resampling.BOX)),
]

# Files written into images/ that are not decodable images.
TRUNCATED, NOT_AN_IMAGE, EMPTY = "truncated.jpg", "not_an_image.jpg", "empty.jpg"
TRUNCATE_SOURCE = "astronaut.jpg"
GOOD_CAPTION = PHOTOS[0].caption


def broken_rows() -> list[BrokenRow]:
    good_image = f"{IMAGES_DIR}/{PHOTOS[1].filename}"
    return [
        BrokenRow(f"{IMAGES_DIR}/does_not_exist.jpg", GOOD_CAPTION, "image file not found"),
        BrokenRow(IMAGES_DIR, GOOD_CAPTION, "image path is a directory, not a file"),
        BrokenRow(f"{IMAGES_DIR}/{TRUNCATED}", GOOD_CAPTION,
                  "image cannot be decoded: truncated JPEG (header reads, pixel data ends early)"),
        BrokenRow(f"{IMAGES_DIR}/{NOT_AN_IMAGE}", GOOD_CAPTION,
                  "image cannot be decoded: not an image (plain text with a .jpg name)"),
        BrokenRow(f"{IMAGES_DIR}/{EMPTY}", GOOD_CAPTION, "image file is empty (0 bytes)"),
        BrokenRow(None, GOOD_CAPTION, "image path is missing (null)"),
        BrokenRow(good_image, "", "caption is empty"),
        BrokenRow(good_image, "   ", "caption is blank (whitespace only)"),
        BrokenRow(good_image, None, "caption is missing (null)"),
    ]


def save(img: Image.Image | list[Image.Image], path: Path) -> None:
    if isinstance(img, list):  # animated GIF
        img[0].save(path, save_all=True, append_images=img[1:], duration=300, loop=0)
    elif path.suffix == ".jpg":
        img.save(path, quality=JPEG_QUALITY)
    else:
        img.save(path, optimize=True)


def write_images(images_dir: Path) -> None:
    images_dir.mkdir(parents=True, exist_ok=True)
    for photo in PHOTOS:
        path = images_dir / photo.filename
        save(photo.build(), path)
        log.info("wrote %s (%d bytes)", path, path.stat().st_size)

    source = (images_dir / TRUNCATE_SOURCE).read_bytes()
    (images_dir / TRUNCATED).write_bytes(source[: int(len(source) * TRUNCATE_FRACTION)])
    (images_dir / NOT_AN_IMAGE).write_text("This is a text file, not a JPEG image.\n")
    (images_dir / EMPTY).write_bytes(b"")
    log.info("wrote broken files %s, %s, %s", TRUNCATED, NOT_AN_IMAGE, EMPTY)


def build_rows() -> list[Row]:
    """Rows as (id, image, caption, kind) where kind is good/mismatched/broken: <reason>."""
    rows = []
    shift = len(PHOTOS) // 2  # caption of a clearly different photo
    for i, photo in enumerate(PHOTOS):
        image = f"{IMAGES_DIR}/{photo.filename}"
        wrong = PHOTOS[(i + shift) % len(PHOTOS)].caption
        rows.append((image, photo.caption, "good"))
        rows.append((image, wrong, "mismatched"))
    rows += [(b.image, b.caption, f"broken: {b.expected}") for b in broken_rows()]
    return [(f"p{n:03d}", *row) for n, row in enumerate(rows, start=1)]


def write_pairs(path: Path, rows: list[Row]) -> None:
    lines = ["id,image,caption"]
    lines += [",".join(map(csv_field, row[:3])) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("wrote %s (%d rows)", path, len(rows))


def caption_cell(caption: str | None) -> str:
    if caption is None:
        return "(null)"
    return "(a valid caption)" if caption == GOOD_CAPTION else f"`{caption!r}`"


def write_readme(path: Path, rows: list[Row]) -> None:
    photos = "\n".join(
        f"| `{p.filename}` | `skimage.data.{p.source}` | {CREDITS[p.source]} |" for p in PHOTOS
    )
    broken = "\n".join(
        f"| {rid} | {'`' + image + '`' if image is not None else '(null)'} | "
        f"{caption_cell(caption)} | {kind.removeprefix('broken: ')} |"
        for rid, image, caption, kind in rows
        if kind.startswith("broken")
    )
    n_good = sum(kind == "good" for *_, kind in rows)
    n_bad = sum(kind == "mismatched" for *_, kind in rows)
    path.write_text(f"""# Sample data

Generated by `scripts/make_sample_data.py` (do not edit by hand; rerun the script).
Used by `make demo`.

- `pairs.csv`: `id,image,caption`; `image` is relative to this folder.
  {len(rows)} rows: {n_good} correct captions, {n_bad} deliberately mismatched captions
  (each image also gets the caption of another image; these should score low),
  and {len(rows) - n_good - n_bad} broken rows listed below.
- `images/`: {len(PHOTOS)} valid images in varied formats (RGB/grayscale/CMYK JPEG,
  RGBA/palette/16-bit PNG, an animated GIF, a 1x1 PNG, a 4000x40 strip), plus the
  broken files `{TRUNCATED}` (first {TRUNCATE_FRACTION:.0%} of `{TRUNCATE_SOURCE}`),
  `{NOT_AN_IMAGE}` (text) and `{EMPTY}` (0 bytes).

## Image sources and licences

All pixels come from the sample images shipped inside scikit-image's wheel
(`skimage.data`); credits and licences as given in the `skimage.data` docstrings.
Images were resized, cropped or re-encoded by the script.

| File | Source | Credit / licence |
|---|---|---|
{photos}

## Deliberately broken rows

The scorer should flag each of these as an error row with a reason like the one given
(exact wording is the scorer's), without failing the job.

| id | image | caption | expected reason |
|---|---|---|---|
{broken}

Note: CSV cannot reliably distinguish a null cell from a quoted empty string; pandas and
Spark (default `nullValue`) read both `""` and an empty field as null.
""", encoding="utf-8")
    log.info("wrote %s", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/sample"), help="output folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every file written")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")

    write_images(args.out / IMAGES_DIR)
    rows = build_rows()
    write_pairs(args.out / "pairs.csv", rows)
    write_readme(args.out / "README.md", rows)

    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {len(rows)} rows and {len(PHOTOS)} images (+3 broken files) "
          f"to {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
