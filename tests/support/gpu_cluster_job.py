"""Run by tests/spark/test_gpu_cluster.py in its own process (one SparkContext per process).

Starts a local standalone cluster (``local-cluster[1,2,1024]``: one worker, two 1-core executors)
whose worker owns two GPUs found by the shipped ``conf/gpu_discovery.sh`` (the test puts a fake
``nvidia-smi`` first on PATH). Every task reports which executor it ran in, what ``assigned_gpus()``
returned, and what the real UDF code path (``score_iterator`` -> ``PairScorer.from_config`` ->
``resolve_device``) did with that assignment. Prints one JSON line.
"""
from __future__ import annotations

import json
import os
import sys

import pandas as pd
from pyspark.sql import SparkSession


def probe(batches):
    from clipscore.config.job import ScoreConfig
    from clipscore.models.runtime import gpu_ordinal
    from clipscore.udfs.clip_udf import assigned_gpus, score_iterator

    for batch in batches:
        gpus = assigned_gpus()
        cfg = ScoreConfig(model="/nonexistent/model", device="auto")
        try:  # no CUDA here: the device choice must fail, naming exactly the GPU Spark assigned
            list(score_iterator(cfg, iter([(pd.Series([b"x"]), pd.Series(["c"]))])))
            udf_outcome = "no error"
        except RuntimeError as exc:
            udf_outcome = str(exc)
        ordinal = gpu_ordinal(gpus[0], None, 2) if gpus else -1
        yield pd.DataFrame({
            "executor": [str(os.getppid())],  # the executor's pyspark.daemon: one per executor JVM
            "gpus": [",".join(gpus)],
            "ordinal": [ordinal],
            "udf_outcome": [udf_outcome],
            "rows": [len(batch)],
        })


def main() -> None:
    discovery = sys.argv[1]
    spark = (
        SparkSession.builder.master("local-cluster[1,2,1024]")
        .appName("clipscore-gpu-assignment")
        .config("spark.executor.cores", "1")
        .config("spark.executor.memory", "512m")
        .config("spark.worker.resource.gpu.amount", "2")
        .config("spark.worker.resource.gpu.discoveryScript", discovery)
        .config("spark.executor.resource.gpu.amount", "1")
        .config("spark.task.resource.gpu.amount", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    try:
        rows = spark.range(0, 64, 1, 8).mapInPandas(
            probe, "executor string, gpus string, ordinal int, udf_outcome string, rows long"
        ).collect()
    finally:
        spark.stop()
    print(json.dumps([r.asDict() for r in rows]))


if __name__ == "__main__":
    main()
