"""Spill, time and files of the band-partitioned write: Spark's default, lean, and sized (what the job does).

    python benchmarks/band_write.py [--rows 100000] [--image-kb 8] [--target-mb 128] [--out benchmarks/results/band_write.json]

The write `clipscore score` does last: every input column (image bytes included) plus the scores,
`partitionBy("score_band")`, as Delta and as Parquet. "sorted" is Spark's default (the writer sorts
each task's rows by band first: with image bytes that sort spills); "lean" adds the job's
`clipscore.jobs.score.lean_write_settings` (concurrent output writers, no planned-write sort: every
task opens a file per band, tasks x bands files); "sized" is what the job does now
(`clipscore.jobs.layout`: the estimate, `maxRecordsPerFile` from `--target-mb`, and one band per task:
Delta's optimized write with bins of the target, or for Parquet the band x bucket repartition). The
band column is a hash of the key spread over the 8 bands, so the model does not run: this measures
the write path alone. Spill comes from Spark's REST API (memory and disk bytes spilled, summed over
the write's stages); the files are listed after each write. All variants run in one session,
alternately, `--repeat` times.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shutil
import statistics
import time
import urllib.request

log = logging.getLogger("band_write")
VARIANTS = ("sorted", "lean", "sized")


def stage_totals(ui: str, app: str) -> dict[int, dict]:
    with urllib.request.urlopen(f"{ui}/api/v1/applications/{app}/stages?status=complete") as resp:
        stages = json.load(resp)
    return {(s["stageId"], s["attemptId"]): s for s in stages}


def spill_since(ui: str, app: str, seen: set) -> tuple[int, int, int]:
    """Spilled bytes (memory, disk) and the largest peak execution memory of the stages not seen yet.

    Peak execution memory also shows a sort that is not a node of the SQL plan (Delta's writer runs
    its sort inside the write), and that spills only once it outgrows the executor's memory.
    """
    memory = disk = peak = 0
    for key, stage in stage_totals(ui, app).items():
        if key not in seen:
            seen.add(key)
            memory += stage.get("memoryBytesSpilled", 0)
            disk += stage.get("diskBytesSpilled", 0)
            peak = max(peak, stage.get("peakExecutionMemory", 0))
    return memory, disk, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--image-kb", type=int, default=8)
    parser.add_argument("--target-mb", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--work", default="out/band-write")
    parser.add_argument("--out", default="benchmarks/results/band_write.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from pyspark.sql import functions as F

    from clipscore.schema.bands import band_labels
    from clipscore.config.job import ScoreConfig
    from clipscore.jobs.layout import layout_for_write, optimized_write_available, plan_files, score_bytes
    from clipscore.jobs.score import lean_write_settings
    from clipscore.jobs.session import local_session, session_conf

    spark = local_session("band-write-bench", "local[2]", {
        "spark.ui.enabled": "true", "spark.ui.port": "4077", "spark.driver.memory": "1g",
        "spark.sql.shuffle.partitions": "2", "spark.sql.parquet.columnarReaderBatchSize": "256"})
    spark.sparkContext.setLogLevel("ERROR")
    ui, app = spark.sparkContext.uiWebUrl, spark.sparkContext.applicationId
    cfg = ScoreConfig(target_file_mb=args.target_mb)
    labels = band_labels(cfg.band_edges) + ["error"]
    band = F.element_at(F.array(*[F.lit(b) for b in labels]),
                        (F.pmod(F.xxhash64("id"), F.lit(len(labels))) + 1).cast("int"))
    source = os.path.join(args.work, "source")
    if not os.path.isdir(source):
        spark.range(args.rows, numPartitions=2).select(
            F.col("id"), F.randstr(args.image_kb * 1024).cast("binary").alias("image"),  # incompressible
            F.concat(F.lit("caption "), F.col("id").cast("string")).alias("caption"),
        ).write.parquet(source)
    read = spark.read.parquet(source)
    df = read.withColumns({
        "similarity": (F.rand(1) * 0.4).cast("float"), "score_band": band, "score_error": F.lit(None).cast("string")})
    plan = plan_files(read, cfg, score_bytes(cfg, ("similarity", "score_band", "score_error")))
    tasks = df.rdd.getNumPartitions()

    results = []
    seen: set = set()
    spill_since(ui, app, seen)
    for attempt in range(args.repeat):
        for variant in VARIANTS:
            for fmt in ("delta", "parquet"):
                settings = lean_write_settings(cfg) if variant != "sorted" else {}
                frame, options = df, {}
                if variant == "sized":
                    optimized = fmt == "delta" and optimized_write_available(spark)
                    frame, options, sized = layout_for_write(df, cfg, plan, optimized, "score_band")
                    settings = {**settings, **sized}
                out = os.path.join(args.work, f"{variant}-{fmt}-{attempt}")
                shutil.rmtree(out, ignore_errors=True)
                started = time.perf_counter()
                with session_conf(spark, settings):
                    frame.write.format(fmt).mode("overwrite").options(**options).partitionBy("score_band").save(out)
                seconds = time.perf_counter() - started
                sizes = [os.path.getsize(f) for f in glob.glob(os.path.join(out, "score_band=*", "*.parquet"))]
                time.sleep(1.0)  # let the listener publish the stage metrics
                memory, disk, peak = spill_since(ui, app, seen)
                row = {"variant": variant, "format": fmt, "attempt": attempt, "seconds": round(seconds, 2),
                       "spill_memory_mib": round(memory / 2**20, 1), "spill_disk_mib": round(disk / 2**20, 1),
                       "peak_execution_memory_mib": round(peak / 2**20, 1), "files": len(sizes),
                       "median_file_mib": round(statistics.median(sizes) / 2**20, 2),
                       "max_file_mib": round(max(sizes) / 2**20, 2), "load_avg_1m": round(os.getloadavg()[0], 2)}
                log.info("%s", row)
                results.append(row)
    spark.stop()
    data_mib = args.rows * args.image_kb / 1024
    report = {"rows": args.rows, "image_bytes_mib": round(data_mib, 1), "target_file_mb": args.target_mb,
              "read_tasks": tasks, "bands": len(labels), "estimated_row_bytes": round(plan.row_bytes),
              "estimated_files": plan.files, "rows_per_file_cap": plan.rows_per_file, "runs": results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    print("| variant | format | seconds (best) | spill, memory MiB | spill, disk MiB | peak execution memory MiB "
          "| files | median file MiB |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for variant in VARIANTS:
        for fmt in ("delta", "parquet"):
            runs = [r for r in results if r["variant"] == variant and r["format"] == fmt]
            best = min(runs, key=lambda r: r["seconds"])
            print(f"| {variant} | {fmt} | {best['seconds']} | {max(r['spill_memory_mib'] for r in runs)} "
                  f"| {max(r['spill_disk_mib'] for r in runs)} | {max(r['peak_execution_memory_mib'] for r in runs)} "
                  f"| {best['files']} | {best['median_file_mib']} |")


if __name__ == "__main__":
    main()
