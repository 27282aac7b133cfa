"""Is every row bounded? Peak memory and wall time of clipscore on hostile inputs, killed at a ceiling.

Measures the clipscore found on PYTHONPATH (run it against an old checkout with PYTHONPATH=...):

  a  12 distinct 8000x8000 PNGs (64 Mpx each, under max_image_pixels) in a Parquet table, captions "a photo"
  b  one 1x100,000 PNG (a few hundred bytes) plus three 640x480 JPEGs
  c  one URL served by a local "drip" server (Content-Length 100, one byte every 0.25 s), http_timeout_s=2

a and b run twice: the ``clipscore score`` CLI on Spark (``local[2]``; peak RSS of the whole process tree:
driver, JVM, Python workers) and the core without Spark (``score_pandas`` in a child process). c runs
through the core only. A poller samples the tree's RSS every 0.1 s and kills the whole tree when it
passes ``--rss-limit-gib``, the time limit, or when the machine's available memory runs low; the
figure is then reported as "> N GiB (killed at T s)".

    python benchmarks/bounded.py --model /tmp/vitb32 --label after --out benchmarks/results/bounded-after.json
    PYTHONPATH=/tmp/before_pkg python benchmarks/bounded.py --model /tmp/vitb32 --label before \\
        --out benchmarks/results/bounded-before.json
    python benchmarks/bounded.py --model /tmp/vitb32 --smoke        # 2 small images, seconds not minutes

Run it from any folder: children run in --workdir, so a ``clipscore/`` folder in the current
directory never shadows the code on PYTHONPATH (the resolved code path is recorded in the JSON).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import parse_run_summary  # noqa: E402

GIB = 1024 ** 3
MIB = 1024 ** 2
SETS = ["device=cpu", "precision=fp32", "batch_size=64"]

log = logging.getLogger("bounded")


# -------------------------------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------------------------------
def _png(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(array, quality: int = 88) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def big_png(seed: int, side: int = 8000) -> bytes:
    """A side x side RGB PNG: gradients plus a per-seed checkerboard and tint (compressible, distinct)."""
    import numpy as np

    ramp = (np.arange(side, dtype=np.uint32) * 255 // max(side - 1, 1)).astype(np.uint8)
    block = 16 + 8 * seed
    cells = np.arange(side) // block
    img = np.empty((side, side, 3), np.uint8)
    img[..., 0] = ramp[None, :] ^ np.uint8((seed * 37) % 256)
    img[..., 1] = ramp[:, None]
    img[..., 2] = (((cells[:, None] + cells[None, :] + seed) % 2) * 128 + seed * 9).astype(np.uint8)
    return _png(img)


def photo(width: int, height: int, seed: int) -> "np.ndarray":
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        a, b = rng.uniform(-1, 1, 2)
        img[..., c] = 128 + 80 * (a * x / width + b * y / height)
    img += rng.normal(0, 6, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def strip_png(width: int = 1, height: int = 100_000) -> bytes:
    import numpy as np

    return _png(np.full((height, width, 3), 200, np.uint8))


def write_table(folder: Path, images: list[bytes], files: int) -> None:
    """A Parquet table (``files`` part files, rows split evenly): id, image (binary), caption."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(images) // files)
    for part in range(files):
        rows = list(range(part * per_file, min(len(images), (part + 1) * per_file)))
        if not rows:
            continue
        table = pa.table({"id": pa.array(rows, pa.int64()),
                          "image": pa.array([images[i] for i in rows], pa.binary()),
                          "caption": pa.array(["a photo"] * len(rows), pa.string())})
        pq.write_table(table, folder / f"part-{part:05d}.parquet")


def build_data(case: str, workdir: Path, files: int) -> tuple[Path, dict]:
    """Generate (once, cached in workdir) the table for a case; returns its folder and a description."""
    folder = workdir / "data" / f"{case}-{files}files"
    desc_path = folder / "_description.json"
    if desc_path.is_file():
        return folder, json.loads(desc_path.read_text())
    t0 = time.monotonic()
    log.info("generating data for case %s in %s", case, folder)
    if case == "a":
        images = []
        for seed in range(12):
            images.append(big_png(seed))
            log.info("  8000x8000 PNG %d/12: %.1f MiB", seed + 1, len(images[-1]) / MIB)
        desc = {"rows": 12, "images": "12 distinct 8000x8000 RGB PNGs (gradient + per-image checkerboard/tint)"}
    elif case == "b":
        images = [strip_png()] + [_jpeg(photo(640, 480, s)) for s in range(3)]
        desc = {"rows": 4, "images": "one 1x100000 (WxH) RGB PNG + three 640x480 JPEGs"}
    elif case == "smoke":
        images = [_jpeg(photo(640, 480, 1)), _png(photo(320, 240, 2))]
        desc = {"rows": 2, "images": "one 640x480 JPEG + one 320x240 PNG"}
    else:
        raise ValueError(case)
    desc["image_bytes"] = [len(b) for b in images]
    desc["parquet_files"] = files
    desc["caption"] = "a photo"
    write_table(folder, images, files)
    desc_path.write_text(json.dumps(desc))
    log.info("data for case %s ready in %.1f s (%s bytes of images)", case, time.monotonic() - t0,
             f"{sum(desc['image_bytes']):,}")
    return folder, desc


# -------------------------------------------------------------------------------------------------
# Process tree watcher: peak RSS, ceiling, time limit
# -------------------------------------------------------------------------------------------------
def _tree(root):
    import psutil

    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _classify(proc) -> str:
    try:
        name = proc.name().lower()
        cmd = " ".join(proc.cmdline())
    except Exception:
        return "other"
    if "java" in name:
        return "jvm"
    if "python" in name and "pyspark" in cmd:  # pyspark.daemon and the workers it forks
        return "python_workers"
    return "other"


def watch(cmd: list[str], *, cwd: Path, env: dict, log_path: Path, rss_limit: int, time_limit: float,
          min_available: int, interval: float = 0.1, start_marker: Path | None = None,
          startup_limit: float | None = None) -> dict:
    """Run ``cmd`` in its own session; sample the tree's RSS every ``interval`` s; kill it at the limits.

    With ``start_marker``, ``time_limit`` counts from the moment that file appears (the child's warm-up
    is then bounded by ``startup_limit``).
    """
    import psutil

    t0 = time.monotonic()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    root = psutil.Process(proc.pid)
    peak = peak_at = 0
    peak_parts: dict[str, int] = {}
    max_procs = 0
    killed = None
    marker_at = None
    worker_env = None
    while proc.poll() is None:
        now = time.monotonic() - t0
        procs = _tree(root)
        total, parts = 0, {}
        for p in procs:
            try:
                rss = p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += rss
            kind = "driver" if p.pid == proc.pid else _classify(p)
            parts[kind] = parts.get(kind, 0) + rss
            if kind == "python_workers" and worker_env is None:
                try:  # where the Spark Python workers import clipscore from: PYTHONPATH, then cwd
                    worker_env = {"pythonpath": p.environ().get("PYTHONPATH"), "cwd": p.cwd(),
                                  "cmdline": " ".join(p.cmdline())}
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        max_procs = max(max_procs, len(procs))
        if total > peak:
            peak, peak_at, peak_parts = total, now, parts
        if start_marker is not None and marker_at is None and start_marker.exists():
            marker_at = now
        available = psutil.virtual_memory().available
        if total > rss_limit:
            killed = {"reason": "rss_limit", "at_s": round(now, 1), "rss_gib": round(total / GIB, 2)}
        elif available < min_available:
            killed = {"reason": "machine_available_memory_low", "at_s": round(now, 1),
                      "available_gib": round(available / GIB, 2), "rss_gib": round(total / GIB, 2)}
        elif start_marker is not None and marker_at is None and startup_limit and now > startup_limit:
            killed = {"reason": "startup_time_limit", "at_s": round(now, 1)}
        elif (now - (marker_at or 0.0) if start_marker is not None else now) > time_limit and \
                (start_marker is None or marker_at is not None):
            killed = {"reason": "time_limit", "at_s": round(now, 1)}
        if killed:
            log.warning("killing process tree of pid %d: %s", proc.pid, killed)
            _kill_tree(proc, procs)
            break
        time.sleep(interval)
    rc = proc.wait()
    wall = time.monotonic() - t0
    if start_marker is not None and marker_at is None and start_marker.exists():
        marker_at = wall
    return {"rc": rc, "wall_s": round(wall, 2), "killed": killed, "rss_limit_gib": round(rss_limit / GIB, 3),
            "time_limit_s": time_limit, "peak_rss_tree_bytes": peak,
            "peak_rss_tree_gib": round(peak / GIB, 3), "peak_at_s": round(peak_at, 1),
            "peak_rss_parts_gib": {k: round(v / GIB, 3) for k, v in sorted(peak_parts.items())},
            "max_processes": max_procs, "after_marker_s": None if marker_at is None else round(wall - marker_at, 2),
            "sample_interval_s": interval, **({"python_worker": worker_env} if worker_env else {})}


def _kill_tree(proc, procs) -> None:
    """SIGKILL the process we started and every descendant we saw (by pid), then its process group."""
    import psutil

    victims = list(procs)
    for p in _tree(psutil.Process(proc.pid)) if proc.poll() is None else []:
        if p not in victims:
            victims.append(p)
    for p in victims:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: its pgid is its pid
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)  # reap our own child first: its exit status (-9) is the run's rc
    except subprocess.TimeoutExpired:
        pass
    psutil.wait_procs([p for p in victims if p.pid != proc.pid], timeout=10)


# -------------------------------------------------------------------------------------------------
# Drip server (case c)
# -------------------------------------------------------------------------------------------------
class DripServer:
    """Sends a valid Content-Length (``length`` bytes), then one byte every ``every_s`` seconds."""

    def __init__(self, length: int = 100, every_s: float = 0.25):
        self.length, self.every_s = length, every_s
        self.connections: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rec = {"start": time.monotonic(), "bytes": 0, "client_gone": False}
                outer.connections.append(rec)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(outer.length))
                    self.end_headers()
                    self.wfile.flush()
                    for _ in range(outer.length):
                        time.sleep(outer.every_s)
                        self.wfile.write(b"\x89")
                        self.wfile.flush()
                        rec["bytes"] += 1
                except (BrokenPipeError, ConnectionResetError, OSError):
                    rec["client_gone"] = True
                rec["seconds"] = round(time.monotonic() - rec.pop("start"), 2)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/drip.png"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


# -------------------------------------------------------------------------------------------------
# Child: the core without Spark
# -------------------------------------------------------------------------------------------------
def core_child(spec_path: str) -> int:
    """Runs in a child process: score_pandas on a Parquet folder or one URL; writes a JSON result."""
    import dataclasses

    import pandas as pd

    spec = json.loads(Path(spec_path).read_text())
    import clipscore
    from clipscore.config.job import ScoreConfig
    from clipscore.scoring.scorer import score_pandas

    names = {f.name for f in dataclasses.fields(ScoreConfig)}
    kwargs = dict(spec["config"])
    if "allow_private_urls" in names:
        kwargs["allow_private_urls"] = True
    cfg = ScoreConfig(**kwargs)
    result = {"clipscore_file": clipscore.__file__, "allow_private_urls_supported": "allow_private_urls" in names,
              "config": {k: getattr(cfg, k) for k in kwargs}}
    if spec.get("warmup"):  # load the model (cached per process) before the timed call
        import numpy as np
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(buf, format="PNG")
        t = time.monotonic()
        score_pandas(pd.DataFrame({"image": [buf.getvalue()], "caption": ["a photo"]}), cfg)
        result["warmup_s"] = round(time.monotonic() - t, 2)
        Path(spec["marker"]).write_text("warm")
    if spec.get("url"):
        df = pd.DataFrame({"image": [spec["url"]], "caption": ["a photo"]})
    else:
        df = pd.read_parquet(spec["data"])[["id", "image", "caption"]].sort_values("id").reset_index(drop=True)
    t = time.monotonic()
    out = score_pandas(df, cfg)
    result["score_s"] = round(time.monotonic() - t, 2)
    result["rows"] = len(out)
    result["scored"] = int(out["similarity"].notna().sum())
    errors = out["score_error"].dropna().astype(str)
    result["errors_by_reason"] = errors.str.split(":").str[0].value_counts().to_dict()
    result["errors"] = [e[:300] for e in errors.tolist()]
    Path(spec["result"]).write_text(json.dumps(result, default=str))
    return 0


# -------------------------------------------------------------------------------------------------
# Runs
# -------------------------------------------------------------------------------------------------
def load_average() -> dict:
    text = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    log.info("uptime: %s", text)
    import psutil

    return {"uptime": text, "loadavg": list(os.getloadavg()), "cpus": os.cpu_count(),
            "available_gib": round(psutil.virtual_memory().available / GIB, 2)}


def child_env(python: str) -> dict:
    env = dict(os.environ)
    env.update(PYSPARK_PYTHON=python, PYSPARK_DRIVER_PYTHON=python, HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_TELEMETRY="1")
    return env


def code_location(python: str, workdir: Path, env: dict) -> dict:
    """Where ``clipscore`` and ``clipscore.jobs`` resolve for the children (same cwd, same env)."""
    probe = ("import json, dataclasses, clipscore, clipscore.jobs.score as s, clipscore.udfs.clip_udf as u;"
             "from clipscore.config.job import ScoreConfig;"
             "print(json.dumps({'clipscore': clipscore.__file__, 'jobs': s.__file__, 'udfs': u.__file__,"
             "'version': getattr(clipscore, '__version__', None),"
             "'has_allow_private_urls': 'allow_private_urls' in {f.name for f in dataclasses.fields(ScoreConfig)}}))")
    out = subprocess.run([python, "-c", probe], cwd=workdir, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_summary(text: str) -> dict:
    """The job's end-of-run summary (rows, scored, errors, time, errors by reason) from its log."""
    found = parse_run_summary(text)
    if "job_seconds" in found:
        found["job_time_s"] = found.pop("job_seconds")  # this bench's results name it so
    return found


def run_cli(case: str, data: Path, args, env: dict, sets: list[str]) -> dict:
    out_dir = args.workdir / "out" / f"{case}-{args.label}"
    log_path = args.workdir / "logs" / f"{args.label}-{case}-spark.log"
    cmd = [args.python, "-m", "clipscore.jobs.cli", "score", "--input", str(data), "--output", str(out_dir),
           "--mode", "overwrite", "--model", args.model, "--master", args.master]
    for s in sets:
        cmd += ["--set", s]
    load = load_average()
    log.info("case %s, Spark CLI: %s", case, " ".join(cmd))
    res = watch(cmd, cwd=args.workdir, env=env, log_path=log_path, rss_limit=int(args.rss_limit_gib * GIB),
                time_limit=args.time_limit_s, min_available=int(args.min_available_gib * GIB))
    text = log_path.read_text(errors="replace")
    res.update(parse_summary(text), command=cmd, log=str(log_path), load=load,
               log_tail=text.strip().splitlines()[-25:])
    _report_run(case, "spark CLI", res)
    return res


def run_core(case: str, args, env: dict, config: dict, *, data: Path | None = None, url: str | None = None,
             time_limit: float | None = None) -> dict:
    tag = f"{args.label}-{case}-core"
    spec = {"config": config, "data": str(data) if data else None, "url": url,
            "result": str(args.workdir / "logs" / f"{tag}.result.json"),
            "marker": str(args.workdir / "logs" / f"{tag}.warm"), "warmup": url is not None}
    for key in ("result", "marker"):
        Path(spec[key]).unlink(missing_ok=True)
    spec_path = args.workdir / "logs" / f"{tag}.spec.json"
    spec_path.write_text(json.dumps(spec))
    cmd = [args.python, str(Path(__file__).resolve()), "--core-child", str(spec_path)]
    load = load_average()
    log.info("case %s, core without Spark (%s)", case, "URL " + url if url else data)
    res = watch(cmd, cwd=args.workdir, env=env, log_path=args.workdir / "logs" / f"{tag}.log",
                rss_limit=int(args.rss_limit_gib * GIB), time_limit=time_limit or args.time_limit_s,
                min_available=int(args.min_available_gib * GIB),
                start_marker=Path(spec["marker"]) if url else None, startup_limit=args.time_limit_s if url else None)
    result_path = Path(spec["result"])
    if result_path.is_file():
        res.update(json.loads(result_path.read_text()))
    res.update(load=load, log=str(args.workdir / "logs" / f"{tag}.log"))
    if res["rc"] not in (0, None) and not res["killed"]:
        res["log_tail"] = Path(res["log"]).read_text(errors="replace").strip().splitlines()[-25:]
    _report_run(case, "core", res)
    return res


def _report_run(case: str, kind: str, res: dict) -> None:
    log.info("case %s %s: %s, wall %.1f s, rc %s%s", case, kind, rss_text(res), res["wall_s"], res["rc"],
             f", {res.get('errors_by_reason')}" if res.get("errors_by_reason") else "")


def rss_text(res: dict) -> str:
    k = res.get("killed")
    if k and k["reason"] == "rss_limit":
        return f"> {res['rss_limit_gib']:g} GiB (killed at {k['at_s']:.0f} s)"
    text = f"{res['peak_rss_tree_gib']:.2f} GiB"
    if k:
        text += f" (killed at {k['at_s']:.0f} s: {k['reason']})"
    return text


def wall_text(res: dict) -> str:
    k = res.get("killed")
    if k and k["reason"] == "time_limit":
        return f"> {res['time_limit_s']:g} s (killed)"
    if k:
        return f"killed at {k['at_s']:.0f} s"
    return f"{res['wall_s']:.1f} s"


def markdown(results: dict) -> str:
    lines = [f"clipscore `{results['code']['clipscore']}` ({results['label']}), "
             f"{results['machine']['cpus']} cores, RSS ceiling {results['limits']['rss_limit_gib']:g} GiB, "
             f"time limit {results['limits']['time_limit_s']:g} s", "",
             "| case | run | peak RSS (process tree) | wall | rows scored / errors | load avg (1 min) |",
             "| --- | --- | ---: | ---: | --- | ---: |"]
    for key, res in results["runs"].items():
        case, kind = key.split(":", 1)
        if res.get("killed"):
            outcome = "killed"
        elif res["rc"] != 0:
            outcome = f"exit {res['rc']}"
        else:
            errs = res.get("errors_by_reason") or {}
            outcome = f"{res.get('scored', '?')} / {sum(errs.values())}" + (
                " (" + ", ".join(f"{k} {v}" for k, v in errs.items()) + ")" if errs else "")
        wall = wall_text(res)
        if kind == "core-url" and res.get("score_s") is not None:
            wall = f"{res['score_s']:.1f} s (score_pandas, warm); process {res['wall_s']:.1f} s"
        elif kind == "core-url" and res.get("after_marker_s") is not None and res.get("killed"):
            wall = f"> {res['after_marker_s']:.0f} s (killed)"
        lines.append(f"| {case} | {kind} | {rss_text(res)} | {wall} | {outcome} | {res['load']['loadavg'][0]:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--core-child"]:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return core_child(argv[1])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="CLIP folder (e.g. a random ViT-B/32 from clipscore.devtools.random_model)")
    p.add_argument("--cases", help="comma list of a, b, c (default a,b,c; with --smoke: smoke,c)")
    p.add_argument("--smoke", action="store_true", help="case 'smoke': 2 small images through the CLI and the core")
    p.add_argument("--skip-core", action="store_true", help="a and b through the Spark CLI only")
    p.add_argument("--label", default="run", help="name of this run in the JSON (e.g. before, after)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/clipscore-bounded"),
                   help="data, outputs, logs; children run here (default /tmp/clipscore-bounded)")
    p.add_argument("--python", default=sys.executable, help="interpreter for the children and Spark workers")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--files", type=int, default=2, help="Parquet part files per table (default 2: one per core)")
    p.add_argument("--rss-limit-gib", type=float, default=12.0, help="kill the tree above this RSS (default 12)")
    p.add_argument("--time-limit-s", type=float, default=240.0, help="kill a run after this long (default 240)")
    p.add_argument("--url-time-limit-s", type=float, default=200.0, help="cap on case c's URL scoring (default 200)")
    p.add_argument("--min-available-gib", type=float, default=2.0,
                   help="also kill when the machine's available memory drops below this (default 2)")
    p.add_argument("--http-timeout-s", type=float, default=2.0)
    p.add_argument("--drip-bytes", type=int, default=100)
    p.add_argument("--drip-every-s", type=float, default=0.25)
    p.add_argument("--set", dest="extra_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="extra options for every run (CLI --set and ScoreConfig)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.model = str(Path(args.model).resolve())
    args.workdir = args.workdir.resolve()
    (args.workdir / "logs").mkdir(parents=True, exist_ok=True)
    cases = [c.strip() for c in (args.cases or ("smoke,c" if args.smoke else "a,b,c")).split(",") if c.strip()]
    unknown = set(cases) - {"a", "b", "c", "smoke"}
    if unknown:
        p.error(f"unknown case(s) {sorted(unknown)}; use a, b, c (or --smoke)")

    env = child_env(args.python)
    code = code_location(args.python, args.workdir, env)
    log.info("clipscore for the children: %s (jobs: %s)", code["clipscore"], code["jobs"])
    sets = SETS + (["allow_private_urls=true"] if code["has_allow_private_urls"] else []) + args.extra_sets
    config = {"model": args.model, "device": "cpu", "precision": "fp32", "batch_size": 64}
    for item in args.extra_sets:
        key, value = item.split("=", 1)
        try:
            config[key] = json.loads(value.lower() if value.lower() in ("true", "false") else value)
        except ValueError:
            config[key] = value

    import psutil

    results = {"label": args.label, "code": code, "model": args.model,
               "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
                           "platform": platform.platform(), "python": platform.python_version()},
               "limits": {"rss_limit_gib": args.rss_limit_gib, "time_limit_s": args.time_limit_s,
                          "url_time_limit_s": args.url_time_limit_s, "min_available_gib": args.min_available_gib,
                          "sample_interval_s": 0.1},
               "cli_sets": sets, "core_config": config, "data": {}, "runs": {},
               "notes": ["peak RSS (process tree) sums the RSS of the process and all its descendants "
                         "(driver, JVM, Spark Python workers); shared pages count once per process.",
                         "each run is started alone, one after the other."]}

    for case in cases:
        if case == "c":
            cfg = dict(config, http_timeout_s=args.http_timeout_s)
            with DripServer(args.drip_bytes, args.drip_every_s) as server:
                res = run_core("c", args, env, cfg, url=server.url, time_limit=args.url_time_limit_s)
                time.sleep(0.3)
                res["server_connections"] = [dict(c) for c in server.connections]
            res["drip"] = {"content_length": args.drip_bytes, "byte_every_s": args.drip_every_s,
                           "http_timeout_s": args.http_timeout_s}
            results["runs"]["c:core-url"] = res
            log.info("case c: score_pandas %s s, server connections %s", res.get("score_s"), res["server_connections"])
        else:
            data, desc = build_data(case, args.workdir, args.files)
            results["data"][case] = dict(desc, path=str(data))
            results["runs"][f"{case}:spark CLI"] = run_cli(case, data, args, env, sets)
            if not args.skip_core:
                results["runs"][f"{case}:core"] = run_core(case, args, env, config, data=data)
        if args.out:  # after every case: a later crash keeps what was measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")

    table = markdown(results)
    results["markdown"] = table
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        log.info("wrote %s", args.out)
    sys.stdout.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
