"""The score and merge jobs run on a Spark Connect session (no SparkContext on the driver).

A local Spark Connect server is started in a subprocess (one Spark per process, and a Connect
client switches PySpark into Connect mode for the whole process), with Delta and the tiny CLIP.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONNECT_JOB = Path(__file__).resolve().parents[1] / "support" / "connect_job.py"


def test_score_and_merge_jobs_run_over_spark_connect(tiny_model_dir, tmp_path):
    pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (grpcio)")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(CONNECT_JOB), tiny_model_dir, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=400,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["session"] == "pyspark.sql.connect.session"
    assert result["arrow_limits"] == ["1024", str(64 * 1024 * 1024)]  # add_scores bounded Arrow batches
    assert (result["score_rows"], result["score_scored"]) == (7, 6)
    assert result["score_errors"] == {"image_empty": 1}
    assert (result["scored_rows"], result["scored_similarity"]) == (7, 6)
    assert result["provenance_model"] == tiny_model_dir
    assert result["merge_rows"] == 7 and result["target_rows"] == 7
    assert (result["rerun_skipped"], result["rerun_rows"]) == (7, 0)
    assert result["search_ranks"] == [1, 2, 3]
    assert result["suggest"][0] == 6 and 0 <= result["suggest"][1] <= 6  # every scored row is below 2.0
    assert result["dedup"] == [6, 7]  # the six scored rows compared (the broken one not), all seven kept
    # The summary's files, listed over Connect (inputFiles, a binaryFile read for the sizes).
    sizes = result["scored_files"]
    assert sizes and result["score_files"] == [len(sizes), sum(sizes)]
    # A killed run's stale staging: Connect cannot delete it, so it names it and the command that does.
    (warning,) = result["stale_warnings"]
    assert "viewfs://connectstale/stage/run_1_dead (" in warning and "unchanged for 3d" in warning
    assert "clipscore clean --staging viewfs://connectstale/stage --older-than 1d" in warning
    assert result["stale_left"]
