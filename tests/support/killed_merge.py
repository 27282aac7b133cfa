"""Run by tests/spark/test_killed_runs.py in its own process: a merge whose driver is killed mid-run.

Runs ``run_merge`` in a local Spark with the options in the JSON file ``argv[1]``; after the first MERGE
commit it prints ``COMMITTED`` and waits, so the test can SIGKILL the whole process group (driver, JVM,
Python workers) between two commits: no ``finally`` runs, as when a cluster loses its driver.
"""
from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    from clipscore.config.job import ScoreConfig
    from clipscore.jobs.merge import run_merge
    from clipscore.jobs.session import local_session

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = local_session("killed-merge", "local[2]", {"spark.ui.enabled": "false",
                                                      "spark.sql.shuffle.partitions": "2"})
    spark.sparkContext.setLogLevel("ERROR")

    def committed(index: int, chunks: int) -> None:
        print(f"COMMITTED {index + 1}/{chunks}", flush=True)
        time.sleep(600)  # killed here

    run_merge(spark, ScoreConfig(**spec), on_chunk_committed=committed)
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main()
