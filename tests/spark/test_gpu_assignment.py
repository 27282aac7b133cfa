"""The UDF uses exactly the GPU Spark assigned to its task (TaskContext resources).

A real standalone cluster in local-cluster mode, in a subprocess: one worker owning GPUs "0" and "1"
(discovered by the shipped conf/gpu_discovery.sh over a fake nvidia-smi), two executors with one GPU
each, as on a multi-GPU node. The address -> CUDA ordinal mapping and the device choice alone:
tests/core/test_runtime.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clipscore.udfs.clip_udf import assigned_gpus

REPO = Path(__file__).resolve().parents[2]
DISCOVERY = REPO / "conf" / "gpu_discovery.sh"
CLUSTER_JOB = Path(__file__).resolve().parents[1] / "support" / "gpu_cluster_job.py"


@pytest.fixture()
def fake_nvidia_smi(tmp_path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\n# fake: two GPUs, as `nvidia-smi --query-gpu=index --format=csv,noheader` prints\n"
                      "printf '0\\n1\\n'\n")
    script.chmod(0o755)
    return bin_dir


def test_discovery_script_prints_spark_resource_json(fake_nvidia_smi):
    env = {**os.environ, "PATH": f"{fake_nvidia_smi}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([str(DISCOVERY)], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"name": "gpu", "addresses": ["0", "1"]}

    no_gpu = subprocess.run([str(DISCOVERY)], env={**os.environ, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert no_gpu.returncode != 0 and "nvidia-smi not found" in no_gpu.stderr


def test_each_executor_uses_its_own_assigned_gpu(fake_nvidia_smi):
    import pyspark

    env = {
        **os.environ,
        "PATH": f"{fake_nvidia_smi}{os.pathsep}{os.environ['PATH']}",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_HOME": os.environ.get("SPARK_HOME", os.path.dirname(pyspark.__file__)),
    }
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run([sys.executable, str(CLUSTER_JOB), str(DISCOVERY)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    tasks = json.loads(done.stdout.strip().splitlines()[-1])

    assert sum(t["rows"] for t in tasks) == 64
    gpus_by_executor: dict[str, set[str]] = {}
    for task in tasks:
        assert len(task["gpus"].split(",")) == 1  # spark.task.resource.gpu.amount=1: exactly one GPU
        gpus_by_executor.setdefault(task["executor"], set()).add(task["gpus"])
        assert task["ordinal"] == int(task["gpus"])
        # The real UDF path picked the assigned GPU (and, with no CUDA here, says so).
        assert f"Spark assigned GPU(s) ['{task['gpus']}']" in task["udf_outcome"]
    assert len(gpus_by_executor) == 2  # two executors on one node...
    assert all(len(g) == 1 for g in gpus_by_executor.values())  # ...each always on the same GPU...
    assert sorted(g for gs in gpus_by_executor.values() for g in gs) == ["0", "1"]  # ...and not the same one


def test_no_gpu_outside_a_task():
    assert assigned_gpus() == []


