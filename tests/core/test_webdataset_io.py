"""WebDataset shards in the core: real tar files, read as a stream, checked against the ``webdataset`` library.

The reference for keys and grouping is the webdataset library itself (``WebDataset(url)`` yields
``__key__`` and one entry per extension); the shards are built here with Python's ``tarfile`` in
img2dataset's layout (``000000000.jpg/.txt/.json``, key = shard id + position).
"""
from __future__ import annotations

import io
import json
import tarfile

import pytest
import webdataset as wds

from clipscore.io.webdataset import COLUMNS, ShardWriter, read_shard, split_name
from support.images import encode, photo_like
from support.shards import img2dataset_members, write_tar


_tar = write_tar


def _read(path, max_bytes=1 << 20) -> list[dict]:
    with open(path, "rb") as stream:
        return list(read_shard(stream, str(path), max_bytes))


def test_img2dataset_shard_keys_equal_the_webdataset_library(tmp_path):
    path = tmp_path / "00000.tar"
    _tar(path, img2dataset_members(0, 5))
    rows = _read(path)
    reference = list(wds.WebDataset(str(path), shardshuffle=False))
    assert [r["key"] for r in rows] == [s["__key__"] for s in reference]
    for row, sample in zip(rows, reference):
        assert row["image"] == sample["jpg"] and row["caption"] == sample["txt"].decode()
        assert row["json"] == sample["json"].decode()
        meta = json.loads(sample["json"])
        assert (row["url"], row["width"], row["height"], row["status"]) == (meta["url"], 32, 24, "success")
        assert row["original_width"] == 64 and row["error_message"] is None and row["source_error"] is None
        assert set(row) == set(COLUMNS) and row["shard"] == str(path)


def test_samples_without_image_or_caption_keep_their_row(tmp_path):
    path = tmp_path / "00001.tar"
    _tar(path, img2dataset_members(1, 4, with_missing=True))
    rows = _read(path)
    assert len(rows) == 4
    assert rows[1]["image"] is None and rows[1]["caption"] == "a photo number 1 of shard 1"
    assert rows[2]["caption"] is None and rows[2]["image"] is not None


def test_a_truncated_shard_keeps_every_sample_before_the_damage(tmp_path):
    path = tmp_path / "00002.tar"
    _tar(path, img2dataset_members(2, 6))
    data = path.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    rows = _read(cut)
    full = _read(path)
    good = [r for r in rows if r["source_error"] is None]
    assert 2 <= len(good) < 6
    assert [r["key"] for r in good] == [r["key"] for r in full[: len(good)]]
    assert [r["image"] for r in good] == [r["image"] for r in full[: len(good)]]
    damaged = rows[-1]
    assert damaged["key"] == f"__shard__:{cut}" and damaged["source_error"].startswith("shard_truncated:")
    assert str(cut) in damaged["source_error"]


def test_a_file_that_is_not_a_tar_is_one_unreadable_row(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(b"this is not a tar file at all" * 40)
    rows = _read(path)
    assert len(rows) == 1 and rows[0]["source_error"].startswith("shard_unreadable:")


def test_a_member_over_the_limit_is_skipped_unread(tmp_path):
    big = encode(photo_like(400, 300, seed=1), "PNG")
    path = tmp_path / "big.tar"
    _tar(path, [("a.jpg", encode(photo_like(8, 8), "JPEG")), ("a.txt", b"small"),
                ("b.png", big), ("b.txt", b"big one"), ("c.txt", b"no image"), ("c.cls", b"3")])
    rows = _read(path, max_bytes=len(big) - 1)
    assert [r["key"] for r in rows] == ["a", "b", "c"]
    assert rows[1]["image"] is None and rows[1]["source_error"].startswith("image_too_large:")
    assert rows[1]["caption"] == "big one"
    assert rows[0]["source_error"] is None and rows[2]["image"] is None


def test_keys_split_as_webdataset_does():
    assert split_name("dir/000001.seg.jpg") == ("dir/000001", "seg.jpg")
    assert split_name("000001.JPG") == ("000001", "JPG")
    assert split_name("noext") == (None, None)


def test_a_non_image_member_and_bad_json_and_bad_utf8(tmp_path):
    path = tmp_path / "odd.tar"
    _tar(path, [("k1.txt", b"\xff\xfe not utf8"), ("k1.jpg", b"x"), ("k2.json", b"{not json"), ("k2.txt", b"ok"),
                ("k3.npy", b"123"), ("k3.txt", b"only text")])
    rows = _read(path)
    assert rows[0]["source_error"].startswith("caption_bad_type:") and rows[0]["caption"] is None
    assert rows[1]["source_error"] is None and rows[1]["json"] == "{not json" and rows[1]["url"] is None
    assert rows[2]["image"] is None and rows[2]["caption"] == "only text"


def test_writer_is_deterministic_and_read_back_by_webdataset(tmp_path):
    samples = [(f"k{i}", [("jpg", encode(photo_like(16, 16, seed=i), "JPEG")), ("txt", f"c {i}".encode()),
                          ("json", json.dumps({"similarity": 0.1 * i}).encode())]) for i in range(3)]
    blobs = []
    for attempt in range(2):
        buffer = io.BytesIO()
        writer = ShardWriter(buffer)
        for key, members in samples:
            writer.add(key, members)
        writer.close()
        blobs.append(buffer.getvalue())
    assert blobs[0] == blobs[1]
    path = tmp_path / "w.tar"
    path.write_bytes(blobs[0])
    back = list(wds.WebDataset(str(path), shardshuffle=False))
    assert [s["__key__"] for s in back] == ["k0", "k1", "k2"]
    assert [s["jpg"] for s in back] == [m[0][1] for _, m in samples]


@pytest.mark.parametrize("compression", ["gz"])
def test_compressed_shards_stream_too(tmp_path, compression):
    path = tmp_path / "00003.tar.gz"
    with tarfile.open(path, f"w:{compression}") as tar:
        for name, data in img2dataset_members(3, 3):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert [r["key"] for r in _read(path)] == ["000030000", "000030001", "000030002"]
