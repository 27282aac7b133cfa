"""The synthetic shapes dataset: images match their attributes, captions state them, swaps are wrong."""
from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clipscore.devtools import synthetic
from clipscore.devtools.synthetic import COLORS, COUNT_WORDS, PLURALS, POSITIONS, SCALES, SHAPES, VOCABULARY


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic.generate(200, seed=5)


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def blobs(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """8-connected components of a boolean mask, as lists of (row, column)."""
    unseen = set(zip(*np.nonzero(mask)))
    found = []
    while unseen:
        stack, blob = [unseen.pop()], []
        while stack:
            y, x = stack.pop()
            blob.append((y, x))
            for neighbour in [(y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]:
                if neighbour in unseen:
                    unseen.remove(neighbour)
                    stack.append(neighbour)
        found.append(blob)
    return found


def stated(caption: str) -> dict[str, object]:
    """Parse a caption back into the attributes it states."""
    words = caption.split()
    counts = {w: n for n, ws in COUNT_WORDS.items() for w in ws} | {"an": 1}
    nouns = {s: s for s in SHAPES} | {p: s for s, p in PLURALS.items()}
    colour = next(i for i, w in enumerate(words) if w in COLORS)
    count_word = words[colour - 2] if words[colour - 1] in SCALES else words[colour - 1]
    attributes: dict[str, object] = {
        "color": words[colour], "shape": next(nouns[w] for w in words if w in nouns), "count": counts[count_word],
    }
    attributes |= {"scale": w for w in words if w in SCALES}
    attributes |= {"position": p for p, phrase in POSITIONS.items() if caption.endswith(phrase)}
    return attributes


def test_same_seed_same_table_other_seed_other_table():
    first, again, other = synthetic.generate(30, seed=1), synthetic.generate(30, seed=1), synthetic.generate(30, seed=2)
    pd.testing.assert_frame_equal(first, again)
    assert not set(first["image"]) & set(other["image"])
    assert first["caption"].tolist() != other["caption"].tolist()
    assert first["id"].is_unique and not set(first["id"]) & set(other["id"])


def test_columns_and_variety(table):
    assert list(table.columns) == ["id", "image", "caption", "shape", "color", "count", "scale", "position", "template"]
    assert set(table["shape"]) == set(SHAPES) and set(table["color"]) == set(COLORS)
    assert set(table["count"]) == {1, 2, 3} and set(table["scale"]) == set(SCALES)
    assert set(table["position"]) == set(POSITIONS) and set(table["template"]) == set(range(len(synthetic.TEMPLATES)))
    assert table["caption"].nunique() > 100


@pytest.mark.parametrize("size", [64, 48])
def test_images_show_count_shapes_of_the_colour_on_the_named_side(size):
    df = synthetic.generate(60, seed=3, size=size)
    for row in df.itertuples():
        pixels = decode(row.image)
        assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8
        paint = np.abs(pixels.astype(int) - COLORS[row.color]).max(axis=-1) <= 60
        shapes = blobs(paint)
        assert len(shapes) == row.count, row
        assert min(map(len, shapes)) >= 8, row  # a shape, not a stray pixel
        ys, xs = np.nonzero(paint)
        centre = {"left": xs.mean(), "right": size - xs.mean(), "top": ys.mean(), "bottom": size - ys.mean()}
        assert centre[row.position] < size / 2, row


def test_large_shapes_are_larger(table):
    area = np.array([(np.abs(decode(r.image).astype(int) - COLORS[r.color]).max(axis=-1) <= 60).sum() / r.count
                     for r in table.itertuples()])
    for shape in SHAPES:
        of_shape = table["shape"].to_numpy() == shape
        small, large = (area[of_shape & (table["scale"].to_numpy() == s)] for s in ("small", "large"))
        assert small.max() < large.min(), shape


def test_captions_state_the_row_attributes(table):
    for row in table.itertuples():
        words = row.caption.split()
        assert set(words) <= set(VOCABULARY), row.caption
        assert stated(row.caption) == {a: getattr(row, a) for a in synthetic.mentions(row.template)}, row.caption
        assert sum(w in COLORS for w in words) == 1 and sum(w in SHAPES or w in PLURALS.values() for w in words) == 1
        assert not re.search(r"\ba [aeiou]", row.caption), row.caption


def test_swapped_captions_always_state_something_false(table):
    swapped = synthetic.swapped_captions(table, seed=0)
    assert swapped.index.equals(table.index) and (swapped != table["caption"]).all()
    for row, caption in zip(table.itertuples(), swapped):
        assert any(getattr(row, a) != value for a, value in stated(caption).items()), (row, caption)
    assert not swapped.equals(synthetic.swapped_captions(table, seed=1))


def test_swap_finds_the_one_wrong_caption_or_says_there_is_none(table):
    other = table.index[table["color"] != table["color"][0]][0]
    df = pd.concat([table.iloc[[0]]] * 50 + [table.iloc[[other]]], ignore_index=True)
    swapped = synthetic.swapped_captions(df, seed=0)
    assert (swapped[:50] == table["caption"][other]).all() and swapped[50] == table["caption"][0]
    with pytest.raises(ValueError, match="no caption"):
        synthetic.swapped_captions(df[:50], seed=0)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic-tokenizer")
    return folder, synthetic.write_tokenizer(folder)


def test_tokenizer_vocab_is_small_with_end_of_text_last(tokenizer_dir):
    folder, size = tokenizer_dir
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert size == len(vocab) == len(set(vocab.values())) and sorted(vocab.values()) == list(range(size))
    assert 512 + len(VOCABULARY) < size < 1000
    assert vocab["<|endoftext|>"] == size - 1 and vocab["<|startoftext|>"] == size - 2


@pytest.mark.parametrize("kind", ["CLIPTokenizer", "CLIPTokenizerFast"])
def test_every_word_is_one_token_and_unknown_words_fall_back(tokenizer_dir, kind):
    import transformers

    folder, size = tokenizer_dir
    tokenizer = getattr(transformers, kind).from_pretrained(str(folder))
    for word in VOCABULARY:
        assert tokenizer.tokenize(word) == [word + "</w>"]
    ids = tokenizer("Hexagonal zebras!")["input_ids"]
    assert tokenizer.unk_token_id not in ids[1:-1] and len(ids) > 8
    assert tokenizer.decode(ids, skip_special_tokens=True) == "hexagonal zebras !"


def test_tokenizers_agree_with_clips_bpe(tokenizer_dir, table):
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    folder, size = tokenizer_dir
    slow, fast = CLIPTokenizer.from_pretrained(str(folder)), CLIPTokenizerFast.from_pretrained(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    ranks = {tuple(line.split()): rank for rank, line in enumerate(merges)}
    captions = [*table["caption"][:50], "a purple hexagon near the stars"]
    for caption in captions:
        expected = [size - 2, *(vocab[t] for w in caption.split() for t in synthetic._bpe(w, ranks)), size - 1]
        assert slow(caption)["input_ids"] == fast(caption)["input_ids"] == expected
    assert [len(slow.tokenize(c)) for c in captions[:50]] == [len(c.split()) for c in captions[:50]]


def test_processor_loads_from_the_tokenizer_folder(tokenizer_dir):
    from transformers import CLIPImageProcessor, CLIPProcessor

    folder, size = tokenizer_dir
    CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(folder)
    processor = CLIPProcessor.from_pretrained(str(folder))
    batch = processor(text=["two red circles", "a star"], images=[Image.new("RGB", (64, 64))] * 2, padding=True,
                      return_tensors="np")
    assert batch["input_ids"].shape == (2, 5) and int(batch["input_ids"].max()) == size - 1
    assert tuple(batch["pixel_values"].shape) == (2, 3, 64, 64)


def read_pairs(path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, dtype=str)


def test_sample_has_true_swapped_and_broken_rows(tmp_path):
    path = synthetic.write_sample(tmp_path / "sample", n=12, seed=4)
    assert path == tmp_path / "sample" / "pairs.csv"
    pairs = read_pairs(path)
    assert list(pairs.columns) == ["id", "image", "caption", "kind"] and pairs["id"].is_unique
    assert pairs["kind"].value_counts().to_dict() == {"true": 6, "swapped": 6, "broken": 9}
    own = synthetic.generate(12, seed=4)
    good = pairs[pairs["kind"] != "broken"]
    for row, png, caption in zip(good.itertuples(), own["image"], own["caption"]):
        assert re.fullmatch(r"images/\d{4}\.png", row.image)
        assert (path.parent / row.image).read_bytes() == png
        assert (row.caption == caption) == (row.kind == "true")
    broken = pairs[pairs["kind"] == "broken"].set_index("image")
    root = path.parent
    assert not (root / "images/does_not_exist.png").exists() and (root / "images").is_dir()
    assert (root / "images/empty.png").stat().st_size == 0
    for name in ("images/truncated.png", "images/not_an_image.png"):
        with pytest.raises(OSError):
            Image.open(root / name).load()
    assert {"images/does_not_exist.png", "images", "images/truncated.png", "images/not_an_image.png",
            "images/empty.png", ""} <= set(broken.index)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert sum(line.endswith(',"",broken') for line in lines) == 1
    assert sum(line.endswith(',"   ",broken') for line in lines) == 1
    assert sum(line.endswith(",,broken") for line in lines) == 1
    assert sum(re.match(r"p\d{4},,", line) is not None for line in lines) == 1  # the null image


def test_sample_without_broken_rows_and_cli(tmp_path):
    pairs = read_pairs(synthetic.write_sample(tmp_path / "clean", n=5, seed=2, broken=False))
    assert pairs["kind"].value_counts().to_dict() == {"true": 3, "swapped": 2}
    assert all((tmp_path / "clean" / image).is_file() for image in pairs["image"])
    assert sorted(p.name for p in (tmp_path / "clean" / "images").iterdir()) == [f"000{i}.png" for i in range(1, 6)]

    synthetic.main(["sample", "--out", str(tmp_path / "cli"), "--n", "5", "--seed", "2"])
    pairs_cli = read_pairs(tmp_path / "cli" / "pairs.csv")
    pd.testing.assert_frame_equal(pairs_cli[:5], pairs)
    assert (pairs_cli["kind"][5:] == "broken").all() and len(pairs_cli) == 14

    synthetic.main(["table", "--out", str(tmp_path / "t" / "table.parquet"), "--n", "7", "--seed", "3", "--size", "32"])
    table = pd.read_parquet(tmp_path / "t" / "table.parquet")
    pd.testing.assert_frame_equal(table, synthetic.generate(7, seed=3, size=32))


def test_near_copies_decode_and_keep_their_size_rule():
    import io

    from PIL import Image

    from clipscore.devtools.synthetic import COPY_KINDS, generate, near_copy

    png = generate(1, seed=3, size=64).image[0]
    sizes = {kind: Image.open(io.BytesIO(near_copy(png, kind))).size for kind in COPY_KINDS}
    assert sizes == {"jpeg": (64, 64), "resize": (48, 48), "crop": (62, 62)}
    assert Image.open(io.BytesIO(near_copy(png, "jpeg"))).format == "JPEG"
    with pytest.raises(ValueError, match="kind must be one of"):
        near_copy(png, "rotate")
