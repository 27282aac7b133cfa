"""Linear at scale? ``clipscore score`` and ``clipscore merge`` on tables of growing size, one child each.

    python benchmarks/scale.py                         # make bench-scale: 2,000 / 20,000 / 100,000 rows
    python benchmarks/scale.py --sizes 300,1000,2000   # end-to-end check of the plumbing (~15 min, loaded)

With a tiny random CLIP (``clipscore.devtools.random_model`` tiny, 32x32 pixels) the model costs well under a
millisecond per pair, so what is measured is the plumbing: Parquet read, Arrow batches to the Python
workers, decode, tokenize, write, and for ``merge`` the key checks, input hashes and the Delta MERGE.

Data (generated once per size, cached in ``out/bench-scale/data/``): a Parquet table with ``id`` (string
key), ``image`` (JPEG bytes), ``caption`` (string) and ``url`` (a passthrough string column). 256 distinct
photo-like JPEGs between 64x64 and 96x96 (quality 85, about 1.5 KB each) are reused round-robin
(row i has image i mod 256); captions are 35-75 characters (a subject, an action, a place and, for half
the rows, the light) drawn per row so that every (image, caption) pair is distinct. Two Parquet files
(one per core, so every size runs as two equal Spark tasks below 256 MB) with row groups of 2,000 rows
(so the Parquet reader's buffers do not grow with the table).

Merge targets: the source table written as Delta by Spark (same columns, image included, no score
columns; generated once per size in a child process and cached), copied into a fresh folder before each
merge. So every row is matched and updated with its scores (schema evolution adds the score and
provenance columns): "score a lakehouse table in place".

Runs, one after another, each a fresh ``python -m clipscore.jobs.cli`` child (``--master local[2]``,
``--set device=cpu --set precision=fp32 --set batch_size=256``):

  score N      clipscore score --input SRC_N --output out/bench-scale/work/score-N --mode overwrite
  merge N      clipscore merge --input SRC_N --target <copy of TARGET_N> --keys id
  merge chunks the largest N merged with --set merge_chunk_rows=N (1 commit) and ceil(N/16) (16 commits)

Measured per run, on the whole process tree (driver, JVM, Spark Python workers):

* ``seconds``: wall time from start until the driver process exits (JVM start, model load and Spark
  start-up included, as a user sees it). ``job_seconds`` is the job's own "time:" from its summary.
* ``peak_rss_mib``: the sum of the RSS of every process in the tree, sampled every 0.2 s (psutil).
* ``cpu_seconds``: user + system CPU of every process of the tree. Measured as
  ``resource.getrusage(RUSAGE_CHILDREN)`` after minus before, which is exact for every process that is
  waited for: the bench process makes itself a child subreaper (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``),
  so descendants orphaned on the way (the JVM keeps shutting down after the Python driver exits) are
  re-parented to it and waited for, and a process waited for by its parent is in that parent's children
  times. One exception: ``pyspark.daemon`` ignores SIGCHLD, so the kernel reaps the Python workers it
  forks and their CPU time reaches no rusage. For processes whose parent ignores SIGCHLD (checked in
  /proc/<ppid>/status) the last sampled ``cpu_times`` (every 0.2 s) is added instead
  (``cpu_seconds_auto_reaped``; low by at most 0.2 s of a worker's end, when it is idle). Sampling
  alone would miss what short-lived processes use, and what the JVM uses after its last sample
  (``cpu_seconds_sampled``, all processes sampled, is recorded as a cross-check). Without a subreaper the sampled sum is used.
* ``load_before``/``load_after``: ``os.getloadavg()``; the machine is shared, so read the per-CPU-second
  figures when the load is above the core count.

Budget (measured on the shared 2-core machine, load average 4-9): the tiny model costs about 1 ms
of CPU per pair in the core without Spark (2,000 pairs: load_decode_resize 0.8 ms, model 0.5 ms,
tokenize 0.1 ms; batch_size 64 vs 256 under 10 % apart, 256 kept: fewer per-batch overheads). Through
Spark a child costs a fixed ~50 CPU-s (score) or ~90 CPU-s (merge: key checks, MERGE, summary) of JVM,
imports and model loads, plus about 0.5 ms of CPU per row for score (2,000 -> 10,000 rows: +4 CPU-s).
The default run is then about 1,000 CPU-s (3 scores, 5 merges, the target writes), ~9 minutes on 2
idle cores and ~15 under a load of 4-6; images stay small (64-96 px) so that generating and reading
100,000 rows (~150 MB per table) costs little next to that. ``--sizes 300,1000,2000`` took 15 minutes
under a load of 6-9 (it is all start-up cost).

Results: ``benchmarks/results/scale.json`` and ``scale.md``; the target checks (largest vs second
largest size: rows/s wall and per CPU-second >= 0.8x, peak RSS <= 1.25x; merge 16 chunks <= 1.5x 1
chunk) are printed and stored under ``checks``.
"""
from __future__ import annotations

import argparse
import ctypes
import io
import json
import logging
import math
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import TINY_MODEL_DIR  # noqa: E402
from bench_data import _ACTIONS, _LIGHT, _PLACES, _SUBJECTS, photo_like  # noqa: E402
from measure import parse_run_summary  # noqa: E402

DEFAULT_WORK = REPO / "out" / "bench-scale"
RESULTS = REPO / "benchmarks" / "results"
MIB = 1024 ** 2
DATA_VERSION = 2  # bump when the generator changes: it is part of the cache key

log = logging.getLogger("scale")


# -------------------------------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------------------------------
def image_pool(count: int, seed: int, lo: int = 64, hi: int = 96, quality: int = 85) -> list[bytes]:
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(count):
        width, height = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
        buf = io.BytesIO()
        photo_like(width, height, rng).save(buf, format="JPEG", quality=quality)
        pool.append(buf.getvalue())
    return pool


def captions_for(n: int, n_images: int, seed: int) -> list[str]:
    """One caption per row, redrawn where (image i mod n_images, caption) would repeat a pair."""
    rng = np.random.default_rng(seed + 1)
    dims = [len(_SUBJECTS), len(_ACTIONS), len(_PLACES), len(_LIGHT) + 1]  # last: +1 for "no light"
    combos = int(np.prod(dims))
    image_of = np.arange(n) % n_images
    code = rng.integers(0, combos, n)
    while True:
        pair = image_of.astype(np.int64) * combos + code
        _, first = np.unique(pair, return_index=True)
        dup = np.ones(n, bool)
        dup[first] = False
        if not dup.any():
            break
        code[dup] = rng.integers(0, combos, int(dup.sum()))
    out = []
    for c in code.tolist():
        c, light = divmod(c, dims[3])
        c, place = divmod(c, dims[2])
        subject, action = divmod(c, dims[1])
        text = f"{_SUBJECTS[subject]} {_ACTIONS[action]} {_PLACES[place]}"
        if light < len(_LIGHT) and light % 2 == 0:  # about half the rows: the light too
            text += f" {_LIGHT[light]}"
        out.append(text[0].upper() + text[1:])
    return out


def source_table(work: Path, n: int, args) -> Path:
    """The Parquet source of ``n`` rows (cached): id, image, caption, url."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    key = f"n{n}_v{DATA_VERSION}_s{args.seed}_img{args.images}_f{args.files}"
    folder = work / "data" / f"source_{key}"
    if (folder / "_DONE").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    pool = image_pool(args.images, args.seed)
    caps = captions_for(n, args.images, args.seed)
    width = len(str(n - 1))
    per_file = -(-n // args.files)
    for part in range(args.files):
        rows = range(part * per_file, min(n, (part + 1) * per_file))
        if not len(rows):
            continue
        table = pa.table({
            "id": pa.array([f"r{i:0{width}d}" for i in rows], pa.string()),
            "image": pa.array([pool[i % len(pool)] for i in rows], pa.binary()),
            "caption": pa.array([caps[i] for i in rows], pa.string()),
            "url": pa.array([f"https://img.example.com/{i % len(pool)}/{i}.jpg" for i in rows], pa.string()),
        })
        # No dictionary for the images: 256 distinct JPEGs would shrink to one dictionary page, which real
        # image columns never do.
        pq.write_table(table, folder / f"part-{part:05d}.parquet", row_group_size=args.row_group_rows,
                       use_dictionary=["id", "caption", "url"])
    size = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    (folder / "_DONE").write_text(json.dumps({"rows": n, "bytes": size}))
    log.info("source %s: %s rows, %.1f MiB, generated in %.1f s", folder.name, f"{n:,}", size / MIB,
             time.perf_counter() - t0)
    return folder


def target_path(source: Path) -> Path:
    return source.parent / source.name.replace("source_", "target_", 1)


def make_targets_child(spec_path: str) -> int:
    """Child process: write each source as a Delta table (Spark, local[2]): the pristine merge targets."""
    from clipscore.jobs.session import local_session

    spec = json.loads(Path(spec_path).read_text())
    spark = local_session("clipscore-bench-scale-targets", spec["master"], {"spark.ui.enabled": "false"})
    try:
        for src, dst in spec["pairs"]:
            shutil.rmtree(dst, ignore_errors=True)
            spark.read.parquet(src).write.format("delta").save(dst)
            Path(dst + ".done").write_text("ok")
    finally:
        spark.stop()
    return 0


def ensure_targets(sources: list[Path], args, env: dict) -> None:
    todo = [(str(s), str(target_path(s))) for s in sources if not Path(str(target_path(s)) + ".done").is_file()]
    if not todo:
        return
    spec = args.work / "logs" / "make_targets.json"
    spec.write_text(json.dumps({"pairs": todo, "master": args.master}))
    log.info("writing %d Delta merge target(s) with Spark", len(todo))
    log_path = args.work / "logs" / "make_targets.log"
    with open(log_path, "wb") as out:
        rc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--make-targets", str(spec)],
                            cwd=args.work, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    reap_orphans(timeout=30)  # the JVM outlives the driver for a moment
    if rc != 0:
        show_tail(log_path)
        raise SystemExit(f"writing the merge targets failed (exit {rc}); log: {log_path}")


# -------------------------------------------------------------------------------------------------
# Measuring a child's process tree
# -------------------------------------------------------------------------------------------------
def become_subreaper() -> bool:
    """Orphaned descendants get re-parented to us, so we wait for them and their CPU time reaches us."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_orphans(timeout: float = 0.0, exclude: int | None = None, reaped: set | None = None) -> None:
    """Wait for our direct children other than ``exclude``: zombies now, live ones up to ``timeout`` s.

    The pids we reap are added to ``reaped``: their CPU time is in our RUSAGE_CHILDREN.
    """
    import psutil

    me = psutil.Process()
    deadline = time.monotonic() + timeout
    while True:
        for p in [p for p in me.children() if p.pid != exclude]:
            try:
                pid, _, _ = os.wait4(p.pid, os.WNOHANG)
                if pid == p.pid and reaped is not None:
                    reaped.add(pid)
            except ChildProcessError:
                pass
        if not [p for p in me.children() if p.pid != exclude] or time.monotonic() >= deadline:
            return
        time.sleep(0.1)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def ignores_sigchld(pid: int) -> bool:
    """Whether ``pid`` ignores SIGCHLD: then the kernel reaps its children and their CPU time is lost to
    every ancestor's RUSAGE_CHILDREN (pyspark.daemon does this for the Python workers it forks)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    m = re.search(r"^SigIgn:\s*([0-9a-fA-F]+)", text, re.M)
    return bool(m and int(m[1], 16) & (1 << (signal.SIGCHLD - 1)))


def run_child(cmd: list[str], *, cwd: Path, env: dict, log_path: Path, time_limit: float, subreaper: bool,
              interval: float = 0.2) -> dict:
    """Run ``cmd``; sample its tree's RSS and CPU every ``interval`` s; count its CPU seconds.

    CPU seconds = RUSAGE_CHILDREN after - before (every process waited for by its parent or by us, the
    subreaper) + the last sampled CPU time of processes whose parent ignores SIGCHLD (auto-reaped by
    the kernel, so in no rusage): the Spark Python workers. Those are a lower bound by at most one
    sampling interval each, at their very end (the workers are idle then: they die when Spark stops).
    """
    import psutil

    me = psutil.Process()
    load_before = [round(x, 2) for x in os.getloadavg()]
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    peak, peak_at, max_procs = 0, 0.0, 0
    seen: dict[tuple[int, float], dict] = {}  # (pid, create time) -> last user+sys, auto-reaped?
    reaped: set[int] = set()
    killed = None

    def sample() -> None:
        nonlocal peak, peak_at, max_procs
        total, n, ign = 0, 0, {}
        for p in me.children(recursive=True):
            try:
                with p.oneshot():
                    if p.status() == psutil.STATUS_ZOMBIE:
                        continue
                    rss, t, ppid, ctime = p.memory_info().rss, p.cpu_times(), p.ppid(), p.create_time()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total += rss
            n += 1
            if ppid not in ign:
                ign[ppid] = ppid != me.pid and ignores_sigchld(ppid)
            rec = seen.setdefault((p.pid, ctime), {"pid": p.pid, "cpu": 0.0, "auto_reaped": False})
            rec["cpu"] = t.user + t.system
            rec["auto_reaped"] = rec["auto_reaped"] or ign[ppid]
        max_procs = max(max_procs, n)
        if total > peak:
            peak, peak_at = total, time.perf_counter() - t0

    def kill_tree(why: str) -> None:
        log.warning("killing the process tree of pid %d: %s", proc.pid, why)
        victims = me.children(recursive=True)
        for p in victims:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=10)

    try:
        while True:
            sample()
            if proc.poll() is not None:
                break
            if time.perf_counter() - t0 > time_limit:
                killed = f"time limit {time_limit:g} s"
                kill_tree(killed)
            reap_orphans(exclude=proc.pid, reaped=reaped)
            time.sleep(interval)
    except BaseException:  # Ctrl-C: the child has its own session and would outlive us
        kill_tree("interrupted")
        raise
    rc = proc.wait()
    wall = time.perf_counter() - t0
    # The JVM and Python workers may outlive the driver for a moment: keep sampling, then wait for them.
    deadline = time.perf_counter() + 60
    while me.children() and time.perf_counter() < deadline:
        sample()
        reap_orphans(reaped=reaped)
        time.sleep(0.05)
    leftover = [p.pid for p in me.children(recursive=True)]
    tree_gone = time.perf_counter() - t0
    rusage = children_cpu() - cpu0
    lost = sum(r["cpu"] for r in seen.values() if r["auto_reaped"] and r["pid"] not in reaped)
    sampled = sum(r["cpu"] for r in seen.values())
    return {"rc": rc, "seconds": round(wall, 2), "tree_exit_seconds": round(tree_gone, 2),
            "cpu_seconds": round(rusage + lost if subreaper else sampled, 2),
            "cpu_seconds_rusage": round(rusage, 2), "cpu_seconds_auto_reaped": round(lost, 2),
            "cpu_seconds_sampled": round(sampled, 2), "processes_seen": len(seen),
            "peak_rss_mib": round(peak / MIB), "peak_at_s": round(peak_at, 1), "max_processes": max_procs,
            "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
            "killed": killed, **({"leftover_pids": leftover} if leftover else {})}


def show_tail(log_path: Path, lines: int = 40) -> None:
    text = log_path.read_text(errors="replace").strip().splitlines()
    log.error("last %d lines of %s:\n%s", min(lines, len(text)), log_path, "\n".join(text[-lines:]))


def parse_summary(text: str) -> dict:
    """The job's end-of-run summary from its log: rows, scored, errors, time, merge commits and row counts."""
    found = parse_run_summary(text)
    found.pop("errors_by_reason", None)
    if "rows" in found:
        found["summary_rows"] = found.pop("rows")  # "rows" here is the table size
    spills = [line for line in text.splitlines() if "spill" in line.lower()]
    if spills:  # Spark logs spills only at INFO (not shown by default); kept if a log4j setting shows them
        found["spill_log_lines"] = spills[:20]
    return found


# -------------------------------------------------------------------------------------------------
# Runs
# -------------------------------------------------------------------------------------------------
def child_env() -> dict:
    env = dict(os.environ)
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_TELEMETRY="1")
    return env


def cli(args, *parts: str, sets: list[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "clipscore.jobs.cli", *parts, "--model", args.model, "--master", args.master]
    for item in ["device=cpu", "precision=fp32", f"batch_size={args.batch_size}", *args.extra_sets, *sets]:
        cmd += ["--set", item]
    return cmd


def measure(name: str, cmd: list[str], rows: int, args, env: dict, subreaper: bool) -> dict:
    log_path = args.work / "logs" / f"{name}.log"
    log.info("%s: %s", name, " ".join(cmd))
    res = run_child(cmd, cwd=args.work, env=env, log_path=log_path, time_limit=args.time_limit_s, subreaper=subreaper)
    text = log_path.read_text(errors="replace")
    res.update(parse_summary(text))
    seconds = res.pop("seconds")
    res = {"rows": rows, "seconds": seconds, "rows_per_s": round(rows / seconds, 1) if seconds else None, **res}
    res["rows_per_cpu_s"] = round(rows / res["cpu_seconds"], 1) if res["cpu_seconds"] else None
    res.update(command=cmd, log=str(log_path))
    problems = []
    if res["rc"] != 0:
        problems.append(f"exit code {res['rc']}")
    if res.get("summary_rows") not in (None, rows) or res.get("scored") not in (None, rows):
        problems.append(f"summary says rows {res.get('summary_rows')}, scored {res.get('scored')} (expected {rows})")
    if res["rc"] == 0 and "summary_rows" not in res:
        problems.append("no summary in the log")
    if res.get("rows_updated") not in (None, rows):
        problems.append(f"merge updated {res.get('rows_updated')} rows (expected {rows})")
    if problems:
        res["problems"] = problems
        log.error("%s: %s", name, "; ".join(problems))
        show_tail(log_path)
    log.info("%s: %s rows in %.1f s (%.0f rows/s), %.1f CPU s (%.0f rows per CPU-s; rusage %.1f + workers %.1f, "
             "all sampled %.1f), peak RSS %d MiB, load %s -> %s%s", name, f"{rows:,}", res["seconds"],
             res["rows_per_s"] or 0, res["cpu_seconds"], res["rows_per_cpu_s"] or 0, res["cpu_seconds_rusage"],
             res["cpu_seconds_auto_reaped"], res["cpu_seconds_sampled"], res["peak_rss_mib"],
             res["load_before"][0], res["load_after"][0],
             f", {res['commits']} commit(s)" if "commits" in res else "")
    return res


def fresh_target(pristine: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(pristine, dest)
    return dest


# -------------------------------------------------------------------------------------------------
# Report
# -------------------------------------------------------------------------------------------------
def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def checks(results: dict) -> list[dict]:
    """Largest size vs the second largest: rows/s (wall and per CPU-s), peak RSS; 16 chunks vs 1."""
    out = []
    for kind in ("score", "merge"):
        runs = sorted((r for r in results[kind] if r.get("rc") == 0 and not r.get("problems")), key=lambda r: r["rows"])
        if len(runs) < 2:
            out.append({"check": f"{kind}: needs two sizes that ran", "value": None, "target": "", "ok": None})
            continue
        mid, big = runs[-2], runs[-1]
        tag = f"{big['rows']:,} vs {mid['rows']:,} rows"
        for field, label in (("rows_per_s", "rows/s (wall)"), ("rows_per_cpu_s", "rows per CPU-second")):
            value = ratio(big[field], mid[field])
            out.append({"check": f"{kind} {label}, {tag}", "value": value, "target": ">= 0.8",
                        "ok": None if value is None else value >= 0.8})
        value = ratio(big["peak_rss_mib"], mid["peak_rss_mib"])
        out.append({"check": f"{kind} peak RSS, {tag}", "value": value, "target": "<= 1.25",
                    "ok": None if value is None else value <= 1.25})
    chunks = {c["chunks"]: c for c in results["merge_chunks"] if c.get("rc") == 0 and not c.get("problems")}
    if 1 in chunks and 16 in chunks:
        value = ratio(chunks[16]["seconds"], chunks[1]["seconds"])
        out.append({"check": "merge 16 chunks / 1 chunk, wall", "value": value, "target": "<= 1.5", "ok": value <= 1.5})
        value = ratio(chunks[16]["cpu_seconds"], chunks[1]["cpu_seconds"])
        out.append({"check": "merge 16 chunks / 1 chunk, CPU seconds", "value": value, "target": "<= 1.5",
                    "ok": value <= 1.5})
    else:
        out.append({"check": "merge 16 chunks / 1 chunk", "value": None, "target": "<= 1.5", "ok": None})
    return out


def add_marginal(runs: list[dict]) -> None:
    """Rows per extra second (wall and CPU) from the previous size: the start-up cost taken out."""
    ordered = sorted(runs, key=lambda r: r["rows"])
    for prev, cur in zip(ordered, ordered[1:]):
        rows = cur["rows"] - prev["rows"]
        for field, out in (("seconds", "marginal_rows_per_s"), ("cpu_seconds", "marginal_rows_per_cpu_s")):
            extra = cur[field] - prev[field]
            cur[out] = round(rows / extra, 1) if extra > 0 else None


def fmt(x, digits=1):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}" if isinstance(x, float) else f"{x:,}"


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [f"# clipscore at scale: score and merge vs table size", "",
             f"{meta['cpus']} cores, `{meta['master']}`, tiny random CLIP, batch_size {meta['batch_size']}, "
             f"{meta['images']} distinct JPEGs (64-96 px) reused, {meta['files']} Parquet files per table; "
             f"CPU time: {meta['cpu_method']}; whole run {fmt(meta.get('total_seconds'), 0)} s. "
             "Seconds: the child process from start to exit (Spark and model start-up included); marginal: "
             "extra rows per extra second from the previous size.", "",
             "| run | rows | seconds | rows/s | CPU s | rows per CPU-s | marginal rows/s, per CPU-s "
             "| peak RSS MiB | job s (summary) | load 1 min before / after |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def marginal(r):
        if "marginal_rows_per_s" not in r:
            return ""
        return f"{fmt(r['marginal_rows_per_s'], 0)}, {fmt(r.get('marginal_rows_per_cpu_s'), 0)}"

    def row(label, r):
        status = "" if r.get("rc") == 0 and not r.get("problems") else " (FAILED)"
        lines.append(f"| {label}{status} | {r['rows']:,} | {fmt(r['seconds'])} | {fmt(r['rows_per_s'])} | "
                     f"{fmt(r['cpu_seconds'])} | {fmt(r['rows_per_cpu_s'])} | {marginal(r)} | {r['peak_rss_mib']:,} | "
                     f"{fmt(r.get('job_seconds'))} | {r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} |")

    for r in results["score"]:
        row("score", r)
    for r in results["merge"]:
        row("merge", r)
    for r in results["merge_chunks"]:
        row(f"merge, {r['chunks']} chunk(s) ({r.get('commits', '?')} commits)", r)
    lines += ["", "| check | value | target | met |", "| --- | ---: | --- | --- |"]
    for c in results["checks"]:
        met = "n/a" if c["ok"] is None else ("yes" if c["ok"] else "**no**")
        lines.append(f"| {c['check']} | {fmt(c['value'], 2)} | {c['target']} | {met} |")
    return "\n".join(lines) + "\n"


def write_results(results: dict, args) -> None:
    args.results.mkdir(parents=True, exist_ok=True)
    for kind in ("score", "merge"):
        add_marginal(results[kind])
    results["checks"] = checks(results)
    (args.results / "scale.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (args.results / "scale.md").write_text(markdown(results))


# -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--make-targets"]:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return make_targets_child(argv[1])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="2000,20000,100000", help="table sizes in rows (default 2000,20000,100000)")
    p.add_argument("--model", default=None, help="CLIP folder (default: the tiny random CLIP, built if missing)")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--images", type=int, default=256, help="distinct JPEGs reused across rows (default 256)")
    p.add_argument("--files", type=int, default=2, help="Parquet files per source table (default 2: one per core)")
    p.add_argument("--row-group-rows", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="extra_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="extra --set for every child")
    p.add_argument("--skip", default="", help="comma list of score,merge,chunks to leave out")
    p.add_argument("--time-limit-s", type=float, default=1200, help="kill a child after this long (default 1200)")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="data cache, outputs and logs")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.work = args.work.resolve()
    (args.work / "logs").mkdir(parents=True, exist_ok=True)
    if args.model is None:
        if not (TINY_MODEL_DIR / "model.safetensors").is_file():
            from clipscore.devtools.random_model import build_random_clip

            build_random_clip(TINY_MODEL_DIR, tiny=True, seed=0)
        args.model = str(TINY_MODEL_DIR)
    args.model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model

    subreaper = become_subreaper()
    if not subreaper:
        log.warning("no child subreaper here: CPU seconds are sampled (a lower bound)")
    env = child_env()
    sources = {n: source_table(args.work, n, args) for n in sizes}
    if not {"merge", "chunks"} <= skip:
        ensure_targets(list(sources.values()), args, env)

    import psutil

    results = {"score": [], "merge": [], "merge_chunks": [],
               "meta": {"sizes": sizes, "cpus": os.cpu_count(), "master": args.master, "model": args.model,
                        "batch_size": args.batch_size, "images": args.images, "files": args.files,
                        "row_group_rows": args.row_group_rows, "extra_sets": args.extra_sets,
                        "cpu_method": "getrusage(RUSAGE_CHILDREN) with a child subreaper, plus the sampled CPU of "
                                      "processes auto-reaped by a parent ignoring SIGCHLD (Python workers)" if subreaper
                        else "sampled psutil cpu_times (lower bound)",
                        "rss_sample_interval_s": 0.2, "platform": platform.platform(),
                        "python": platform.python_version(),
                        "memory_gib": round(psutil.virtual_memory().total / 1024 ** 3, 1),
                        "source_bytes": {n: json.loads((s / "_DONE").read_text())["bytes"] for n, s in sources.items()},
                        "target": "the source written as Delta by Spark (all columns, no scores), a fresh copy per merge"}}
    out = args.work / "work"

    if "score" not in skip:
        for n in sizes:
            shutil.rmtree(out / f"score-{n}", ignore_errors=True)
            cmd = cli(args, "score", "--input", str(sources[n]), "--output", str(out / f"score-{n}"), "--mode", "overwrite")
            results["score"].append(measure(f"score-{n}", cmd, n, args, env, subreaper))
            write_results(results, args)
            shutil.rmtree(out / f"score-{n}", ignore_errors=True)
    if "merge" not in skip:
        for n in sizes:
            target = fresh_target(target_path(sources[n]), out / f"merge-{n}")
            cmd = cli(args, "merge", "--input", str(sources[n]), "--target", str(target), "--keys", "id")
            results["merge"].append(measure(f"merge-{n}", cmd, n, args, env, subreaper))
            write_results(results, args)
            shutil.rmtree(target, ignore_errors=True)
    if "chunks" not in skip:
        n = sizes[-1]
        for chunks in (1, 16):
            chunk_rows = n if chunks == 1 else math.ceil(n / 16)
            target = fresh_target(target_path(sources[n]), out / f"merge-{n}-chunks{chunks}")
            cmd = cli(args, "merge", "--input", str(sources[n]), "--target", str(target), "--keys", "id",
                      sets=[f"merge_chunk_rows={chunk_rows}"])
            res = measure(f"merge-{n}-chunks{chunks}", cmd, n, args, env, subreaper)
            results["merge_chunks"].append({"chunks": chunks, "seconds": res.pop("seconds"), **res,
                                            "merge_chunk_rows": chunk_rows})
            write_results(results, args)
            shutil.rmtree(target, ignore_errors=True)

    results["meta"]["total_seconds"] = round(time.perf_counter() - started, 1)
    write_results(results, args)
    sys.stdout.write("\n" + markdown(results))
    log.info("wrote %s and %s in %.0f s", args.results / "scale.json", args.results / "scale.md",
             results["meta"]["total_seconds"])
    failed = [r for k in ("score", "merge", "merge_chunks") for r in results[k] if r.get("rc") != 0 or r.get("problems")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
