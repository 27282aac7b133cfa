"""The WebDataset data source on a Spark Connect session (registered from the client; no SparkContext)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "connect_webdataset.py"


def test_webdataset_shards_read_over_spark_connect(tmp_path):
    pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (grpcio)")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["session"] == "pyspark.sql.connect.session"
    assert result["keys"] == [f"00000{i:04d}" for i in range(4)] + [f"00001{i:04d}" for i in range(3)]
    assert result["widths"] == [32]
