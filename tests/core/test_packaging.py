"""The wheel installs one top-level package, with jobs/udfs/conf mapped under it and the YAML shipped."""
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_maps_generic_folders_under_clipscore(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    wheel = next(tmp_path.glob("clipscore-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top_level == {"clipscore"}
    for expected in ("clipscore/jobs/score.py", "clipscore/udfs/clip_udf.py", "clipscore/conf/default.yaml",
                     "clipscore/scoring/scorer.py", "clipscore/models/base.py", "clipscore/models/openclip.py",
                     "clipscore/report/templates/report.html", "clipscore/jobs/report.py", "clipscore/training/loop.py"):
        assert expected in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "clipscore = clipscore.jobs.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_core_imports_no_spark():
    code = (
        "import sys, clipscore.scoring.scorer, clipscore.images.loader, clipscore.schema.bands, clipscore.devtools.random_model,"
        " clipscore.models.clip, clipscore.models.siglip, clipscore.models.openclip, clipscore.devtools.random_families;"
        "print([m for m in sys.modules if m.split('.')[0] == 'pyspark'])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]"
