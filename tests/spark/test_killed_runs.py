"""A merge whose driver is killed between two commits leaves exactly one staging folder; the next run removes it.

The merge runs in its own process (``tests/support/killed_merge.py``), and the whole process group (driver,
JVM, Python workers) gets SIGKILL after the first of two MERGE commits: no ``finally`` runs, as when a
cluster loses its driver. (A killed Python worker, ``test_merge.py``, fails the run instead, which removes
its staging itself.) The rerun here finds the folder: left alone while young, removed once stale (aged with
real modification times), logged with its path, and the table ends correct.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyspark.sql import functions as F

from clipscore.jobs import staging
from clipscore.jobs.merge import run_merge
from support.aging import age_local

KILLED_MERGE = Path(__file__).resolve().parents[1] / "support" / "killed_merge.py"
IMAGE_NAMES = ("jpeg", "png", "grayscale", "palette", "rgba", "webp")


def _kill_after_first_commit(spec_path: Path, timeout: float = 300) -> str:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, str(KILLED_MERGE), str(spec_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    seen = []
    deadline = time.monotonic() + timeout
    try:
        for line in child.stdout:
            seen.append(line)
            if line.startswith("COMMITTED") or time.monotonic() > deadline:
                break
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the driver and everything it started
        child.wait(30)
    return "".join(seen)


def test_killed_merge_leaves_one_staging_folder_that_the_next_run_removes(spark, tiny_cfg, odd_images, tmp_path,
                                                                          caplog):
    n = 8
    rows = [(i, odd_images[IMAGE_NAMES[i % 6]], f"pair {i}") for i in range(n)]
    source, target = str(tmp_path / "source"), str(tmp_path / "target")
    df = spark.createDataFrame(rows, "id int, image binary, caption string")
    df.write.format("delta").save(source)
    df.write.format("delta").save(target)
    cfg = tiny_cfg.replace(input=source, output=target, merge_keys=("id",), merge_chunk_rows=4)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": cfg.primary.model, "device": "cpu", "precision": "fp32", "batch_size": 4,
                                "input": source, "output": target, "merge_keys": ["id"], "merge_chunk_rows": 4}))

    output = _kill_after_first_commit(spec)
    assert "COMMITTED 1/2" in output, output[-3000:]

    # Exactly one folder left behind, holding the staged rows; the first chunk is in the table.
    root = tmp_path / ".target__clipscore_staging"
    left = [p for p in root.iterdir()]
    assert len(left) == 1 and left[0].name.startswith("run_"), left
    assert list(left[0].glob("*.parquet")) and (left[0] / staging.HEARTBEAT).is_file()
    table = spark.read.format("delta").load(target)
    assert table.filter(F.col("score_fingerprint").isNotNull()).count() == 4 and table.count() == n

    # Young: a later run leaves it (it may be a run still going) and says so.
    with caplog.at_level(logging.INFO, logger="clipscore"):
        assert staging.remove_stale_runs(spark, str(root), cfg.staging_stale_after) == []
    assert left[0].is_dir()
    assert any("another run" in r.getMessage() and left[0].name in r.getMessage() for r in caplog.records)
    caplog.clear()

    # Stale: aged past the rule, the rerun removes it, logs it, and finishes the merge.
    age_local(left[0], 25 * 3600)
    with caplog.at_level(logging.INFO, logger="clipscore"):
        rerun = run_merge(spark, cfg)
    stale = [r.getMessage() for r in caplog.records if "a stale staging folder" in r.getMessage()]
    assert len(stale) == 1 and left[0].name in stale[0] and "unchanged for 1d 1h" in stale[0], stale
    assert not root.exists() or not list(root.iterdir())
    assert rerun.skipped == 4 and rerun.rows == 4
    final = spark.read.format("delta").load(target)
    assert final.count() == n and final.select("id").distinct().count() == n
    assert final.filter(F.col("similarity").isNull() | F.col("score_fingerprint").isNull()).count() == 0
