"""WebDataset shards, read as a stream and written member by member: no extraction to disk, no Spark.

A shard is a tar whose consecutive members with the same key form a sample (``000000000.jpg``,
``000000000.txt``, ``000000000.json`` ...). The key and extension are split as the ``webdataset``
library splits them (``base_plus_ext``: the key is the path up to the first dot of the file name),
so our keys are its ``__key__`` exactly. One row per sample, with a fixed schema (``COLUMNS``):

* ``key``, ``shard``; ``image`` (the bytes of the first image member, by member order), ``image_ext``;
  ``caption`` (the ``.txt``, UTF-8); ``json`` (the raw ``.json``, string);
* the fields img2dataset writes in that ``.json`` (``IMG2DATASET_FIELDS``: url, width, height, status ...),
  as typed columns, null when absent;
* ``source_error``: why a row cannot be scored, found while reading (``category: detail``,
  ``clipscore.schema.errors``): an image member larger than ``max_image_bytes`` (never read into
  memory: the stream skips it), a caption larger than that or not UTF-8, the sample a damaged shard
  cut; and on the one extra row a damaged shard gets, ``shard_truncated`` / ``shard_unreadable``
  (every sample before the damage is kept). The scoring job puts it in ``score_error``. A ``.json``
  that does not parse only leaves the typed fields null (the raw text stays in ``json``); a member
  repeated under one key keeps its first copy.

The extra row of a damaged shard has the key ``SHARD_ERROR_KEY_PREFIX + shard`` (no sample has such a
key), so a merge by key keeps exactly one such row per shard, run after run.

``ShardWriter`` writes samples into a tar in the same layout, deterministically (fixed mtime, owner
and mode), for ``clipscore export``.
"""
from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

from clipscore.schema.errors import first_line, row_error

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "avif", "heic", "heif", "jxl")
CAPTION_EXTENSIONS = ("txt", "caption", "text")
# img2dataset's per-sample .json (and its .parquet beside each tar): the fields we type as columns.
IMG2DATASET_FIELDS = {
    "url": "string", "status": "string", "error_message": "string", "width": "int", "height": "int",
    "original_width": "int", "original_height": "int", "sha256": "string", "exif": "string",
}
COLUMNS = {"key": "string", "shard": "string", "image": "binary", "image_ext": "string", "caption": "string",
           "json": "string", **IMG2DATASET_FIELDS, "source_error": "string"}
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext


def split_name(name: str) -> tuple[str | None, str | None]:
    """``dir/000001.seg.jpg`` -> (``dir/000001``, ``seg.jpg``): webdataset's own split."""
    match = _KEY_EXT.match(name)
    return (match.group(1), match.group(2)) if match else (None, None)


SHARD_ERROR_KEY_PREFIX = "__shard__:"


@dataclass
class _Sample:
    key: str
    members: dict = field(default_factory=dict)  # extension (lower case) -> bytes
    errors: list = field(default_factory=list)
    image_ext: str | None = None
    skipped: set = field(default_factory=set)  # extensions of members over the size limit


def _row(sample: _Sample, shard: str) -> dict:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(key=sample.key, shard=shard)
    if sample.image_ext is not None and sample.image_ext in sample.members:
        row["image"], row["image_ext"] = sample.members[sample.image_ext], sample.image_ext
    caption_ext = next((e for e in CAPTION_EXTENSIONS if e in sample.members), None)
    if caption_ext is None and sample.skipped & set(CAPTION_EXTENSIONS):
        sample.errors.append(row_error("member_too_large", f"{sample.key}'s caption is over the size limit; not read"))
    if caption_ext is not None:
        try:
            row["caption"] = sample.members[caption_ext].decode("utf-8")
        except UnicodeDecodeError as exc:
            sample.errors.append(row_error("caption_bad_type", f"{sample.key}.{caption_ext} is not UTF-8 ({exc.reason})"))
    if "json" in sample.members:
        raw = sample.members["json"].decode("utf-8", errors="replace")
        row["json"] = raw
        try:
            meta = json.loads(raw)
        except ValueError:
            meta = None  # the raw text stays in `json`; the typed fields stay null
        if isinstance(meta, dict):
            for name, kind in IMG2DATASET_FIELDS.items():
                value = meta.get(name)
                if value is None:
                    continue
                if kind == "int":
                    row[name] = value if isinstance(value, int) and not isinstance(value, bool) else None
                else:
                    row[name] = value if isinstance(value, str) else json.dumps(value)
    if sample.errors:
        row["source_error"] = sample.errors[0]
    return row


def shard_error_row(shard: str, code: str, detail: str, key: str | None = None) -> dict:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(key=key or SHARD_ERROR_KEY_PREFIX + shard, shard=shard, source_error=row_error(code, detail))
    return row


class _EndAwareTarInfo(tarfile.TarInfo):
    """Records how the archive ended: tarfile accepts a stream cut at a header boundary as a normal end
    (it only ends cleanly at the zero blocks of the end-of-archive marker); we must tell them apart."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            tar.clipscore_end = "marker"
            raise
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):
            tar.clipscore_end = "cut"
            raise


class _Truncated(Exception):
    pass


def read_shard(stream: BinaryIO, shard: str, max_image_bytes: int, max_member_bytes: int | None = None) -> Iterator[dict]:
    """Rows of the samples of one tar stream (plain or compressed), in member order.

    ``max_image_bytes`` bounds an image member, ``max_member_bytes`` (default: the same) any other
    member; a larger member is skipped in the stream, never held, and its sample gets a reason. A
    stream that is not a tar yields one ``shard_unreadable`` row; one that ends early or is corrupt
    after some samples yields those samples, then one ``shard_truncated`` row.
    """
    max_member_bytes = max_member_bytes or max_image_bytes
    current: _Sample | None = None
    members = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|*", tarinfo=_EndAwareTarInfo) as tar:
            for member in tar:
                members += 1
                if not member.isfile():
                    continue
                key, ext = split_name(member.name)
                if key is None:
                    continue  # no extension: not part of any sample (webdataset skips it too)
                ext = ext.lower()
                if current is None or key != current.key:
                    if current is not None:
                        yield _row(current, shard)
                    current = _Sample(key)
                is_image = ext in IMAGE_EXTENSIONS or ext.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS
                limit = max_image_bytes if is_image else max_member_bytes
                if member.size > limit:
                    current.skipped.add(ext)
                    if is_image:
                        current.errors.append(row_error("image_too_large",
                                                        f"{member.name} is {member.size} bytes (limit {limit}); not read"))
                    continue  # the stream skips the member's blocks without keeping them
                if ext in current.members:
                    continue  # a repeated member: the first copy counts, as webdataset's own reader keeps one
                handle = tar.extractfile(member)
                current.members[ext] = handle.read() if handle is not None else b""
                if is_image and current.image_ext is None:
                    current.image_ext = ext
            if getattr(tar, "clipscore_end", None) == "cut":
                raise _Truncated("the stream ended without the end-of-archive marker")
    except (tarfile.ReadError, EOFError, OSError, tarfile.StreamError, _Truncated) as exc:
        reason = f"{first_line(exc, 200)} after {members} member(s)"
        if current is not None:  # the sample the damage cut: kept, with what it has, and why it is partial
            row = _row(current, shard)
            row["source_error"] = row_error("shard_truncated", f"{shard}: sample {current.key} is incomplete: {reason}")
            yield row
        code = "shard_truncated" if members else "shard_unreadable"
        yield shard_error_row(shard, code, f"{shard}: {reason}")
        return
    if current is not None:
        yield _row(current, shard)


TAR_SAFE_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")


class ShardWriter:
    """Samples into one tar, deterministically (the same samples give the same bytes)."""

    def __init__(self, stream: BinaryIO):
        self.tar = tarfile.open(fileobj=stream, mode="w", format=tarfile.USTAR_FORMAT)
        self.samples = 0
        self.offsets: list[tuple[str, int]] = []  # (key, offset of its first member's header)

    def add(self, key: str, members: list[tuple[str, bytes]]) -> None:
        """``members``: (extension, bytes) in the order they go into the tar."""
        self.offsets.append((key, self.tar.offset))
        for ext, data in members:
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
            info.uname = info.gname = ""
            self.tar.addfile(info, io.BytesIO(data))
        self.samples += 1

    def close(self) -> None:
        self.tar.close()
