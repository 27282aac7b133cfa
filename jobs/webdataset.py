"""WebDataset shards as a Spark 4 Python data source: ``spark.read.format("webdataset")`` and ``df.write.format(...)``.

Reading: one input partition per shard (a path, glob or brace pattern ``shards/{00000..00999}.tar``,
local or on an fsspec scheme of ``fsspec_schemes``, expanded once on the driver); each shard is
streamed through ``clipscore.io.webdataset.read_shard`` (never extracted, a member over
``max_image_bytes`` never held, a damaged shard keeps its samples and adds one error row). The same
code runs on classic Spark and on Spark Connect.

Writing (``clipscore export``): each task writes its rows, in the order it receives them, as tar
shards of at most ``shard_rows`` samples and ``shard_bytes`` bytes into a staging folder beside the
output, plus a Parquet index of its samples (key, shard, member offset); the commit, on the driver
and only when every task succeeded, names the shards in task order (``000000.tar`` ...), moves the
folder into place (the previous export is swapped out only then) and writes ``_SUCCESS``; an abort
removes the staging folder. The same rows in the same order give the same bytes.
"""
from __future__ import annotations

import glob
import io
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

from pyspark.sql.datasource import DataSource, DataSourceReader, DataSourceWriter, InputPartition, WriterCommitMessage

from clipscore.config.coerce import ConfigError
from clipscore.config.extras import require
from clipscore.io.webdataset import COLUMNS, ShardWriter, read_shard

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
INDEX_FOLDER = "_index"


def schema_ddl() -> str:
    return ", ".join(f"`{name}` {kind}" for name, kind in COLUMNS.items())


def _scheme(path: str) -> str | None:
    return path.split("://", 1)[0].lower() if "://" in path else None


def expand_shards(pattern: str, fsspec_schemes: tuple[str, ...] = ()) -> list[str]:
    """Every shard a path, glob or brace pattern names, sorted; a ConfigError when none, or when a match is
    not a tar (by its name)."""
    from braceexpand import braceexpand

    found: list[str] = []
    for part in braceexpand(pattern):
        scheme = _scheme(part)
        if scheme in (None, "file"):
            local = part[len("file://"):] if scheme == "file" else part
            if os.path.isdir(local):
                matches = sorted(p for s in SHARD_SUFFIXES for p in glob.glob(os.path.join(local, f"*{s}")))
            elif any(ch in local for ch in "*?["):
                matches = sorted(glob.glob(local))
            else:
                matches = [local] if os.path.exists(local) else []
        elif scheme in fsspec_schemes:
            fs = require("fsspec", f"reading shards from {scheme}://").filesystem(scheme)
            matches = sorted(f"{scheme}://{p}" for p in (fs.glob(part) if any(c in part for c in "*?[") else
                                                            ([part] if fs.exists(part) else [])))
        else:
            raise ConfigError(f"Shards at '{part}': the scheme {scheme}:// is not in fsspec_schemes "
                              f"({', '.join(fsspec_schemes)}); add it with --set fsspec_schemes=[...].")
        found.extend(matches)
    if not found:
        raise ConfigError(f"No shards match '{pattern}'. Give a .tar path, a glob (shards/*.tar) or a brace "
                          "pattern (shards/{00000..00099}.tar), or a folder of .tar files.")
    not_tar = [p for p in found if not p.lower().endswith(SHARD_SUFFIXES)]
    if not_tar:
        raise ConfigError(f"--input-format webdataset reads .tar shards, but '{pattern}' matches "
                          f"{', '.join(not_tar[:3])}{' ...' if len(not_tar) > 3 else ''}; point it at the .tar files.")
    return list(dict.fromkeys(found))


@dataclass
class ShardPartition(InputPartition):
    path: str


class WebDatasetReader(DataSourceReader):
    def __init__(self, options: dict):
        self.shards = json.loads(options["shards"])
        self.max_image_bytes = int(options.get("max_image_bytes", 32 * 1024 * 1024))

    def partitions(self):
        return [ShardPartition(path) for path in self.shards]

    def read(self, partition: ShardPartition) -> Iterator[tuple]:
        names = list(COLUMNS)
        path = partition.path
        try:
            stream = _open(path, "rb")
        except OSError as exc:
            from clipscore.io.webdataset import shard_error_row

            row = shard_error_row(path, "shard_unreadable", f"{path}: {type(exc).__name__}: {exc}"[:300])
            yield tuple(row[n] for n in names)
            return
        with stream:
            for row in read_shard(stream, path, self.max_image_bytes):
                yield tuple(row[n] for n in names)


def _open(path: str, mode: str):
    scheme = _scheme(path)
    if scheme in (None, "file"):
        return open(path[len("file://"):] if scheme == "file" else path, mode)
    return require("fsspec", f"shards on {scheme}://").open(path, mode).open()


# -------------------------------------------------------------------------------------------------
# Writing
# -------------------------------------------------------------------------------------------------
@dataclass
class ShardsWritten(WriterCommitMessage):
    partition: int
    files: list  # temporary shard files of this task, in order
    index: str | None  # this task's index part (Parquet)
    samples: int
    bytes: int
    missing_images: int


class WebDatasetWriter(DataSourceWriter):
    """One task's rows -> tar shards in the staging folder (see the module docstring)."""

    def __init__(self, options: dict, overwrite: bool):
        self.path = options["path"]
        self.staging = options["staging"]
        self.shard_rows = int(options.get("shard_rows", 10_000))
        self.shard_bytes = int(options.get("shard_bytes", 1 << 30))
        self.key_col = options.get("key_col", "key")
        self.image_col = options.get("image_col", "image")
        self.caption_col = options.get("caption_col", "caption")
        self.meta_cols = json.loads(options.get("meta_cols", "[]"))
        self.overwrite = overwrite

    def write(self, iterator) -> ShardsWritten:
        from pyspark import TaskContext

        context = TaskContext.get()
        part = context.partitionId() if context else 0
        attempt = context.attemptNumber() if context else 0
        folder = os.path.join(self.staging, "tasks", f"{part:05d}-{attempt}")
        os.makedirs(folder, exist_ok=True)
        files, index, shard, handle, written = [], [], None, None, 0
        samples = total = missing = 0
        for row in iterator:
            members = sample_members(row, self.image_col, self.caption_col, self.meta_cols)
            missing += not any(ext != "txt" and ext != "json" for ext, _ in members)
            size = sum(len(d) + 1024 for _, d in members)
            if shard is None or shard.samples >= self.shard_rows or (shard.samples and written + size > self.shard_bytes):
                if shard is not None:
                    shard.close()
                    handle.close()
                name = os.path.join(folder, f"{len(files):05d}.tar")
                handle = open(name, "wb")
                shard, written = ShardWriter(handle), 0
                files.append(name)
            key = str(row[self.key_col])
            index.append((key, len(files) - 1, shard.tar.offset))
            shard.add(key, members)
            written += size
            samples += 1
            total += size
        if shard is not None:
            shard.close()
            handle.close()
        index_path = None
        if index:
            import pyarrow as pa
            import pyarrow.parquet as pq

            index_path = os.path.join(folder, "index.parquet")
            pq.write_table(pa.table({"key": [k for k, _, _ in index], "local_shard": [s for _, s, _ in index],
                                     "offset": [o for _, _, o in index]}), index_path)
        return ShardsWritten(part, files, index_path, samples, total, missing)

    def commit(self, messages) -> None:
        done = sorted((m for m in messages if m is not None), key=lambda m: m.partition)
        final = os.path.join(self.staging, "final")
        os.makedirs(os.path.join(final, INDEX_FOLDER), exist_ok=True)
        number = 0
        import pyarrow as pa
        import pyarrow.parquet as pq

        for message in done:
            names = []
            for path in message.files:
                name = f"{number:06d}.tar"
                os.replace(path, os.path.join(final, name))
                names.append(name)
                number += 1
            if message.index:
                table = pq.read_table(message.index)
                shards = pa.array([names[i] for i in table.column("local_shard").to_pylist()])
                table = table.drop(["local_shard"]).append_column("shard", shards)
                pq.write_table(table.select(["key", "shard", "offset"]),
                               os.path.join(final, INDEX_FOLDER, f"part-{message.partition:05d}.parquet"))
        summary = {"shards": number, "samples": sum(m.samples for m in done), "bytes": sum(m.bytes for m in done),
                   "samples_without_image": sum(m.missing_images for m in done)}
        with open(os.path.join(final, "_SUCCESS"), "w", encoding="utf-8") as handle:
            json.dump(summary, handle)
        publish(final, self.path)
        shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self, messages) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def publish(folder: str, target: str) -> None:
    """Move a finished export into place; a previous one is swapped out only now, and removed after."""
    old = None
    if os.path.exists(target):
        old = f"{target}.__clipscore_old_{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
    try:
        os.replace(folder, target)
    except Exception:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif",
               "AVIF": "avif", "HEIF": "heic", "JPEG2000": "jp2"}


def image_extension(data: bytes) -> str:
    """The extension of the bytes' real format, from the header (never decoded); ``bin`` when unknown."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return _EXTENSIONS.get(str(image.format), str(image.format).lower())
    except Exception:  # noqa: BLE001 - not an image Pillow knows: keep the bytes, say so
        return "bin"


def sample_members(row: Any, image_col: str, caption_col: str, meta_cols: list[str]) -> list[tuple[str, bytes]]:
    """One row -> its tar members: the original image bytes (never re-encoded), the caption, the other columns."""
    members: list[tuple[str, bytes]] = []
    image = row[image_col]
    if image is not None:
        data = bytes(image)
        members.append((image_extension(data), data))
    caption = row[caption_col]
    if caption is not None:
        members.append(("txt", str(caption).encode("utf-8")))
    meta = {c: _jsonable(row[c]) for c in meta_cols}
    members.append(("json", json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")))
    return members


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return None if isinstance(value, float) and value != value else value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "asDict"):
        return _jsonable(value.asDict())
    return str(value)


class WebDatasetSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "webdataset"

    def schema(self) -> str:
        return schema_ddl()

    def reader(self, schema) -> WebDatasetReader:
        return WebDatasetReader(self.options)

    def writer(self, schema, overwrite: bool) -> WebDatasetWriter:
        return WebDatasetWriter(self.options, overwrite)


def register(spark) -> None:
    """Make ``format("webdataset")`` known to this session (idempotent)."""
    spark.dataSource.register(WebDatasetSource)


def read_shards(spark, pattern: str, max_image_bytes: int, fsspec_schemes: tuple[str, ...] = ()):
    """The rows of every shard ``pattern`` names (one partition per shard)."""
    shards = expand_shards(pattern, fsspec_schemes)
    register(spark)
    return (spark.read.format("webdataset").option("shards", json.dumps(shards))
            .option("max_image_bytes", str(max_image_bytes)).load())
