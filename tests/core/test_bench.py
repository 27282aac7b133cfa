"""The benchmark's model runs (a, b, c, h and the options) need no Spark, Java or psutil: a bare GPU box has none."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BLOCK_SPARK = """
import runpy, sys

# None in sys.modules: `import pyspark` raises ImportError and importlib.util.find_spec says absent.
for name in ("pyspark", "py4j", "delta", "psutil"):
    sys.modules[name] = None
sys.argv = ["bench.py", *sys.argv[1:]]
runpy.run_path("benchmarks/bench.py", run_name="__main__")
"""


def test_bench_runs_without_pyspark_and_writes_the_named_figures(tmp_path, tiny_model_dir):
    args = ["--model", tiny_model_dir, "--pairs", "24", "--baseline-pairs", "4", "--format-pairs", "2",
            "--sizes", "320x240,400x300", "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results"),
            "--name", "nospark"]
    proc = subprocess.run([sys.executable, "-c", BLOCK_SPARK, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "pyspark is not installed: skipping d" in proc.stderr
    report = json.loads((tmp_path / "results" / "nospark.json").read_text())
    assert "d" not in report["results"] and {"a", "b", "c", "c_fast", "c_bf16", "c_int8"} <= set(report["results"])
    # The figures issue 9 names, under these exact names.
    assert report["host"]["exact"]["cpu_ms_per_pair"] > 0 and report["host"]["fast"]["cpu_ms_per_pair"] > 0
    assert 0 <= report["fidelity"]["fast_vs_exact"]["max_abs"] < 0.05
    assert report["precisions"]["bf16"]["speedup_vs_fp32"] > 0 and report["precisions"]["bf16"]["max_abs"] >= 0
    assert set(report["cpu_ratios"]) >= {"c/a", "c/b"}
    assert {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"} == set(report["formats"])
    assert (tmp_path / "results" / "nospark.md").read_text().startswith("# clipscore benchmark")
