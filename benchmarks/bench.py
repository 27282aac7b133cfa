"""clipscore benchmark: where the time goes, from the per-pair loop to the Spark job.

    python benchmarks/bench.py                      # make bench: ViT-B/32 (random weights), CPU, ~5 min on 2 cores
    python benchmarks/bench.py --pairs 2000 --model openai/clip-vit-base-patch32 --device cuda

One run measures, on the same generated data and the same model:

  a  baseline   plain transformers CLIPProcessor + CLIPModel, one pair at a time, preprocessing included
  b  bare model batched forward passes (image + text tower, cosine) on ready-made tensors: the ceiling
  c  core       clipscore.scorer.PairScorer without Spark: decode, preprocess, tokenize, model, band
  d  spark      clipscore.jobs.score.run_score in local mode: read Parquet (image bytes), UDF, write

plus options measured against (c) on the same pairs: precision=int8 (speed-up, score deviation),
jpeg_draft (speed-up, score deviation), and the fp32 fidelity of (c) and (d) against (a), the reference.
Results go to benchmarks/results/<name>.json and .md. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
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


# -------------------------------------------------------------------------------------------------
# Model selection
# -------------------------------------------------------------------------------------------------
def resolve_model(requested: str | None) -> tuple[str, str]:
    from clipscore.random_model import build_random_clip

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
    return "n/a" if x is None else (f"{x:.{digits}e}" if isinstance(x, float) and 0 < abs(x) < 1e-3 else f"{x:.{digits}f}")


def markdown(report: dict) -> str:
    r = report["results"]
    lines = [f"# clipscore benchmark: {report['model_label']}", "",
             f"{report['when']} · {report['machine']['cpu']} · {report['machine']['cores']} cores · "
             f"device {report['device']} · precision {report['precision']} · batch_size {report['batch_size']} · "
             f"{report['pairs']} pairs ({', '.join(report['sizes'])}), baseline on {report['baseline_pairs']} · "
             f"load average at start {report['machine']['load_avg_start']}", "",
             "| run | what | pairs | seconds | pairs/s | pairs per CPU-second | peak RSS MiB |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for key in ("a", "b", "b2", "c", "d", "c_int8", "c_jpeg_draft"):
        if key in r:
            x = r[key]
            rss = x.get("peak_rss_tree_mib", x.get("peak_rss_mib"))
            if key == "d":
                rss = f"{x['peak_rss_tree_mib']} (driver+JVM+workers; workers {x['peak_rss_python_workers_mib']})"
            gpu = f", GPU {x['peak_gpu_mib']} MiB" if "peak_gpu_mib" in x else ""
            lines.append(f"| {key} | {x['label']} | {x['pairs']} | {x['seconds']:.1f} | {x['pairs_per_s']:.2f} | "
                         f"{x['pairs_per_cpu_s']:.2f} | {rss}{gpu} |")
    lines += ["", "| ratio | wall-clock pairs/s | pairs per CPU-second | target |", "| --- | ---: | ---: | --- |"]
    targets = {"d/b": ">= 0.9", "d/a": ">= 2"}
    for k, v in report["ratios"].items():
        cpu = report["cpu_ratios"].get(k)
        lines.append(f"| {k} | {v:.2f} | {fmt(cpu)} | {targets.get(k, '')} |")
    split = report.get("stage_split")
    if split:
        lines += ["", "Time per 1,000 pairs by stage (seconds; core stages from run c, Spark overhead = d - c; "
                  "preparation overlaps the model, so stages can add up to more than the wall time):", "",
                  "| stage | s / 1k pairs |", "| --- | ---: |"]
        lines += [f"| {k} | {v:.2f} |" for k, v in split.items()]
    fid = report.get("fidelity", {})
    if fid:
        lines += ["", "| scores compared | pairs | max abs diff | mean abs diff | speed-up vs c |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for k, v in fid.items():
            lines.append(f"| {k} | {v['compared']} | {fmt(v['max_abs_diff'], 2)} | {fmt(v['mean_abs_diff'], 2)} | "
                         f"{fmt(v.get('speedup_vs_c'))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="HF id or local folder (default: random-weight ViT-B/32 built into out/)")
    parser.add_argument("--pairs", type=int, default=320, help="pairs for b, c, d and the options (default 320)")
    parser.add_argument("--baseline-pairs", type=int, default=48, help="pairs for the per-pair baseline a (default 48)")
    parser.add_argument("--sizes", default="640x480,1024x768", help="image sizes, cycled (default 640x480,1024x768)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=None, help="model batch size (default: ScoreConfig's)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="auto", help="precision of b, c, d (default auto: fp32 on CPU, fp16 on GPU)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="ScoreConfig override for c and d")
    parser.add_argument("--bare-repeats", type=int, default=1, help="b is the best of this many passes")
    parser.add_argument("--master", default=None, help="Spark master (default local[<cores>])")
    parser.add_argument("--input-files", type=int, default=None, help="Parquet files for d (default: one per core)")
    parser.add_argument("--output-format", default="delta", choices=["delta", "parquet"])
    parser.add_argument("--skip", default="", help="comma list of runs to skip: a,d,int8,draft")
    parser.add_argument("--work", default=str(REPO / "out" / "bench"), help="scratch folder (data cache, Spark I/O)")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--name", default=None, help="results file stem (default: <model>-<device>-<precision>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch

    from clipscore.config import load_config
    from clipscore.model import MODEL_CACHE, ModelKey, resolve_device, resolve_precision

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    model_dir, model_label = resolve_model(args.model)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    overrides = {"model": model_dir, "device": "cuda" if device.startswith("cuda") else "cpu", "precision": precision}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    cfg = load_config(overrides=overrides, set_args=args.set)
    work = Path(args.work)
    cores = os.cpu_count() or 1

    t0 = time.perf_counter()
    df, data_path = cached_dataset(args.pairs, sizes, args.seed, work / "data")
    log.info("data: %d pairs (%.1f MB of JPEG) in %.1fs -> %s", len(df), df.image.map(len).sum() / 1e6,
             time.perf_counter() - t0, data_path)
    base_df = df.iloc[: min(args.baseline_pairs, len(df))]
    tokens = [len(t) for t in MODEL_CACHE.get(ModelKey(model_dir, None, device, precision)).tokenizer(list(df.caption))["input_ids"]]

    results: dict[str, Result] = {}
    scores: dict[str, np.ndarray] = {}
    stages: dict[str, dict] = {}

    ref = None
    if "a" not in skip:
        log.info("a: baseline on %d pairs", len(base_df))
        results["a"], ref = run_baseline(model_dir, base_df, device)
    bundle = MODEL_CACHE.get(ModelKey(model_dir, None, device, precision))
    log.info("b: bare model on %d pairs", len(df))
    results["b"] = run_bare(bundle, df, cfg.batch_size, args.bare_repeats)
    results["b2"] = run_bare(bundle, df, cfg.batch_size, args.bare_repeats, bucketed=True)
    log.info("c: scoring core on %d pairs", len(df))
    results["c"], scores["c"], stages["c"] = run_core(cfg, df, "core: PairScorer, no Spark")
    if "int8" not in skip and device == "cpu":
        log.info("c_int8: scoring core, precision=int8")
        results["c_int8"], scores["c_int8"], _ = run_core(cfg.replace(precision="int8"), df,
                                                          "core, precision=int8 (dynamic quantisation)", "c_int8")
        MODEL_CACHE.clear()  # free the int8 copy before Spark starts its workers
    if "draft" not in skip:
        log.info("c_jpeg_draft: scoring core, jpeg_draft=true")
        results["c_jpeg_draft"], scores["c_jpeg_draft"], _ = run_core(cfg.replace(jpeg_draft=True), df,
                                                                      "core, jpeg_draft=true", "c_jpeg_draft")
    if "d" not in skip:
        MODEL_CACHE.clear()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
        master = args.master or f"local[{cores}]"
        log.info("d: Spark job (%s) on %d pairs", master, len(df))
        results["d"], scores["d"], _ = run_spark(cfg, df, work, master, args.input_files or cores, args.output_format)

    ratios = {}
    rate = {k: v.pairs_per_s for k, v in results.items()}
    for num, den in (("c", "b"), ("d", "b"), ("d", "a"), ("c", "b2"), ("d", "b2"), ("c", "a"), ("b", "a")):
        if num in rate and den in rate:
            ratios[f"{num}/{den}"] = rate[num] / rate[den]
    cpu_rate = {k: v.pairs_per_cpu_s for k, v in results.items()}
    cpu_ratios = {f"{n}/{d}": cpu_rate[n] / cpu_rate[d] for n, d in
                  (tuple(k.split("/")) for k in ratios) if np.isfinite(cpu_rate[n] / cpu_rate[d])}
    per_k = 1000 / len(df)
    split = {f"{k} (c)": v * per_k for k, v in stages["c"].items()}
    split["c wall"] = results["c"].seconds * per_k
    if "d" in results:
        split["Spark overhead (d - c)"] = (results["d"].seconds - results["c"].seconds) * per_k
        split["d wall"] = results["d"].seconds * per_k

    fidelity = {}
    n_ref = 0 if ref is None else len(ref)
    if ref is not None:
        fidelity[f"c {precision} vs reference a"] = deviation(scores["c"][:n_ref], ref)
        if "d" in scores:
            fidelity[f"d {precision} vs reference a"] = deviation(scores["d"][:n_ref], ref)
    if "d" in scores:
        fidelity["d vs c (all pairs)"] = deviation(scores["d"], scores["c"])
    for key, label in (("c_int8", "int8 vs fp32 (c)"), ("c_jpeg_draft", "jpeg_draft vs default (c)")):
        if key in scores:
            fidelity[label] = {**deviation(scores[key], scores["c"]), "speedup_vs_c": rate[key] / rate["c"]}
            if ref is not None:
                fidelity[label.split(" vs")[0] + " vs reference a"] = deviation(scores[key][:n_ref], ref)

    try:
        load_avg = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load_avg = None
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "model": model_dir, "model_label": model_label, "device": device, "precision": precision,
        "batch_size": cfg.batch_size, "pairs": len(df), "baseline_pairs": len(base_df),
        "sizes": [f"{w}x{h}" for w, h in sizes], "jpeg_mb": round(df.image.map(len).sum() / 1e6, 1),
        "caption_tokens": {"mean": round(float(np.mean(tokens)), 1), "max": int(np.max(tokens))},
        "config_overrides": args.set,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": cores,
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "load_avg_start": load_avg, "python": platform.python_version()},
        "results": {k: v.as_dict() for k, v in results.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "cpu_ratios": {k: round(v, 3) for k, v in cpu_ratios.items()},
        "stage_split": {k: round(v, 3) for k, v in split.items()},
        "fidelity": fidelity,
    }
    try:
        import psutil  # noqa: F401 - cpu model name, where the OS tells it

        with open("/proc/cpuinfo") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
        report["machine"]["cpu"] = name or report["machine"]["cpu"]
    except OSError:
        pass

    out_dir = Path(args.results)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"{Path(model_dir).name}-{'cuda' if device.startswith('cuda') else 'cpu'}-{precision}"
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown(report)
    (out_dir / f"{stem}.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"results: {out_dir / (stem + '.json')} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
