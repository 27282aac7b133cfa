"""The benchmark's Spark runs (d, d_bf16, d0) write the figures issue 23 names, under those names."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_job_runs_write_the_named_figures(tmp_path, tiny_model_dir):
    args = ["--model", tiny_model_dir, "--pairs", "48", "--d0-pairs", "64", "--sizes", "320x240,400x300",
            "--only", "c,d,precisions,d_bf16,d0", "--d0-rounds", "1", "--repeats", "1", "--work", str(tmp_path / "work"),
            "--results", str(tmp_path / "results"), "--name", "job"]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    proc = subprocess.run([sys.executable, "benchmarks/bench.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=1200, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((tmp_path / "results" / "job.json").read_text())

    job_host = report["job_host"]
    assert {"exact", "exact_drop", "fast", "fast_drop"} <= set(job_host)
    for variant in ("exact", "exact_drop", "fast", "fast_drop"):
        figures = job_host[variant]
        assert figures["pairs"] == 64 and figures["whole_job_cpu_ms_per_pair"] > 0
        # The headline is the per-row cost; its split by process kind adds up to it.
        kinds = ("jvm_ms", "python_ms", "driver_ms", "daemon_ms", "other_ms")
        assert abs(sum(figures[k] for k in kinds) - figures["cpu_ms_per_pair"]) < 0.01
        assert figures["fixed_cpu_seconds_per_job"] is not None
    assert job_host["fast_drop"]["drop_columns"] == ["image"] and job_host["fast"]["preprocess"] == "fast"

    for run in ("d", "d_bf16"):
        steady = report["results"][run]["steady"]
        assert steady["small_job"]["rows"] < report["results"][run]["pairs"]
    assert set(report["cpu_ratios_bf16"]) == {"d/c", "d/c whole job"}
    assert report["cpu_ratios_bf16"]["d/c whole job"] > 0
    assert "bf16, job against core" in (tmp_path / "results" / "job.md").read_text()
