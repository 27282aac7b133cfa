"""A failed ``--mode overwrite`` loses nothing: the previous output stays readable and whole.

The failure is real and happens inside the Spark write job: the model folder passes the driver-side
check (config and tokenizer files) but its weights are corrupt, so every executor task raises when
it loads them, after the write has started.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from clipscore.config.coerce import ConfigError
from clipscore.jobs import writes
from clipscore.jobs.score import run_score
from clipscore.models import check_model_loadable

IMAGES = ("jpeg", "png", "grayscale", "webp")
OLD_SCHEMA = "id string, image binary, caption string, similarity float, score_band string, score_error string"


@pytest.fixture(scope="module")
def broken_model_dir(tiny_model_dir, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("models") / "corrupt-weights"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").write_bytes(b"these are not safetensors weights" * 64)
    check_model_loadable(str(folder))  # the driver-side check passes: the failure comes from the executors
    return str(folder)


@pytest.fixture(scope="module")
def source(spark, odd_images, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("overwrite_src") / "pairs.parquet"
    rows = [(f"new{i}", odd_images[name], f"a picture number {i}") for i, name in enumerate(IMAGES)]
    spark.createDataFrame(rows, "id string, image binary, caption string").write.parquet(str(path))
    return str(path)


def _old_rows(spark, odd_images):
    rows = [("old0", odd_images["png"], "old caption", 0.25, "b2_0.20_to_0.25", None),
            ("old1", None, "old caption", None, "error", "image_null: no image")]
    return spark.createDataFrame(rows, OLD_SCHEMA)


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) and a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _rows(df) -> list[dict]:
    return sorted((r.asDict() for r in df.collect()), key=lambda r: r["id"])


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.parent.iterdir() if "__clipscore_" in p.name]


def _loads(model_load_log) -> int:
    return len(model_load_log.read_text().splitlines())


def _fail_overwrite(spark, cfg):
    with pytest.raises(Exception, match="Could not load model") as failure:
        run_score(spark, cfg)
    assert not isinstance(failure.value, ConfigError)  # it failed in the write job, not in preflight


# -------------------------------------------------------------------------------------------------
# Delta: one commit, so a failed overwrite commits nothing
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("as_table", [False, True], ids=["path", "catalog-table"])
def test_failed_delta_overwrite_keeps_the_previous_version(spark, tiny_cfg, source, broken_model_dir, odd_images,
                                                           tmp_path, as_table):
    old = _old_rows(spark, odd_images)
    if as_table:
        output, ident = "overwrite_delta_table", "`overwrite_delta_table`"
        spark.sql(f"DROP TABLE IF EXISTS {ident}")
        old.write.format("delta").partitionBy("score_band").saveAsTable(output)
        read = lambda: spark.read.table(ident)  # noqa: E731
    else:
        output = str(tmp_path / "scores")
        old.write.format("delta").partitionBy("score_band").save(output)
        ident = f"delta.`{output}`"
        read = lambda: spark.read.format("delta").load(output)  # noqa: E731
    version = spark.sql(f"DESCRIBE HISTORY {ident}").agg(F.max("version")).first()[0]
    before = _rows(read())
    try:
        _fail_overwrite(spark, tiny_cfg.replace(input=source, output=output, mode="overwrite", model=broken_model_dir))
        assert spark.sql(f"DESCRIBE HISTORY {ident}").agg(F.max("version")).first()[0] == version
        assert _rows(read()) == before
    finally:
        if as_table:
            spark.sql(f"DROP TABLE IF EXISTS {ident}")


def test_delta_overwrite_may_change_the_schema_and_keeps_the_old_version(spark, tiny_cfg, source, tmp_path):
    """Scoring again with new columns (embeddings) over a Delta output replaces its schema in one commit."""
    output = str(tmp_path / "rescored")
    run_score(spark, tiny_cfg.replace(input=source, output=output))
    run_score(spark, tiny_cfg.replace(input=source, output=output, mode="overwrite", write_embeddings=True))
    table = spark.read.format("delta").load(output)
    assert {"image_embedding", "text_embedding"} <= set(table.columns)
    old = spark.read.format("delta").option("versionAsOf", 0).load(output)
    assert "image_embedding" not in old.columns and old.count() == table.count()


# -------------------------------------------------------------------------------------------------
# Parquet paths: staged, then swapped in
# -------------------------------------------------------------------------------------------------
def test_failed_parquet_overwrite_keeps_the_old_files(spark, tiny_cfg, source, broken_model_dir, odd_images, tmp_path):
    output = tmp_path / "scores"
    _old_rows(spark, odd_images).write.partitionBy("score_band").parquet(str(output))
    files, before = _files(output), _rows(spark.read.parquet(str(output)))
    _fail_overwrite(spark, tiny_cfg.replace(input=source, output=str(output), output_format="parquet",
                                            mode="overwrite", model=broken_model_dir))
    assert _files(output) == files  # the very same files, byte for byte
    assert _rows(spark.read.parquet(str(output))) == before
    assert _leftovers(output) == []  # the staging folder was removed


def test_parquet_overwrite_replaces_content_and_leaves_no_siblings(spark, tiny_cfg, source, odd_images, tmp_path):
    output = tmp_path / "scores"
    old = _old_rows(spark, odd_images)
    old.write.partitionBy("score_band").parquet(str(output))
    cached = spark.read.parquet(str(output))
    assert cached.count() == 2
    summary = run_score(spark, tiny_cfg.replace(input=source, output=str(output), output_format="parquet",
                                                mode="overwrite"))
    assert summary.rows == len(IMAGES)
    result = spark.read.parquet(str(output))
    assert sorted(r.id for r in result.collect()) == [f"new{i}" for i in range(len(IMAGES))]  # no old row left
    assert result.filter(F.col("similarity").isNull()).count() == 0
    assert not any("old" in name for name in _files(output))  # the old band folders are gone too
    assert _leftovers(output) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]


def test_failed_parquet_append_adds_no_files(spark, tiny_cfg, source, broken_model_dir, odd_images, tmp_path):
    """Not a guarantee of ours: Spark's default committer (v1) publishes task files only at job commit."""
    output = tmp_path / "scores"
    _old_rows(spark, odd_images).write.partitionBy("score_band").parquet(str(output))
    files = _files(output)
    _fail_overwrite(spark, tiny_cfg.replace(input=source, output=str(output), output_format="parquet",
                                            mode="append", model=broken_model_dir))
    assert _files(output) == files


def test_existing_parquet_overwrite_refused_without_a_jvm(spark, tiny_cfg, source, odd_images, tmp_path, monkeypatch,
                                                          model_load_log):
    """Spark Connect has no JVM handle for the Hadoop FileSystem: an existing Parquet path is not overwritten."""
    monkeypatch.setattr(writes, "hadoop_fs", lambda spark, path: None)
    output = tmp_path / "scores"
    _old_rows(spark, odd_images).write.parquet(str(output))
    files, loads = _files(output), _loads(model_load_log)
    with pytest.raises(ConfigError, match="Spark Connect.*--output-format delta.*new --output path"):
        run_score(spark, tiny_cfg.replace(input=source, output=str(output), output_format="parquet", mode="overwrite"))
    assert _files(output) == files and _loads(model_load_log) == loads


def test_swap_failure_puts_the_old_output_back():
    """Second rename fails: the old output is renamed back, the staging folder deleted, the error says so."""

    class FakeFs:
        def __init__(self):
            self.paths = {"out", "staging"}

        def rename(self, src, dst):
            if src == "staging":
                return False
            self.paths.remove(src)
            self.paths.add(dst)
            return True

        def delete(self, path, recursive):
            self.paths.discard(path)
            return True

        def exists(self, path):
            return path in self.paths

    fs = FakeFs()
    with pytest.raises(RuntimeError, match="old output is back in place"):
        writes._swap_in(fs, "out", "staging", "backup")
    assert fs.paths == {"out"}


# -------------------------------------------------------------------------------------------------
# Parquet catalog tables: overwrite only while the table does not exist yet
# -------------------------------------------------------------------------------------------------
def test_parquet_table_overwrite_only_when_new(spark, tiny_cfg, source, model_load_log, caplog):
    name = "overwrite_parquet_table"
    spark.sql(f"DROP TABLE IF EXISTS `{name}`")
    caplog.set_level(logging.INFO, logger="clipscore")
    cfg = tiny_cfg.replace(input=source, output=name, output_format="parquet", mode="overwrite")
    try:
        run_score(spark, cfg)  # the table does not exist yet: nothing to lose
        assert f"output '{name}' has no '/' or scheme: taken as the catalog table `{name}`; " \
               f"for a path, write ./{name}" in caplog.text
        before, loads = _rows(spark.read.table(name)), _loads(model_load_log)
        with pytest.raises(ConfigError, match="exists and is overwritten only by dropping it.*--output-format delta"):
            run_score(spark, cfg)
        assert _rows(spark.read.table(name)) == before and _loads(model_load_log) == loads
    finally:
        spark.sql(f"DROP TABLE IF EXISTS `{name}`")
