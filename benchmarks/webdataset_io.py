"""WebDataset read and export throughput, next to a plain Parquet read of the same rows in the same run.

    python benchmarks/webdataset_io.py [--pairs 3000] [--shard-rows 500]

The same generated JPEG pairs (bench_data: 640x480 and 1024x768, ~100 KB) as Parquet and as img2dataset-
layout tar shards. Three Spark jobs on local[2], each forced to read every column (``noop`` write):
the Parquet read, the WebDataset read (our data source), and the export of the Parquet rows to shards.
Figures: rows/s and MB/s wall, and per CPU-second of the whole process tree (driver, JVM, Python
workers), which is the per-core figure. Each job runs ``--repeats`` times, alternating, best kept.
Results in benchmarks/results/webdataset_io.json.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import cached_dataset  # noqa: E402
from measure import tree_cpu_seconds  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def write_shards(df, folder: Path, shard_rows: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(df), shard_rows):
        with tarfile.open(folder / f"{start // shard_rows:05d}.tar", "w") as tar:
            for row in df.iloc[start : start + shard_rows].itertuples():
                key = f"{start // shard_rows:05d}{row.Index - start:04d}"
                for ext, data in (("jpg", row.image), ("txt", row.caption.encode()),
                                  ("json", json.dumps({"width": int(row.width), "height": int(row.height)}).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def timed(fn) -> tuple[float, float]:
    cpu, wall = tree_cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, tree_cpu_seconds() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--shard-rows", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", default=str(REPO / "out" / "bench" / "wds"))
    args = parser.parse_args(argv)

    from clipscore.jobs.export import ExportOptions, export_frame
    from clipscore.jobs.session import local_session
    from clipscore.jobs.webdataset import read_shards

    work = Path(args.work)
    df, parquet = cached_dataset(args.pairs, [(640, 480), (1024, 768)], 0, REPO / "out" / "bench" / "data")
    shards = work / "shards"
    if not shards.is_dir():
        write_shards(df, shards, args.shard_rows)
    mb = df.image.map(len).sum() / 1e6 + df.caption.map(len).sum() / 1e6
    load_start = os.getloadavg()
    spark = local_session("wds-bench", master="local[2]", quiet=True)
    jobs = {
        "parquet_read": lambda: spark.read.parquet(str(parquet)).write.format("noop").mode("overwrite").save(),
        "webdataset_read": lambda: read_shards(spark, str(shards / "*.tar"), 32 << 20).write.format("noop")
        .mode("overwrite").save(),
        "export": lambda: (shutil.rmtree(work / "export", ignore_errors=True),
                           export_frame(spark, spark.read.parquet(str(parquet)).withColumnRenamed("id", "key"), "key",
                                        ExportOptions(input=str(parquet), output=str(work / "export"),
                                                      shard_rows=args.shard_rows, mode="overwrite"))),
    }
    for fn in jobs.values():  # warm-up: JVM, Python workers, the data source registration
        fn()
    runs: dict[str, list] = {k: [] for k in jobs}
    for _ in range(args.repeats):
        for name, fn in jobs.items():
            runs[name].append(timed(fn))
    spark.stop()
    results = {}
    for name, times in runs.items():
        wall, cpu = min(times, key=lambda t: t[1])
        results[name] = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                         "rows_per_s": round(len(df) / wall, 1), "mb_per_s": round(mb / wall, 1),
                         "rows_per_cpu_s": round(len(df) / cpu, 1), "mb_per_cpu_s": round(mb / cpu, 1)}
    base = results["parquet_read"]
    for name in ("webdataset_read", "export"):
        results[name]["vs_parquet_read_per_cpu_s"] = round(results[name]["rows_per_cpu_s"] / base["rows_per_cpu_s"], 3)
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "pairs": len(df), "mb": round(mb, 1),
              "shard_rows": args.shard_rows, "master": "local[2]", "load_avg_start": load_start,
              "load_avg_end": os.getloadavg(), "results": results}
    out = REPO / "benchmarks" / "results" / "webdataset_io.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
