"""``clipscore export``: a round trip is the test.

Shards written by export are read back by the ``webdataset`` library (the trainer's side) and by our own
reader, and give exactly the source rows' keys, image bytes and captions; the same input gives the same
bytes; duplicate or unsafe keys are refused before any shard; a failed run leaves the previous export whole.
"""
from __future__ import annotations

import glob
import json
import os

import pandas as pd
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from pyspark.sql import functions as F

from clipscore.config.coerce import ConfigError
from clipscore.jobs.cli import main as cli_main
from clipscore.jobs.export import ExportOptions, export_frame, run_export
from clipscore.jobs.tables import read_source
from support.images import encode, photo_like

N = 57


@pytest.fixture(scope="module")
def kept_table(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    images = {"jpg": encode(photo_like(24, 18, seed=1), "JPEG"), "png": encode(photo_like(20, 20, seed=2), "PNG"),
              "webp": encode(photo_like(16, 16, seed=3), "WEBP")}
    rows = [(f"k{i:04d}", images[("jpg", "png", "webp")[i % 3]], f"caption {i}, with a comma", 0.01 * i, i % 2 == 0)
            for i in range(N)]
    df = pd.DataFrame(rows, columns=["key", "image", "caption", "similarity", "flag"])
    path = str(root / "kept")
    spark.createDataFrame(df).repartition(3).write.format("delta").save(path)
    return path, df, root


def _samples(folder):
    shards = sorted(glob.glob(os.path.join(folder, "*.tar")))
    return shards, [s for shard in shards for s in wds.WebDataset(shard, shardshuffle=False)]


def test_round_trip_through_the_webdataset_library_and_our_reader(spark, tiny_cfg, kept_table):
    path, df, root = kept_table
    out = str(root / "shards")
    summary = run_export(spark, ExportOptions(input=path, output=out, shard_rows=10))
    shards, samples = _samples(out)
    assert len(shards) >= 6 and summary["samples"] == N and summary["shards"] == len(shards)
    by_key = df.set_index("key")
    assert sorted(s["__key__"] for s in samples) == sorted(df.key)
    for sample in samples:
        row = by_key.loc[sample["__key__"]]
        image_ext = next(e for e in ("jpg", "png", "webp") if e in sample)
        assert sample[image_ext] == row.image  # the original bytes, under their real format's extension
        assert sample["txt"].decode() == row.caption
        meta = json.loads(sample["json"])
        assert meta == {"similarity": pytest.approx(row.similarity), "flag": bool(row.flag), "export_error": None}
    assert all(len(list(wds.WebDataset(s, shardshuffle=False))) <= 10 for s in shards)
    # our own reader gives the same rows back
    back = read_source(spark, tiny_cfg.replace(input=out + "/*.tar")).select("key", "image", "caption").toPandas()
    merged = back.merge(df, on="key", suffixes=("_back", ""))
    assert len(merged) == N and (merged.image_back == merged.image).all() and (merged.caption_back == merged.caption).all()
    index = pq.read_table(os.path.join(out, "_index")).to_pandas()
    assert sorted(index.key) == sorted(df.key) and set(index.shard) == {os.path.basename(s) for s in shards}
    with open(shards[0], "rb") as handle:  # the index's offset is the sample's first header
        first = index[index.shard == os.path.basename(shards[0])].sort_values("offset").iloc[0]
        handle.seek(int(first.offset))
        assert handle.read(100).rstrip(b"\0").decode().startswith(first.key + ".")


def test_the_same_input_gives_the_same_shards(spark, kept_table):
    path, _, root = kept_table
    blobs = []
    for name in ("a", "b"):
        run_export(spark, ExportOptions(input=path, output=str(root / f"same_{name}"), shard_rows=16))
        blobs.append([open(p, "rb").read() for p in sorted(glob.glob(str(root / f"same_{name}" / "*.tar")))])
    assert blobs[0] == blobs[1] and len(blobs[0]) >= 4


def test_keys_are_checked_first(spark, kept_table, tmp_path):
    path, df, _ = kept_table
    dup = str(tmp_path / "dup")
    spark.read.format("delta").load(path).withColumn("key", F.lit("same")).write.format("delta").save(dup)
    with pytest.raises(ConfigError, match="must be unique"):
        run_export(spark, ExportOptions(input=dup, output=str(tmp_path / "o")))
    unsafe = str(tmp_path / "unsafe")
    spark.read.format("delta").load(path).withColumn("key", F.concat(F.lit("a/b."), F.col("key"))).write.format("delta").save(unsafe)
    with pytest.raises(ConfigError, match="tar-safe"):
        run_export(spark, ExportOptions(input=unsafe, output=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_a_failed_export_leaves_the_previous_one_whole(spark, kept_table):
    path, _, root = kept_table
    out = str(root / "keep_me")
    run_export(spark, ExportOptions(input=path, output=out, shard_rows=20))
    before = {p: open(p, "rb").read() for p in glob.glob(out + "/**", recursive=True) if os.path.isfile(p)}

    @F.udf("string")
    def explode_on(key):
        if key == "k0030":
            raise RuntimeError("a task fails mid-export")
        return key

    broken = spark.read.format("delta").load(path).withColumn("key", explode_on("key"))
    with pytest.raises(Exception):
        export_frame(spark, broken, "key", ExportOptions(input=path, output=out, shard_rows=20, mode="overwrite"))
    assert {p: open(p, "rb").read() for p in glob.glob(out + "/**", recursive=True) if os.path.isfile(p)} == before
    assert not glob.glob(out + ".__clipscore_export_*")  # the aborted staging folder is gone


def test_parquet_format_and_the_cli(spark, kept_table):
    path, df, root = kept_table
    out = str(root / "pq")
    assert cli_main(["export", "--input", path, "--output", out, "--format", "parquet"]) == 0
    back = spark.read.parquet(out).toPandas()
    assert sorted(back.key) == sorted(df.key) and os.path.exists(os.path.join(out, "_SUCCESS"))
    assert (back.set_index("key").image == df.set_index("key").image).all()
