"""WebDataset shards into the jobs: ``--input-format webdataset`` for score and merge, one task per shard.

Shards are real tars in img2dataset's layout, built here: good ones, one with a sample missing its image
and one missing its caption, one cut short, one with an image over ``max_image_bytes``, one with a
non-image member; keys are compared with the webdataset library's ``__key__``.
"""
from __future__ import annotations

import pytest
import webdataset as wds

from clipscore.config.coerce import ConfigError
from clipscore.jobs.merge import run_merge
from clipscore.jobs.score import run_score
from clipscore.jobs.tables import read_source
from support.images import encode, photo_like
from support.shards import img2dataset_members, write_tar


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    write_tar(root / "00000.tar", img2dataset_members(0, 6))
    write_tar(root / "00001.tar", img2dataset_members(1, 5, with_missing=True))
    full = root / "full.tmp"
    write_tar(full, img2dataset_members(2, 8))
    data = full.read_bytes()
    (root / "00002.tar").write_bytes(data[: int(len(data) * 0.55)])  # cut short
    full.unlink()
    big = encode(photo_like(300, 300, seed=5), "PNG")
    write_tar(root / "00003.tar", [("00030000.png", big), ("00030000.txt", b"too big"),
                                   ("00030001.jpg", encode(photo_like(20, 20), "JPEG")), ("00030001.txt", b"fine"),
                                   ("00030001.cls", b"7"), ("00030002.npy", b"\x00" * 10), ("00030002.txt", b"no image")])
    return root, len(big)


def test_score_reads_every_shard_in_its_own_task_and_keeps_every_sample(spark, tiny_cfg, shards, tmp_path):
    root, big = shards
    cfg = tiny_cfg.replace(input=str(root / "{00000..00003}.tar"), output=str(tmp_path / "out"),
                           max_image_bytes=big - 1)
    source = read_source(spark, cfg)
    assert source.rdd.getNumPartitions() == 4  # one input partition per shard
    run_score(spark, cfg)
    table = spark.read.format("delta").load(cfg.output).toPandas().set_index("key")
    # every key of the good shards, exactly as the webdataset library names them
    for name in ("00000.tar", "00001.tar"):
        keys = [s["__key__"] for s in wds.WebDataset(str(root / name), shardshuffle=False)]
        assert set(keys) <= set(table.index)
        assert table.loc[keys, "shard"].str.endswith(name).all()
    good = table.loc[[f"00000{i:04d}" for i in range(6)]]
    assert good.similarity.notna().all() and good.score_error.isna().all() and (good.width == 32).all()
    assert table.at["000010001", "score_error"].startswith("image_null")  # no image member
    assert table.at["000010002", "score_error"].startswith("caption_null")  # no caption member
    assert table.at["00030000", "score_error"].startswith("image_too_large") and table.at["00030000", "image"] is None
    assert table.at["00030001", "similarity"] == table.at["00030001", "similarity"]  # scored (not NaN)
    assert table.at["00030002", "score_error"].startswith("image_null")  # a non-image member is no image
    damaged = table[table.index.str.startswith("__shard__:")]
    assert len(damaged) == 1 and damaged.score_error.iloc[0].startswith("shard_truncated")
    kept = [k for k in table.index if k.startswith("00002") and table.at[k, "score_error"] is None]
    assert 2 <= len(kept) < 8  # the samples before the damage are scored
    assert table.similarity[table.score_error.notna()].isna().all()


def test_merge_by_key_keeps_every_key_once(spark, tiny_cfg, shards, tmp_path):
    root, big = shards
    target = str(tmp_path / "target")
    cfg = tiny_cfg.replace(input=str(root / "0000[01].tar"), output=target, merge_keys=("key",))
    # the target starts as the first shard's rows, unscored
    read_source(spark, cfg.replace(input=str(root / "00000.tar"))).select("key", "caption").write.format("delta").save(target)
    first = run_merge(spark, cfg)
    assert first.rows == 11
    again = run_merge(spark, cfg)
    assert again.rows == 0 and again.skipped == 11
    keys = [r.key for r in spark.read.format("delta").load(target).select("key").collect()]
    assert len(keys) == len(set(keys)) == 11


def test_bad_shard_patterns_fail_before_any_work(spark, tiny_cfg, shards, tmp_path):
    root, _ = shards
    with pytest.raises(ConfigError, match="No shards match"):
        read_source(spark, tiny_cfg.replace(input=str(root / "missing-*.tar"), input_format="webdataset"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="reads .tar shards"):
        read_source(spark, tiny_cfg.replace(input=str(tmp_path / "*.txt"), input_format="webdataset"))
