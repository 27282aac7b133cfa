"""What a killed run leaves behind, measured: `clipscore score` and `clipscore merge` SIGKILLed mid-write.

    python benchmarks/killed_runs.py [--rows 100000] [--out benchmarks/results/killed_runs.json]

Each case runs the CLI as a child in its own process group (``--master local[2]``, the tiny random CLIP,
the scale bench's table of ``--rows`` rows: ``benchmarks/scale.py``), watches the files it writes, and
kills the whole group (driver, JVM, Python workers) with SIGKILL at a chosen moment, like a lost driver:

* ``score-delta``: a new Delta table, killed once a write task has finished its first data file (before
  the commit; files still being written are empty until closed). Left: data files in the table's folder
  and no commit. Then ``--mode overwrite`` runs it again and ``VACUUM ... RETAIN 0 HOURS`` (retention
  check off) shows the orphans go only with a VACUUM.
* ``score-parquet``: an overwrite of an existing Parquet output, killed once its staging sibling holds a
  finished data file. Left: the staging sibling; the old output intact. ``clipscore clean`` removes it.
* ``merge``: a merge in 4 chunks, killed during the second MERGE's write (a finished data file in the
  target that no commit references). Left: the staging run folder and the uncommitted MERGE files in the target.

Orphans in a Delta table are files on disk that no ``add`` action of any commit names.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import TINY_MODEL_DIR  # noqa: E402

log = logging.getLogger("killed_runs")
WORK = REPO / "out" / "killed-runs"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from clipscore.jobs.cli import main; sys.exit(main(sys.argv[1:]))",
            *args, "--master", "local[2]"]


def score_args(source: str, output: str, *extra: str) -> list[str]:
    return cli("score", "--input", source, "--output", output, "--model", str(TINY_MODEL_DIR), "--set", "device=cpu",
               "--set", "precision=fp32", "--set", "batch_size=256", *extra)


def data_files(folder: Path) -> list[Path]:
    return [Path(p) for p in glob.glob(str(folder / "**" / "*.parquet"), recursive=True)]


def committed(table: Path) -> set[str]:
    """Every file an ``add`` action of any commit names (relative paths, as Delta writes them)."""
    names = set()
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                names.add(action["add"]["path"])
    return names


def orphans(table: Path) -> list[Path]:
    from urllib.parse import unquote

    known = {unquote(p) for p in committed(table)}
    return [p for p in data_files(table) if str(p.relative_to(table)) not in known]


def written(files: list[Path]) -> bool:
    """Whether a task has finished a file (a file in progress stays empty until its writer closes it)."""
    return any(p.exists() and p.stat().st_size > 0 for p in files)


def figures(files: list[Path]) -> dict:
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files if p.exists())}


def run_until(cmd: list[str], log_path: Path, ready, timeout: float = 900) -> dict:
    """Run ``cmd``; SIGKILL its process group once ``ready()`` is true. Returns what happened."""
    started = time.perf_counter()
    with open(log_path, "w") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        killed_at = None
        while child.poll() is None and time.perf_counter() - started < timeout:
            if ready():
                os.killpg(child.pid, signal.SIGKILL)
                killed_at = time.perf_counter() - started
                break
            time.sleep(0.2)
        child.wait()
    return {"killed_at_s": None if killed_at is None else round(killed_at, 1), "rc": child.returncode,
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def run(cmd: list[str], log_path: Path) -> int:
    with open(log_path, "w") as out:
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO).returncode


def vacuum(table: Path) -> None:
    from clipscore.jobs.session import local_session

    spark = local_session("vacuum", "local[2]", {"spark.ui.enabled": "false",
                                                 "spark.databricks.delta.retentionDurationCheck.enabled": "false"},
                          quiet=True)
    try:
        spark.sql(f"VACUUM delta.`{table}` RETAIN 0 HOURS")
    finally:
        spark.stop()


def pristine_target(source: Path) -> Path:
    """The scale bench's merge target for ``source`` (the source as Delta), written by its child if missing."""
    target = source.parent / source.name.replace("source_", "target_", 1)
    if not Path(f"{target}.done").is_file():
        spec = WORK / "make_targets.json"
        spec.write_text(json.dumps({"pairs": [[str(source), str(target)]], "master": "local[2]"}))
        assert run([sys.executable, str(REPO / "benchmarks" / "scale.py"), "--make-targets", str(spec)],
                   WORK / "make_targets.log") == 0
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", default="benchmarks/results/killed_runs.json")
    parser.add_argument("--skip", default="", help="comma list of score-delta,score-parquet,merge")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    skip = set(filter(None, args.skip.split(",")))
    source = next(iter(glob.glob(str(REPO / f"out/bench-scale/data/source_n{args.rows}_v2_*"))), None)
    if source is None:
        raise SystemExit(f"no {args.rows}-row source: run benchmarks/scale.py --sizes {args.rows} first")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    report: dict = {"rows": args.rows, "source": source}

    if "score-delta" not in skip:
        table = WORK / "scores-delta"
        case = run_until(score_args(source, str(table)), WORK / "score-delta.log", lambda: written(data_files(table)))
        case["left"] = {**figures(data_files(table)), "commits": len(list((table / "_delta_log").glob("*.json")))}
        case["rerun_overwrite_rc"] = run(score_args(source, str(table), "--mode", "overwrite"), WORK / "rerun.log")
        case["after_rerun"] = {"orphans": figures(orphans(table)), "table": figures(data_files(table))}
        vacuum(table)
        case["after_vacuum_0h"] = {"orphans": figures(orphans(table)), "table": figures(data_files(table))}
        report["score-delta"] = case
        log.info("score-delta: %s", case)

    if "score-parquet" not in skip:
        output = WORK / "scores-parquet"
        small = next(iter(glob.glob(str(REPO / "out/bench-scale/data/source_n2000_v2_*"))))
        assert run(score_args(small, str(output), "--output-format", "parquet"), WORK / "first.log") == 0
        before = figures(data_files(output))

        def staging_written() -> bool:
            folders = glob.glob(str(WORK / ".scores-parquet.__clipscore_staging_*"))
            return any(written(data_files(Path(p))) for p in folders)

        case = run_until(score_args(source, str(output), "--output-format", "parquet", "--mode", "overwrite"),
                         WORK / "score-parquet.log", staging_written)
        left = [Path(p) for p in glob.glob(str(WORK / ".scores-parquet.__clipscore_staging_*"))]
        case["left"] = {"folders": len(left), **figures([f for d in left for f in data_files(d)]),
                        "all_bytes": sum(f.stat().st_size for d in left for f in d.rglob("*") if f.is_file())}
        case["output_unchanged"] = figures(data_files(output)) == before
        case["clean_rc"] = run(cli("clean", "--staging", str(WORK), "--older-than", "1s"), WORK / "clean.log")
        case["after_clean"] = len(glob.glob(str(WORK / ".scores-parquet.__clipscore_staging_*")))
        report["score-parquet"] = case
        log.info("score-parquet: %s", case)

    if "merge" not in skip:
        target = WORK / "merge-target"
        shutil.copytree(pristine_target(Path(source)), target)
        start_commits = len(list((target / "_delta_log").glob("*.json")))
        merge = cli("merge", "--input", source, "--target", str(target), "--keys", "id", "--model", str(TINY_MODEL_DIR),
                    "--set", "device=cpu", "--set", "precision=fp32", "--set", "batch_size=256",
                    "--set", f"merge_chunk_rows={-(-args.rows // 4)}")

        def second_merge_writing() -> bool:
            return len(list((target / "_delta_log").glob("*.json"))) > start_commits and written(orphans(target))

        case = run_until(merge, WORK / "merge.log", second_merge_writing)
        runs = [Path(p) for p in glob.glob(str(WORK / ".merge-target__clipscore_staging" / "run_*"))]
        case["left"] = {"staging_folders": len(runs), "staging": figures([f for d in runs for f in data_files(d)]),
                        "target_orphans": figures(orphans(target)),
                        "commits_made": len(list((target / "_delta_log").glob("*.json"))) - start_commits}
        report["merge"] = case
        log.info("merge: %s", case)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
