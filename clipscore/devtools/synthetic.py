"""A synthetic captioned image dataset on which a small CLIP can be trained from scratch on a CPU.

Each image shows 1-3 filled shapes of one colour and one scale, grouped on one side of a plain or
lightly noisy dark background; the caption says what is drawn ("two small red circles on the left",
"a photo of a blue star"). Colour, shape and count are always captioned, scale and position by some
templates only. ``swapped_captions`` gives each row a caption of another row that is really wrong for
it, ``write_tokenizer`` a CLIP BPE tokenizer with one token per caption word, and ``write_sample`` a
small demo folder in the style of ``data/sample`` (true, swapped and broken rows).

    python -m clipscore.devtools.synthetic table --out out/synthetic.parquet --n 20000 --seed 0
    python -m clipscore.devtools.synthetic sample --out out/synthetic-sample --n 40
"""
from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from clipscore.devtools.random_model import _SPECIAL, _byte_level_vocab


# {n} count word, {z} scale, {c} colour, {s} shape noun, {p} position phrase
TEMPLATES = ("{n} {c} {s}", "a photo of {n} {c} {s}", "{n} {z} {c} {s}", "a picture of {n} {z} {c} {s}",
             "{n} {c} {s} {p}", "a drawing of {n} {c} {s} {p}", "{n} {z} {c} {s} {p}",
             "an image of {n} {z} {c} {s} {p}")
COLORS = {"red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 225, 40), "green": (40, 180, 60),
          "cyan": (40, 215, 225), "blue": (50, 90, 235), "purple": (150, 60, 200), "white": (240, 240, 240)}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds",
           "star": "stars", "cross": "crosses"}
SHAPES = tuple(PLURALS)
COUNT_WORDS = {1: ("a", "one"), 2: ("two",), 3: ("three",)}
SCALES = {"small": 0.085, "large": 0.14}  # shape radius as a fraction of the image side
POSITIONS = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}

VOCABULARY: tuple[str, ...] = tuple(sorted({
    "an", *COLORS, *SHAPES, *PLURALS.values(), *SCALES, *(w for ws in COUNT_WORDS.values() for w in ws),
    *(w for phrase in POSITIONS.values() for w in phrase.split()),
    *(w for t in TEMPLATES for w in re.findall(r"[a-z]+", re.sub(r"\{\w\}", " ", t))),
}))


def mentions(template: int) -> tuple[str, ...]:
    """The attributes a caption of this template states: colour, shape, count, then scale and position if used."""
    text = TEMPLATES[template]
    optional = (("scale",) if "{z}" in text else ()) + (("position",) if "{p}" in text else ())
    return ("color", "shape", "count", *optional)


class Scene(NamedTuple):
    """What one image shows; its caption states some of it (see ``mentions``)."""
    shape: str
    color: str
    count: int
    scale: str
    position: str
    template: int


_STAR = [(r * np.cos(a), r * np.sin(a)) for r, a in zip([1.0, 0.45] * 5, np.pi * (np.arange(10) / 5 - 0.5))]
_W = 0.33  # half-width of a cross arm
# Outlines around the origin (y down), each about as tall and wide as a circle of radius 1.
_OUTLINES: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
    "triangle": [(0.0, -0.86), (1.0, 0.86), (-1.0, 0.86)],
    "diamond": [(0.0, -1.0), (0.8, 0.0), (0.0, 1.0), (-0.8, 0.0)],
    "star": _STAR,
    "cross": [(-_W, -1), (_W, -1), (_W, -_W), (1, -_W), (1, _W), (_W, _W), (_W, 1), (-_W, 1), (-_W, _W),
              (-1, _W), (-1, -_W), (-_W, -_W)],
}
_SUPERSAMPLE = 4  # shapes are drawn this much larger, then box-filtered down: anti-aliased edges


def _centres(rng: np.random.Generator, count: int, radius: float, position: str) -> list[tuple[float, float]]:
    """Shape centres (fractions of the side): a jittered row along the long axis of the named half."""
    along_jitter = max(0.0, min(0.12, 0.5 / count - radius - 0.01))
    across_jitter = max(0.0, min(0.08, 0.25 - radius - 0.03))
    centres = []
    for k in range(count):
        along = (k + 0.5) / count + rng.uniform(-along_jitter, along_jitter)
        across = 0.25 + rng.uniform(-across_jitter, across_jitter)
        across = 1 - across if position in ("right", "bottom") else across
        centres.append((across, along) if position in ("left", "right") else (along, across))
    return centres


def _draw(rng: np.random.Generator, scene: Scene, size: int) -> bytes:
    """One PNG: the shapes' coverage mask blended over a plain or lightly noisy dark background."""
    side = size * _SUPERSAMPLE
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    radius = SCALES[scene.scale] * rng.uniform(0.95, 1.05)
    for cx, cy in _centres(rng, scene.count, radius, scene.position):
        x, y, r = cx * side, cy * side, radius * side
        if scene.shape == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        else:
            draw.polygon([(x + r * u, y + r * v) for u, v in _OUTLINES[scene.shape]], fill=255)
    alpha = np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.float32)[..., None] / 255
    background = rng.uniform(15, 75, 3).astype(np.float32)
    paint = np.asarray(COLORS[scene.color]) + rng.integers(-12, 13, 3)
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) * rng.uniform(0, 6)
    pixels = np.clip(background * (1 - alpha) + paint * alpha + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _caption(rng: np.random.Generator, scene: Scene) -> str:
    """The scene in its template's words, with a random count word for one ("a"/"one") and a/an fixed."""
    count_word = rng.choice(COUNT_WORDS[scene.count])
    noun = scene.shape if scene.count == 1 else PLURALS[scene.shape]
    text = TEMPLATES[scene.template].format(n=count_word, z=scene.scale, c=scene.color, s=noun,
                                            p=POSITIONS[scene.position])
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def generate(n: int, seed: int = 0, size: int = 64) -> pd.DataFrame:
    """``n`` rows: id, image (PNG bytes, RGB, size x size), caption, the Scene attributes and template index."""
    rng = np.random.default_rng(seed)
    columns = [rng.choice(SHAPES, n), rng.choice(tuple(COLORS), n), rng.integers(1, 4, n),
               rng.choice(tuple(SCALES), n), rng.choice(tuple(POSITIONS), n), rng.integers(len(TEMPLATES), size=n)]
    scenes = [Scene(str(sh), str(co), int(cn), str(sc), str(po), int(t)) for sh, co, cn, sc, po, t in zip(*columns)]
    df = pd.DataFrame(scenes, columns=list(Scene._fields))
    df.insert(0, "id", [f"s{seed}-{i:06d}" for i in range(n)])
    df.insert(1, "image", [_draw(rng, scene, size) for scene in scenes])
    df.insert(2, "caption", [_caption(rng, scene) for scene in scenes])
    return df


def swapped_captions(df: pd.DataFrame, seed: int = 0) -> pd.Series:
    """For each row, the caption of a random other row that states an attribute this row does not have."""
    rng = np.random.default_rng(seed)
    n = len(df)
    attributes = Scene._fields[:-1]
    values = {a: df[a].to_numpy() for a in attributes}
    stated = {a: np.array([a in mentions(t) for t in df["template"]]) for a in attributes}

    def wrong(rows: np.ndarray, donors: np.ndarray) -> np.ndarray:
        return np.logical_or.reduce([stated[a][donors] & (values[a][rows] != values[a][donors]) for a in attributes])

    donor = rng.integers(n, size=n)
    for _ in range(20):
        retry = np.flatnonzero(~wrong(np.arange(n), donor))
        donor[retry] = rng.integers(n, size=retry.size)
    for row in np.flatnonzero(~wrong(np.arange(n), donor)):  # rare: search every row
        candidates = np.flatnonzero(wrong(np.full(n, row), np.arange(n)))
        if candidates.size == 0:
            raise ValueError(f"no caption in the table is wrong for row {row}")
        donor[row] = rng.choice(candidates)
    return pd.Series(df["caption"].to_numpy()[donor], index=df.index, name="caption")


COPY_KINDS = ("jpeg", "resize", "crop")


def near_copy(png: bytes, kind: str) -> bytes:
    """A near-duplicate of an image, as crawls hold them: re-encoded as JPEG (quality 90), resized to 3/4,
    or cropped by one pixel on each side."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    if kind == "jpeg":
        image.save(out, "JPEG", quality=90)
    elif kind == "resize":
        image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.BICUBIC).save(out, "PNG")
    elif kind == "crop":
        image.crop((1, 1, image.width - 1, image.height - 1)).save(out, "PNG")
    else:
        raise ValueError(f"kind must be one of {COPY_KINDS}; got {kind!r}")
    return out.getvalue()


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one byte-level word: merge the best-ranked adjacent pair until none is ranked."""
    symbols = [*word[:-1], word[-1] + "</w>"]
    while len(symbols) > 1:
        best = min(zip(symbols, symbols[1:]), key=lambda pair: ranks.get(pair, len(ranks)))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(symbols):
            if tuple(symbols[i:i + 2]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def write_tokenizer(folder: str | Path) -> int:
    """Write vocab.json, merges.txt and tokenizer_config.json: one token per VOCABULARY word; returns the vocab size.

    Merges are added like BPE training: while a word is more than one token, merge its first two
    tokens at the lowest priority, which cannot split any word that is already one token. The vocab is
    every byte-level character (alone and word-final), the merge results, then the specials
    (end-of-text last, the highest id, as in CLIP).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    characters = [t for t in _byte_level_vocab() if t not in _SPECIAL]
    byte_chars = characters[:256]  # byte b -> its printable stand-in
    ranks: dict[tuple[str, str], int] = {}
    for word in VOCABULARY:
        encoded = "".join(byte_chars[b] for b in word.encode("utf-8"))
        while len(tokens := _bpe(encoded, ranks)) > 1:
            ranks[(tokens[0], tokens[1])] = len(ranks)
    tokens = dict.fromkeys([*characters, *(a + b for a, b in ranks), *_SPECIAL])
    vocab = {token: i for i, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in ranks), encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": _SPECIAL[0],
              "eos_token": _SPECIAL[1], "unk_token": _SPECIAL[1], "pad_token": _SPECIAL[1]}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return len(vocab)


def csv_field(value: str | None) -> str:
    """Quote when needed; None becomes an empty unquoted field, "" becomes ``""`` (as data/sample does)."""
    if value is None:
        return ""
    if value == "" or value != value.strip() or any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def write_sample(out_dir: str | Path, n: int, seed: int = 0, broken: bool = True) -> Path:
    """Write ``n`` PNGs to ``out_dir/images`` and ``out_dir/pairs.csv``; returns the CSV's path.

    Rows are ``id,image,caption,kind`` with image paths relative to ``out_dir``; half the images get
    their own caption (kind ``true``), the rest a swapped one (``swapped``). ``broken`` adds nine rows
    the scorer must reject (kind ``broken``): missing file, directory, truncated PNG, text named .png,
    empty file, null image, empty, blank and null captions.
    """
    if n < 2:
        raise ValueError("a sample needs at least 2 images")
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    df = generate(n, seed)
    swapped = swapped_captions(df, seed)
    is_true = np.zeros(n, dtype=bool)
    is_true[np.random.default_rng(seed).permutation(n)[: (n + 1) // 2]] = True
    rows: list[tuple[str | None, str | None, str]] = []
    for i, (png, caption, wrong) in enumerate(zip(df["image"], df["caption"], swapped)):
        (images / f"{i + 1:04d}.png").write_bytes(png)
        rows.append((f"images/{i + 1:04d}.png", caption if is_true[i] else wrong, "true" if is_true[i] else "swapped"))
    if broken:
        first, caption = rows[0][0], df["caption"].iloc[0]
        (images / "truncated.png").write_bytes(df["image"].iloc[0][: len(df["image"].iloc[0]) * 2 // 5])
        (images / "not_an_image.png").write_text("this is a text file, not a PNG\n", encoding="utf-8")
        (images / "empty.png").write_bytes(b"")
        rows += [(path, caption, "broken") for path in ("images/does_not_exist.png", "images", "images/truncated.png",
                                                        "images/not_an_image.png", "images/empty.png", None)]
        rows += [(first, bad, "broken") for bad in ("", "   ", None)]
    lines = ["id,image,caption,kind"]
    lines += [",".join(map(csv_field, (f"p{k:04d}", *row))) for k, row in enumerate(rows, start=1)]
    path = out_dir / "pairs.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="a Parquet table: id, image (PNG bytes), caption, attributes")
    table.add_argument("--size", type=int, default=64, help="image side in pixels")
    sample = commands.add_parser("sample", help="a demo folder: images/ and pairs.csv (true, swapped, broken)")
    for command in (table, sample):
        command.add_argument("--out", type=Path, required=True)
        command.add_argument("--n", type=int, required=True)
        command.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "table":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        generate(args.n, args.seed, args.size).to_parquet(args.out, index=False)
        print(f"wrote {args.n} rows to {args.out}")
    else:
        print(f"wrote {write_sample(args.out, args.n, args.seed)}")


if __name__ == "__main__":
    main()
