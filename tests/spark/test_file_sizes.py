"""Files of a useful size: one band per write task, files near ``target_file_mb``, counted in the summary.

The layout is checked on the write path alone first (incompressible 1 KB cells, a band column spread
over every band, no model), against the unlaid write of the same frame (tasks x bands files); then
``run_score`` end to end with the tiny CLIP: Parquet (the band x bucket layout) and Delta appends (Delta's
optimized write), the summary's file count and median size against a listing of the output.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from clipscore.jobs.layout import (MIB, band_layout, layout_for_write, optimized_write_available, plan_files,
                                   score_bytes)
from clipscore.jobs.score import lean_write_settings, run_score
from clipscore.jobs.session import session_conf
from clipscore.schema.bands import ERROR_BAND, band_labels
from support.images import encode, photo_like


def _scored_frame(spark, cfg, rows: int, partitions: int):
    """What the scoring pass hands the write: kept columns plus scores, the band spread by a hash of the id."""
    labels = [*band_labels(cfg.band_edges), ERROR_BAND]
    index = (F.pmod(F.xxhash64("id"), F.lit(len(labels))) + 1).cast("int")
    band = F.element_at(F.array(*[F.lit(b) for b in labels]), index)
    source = spark.range(rows, numPartitions=partitions).select(
        "id", F.randstr(F.lit(1000), F.lit(7)).cast("binary").alias("image"),
        F.concat(F.lit("caption "), F.col("id").cast("string")).alias("caption"))
    scored = source.withColumns({"similarity": (F.rand(1) * 0.4).cast("float"), "score_band": band,
                                 "score_error": F.lit(None).cast("string")})
    return source, scored, labels


def _files(out: Path) -> dict[str, list[int]]:
    return {d.name.split("=", 1)[1]: [f.stat().st_size for f in d.glob("*.parquet")]
            for d in sorted(out.glob("score_band=*"))}


def test_one_band_per_task_and_files_near_the_target(spark, tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(target_file_mb=1)
    source, scored, labels = _scored_frame(spark, cfg, rows=12_000, partitions=6)
    plan = plan_files(source, cfg, score_bytes(cfg, ("similarity", "score_band", "score_error")))
    assert plan.rows == 12_000 and 1_000 < plan.row_bytes < 1_200  # 1,000-byte cells, a caption, scores
    assert plan.files == 13 and plan.rows_per_file == int(MIB // plan.row_bytes)  # 13 files: 2 buckets per band

    laid = band_layout(scored, cfg, plan, "score_band")
    per_task = (laid.groupBy(F.spark_partition_id().alias("task"))
                .agg(F.countDistinct("score_band").alias("bands"), F.count(F.lit(1)).alias("rows")).collect())
    assert len(per_task) == len(labels) * 2  # two buckets per band, each its own task
    assert all(r["bands"] == 1 for r in per_task)

    lean = lean_write_settings(cfg)
    sized, unsized = tmp_path / "sized", tmp_path / "unsized"
    with session_conf(spark, lean):
        laid.write.option("maxRecordsPerFile", plan.rows_per_file).partitionBy("score_band").parquet(str(sized))
        scored.write.partitionBy("score_band").parquet(str(unsized))
    files = _files(sized)
    assert set(files) == set(labels) and all(len(sizes) == 2 for sizes in files.values())
    assert all(0.3 * MIB < size < MIB for sizes in files.values() for size in sizes)
    # Unlaid, every one of the 6 tasks opened a file in every band: 48 files of a sixth of the size.
    assert sum(len(s) for s in _files(unsized).values()) == 6 * len(labels)
    assert spark.read.parquet(str(sized)).count() == 12_000


def test_delta_optimized_write_bins_each_band_at_the_target(spark, tiny_cfg, tmp_path):
    assert optimized_write_available(spark)  # OSS Delta 4.0.1 ships DeltaOptimizedWriterExec
    cfg = tiny_cfg.replace(target_file_mb=1)
    source, scored, labels = _scored_frame(spark, cfg, rows=12_000, partitions=6)
    plan = plan_files(source, cfg, score_bytes(cfg, ("similarity", "score_band", "score_error")))
    frame, options, settings = layout_for_write(scored, cfg, plan, True, "score_band")
    assert frame is scored and options["optimizeWrite"] == "true" and "1" in settings.values()
    out = tmp_path / "delta"
    with session_conf(spark, {**lean_write_settings(cfg), **settings}):
        writer = frame.write.format("delta").partitionBy("score_band")
        for key, value in options.items():
            writer = writer.option(key, value)
        writer.save(str(out))
    files = _files(out)
    assert set(files) == set(labels)
    assert all(1 <= len(sizes) <= 3 for sizes in files.values())  # ~1.5 MiB per band in bins of 1 MiB
    assert all(size <= 1.1 * MIB for sizes in files.values() for size in sizes)
    assert sum(len(s) for s in files.values()) < 6 * len(labels)
    assert spark.read.format("delta").load(str(out)).count() == 12_000


@pytest.fixture(scope="module")
def photo_source(spark, tmp_path_factory):
    """600 distinct small PNGs (about 3 KB each) with captions, as Parquet."""
    path = str(tmp_path_factory.mktemp("photos") / "source")
    rows = [(i, encode(photo_like(32, 32, seed=i), "PNG"), f"photo number {i}") for i in range(600)]
    spark.createDataFrame(rows, "id int, image binary, caption string").repartition(3).write.parquet(path)
    return path


def test_score_summary_counts_the_files_written(spark, tiny_cfg, photo_source, tmp_path):
    out = tmp_path / "scores"
    cfg = tiny_cfg.replace(input=photo_source, output=str(out), output_format="parquet", target_file_mb=1)
    summary = run_score(spark, cfg)
    files = _files(out)
    sizes = [s for band in files.values() for s in band]
    assert summary.files_written == len(sizes) and summary.bytes_written == sum(sizes)
    assert summary.mean_file_bytes == sum(sizes) // len(sizes)
    assert "files written: " in summary.format()
    # About 2 MB for 1 MiB files: one bucket per band, so one task per band, its files rolled at the cap.
    cap = plan_files(spark.read.parquet(photo_source), cfg, score_bytes(cfg, ("similarity", "score_band",
                                                                                "score_error"))).rows_per_file
    assert {band: len(sizes) for band, sizes in files.items()} == {
        band: -(-rows // cap) for band, rows in summary.rows_per_band.items() if rows}
    assert max(sizes) < MIB and sum(summary.rows_per_band.values()) == 600

    # Delta appends: each run's summary counts its own files only.
    delta = str(tmp_path / "delta")
    first = run_score(spark, cfg.replace(output=delta, output_format="delta", mode="error"))
    second = run_score(spark, cfg.replace(output=delta, output_format="delta", mode="append"))
    table_files = spark.read.format("delta").load(delta).inputFiles()
    assert first.files_written + second.files_written == len(table_files)
    # The Delta figures come from each commit's metrics; the files on disk say the same.
    assert first.bytes_written + second.bytes_written == sum(os.path.getsize(f.removeprefix("file:")) for f in table_files)
    assert 1 <= second.files_written <= len(files) + 1
