"""clipscore benchmark: where the time goes, from the per-pair loop to the Spark job.

    python benchmarks/bench.py                      # make bench: ViT-B/32 (random weights), CPU, ~5 min on 2 cores
    python benchmarks/bench.py --pairs 2000 --model openai/clip-vit-base-patch32 --device cuda

One run measures, on the same generated data and the same model:

  a  baseline   plain transformers CLIPProcessor + CLIPModel, one pair at a time, preprocessing included
  b  bare model batched forward passes (image + text tower, cosine) on ready-made tensors: the ceiling
  h  host       everything an executor does for a batch except the model forward, per preprocessing
                mode: CPU-ms per pair (all threads), what decides how many cores feed one GPU
  c  core       clipscore.scoring.scorer.PairScorer without Spark: decode, preprocess, tokenize, model, band
  d  spark      clipscore.jobs.score.run_score in local mode: read Parquet (image bytes), UDF, write
  d0 job host   the same Spark job with a near-free model (tiny random CLIP, 32x32) on --d0-pairs (1,280): CPU-ms
                per pair of the whole process tree by kind (driver, JVM, Python workers, daemon) per row
                (a job on all pairs minus one on a quarter) and for the whole job, preprocess exact/fast,
                with and without drop_columns: [image]. `--only d0` (make bench-host) runs just this.

d and d_bf16 also report their steady rate (the warm-up input's job subtracted): cpu_ratios_bf16["d/c"].

plus, against (c): preprocess=fast, the reduced precisions (bf16, int8 on CPU; fp16, bf16 on GPU) with
their speed-up and score deviation, fast-vs-exact deviation per image format and on the sample's real
photos, and the fidelity of (c) and (d) against (a), the reference.

Only (d) imports Spark: on a GPU machine without pyspark or Java, b, c and h run and d is skipped.
Results go to benchmarks/results/<model>-<device>-<precision>.json and .md. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_CONFIG = REPO.parent / "shared" / "models" / "clip-vit-b-32-config"
DEFAULT_MODEL_DIR = REPO / "out" / "models" / "clip-vit-b-32-random"
TINY_MODEL_DIR = REPO / "out" / "models" / "clip-tiny-random"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

log = logging.getLogger("bench")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(REPO))  # clipscore without installing it (a bare GPU box: torch + transformers + pillow)

from bench_data import cached_dataset  # noqa: E402
from host import fast_vs_exact, per_format, real_photos, run_host, signal_costs  # noqa: E402
from measure import deviation  # noqa: E402
from runs import run_bare, run_baseline, run_core, run_job_host, run_spark  # noqa: E402


# -------------------------------------------------------------------------------------------------
# Model selection
# -------------------------------------------------------------------------------------------------
def resolve_model(requested: str | None) -> tuple[str, str]:
    from clipscore.devtools.random_model import build_random_clip

    if requested:
        return requested, requested
    if (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        return str(DEFAULT_MODEL_DIR), "ViT-B/32 architecture, random weights"
    if SHARED_CONFIG.is_dir():
        log.info("building random-weight ViT-B/32 into %s", DEFAULT_MODEL_DIR)
        build_random_clip(DEFAULT_MODEL_DIR, config_dir=SHARED_CONFIG, seed=0)
        return str(DEFAULT_MODEL_DIR), "ViT-B/32 architecture, random weights"
    log.warning("%s is missing: falling back to the tiny random CLIP (figures are not ViT-B/32)", SHARED_CONFIG)
    if not (TINY_MODEL_DIR / "model.safetensors").is_file():
        build_random_clip(TINY_MODEL_DIR, tiny=True, seed=0)
    return str(TINY_MODEL_DIR), "tiny random CLIP (../shared missing)"


# -------------------------------------------------------------------------------------------------
# Report
# -------------------------------------------------------------------------------------------------
def fmt(x, digits=2):
    return "n/a" if x is None else (f"{x:.{digits}e}" if isinstance(x, float) and 0 < abs(x) < 0.1 else f"{x:.{digits}f}")


RUNS = ("a", "b", "c", "d", "d0", "h", "fast", "precisions", "formats", "d_bf16", "signals")
RUN_ORDER = ("a", "b", "b2", "c", "c_fast", "c_fp32", "c_bf16", "c_fp16", "c_int8", "d", "d_bf16")
TARGETS = {"d/b": ">= 0.9", "d/a": ">= 2", "d/c": ">= 0.93"}


def _table(header: tuple, align: str, rows) -> list[str]:
    """A Markdown table after a blank line; ``align`` has one letter per column, l or r."""
    lines = ["", "| " + " | ".join(header) + " |", "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def markdown(report: dict) -> str:
    r = report["results"]
    lines = [f"# clipscore benchmark: {report['model_label']}", "",
             f"{report['when']} · {report['machine']['cpu']} · {report['machine']['cores']} cores · "
             f"device {report['device']} · precision {report['precision']} · batch_size {report['batch_size']} · "
             f"{report['pairs']} pairs ({', '.join(report['sizes'])}), baseline on {report['baseline_pairs']} · "
             f"load average at start {report['machine']['load_avg_start']}, at end {report['machine'].get('load_avg_end')}"]
    runs = []
    for key in (k for k in RUN_ORDER if k in r):
        x = r[key]
        rss = x.get("peak_rss_tree_mib", x.get("peak_rss_mib"))
        if key.startswith("d"):
            rss = f"{x['peak_rss_tree_mib']} (driver+JVM+workers; workers {x['peak_rss_python_workers_mib']})"
        gpu = f", GPU {x['peak_gpu_mib']} MiB" if "peak_gpu_mib" in x else ""
        runs.append((key, x["label"], x["pairs"], f"{x['seconds']:.1f}", f"{x['pairs_per_s']:.2f}",
                     f"{x['pairs_per_cpu_s']:.2f}", f"{rss}{gpu}"))
    lines += _table(("run", "what", "pairs", "seconds", "pairs/s", "pairs per CPU-second", "peak RSS MiB"),
                    "llrrrrr", runs)
    lines += _table(("ratio", "wall-clock pairs/s", "pairs per CPU-second", "target"), "lrrl",
                    [(k, f"{v:.2f}", fmt(report["cpu_ratios"].get(k)), TARGETS.get(k, ""))
                     for k, v in report["ratios"].items()])
    if report.get("steady_cpu_ratios"):
        lines += ["", "Steady state (d without its per-job fixed cost: a job on all pairs minus one on "
                  "the warm-up input, per CPU-second): " + ", ".join(
                      f"{k} {v:.2f}" for k, v in report["steady_cpu_ratios"].items())
                  + "; fixed CPU-s per job: " + ", ".join(
                      f"{k} {fmt(r[k]['steady']['fixed_cpu_seconds_per_job'])}" for k in ("d", "d_bf16")
                      if r.get(k, {}).get("steady"))]
    if report.get("cpu_ratios_bf16"):
        lines += ["", "bf16, job against core (pairs per CPU-second): " + ", ".join(
            f"{k} {fmt(v)}" for k, v in report["cpu_ratios_bf16"].items()) + " (target d/c >= 0.9)"]
    for key in ("d", "d_bf16"):
        by = r.get(key, {}).get("cpu_seconds_by_process")
        if by:
            lines += ["", f"CPU seconds of {key} by process: " + ", ".join(f"{k} {v:.1f}" for k, v in by.items())
                      + (f" (c: {r['c']['cpu_seconds']:.1f} in one process)" if "c" in r else "")]
    job_host = {k: v for k, v in report.get("job_host", {}).items() if not k.startswith("_")}
    if job_host:
        lines += ["", "The job's host cost (d0): the Spark job with a tiny random CLIP, CPU-ms per pair of the whole "
                  "process tree by kind, per row without the per-job fixed cost (a job on all pairs minus one on a "
                  "quarter; least-CPU round of each), then the whole job's figure and the fixed cost:"]
        lines += _table(("variant", "CPU-ms per pair", "JVM", "Python workers", "daemon", "driver", "other",
                         "whole job, per pair", "fixed CPU-s per job", "wall pairs/s", "load avg"), "lrrrrrrrrrl",
                        [(k, f"{v['cpu_ms_per_pair']:.2f}", f"{v['jvm_ms']:.2f}", f"{v['python_ms']:.2f}",
                          f"{v['daemon_ms']:.2f}", f"{v['driver_ms']:.2f}", f"{v['other_ms']:.2f}",
                          fmt(v.get("whole_job_cpu_ms_per_pair")), fmt(v["fixed_cpu_seconds_per_job"]),
                          f"{v['pairs_per_s']:.0f}", v["load_avg_start"]) for k, v in job_host.items()])
    host = report.get("host", {})
    if host:
        lines += ["", "Host side (h): everything but the model forward, process CPU time over all threads:"]
        lines += _table(("mode", "CPU-ms per pair", "pairs/s per core", "wall pairs/s", "by step (CPU-ms per pair)"),
                        "lrrrl", [(mode, f"{h['cpu_ms_per_pair']:.2f}", f"{h['pairs_per_s_per_core']:.0f}",
                                   f"{h['pairs_per_s']:.0f}",
                                   ", ".join(f"{k} {v:.2f}" for k, v in h["cpu_ms_per_pair_by_step"].items())
                                   + f" (normalise on {h['normalise_on']})") for mode, h in host.items()
                                  if "cpu_ms_per_pair" in h])  # host["signals"] has its own layout
    prec = report.get("precisions", {})
    if prec:
        lines += _table(("precision", "speed-up vs fp32 (pairs per CPU-second)", "wall speed-up",
                         "max abs diff vs fp32", "mean abs diff"), "lrrrr",
                        [(p, fmt(v["speedup_vs_fp32"]), fmt(v["wall_speedup_vs_fp32"]), fmt(v["max_abs"]),
                          fmt(v["mean_abs"])) for p, v in prec.items()])
    formats = report.get("formats", {})
    if formats:
        lines += ["", "Per image format (the first pairs of the mix re-encoded; fast vs exact):"]
        lines += _table(("format", "mean KB", "exact CPU-ms/pair", "fast CPU-ms/pair", "max abs diff", "mean abs diff"),
                        "lrrrrr", [(f, v["mean_kb"], f"{v['exact_cpu_ms_per_pair']:.2f}",
                                    f"{v['fast_cpu_ms_per_pair']:.2f}", fmt(v["max_abs"]), fmt(v["mean_abs"]))
                                   for f, v in formats.items()])
    fid = report.get("fidelity", {})
    if fid:
        lines += _table(("scores compared", "pairs", "max abs diff", "mean abs diff"), "lrrr",
                        [(k, v["pairs"], fmt(v["max_abs"]), fmt(v["mean_abs"])) for k, v in fid.items()])
    return "\n".join(lines) + "\n"


def load_avg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="HF id or local folder (default: random-weight ViT-B/32 built into out/)")
    parser.add_argument("--pairs", type=int, default=320, help="pairs for b, c, d, h and the options (default 320)")
    parser.add_argument("--baseline-pairs", type=int, default=48, help="pairs for the per-pair baseline a (default 48)")
    parser.add_argument("--format-pairs", type=int, default=32, help="pairs per image format in the format table")
    parser.add_argument("--sizes", default="640x480,1024x768", help="image sizes, cycled (default 640x480,1024x768)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=None, help="model batch size (default: ScoreConfig's)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="auto", help="precision of b, c, d (default auto: fp32 on CPU, fp16 on GPU)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="ScoreConfig override for c, d, h")
    parser.add_argument("--bare-repeats", type=int, default=2, help="b is the best of this many passes")
    parser.add_argument("--repeats", type=int, default=2,
                        help="a, c and d are each the pass with the least CPU time of this many (default 2)")
    parser.add_argument("--master", default=None, help="Spark master (default local[<cores>])")
    parser.add_argument("--input-files", type=int, default=None, help="Parquet files for d (default: one per core)")
    parser.add_argument("--output-format", default="delta", choices=["delta", "parquet"])
    parser.add_argument("--skip", default="",
                        help=f"comma list to skip: {','.join(RUNS)}")
    parser.add_argument("--only", default="", help="comma list of runs to do, the rest skipped (e.g. d0)")
    parser.add_argument("--d0-rounds", type=int, default=2, help="d0: timed rounds over its variants (default 2)")
    parser.add_argument("--d0-pairs", type=int, default=1280,
                        help="d0: pairs of its big job (default 1280; the small job has a quarter)")
    parser.add_argument("--d0-trial", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                        help="d0: an extra variant (fast_drop plus ScoreConfig overrides, or spark.* confs)")
    parser.add_argument("--work", default=str(REPO / "out" / "bench"), help="scratch folder (data cache, Spark I/O)")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--name", default=None, help="results file stem (default: <model>-<device>-<precision>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch

    from clipscore.config.job import load_config
    from clipscore.models import load_model
    from clipscore.models.cache import MODEL_CACHE
    from clipscore.models.runtime import ModelKey, cpu_has_native_bf16, resolve_device, resolve_precision

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if only:
        skip |= set(RUNS) - only
    if "c" in skip:  # these compare against c
        skip |= {"fast", "precisions"}
    if "d0" not in skip and not spark_available():
        skip.add("d0")
    if "d" not in skip and not spark_available():
        log.warning("pyspark is not installed: skipping d (the Spark job); b, c and h need only torch and transformers")
        skip.add("d")
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    model_dir, model_label = resolve_model(args.model)
    device = resolve_device(args.device)
    on_gpu = device.startswith("cuda")
    precision = resolve_precision(args.precision, device)
    overrides = {"model": model_dir, "device": "cuda" if on_gpu else "cpu", "precision": precision}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    cfg = load_config(overrides=overrides, set_args=args.set)
    work = Path(args.work)
    cores = os.cpu_count() or 1
    load_start = load_avg()

    t0 = time.perf_counter()
    df, data_path = cached_dataset(args.pairs, sizes, args.seed, work / "data")
    log.info("data: %d pairs (%.1f MB of JPEG) in %.1fs -> %s", len(df), df.image.map(len).sum() / 1e6,
             time.perf_counter() - t0, data_path)
    base_df = df.iloc[: min(args.baseline_pairs, len(df))]
    model_runs = {"a", "b", "c", "h", "fast", "precisions", "formats", "d"} - skip
    tokens = [0] if not model_runs else [len(t) for t in MODEL_CACHE.get(ModelKey(model_dir, None, device, precision), load_model).processor.tokenizer(list(df.caption))["input_ids"]]

    results, scores, host, formats, precisions = {}, {}, {}, {}, {}
    fidelity: dict[str, dict] = {}

    ref = None
    if "a" not in skip:
        log.info("a: baseline on %d pairs", len(base_df))
        results["a"], ref = run_baseline(model_dir, base_df, device, repeats=args.repeats)
    bundle = MODEL_CACHE.get(ModelKey(model_dir, None, device, precision), load_model) if "b" not in skip else None
    if "b" not in skip:
        log.info("b: bare model on %d pairs", len(df))
        results["b"] = run_bare(bundle, df, cfg.batch_size, args.bare_repeats)
        results["b2"] = run_bare(bundle, df, cfg.batch_size, args.bare_repeats, bucketed=True)
    if "h" not in skip:
        modes = ["exact", "fast"] + (["gpu_decode"] if on_gpu else [])
        for mode in modes:
            log.info("h: host side, %s", mode)
            mode_cfg = cfg.replace(gpu_decode=True) if mode == "gpu_decode" else cfg.replace(preprocess=mode)
            host[mode] = run_host(mode_cfg, df, device)
        if "signals" not in skip:
            log.info("h: host cost of each signal group")
            host["signals"] = signal_costs(cfg, df, device)
    stages_c = {}
    if "c" not in skip:
        log.info("c: scoring core on %d pairs", len(df))
        results["c"], scores["c"], stages_c = run_core(cfg, df, f"core: PairScorer, no Spark ({cfg.preprocess})",
                                                       repeats=args.repeats)
    if "fast" not in skip:
        log.info("c_fast: scoring core, preprocess=fast")
        results["c_fast"], scores["c_fast"], _ = run_core(cfg.replace(preprocess="fast"), df,
                                                          "core, preprocess=fast", "c_fast")
        fidelity["fast_vs_exact"] = {**_dev(scores["c_fast"], scores["c"]),
                                     "speedup_vs_c": round(results["c_fast"].pairs_per_cpu_s / results["c"].pairs_per_cpu_s, 3)}
        fidelity["fast_vs_exact_real_photos"] = fast_vs_exact(cfg, real_photos())
    if "precisions" not in skip:
        extra = ["fp16", "bf16"] if on_gpu else ["bf16", "int8"]
        if precision != "fp32":
            log.info("c_fp32: the fp32 reference for the reduced precisions")
            results["c_fp32"], scores["c_fp32"], _ = run_core(cfg.replace(precision="fp32"), df, "core, fp32", "c_fp32")
        fp32 = "c" if precision == "fp32" else "c_fp32"
        for p in extra:
            key = "c" if p == precision else f"c_{p}"
            if key != "c":
                log.info("%s: scoring core, precision=%s", key, p)
                results[key], scores[key], _ = run_core(cfg.replace(precision=p), df, f"core, precision={p}", key)
                MODEL_CACHE.clear()  # free each reduced copy before the next
            precisions[p] = {**_dev(scores[key], scores[fp32]),
                             "speedup_vs_fp32": round(results[key].pairs_per_cpu_s / results[fp32].pairs_per_cpu_s, 3),
                             "wall_speedup_vs_fp32": round(results[key].pairs_per_s / results[fp32].pairs_per_s, 3)}
        if not on_gpu:
            precisions["bf16"]["native_bf16"] = cpu_has_native_bf16()
    if "formats" not in skip:
        log.info("formats: host cost and fast-vs-exact deviation per image format (%d pairs each)", args.format_pairs)
        formats = per_format(cfg, df, device, args.format_pairs)
    if "d" not in skip:
        MODEL_CACHE.clear()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
        master = args.master or f"local[{cores}]"
        log.info("d: Spark job (%s) on %d pairs", master, len(df))
        results["d"], scores["d"], _ = run_spark(cfg, df, work, master, args.input_files or cores, args.output_format,
                                                 repeats=args.repeats)
        if "d_bf16" not in skip and not on_gpu and precision == "fp32":
            log.info("d_bf16: Spark job, precision=bf16")
            results["d_bf16"], scores["d_bf16"], _ = run_spark(
                cfg.replace(precision="bf16"), df, work, master, args.input_files or cores, args.output_format,
                name="d_bf16", label="Spark job, precision=bf16", repeats=args.repeats)
            precisions.setdefault("bf16", {})["d_speedup_vs_fp32"] = round(
                results["d_bf16"].pairs_per_cpu_s / results["d"].pairs_per_cpu_s, 3)
            precisions["bf16"]["d_max_abs"] = _dev(scores["d_bf16"], scores["d"])["max_abs"]

    job_host = {}
    if "d0" not in skip:
        MODEL_CACHE.clear()
        from clipscore.devtools.random_model import build_random_clip

        if not (TINY_MODEL_DIR / "model.safetensors").is_file():
            build_random_clip(TINY_MODEL_DIR, tiny=True, seed=0)
        master = args.master or f"local[{cores}]"
        d0_df = df if args.d0_pairs == len(df) else cached_dataset(args.d0_pairs, sizes, args.seed, work / "data")[0]
        log.info("d0: the job's host cost (tiny model, %s) on %d pairs", master, len(d0_df))
        tiny_cfg = cfg.replace(model=str(TINY_MODEL_DIR), precision="fp32")
        job_host = run_job_host(tiny_cfg, d0_df, work, master, args.input_files or cores, args.output_format,
                                rounds=args.d0_rounds, extra_variants=_trials(args.d0_trial))

    ratios = {}
    rate = {k: v.pairs_per_s for k, v in results.items()}
    for num, den in (("c", "b"), ("d", "b"), ("d", "a"), ("d", "c"), ("c", "b2"), ("d", "b2"), ("c", "a"), ("b", "a")):
        if num in rate and den in rate:
            ratios[f"{num}/{den}"] = rate[num] / rate[den]
    cpu_rate = {k: v.pairs_per_cpu_s for k, v in results.items()}
    cpu_ratios = {f"{n}/{d}": cpu_rate[n] / cpu_rate[d] for n, d in
                  (tuple(k.split("/")) for k in ratios) if np.isfinite(cpu_rate[n] / cpu_rate[d])}

    # Steady state: d without its per-job fixed cost (runs.steady_rate), against c, which has none.
    steady = {k: r.extra["steady"]["pairs_per_cpu_s"] for k, r in results.items()
              if (r.extra.get("steady") or {}).get("pairs_per_cpu_s")}
    steady_cpu_ratios = {f"{d}/{c}": round(steady[d] / cpu_rate[c], 3)
                         for d, c in (("d", "c"), ("d", "b"), ("d_bf16", "c_bf16")) if d in steady and c in cpu_rate}
    cpu_ratios_bf16 = {}
    if "d_bf16" in results and "c_bf16" in results:  # the job against the core, both in bf16
        cpu_ratios_bf16 = {"d/c": steady_cpu_ratios.get("d_bf16/c_bf16"),
                           "d/c whole job": round(cpu_rate["d_bf16"] / cpu_rate["c_bf16"], 3)}

    n_ref = 0 if ref is None else len(ref)
    if ref is not None and "c" in scores:
        fidelity[f"c {precision} vs reference a"] = _dev(scores["c"][:n_ref], ref)
        if "d" in scores:
            fidelity[f"d {precision} vs reference a"] = _dev(scores["d"][:n_ref], ref)
    if "d" in scores and "c" in scores:
        fidelity["d vs c (all pairs)"] = _dev(scores["d"], scores["c"])

    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "model": model_dir, "model_label": model_label, "device": device, "precision": precision,
        "batch_size": cfg.batch_size, "pairs": len(df), "baseline_pairs": len(base_df),
        "sizes": [f"{w}x{h}" for w, h in sizes], "jpeg_mb": round(df.image.map(len).sum() / 1e6, 1),
        "caption_tokens": {"mean": round(float(np.mean(tokens)), 1), "max": int(np.max(tokens))},
        "config_overrides": args.set,
        "machine": {"cpu": _cpu_name(), "cores": cores, "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "load_avg_start": load_start,
                    "load_avg_end": load_avg(), "python": platform.python_version(),
                    "gpu": torch.cuda.get_device_name(0) if on_gpu else None},
        "results": {k: v.as_dict() for k, v in results.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "cpu_ratios": {k: round(v, 3) for k, v in cpu_ratios.items()},
        "steady_cpu_ratios": steady_cpu_ratios,
        "cpu_ratios_bf16": cpu_ratios_bf16,
        "host": host,
        "job_host": job_host,
        "precisions": precisions,
        "formats": formats,
        "fidelity": fidelity,
        "stage_seconds_c": stages_c,
    }
    out_dir = Path(args.results)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.name or (f"job-host-{'cuda' if on_gpu else 'cpu'}" if only == {"d0"} else
                         f"{Path(model_dir).name}-{'cuda' if on_gpu else 'cpu'}-{precision}")
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (out_dir / f"{stem}.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"results: {out_dir / (stem + '.json')} and .md")
    return 0


def _trials(specs: list[str]) -> dict:
    """``NAME:key=value,key=value`` -> {NAME: (ScoreConfig overrides on fast_drop, Spark confs)}."""
    out = {}
    for spec in specs:
        name, _, pairs = spec.partition(":")
        overrides, conf = {"preprocess": "fast", "drop_columns": ("image",)}, {}
        for item in filter(None, pairs.split(",")):
            key, _, value = item.partition("=")
            if key.startswith("spark."):
                conf[key] = value
            else:
                overrides[key] = int(value) if value.isdigit() else value
        out[name] = (overrides, conf)
    return out


def spark_available() -> bool:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return False
    return True


def _dev(x: np.ndarray, ref: np.ndarray) -> dict:
    d = deviation(x, ref)
    return {"pairs": d["compared"], "max_abs": d["max_abs_diff"], "mean_abs": d["mean_abs_diff"],
            "nan_mismatch": d["nan_mismatch"]}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        name = None
    return name or platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())
