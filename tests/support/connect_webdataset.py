"""Run by tests/spark/test_connect_webdataset.py in its own process: WebDataset shards read over Spark Connect.

``SparkSession.builder.remote("local[2]")`` starts a local Spark Connect server; the data source is
registered from the Connect client and each shard is read in its own task. Prints one JSON line.
"""
from __future__ import annotations

import json
import os
import sys

from pyspark.sql import SparkSession

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from support.shards import img2dataset_members, write_tar  # noqa: E402


def main() -> None:
    work = sys.argv[1]
    write_tar(os.path.join(work, "00000.tar"), img2dataset_members(0, 4))
    write_tar(os.path.join(work, "00001.tar"), img2dataset_members(1, 3))
    spark = SparkSession.builder.remote("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    from clipscore.jobs.webdataset import read_shards

    df = read_shards(spark, os.path.join(work, "*.tar"), 1 << 20)
    rows = df.select("key", "caption", "width").collect()
    print(json.dumps({"session": type(spark).__module__, "keys": sorted(r.key for r in rows),
                      "widths": sorted({r.width for r in rows})}))
    spark.stop()


if __name__ == "__main__":
    main()
