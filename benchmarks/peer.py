"""clipscore against clip-retrieval (the peer), side by side: the same shards, weights, batch size and cores.

    make bench-peer                                   # builds the peer's venv once, then this script
    python benchmarks/peer.py --peer-venv DIR [--pairs 320] [--small-pairs 64] [--repeats 2] [--precisions fp32,bf16]

Held equal (details in benchmarks/README.md, "The peer, side by side"):

* input: the same WebDataset shards, img2dataset's layout (.jpg, .txt, .json), built once from bench_data's
  photo-like JPEGs (640x480 and 1024x768) and alt-text captions: the first --pairs of the bench's pairs
  (``--shards`` tars) and, for the small run, the first --small-pairs of them in their own shards;
* model: one open_clip ViT-B-32 safetensors file with random weights (open_clip.create_model, seeded),
  named ``open_clip:ViT-B-32//ABS/PATH`` by both (all_clip hands the path to open_clip as ``pretrained``);
* batch size, device (cpu) and cores: ours ``--master local[W]``, the peer ``--num_prepro_workers W``;
* output: both write embeddings (ours ``write_embeddings=true``, float16 cells; the peer float16 .npy) and
  the metadata; ours also writes every input column back (its default table, Delta, by band).

Each run is a fresh process (as a user runs it), measured by scale.run_child: wall seconds until the
process exits, CPU seconds of its whole process tree (rusage of everything waited for, we being the
child subreaper, plus the sampled CPU of Spark's auto-reaped Python workers). Per tool and precision:
--repeats runs of each size, the order of the tools alternating (ours, peer, peer, ours, ...); the least
wall of each size counts, and marginal pairs/s = (big - small) / (wall_big - wall_small) takes out the
start-up. Stdout and stderr of every run: out/peer/logs/. Results: benchmarks/results/peer.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import _cpu_name  # noqa: E402
from bench_data import cached_dataset  # noqa: E402
from peer_kit import (agreement, make_weights, ours_command, ours_scores, peer_command, peer_env,  # noqa: E402
                      peer_scores, write_shards)
from scale import become_subreaper, child_env, parse_summary, run_child, show_tail  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZES = [(640, 480), (1024, 768)]
TARGETS = {"fp32": 1.2, "best": 2.5}  # ours / peer, marginal pairs/s (the item 4)
PEER_PRECISION_NOTE = ("fp32 only on CPU: all_clip's OpenClipWrapper runs open_clip as loaded (fp32) on a CPU device "
                       "and autocasts to bf16/fp16 only on CUDA; clip-retrieval inference has no precision option.")


def load_avg() -> list[float]:
    return [round(float(v), 2) for v in Path("/proc/loadavg").read_text().split()[:3]]


def versions(peer_python: Path) -> dict:
    import open_clip
    import torch

    import clipscore

    probe = ("import importlib.metadata as m, json; print(json.dumps({k: m.version(k) for k in "
             "('clip-retrieval', 'all_clip', 'open_clip_torch', 'torch', 'webdataset', 'pillow', 'numpy')}))")
    peer = subprocess.run([str(peer_python), "-c", probe], capture_output=True, text=True, check=True).stdout
    ours = {"clipscore": clipscore.__version__, "open_clip_torch": open_clip.__version__, "torch": torch.__version__}
    return {"ours": ours, "peer": json.loads(peer)}


def measure(tool: str, precision: str, size: str, cmd: list[str], env: dict, out: Path, pairs: int, args) -> dict:
    """One run in a fresh process; checks it scored every pair and reads its cosines back by key."""
    shutil.rmtree(out, ignore_errors=True)
    log_path = args.work / "logs" / f"{tool}-{precision}-{size}-{len(args.runs)}.log"
    res = run_child(cmd, cwd=args.work, env=env, log_path=log_path, time_limit=args.time_limit_s, subreaper=True)
    problem = f"exit code {res['rc']}" if res["rc"] else None
    scores = {}
    if not problem:
        try:
            scores = ours_scores(out) if tool == "ours" else peer_scores(out)
        except Exception as exc:  # noqa: BLE001 - reported with the log's tail below
            problem = f"{type(exc).__name__}: {exc}"
    if not problem and len(scores) != pairs:
        problem = f"{len(scores)} pairs in the output, expected {pairs}"
    run = {"tool": tool, "precision": precision, "size": size, "pairs": pairs, **res, "log": str(log_path)}
    if tool == "ours":
        run["summary"] = parse_summary(log_path.read_text(errors="replace"))
    args.runs.append(run)
    print(f"[{len(args.runs):2d}/{args.total_runs}] {tool:4s} {precision} {pairs:4d} pairs: "
          f"{res['seconds']:6.1f} s wall, {res['cpu_seconds']:6.1f} CPU-s, peak RSS {res['peak_rss_mib']} MiB, "
          f"load {res['load_before'][0]} -> {res['load_after'][0]}" + (f"  FAILED: {problem}" if problem else ""),
          flush=True)
    if problem:
        show_tail(log_path)
        raise SystemExit(f"{tool} {precision} {size}: {problem}; log: {log_path}")
    return scores


def figures(runs: list[dict], big: int, small: int) -> dict:
    """Least wall and least CPU of each size; marginal pairs/s and pairs per CPU-second between them."""
    by = {size: [r for r in runs if r["size"] == size] for size in ("big", "small")}
    out = {}
    for size, n in (("big", big), ("small", small)):
        wall = min(r["seconds"] for r in by[size])
        cpu = min(r["cpu_seconds"] for r in by[size])
        out[size] = {"pairs": n, "wall_seconds": wall, "cpu_seconds": cpu, "pairs_per_s": round(n / wall, 2),
                     "pairs_per_cpu_s": round(n / cpu, 3), "all_wall_seconds": [r["seconds"] for r in by[size]],
                     "all_cpu_seconds": [r["cpu_seconds"] for r in by[size]],
                     "peak_rss_mib": max(r["peak_rss_mib"] for r in by[size])}
    d_wall = out["big"]["wall_seconds"] - out["small"]["wall_seconds"]
    d_cpu = out["big"]["cpu_seconds"] - out["small"]["cpu_seconds"]
    marginal = (big - small) / d_wall if d_wall > 0 else None
    out["marginal_pairs_per_s"] = round(marginal, 2) if marginal else None
    out["marginal_pairs_per_cpu_s"] = round((big - small) / d_cpu, 3) if d_cpu > 0 else None
    # The start-up a run pays whatever its size: the big run's wall less its pairs at the marginal rate.
    out["fixed_seconds"] = round(out["big"]["wall_seconds"] - big / marginal, 1) if marginal else None
    return out


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-venv", required=True, type=Path,
                        help="clip-retrieval's venv (make bench-peer builds it)")
    parser.add_argument("--pairs", type=int, default=320, help="pairs in the big run (default 320, as make bench)")
    parser.add_argument("--small-pairs", type=int, default=64, help="pairs in the small run (default 64)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each size per tool and precision (default 2)")
    parser.add_argument("--precisions", default="fp32,bf16", help="ours: fp32,bf16 (the peer runs fp32 either way)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2,
                        help="ours local[W], the peer --num_prepro_workers W (default 2)")
    parser.add_argument("--shards", type=int, default=2, help="tar shards per input (default 2: one per worker)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit-s", type=float, default=900, help="per run; the run is killed past it")
    parser.add_argument("--work", type=Path, default=REPO / "out" / "peer")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "peer.json")
    args = parser.parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not set(precisions) <= {"fp32", "bf16"} or "fp32" not in precisions:
        parser.error("--precisions: fp32 and optionally bf16")
    if args.small_pairs >= args.pairs:
        parser.error("--small-pairs must be below --pairs")
    peer_cli = args.peer_venv / "bin" / "clip-retrieval"
    if not peer_cli.is_file():
        parser.error(f"{peer_cli} missing: build the peer's venv with make bench-peer")
    if not become_subreaper():
        raise SystemExit("needs Linux (a child subreaper) to count the CPU of every process a run starts")

    work = args.work
    (work / "logs").mkdir(parents=True, exist_ok=True)
    load_start, started = load_avg(), time.time()
    df, _ = cached_dataset(args.pairs, SIZES, args.seed, REPO / "out" / "bench" / "data")
    data = work / "data" / f"n{args.pairs}_s{args.seed}_sh{args.shards}"
    inputs = {"big": write_shards(df, data / "big", args.shards),
              "small": write_shards(df.iloc[: args.small_pairs], data / f"small{args.small_pairs}", args.shards)}
    pairs = {"big": args.pairs, "small": args.small_pairs}
    weights = work / "models" / f"open_clip-vit-b-32-random-s{args.seed}.safetensors"
    sha = make_weights(weights, args.seed)

    ours_env, env_peer = child_env(), peer_env(dict(os.environ), args.peer_venv)
    units = [("ours", p) for p in precisions] + [("peer", "fp32")]
    args.runs, args.total_runs = [], len(units) * 2 * args.repeats
    scores: dict[tuple[str, str], dict] = {}
    commands = {}
    for rep in range(args.repeats):
        # ours then the peer, then the peer then ours, ...; sizes alternate the same way.
        order, sizes = (units, ("big", "small")) if rep % 2 == 0 else (units[::-1], ("small", "big"))
        for tool, precision in order:
            for size in sizes:
                out = work / "runs" / f"{tool}-{precision}-{size}"
                if tool == "ours":
                    cmd = ours_command(sys.executable, inputs[size], out, weights, precision, args.batch_size,
                                       args.workers)
                else:
                    cmd = peer_command(args.peer_venv, inputs[size], out, weights, args.batch_size, args.workers)
                if size == "big":
                    commands[f"{tool}_{precision}"] = cmd
                env = ours_env if tool == "ours" else env_peer
                got = measure(tool, precision, size, cmd, env, out, pairs[size], args)
                if size == "big":
                    scores[(tool, precision)] = got

    tools: dict = {"ours": {}, "peer": {}}
    for tool, precision in units:
        runs = [r for r in args.runs if r["tool"] == tool and r["precision"] == precision]
        tools[tool][precision] = figures(runs, args.pairs, args.small_pairs)
    peer32, ours32 = tools["peer"]["fp32"], tools["ours"]["fp32"]
    best = tools["ours"].get("bf16", ours32)
    ratios = {name: {"marginal_pairs_per_s": ratio(o["marginal_pairs_per_s"], peer32["marginal_pairs_per_s"]),
                     "marginal_pairs_per_cpu_s": ratio(o["marginal_pairs_per_cpu_s"],
                                                       peer32["marginal_pairs_per_cpu_s"]),
                     "wall_pairs_per_s": ratio(o["big"]["pairs_per_s"], peer32["big"]["pairs_per_s"]),
                     "pairs_per_cpu_s": ratio(o["big"]["pairs_per_cpu_s"], peer32["big"]["pairs_per_cpu_s"])}
              for name, o in (("fp32", ours32), ("best", best))}
    cosine = {f"ours_{p}_vs_peer_fp32": agreement(scores[("ours", p)], scores[("peer", "fp32")]) for p in precisions}
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "label": "smoke run: figures mean nothing" if args.pairs < 320 or args.repeats < 2 else "full run",
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "load_avg_start": load_start,
                    "load_avg_end": load_avg()},
        "pairs": {"big": args.pairs, "small": args.small_pairs},
        "setup": {"batch_size": args.batch_size, "device": "cpu", "workers": args.workers,
                  "ours": f"--master local[{args.workers}], one Spark task per shard, Delta output, "
                          "write_embeddings=true",
                  "peer": f"--num_prepro_workers {args.workers} (DataLoader processes, shards split between them); "
                          "the model in the main process; --enable_metadata True",
                  "shards": {k: {"pattern": v, "count": args.shards} for k, v in inputs.items()},
                  "images": [f"{w}x{h}" for w, h in SIZES], "seed": args.seed, "repeats": args.repeats,
                  "weights": {"path": str(weights), "sha256": sha, "arch": "ViT-B-32",
                              "note": "random weights (open_clip.create_model, torch.manual_seed(seed)); speed "
                                      "does not depend on their values"},
                  "peer_precision": PEER_PRECISION_NOTE, "versions": versions(args.peer_venv / "bin" / "python"),
                  "commands": commands},
        "ours": tools["ours"], "peer": tools["peer"],
        "ratios": ratios,
        "targets": {k: {"marginal_pairs_per_s": f">= {v}", "met": (ratios[k]["marginal_pairs_per_s"] or 0) >= v}
                    for k, v in TARGETS.items()},
        "cosine_max_abs_diff": cosine["ours_fp32_vs_peer_fp32"]["max_abs_diff"],
        "cosine": cosine,
        "runs": args.runs,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(summary(report))
    print(f"results: {args.results}")
    return 0


def summary(report: dict) -> str:
    nan = float("nan")
    lines = [f"{'':10s} {'big wall s':>10s} {'small wall s':>12s} {'marginal pairs/s':>16s} "
             f"{'marginal pairs/CPU-s':>20s} {'big CPU-s':>9s}"]
    for tool in ("ours", "peer"):
        for precision, f in report[tool].items():
            lines.append(f"{tool + ' ' + precision:10s} {f['big']['wall_seconds']:10.1f} "
                         f"{f['small']['wall_seconds']:12.1f} {f['marginal_pairs_per_s'] or nan:16.2f} "
                         f"{f['marginal_pairs_per_cpu_s'] or nan:20.3f} {f['big']['cpu_seconds']:9.1f}")
    for name, r in report["ratios"].items():
        lines.append(f"ours/peer {name}: marginal pairs/s {r['marginal_pairs_per_s']} "
                     f"(target {report['targets'][name]['marginal_pairs_per_s']}), per CPU-s "
                     f"{r['marginal_pairs_per_cpu_s']}, whole big run {r['wall_pairs_per_s']}")
    machine = report["machine"]
    lines.append(f"max |cosine ours - peer| (fp32): {report['cosine_max_abs_diff']:.2e}; "
                 f"load {machine['load_avg_start']} -> {machine['load_avg_end']}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
