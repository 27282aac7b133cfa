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
# Data: reproducible photo-like JPEGs and captions of realistic length
# -------------------------------------------------------------------------------------------------
_SUBJECTS = ["a golden retriever", "two children", "an old fisherman", "a red vintage car", "a bowl of ramen",
             "a tabby cat", "a mountain biker", "a wooden sailboat", "a bride and groom", "a city skyline",
             "a plate of pancakes", "a herd of elephants", "a street musician", "a lighthouse", "a snowy owl",
             "a group of hikers", "a modern kitchen", "a vegetable market", "a steam locomotive", "a surfer"]
_ACTIONS = ["standing", "resting", "playing", "waiting", "walking", "shown", "photographed", "running", "sitting"]
_PLACES = ["on a sandy beach", "in a crowded market", "next to a quiet lake", "under a cloudy sky",
           "in front of a brick wall", "on a wooden table", "at the edge of a forest", "in a snowy field",
           "along a busy street", "inside a bright studio", "near an old stone bridge", "on a rooftop terrace"]
_LIGHT = ["at sunset", "in the morning light", "on a rainy afternoon", "at night under street lamps",
          "in soft window light", "on a foggy day", "in bright midday sun"]
_EXTRA = ["shallow depth of field", "shot on 35mm film", "high resolution stock photo", "award winning photography",
          "warm colours and long shadows", "wide angle view", "close-up with bokeh background",
          "free for commercial use", "royalty free image", "4k wallpaper", "editorial use only"]


def make_caption(rng: np.random.Generator) -> str:
    """Alt-text-like captions: mostly 8-25 words, some short labels, some long SEO strings (up to ~70 tokens)."""
    kind = rng.random()
    subject, action = rng.choice(_SUBJECTS), rng.choice(_ACTIONS)
    if kind < 0.15:
        return f"{subject} {rng.choice(_PLACES)}"
    text = f"{subject} {action} {rng.choice(_PLACES)} {rng.choice(_LIGHT)}"
    if kind > 0.55:
        text += ", " + ", ".join(rng.choice(_EXTRA, size=int(rng.integers(1, 3)), replace=False))
    if kind > 0.85:
        text += ". " + " ".join(f"{rng.choice(_SUBJECTS)} {rng.choice(_PLACES)}" for _ in range(int(rng.integers(1, 4))))
    return text[0].upper() + text[1:]


def photo_like(width: int, height: int, rng: np.random.Generator) -> "Image.Image":
    """Smooth colour gradients, soft blobs, a few hard-edged shapes and sensor noise: JPEG-compresses like a photo."""
    from PIL import Image, ImageDraw, ImageFilter

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x /= width
    y /= height
    img = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        a, b, p = rng.uniform(-1, 1, 3)
        img[..., c] = 110 + 70 * (a * x + b * y) + 40 * np.sin(2 * np.pi * (rng.uniform(0.5, 3) * x + p))
    for _ in range(6):  # soft blobs (out-of-focus objects)
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        blob = np.exp(-((x - cx) ** 2 + ((y - cy) * height / width) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-90, 90, 3)
    img += rng.normal(0, 4, img.shape)
    image = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 8))):  # sharp-edged objects: texture the encoder must keep
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        x1, y1 = x0 + int(rng.integers(20, width // 3)), y0 + int(rng.integers(20, height // 3))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
    return image.filter(ImageFilter.GaussianBlur(0.6))


def make_dataset(n: int, sizes: list[tuple[int, int]], seed: int, quality: int = 88):
    """``n`` distinct (jpeg bytes, caption, width, height) rows, image sizes cycling through ``sizes``."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        width, height = sizes[i % len(sizes)]
        buf = io.BytesIO()
        photo_like(width, height, rng).save(buf, format="JPEG", quality=quality)
        rows.append((i, buf.getvalue(), make_caption(rng), width, height))
    return pd.DataFrame(rows, columns=["id", "image", "caption", "width", "height"])


def cached_dataset(n: int, sizes, seed: int, cache_dir: Path):
    import pandas as pd

    tag = f"n{n}_s{seed}_" + "_".join(f"{w}x{h}" for w, h in sizes)
    path = cache_dir / f"pairs_{tag}.parquet"
    if path.is_file():
        return pd.read_parquet(path), path
    cache_dir.mkdir(parents=True, exist_ok=True)
    df = make_dataset(n, sizes, seed)
    df.to_parquet(path, index=False)
    return df, path


# -------------------------------------------------------------------------------------------------
# Measurement helpers
# -------------------------------------------------------------------------------------------------
class PeakRSS:
    """Samples RSS of this process and of all its descendants (JVM, Spark Python workers) every 50 ms."""

    def __init__(self, interval: float = 0.05):
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.peak_self = self.peak_tree = self.peak_python_workers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = self._psutil.Process()
        own = me.memory_info().rss
        tree, workers = own, 0
        for child in me.children(recursive=True):
            try:
                rss = child.memory_info().rss
                tree += rss
                cmd = " ".join(child.cmdline())
                if "pyspark" in cmd and "python" in cmd.lower():
                    workers += rss
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                pass
        self.peak_self = max(self.peak_self, own)
        self.peak_tree = max(self.peak_tree, tree)
        self.peak_python_workers = max(self.peak_python_workers, workers)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def as_dict(self) -> dict:
        mib = 1024 * 1024
        return {"peak_rss_mib": round(self.peak_self / mib), "peak_rss_tree_mib": round(self.peak_tree / mib),
                "peak_rss_python_workers_mib": round(self.peak_python_workers / mib)}


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and its live descendants.

    Wall-clock pairs/s on a shared machine move with the neighbours' load; pairs per CPU-second do
    not (much), and they are what sizing a cluster needs. Spark's Python workers are reused across
    jobs, so they are alive at both ends of a timed job and their difference counts.
    """
    import psutil

    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


@dataclass
class Result:
    name: str
    label: str
    pairs: int
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else float("nan")

    @property
    def pairs_per_cpu_s(self) -> float:
        cpu = self.extra.get("cpu_seconds")
        return self.pairs / cpu if cpu else float("nan")

    def as_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "pairs": self.pairs, "seconds": round(self.seconds, 3),
                "pairs_per_s": round(self.pairs_per_s, 2), "pairs_per_cpu_s": round(self.pairs_per_cpu_s, 3),
                **self.extra}


def gpu_peak(device: str) -> dict:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return {"peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20)}
    return {}


def gpu_reset(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def deviation(x: np.ndarray, ref: np.ndarray) -> dict:
    ok = ~(np.isnan(x) | np.isnan(ref))
    diff = np.abs(x[ok].astype(np.float64) - ref[ok].astype(np.float64))
    return {"max_abs_diff": float(diff.max()) if diff.size else None,
            "mean_abs_diff": float(diff.mean()) if diff.size else None, "compared": int(ok.sum()),
            "nan_mismatch": int((np.isnan(x) != np.isnan(ref)).sum())}


# -------------------------------------------------------------------------------------------------
# (a) baseline, (b) bare model, (c) core, (d) Spark
# -------------------------------------------------------------------------------------------------
def run_baseline(model_dir: str, df, device: str) -> tuple[Result, np.ndarray]:
    """(a) What users start from: processor + model for one pair at a time (the reference scores too)."""
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    processor = CLIPProcessor.from_pretrained(model_dir)
    model = CLIPModel.from_pretrained(model_dir).eval().to(device)

    def one(data: bytes, caption: str) -> float:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        inputs = processor(text=[caption], images=[image], return_tensors="pt", padding=True, truncation=True)
        with torch.no_grad():
            out = model(**{k: v.to(device) for k, v in inputs.items()})
        return float((out.image_embeds * out.text_embeds).sum())

    one(df.image.iloc[0], df.caption.iloc[0])  # warm-up: first-call allocations and kernel selection
    gpu_reset(device)
    scores = np.empty(len(df), np.float32)
    with PeakRSS() as rss:
        cpu0, started = tree_cpu_seconds(), time.perf_counter()
        for i, (data, caption) in enumerate(zip(df.image, df.caption)):
            scores[i] = one(data, caption)
        sync(device)
        seconds, cpu = time.perf_counter() - started, tree_cpu_seconds() - cpu0
    del model
    return Result("a", "baseline: transformers, one pair at a time", len(df), seconds,
                  {"cpu_seconds": round(cpu, 2), **rss.as_dict(), **gpu_peak(device)}), scores


def run_bare(bundle, df, batch_size: int, repeats: int, bucketed: bool = False) -> Result:
    """(b) The ceiling: the same model, batched forward passes on tensors prepared beforehand (not timed).

    Captions are padded to the longest in each batch, as a tokenizer call does. ``bucketed`` runs the
    text tower the way the core does instead (length buckets, see ``clipscore.encode``): the ceiling
    for our own text path, reported as b2.
    """
    import torch
    from PIL import Image

    from clipscore.encode import ClipEncoder

    device, dtype, model = bundle.device, bundle.dtype, bundle.model
    batches = []
    for start in range(0, len(df), batch_size):
        part = df.iloc[start : start + batch_size]
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in part.image]
        pixels = bundle.image_processor(images=images, return_tensors="pt")["pixel_values"]
        tokens = bundle.tokenizer(list(part.caption), padding="longest", truncation=True,
                                  max_length=bundle.max_length, return_tensors="pt")
        batches.append((pixels.to(device, dtype), tokens["input_ids"].to(device), tokens["attention_mask"].to(device)))

    encoder = ClipEncoder(bundle, batch_size)

    @torch.inference_mode()
    def forward(pixels, ids, mask):
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output).float()
        img = img / img.norm(dim=-1, keepdim=True)
        if bucketed:
            txt = encoder.embed_texts(ids, mask).to(img.device)
        else:
            txt = model.text_projection(model.text_model(input_ids=ids, attention_mask=mask).pooler_output).float()
            txt = txt / txt.norm(dim=-1, keepdim=True)
        return (img * txt).sum(-1).cpu()

    forward(*(t[:2] for t in batches[0]))  # warm-up
    gpu_reset(str(device))
    best, best_cpu = float("inf"), float("inf")
    with PeakRSS() as rss:
        for _ in range(repeats):  # best of `repeats`: the ceiling should not be lowered by a noisy neighbour
            sync(str(device))
            cpu0, started = tree_cpu_seconds(), time.perf_counter()
            for batch in batches:
                forward(*batch)
            sync(str(device))
            best = min(best, time.perf_counter() - started)
            best_cpu = min(best_cpu, tree_cpu_seconds() - cpu0)
    name, label = ("b2", "bare model, text in length buckets as the core runs it") if bucketed else (
        "b", "bare model: batched forward on ready tensors")
    return Result(name, label, len(df), best,
                  {"cpu_seconds": round(best_cpu, 2), "repeats": repeats, **rss.as_dict(), **gpu_peak(str(device))})


def run_core(cfg, df, label: str, name: str = "c") -> tuple[Result, np.ndarray, dict]:
    """(c) The scoring core as the UDF drives it: slices of ``batch_size`` through ``score_batches``."""
    from clipscore.scorer import PairScorer

    scorer = PairScorer.from_config(cfg)
    device = str(scorer.bundle.device)
    try:
        scorer.score_frame(df.image.iloc[:2], df.caption.iloc[:2])  # warm-up (pools, first-call allocations)
        scorer.times.seconds.clear()
        scorer.times.rows = scorer.times.scored = 0
        gpu_reset(device)
        slices = ((df.image.iloc[s : s + cfg.batch_size], df.caption.iloc[s : s + cfg.batch_size])
                  for s in range(0, len(df), cfg.batch_size))
        with PeakRSS() as rss:
            cpu0, started = tree_cpu_seconds(), time.perf_counter()
            parts = list(scorer.score_batches(slices))
            sync(device)
            seconds, cpu = time.perf_counter() - started, tree_cpu_seconds() - cpu0
        stages = {k: round(v, 3) for k, v in scorer.times.seconds.items()}
    finally:
        scorer.close()
    import pandas as pd

    out = pd.concat(parts, ignore_index=True)
    errors = out.score_error.dropna()
    if len(errors):
        raise RuntimeError(f"{name}: {len(errors)} rows failed to score, e.g. {errors.iloc[0]}")
    return (Result(name, label, len(df), seconds, {"cpu_seconds": round(cpu, 2), "stage_seconds": stages,
                                                    **rss.as_dict(), **gpu_peak(device)}),
            out.similarity.to_numpy(np.float32), stages)


def run_spark(cfg_base, df, work: Path, master: str, n_files: int, output_format: str) -> tuple[Result, np.ndarray, dict]:
    """(d) The whole job in local mode: Parquet with image bytes -> UDF -> write, after a warm-up job."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clipscore.jobs.score import run_score
    from clipscore.jobs.session import local_session

    inputs = work / "spark_input"
    warm = work / "spark_warmup_input"
    for folder in (inputs, warm):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    table = pa.Table.from_pandas(df[["id", "image", "caption"]], preserve_index=False)
    per_file = -(-len(df) // n_files)
    for k in range(n_files):  # one file per core: Spark gets one task per core
        pq.write_table(table.slice(k * per_file, per_file), inputs / f"part-{k:05d}.parquet", row_group_size=64)
    warm_rows = min(len(df), 4 * n_files)
    for k in range(n_files):
        pq.write_table(table.slice(k * 4, 4), warm / f"part-{k:05d}.parquet")

    from clipscore.model import LOAD_LOG_ENV

    load_log = work / "spark_model_loads.tsv"
    load_log.write_text("")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    with PeakRSS() as rss:
        spark = local_session("clipscore-bench", master=master, extra_conf={
            "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": str(n_files),
            "spark.driver.memory": "4g", "spark.sql.warehouse.dir": str(work / "warehouse"),
            f"spark.executorEnv.{LOAD_LOG_ENV}": str(load_log),
        })
        spark.sparkContext.setLogLevel("ERROR")
        try:
            t0 = time.perf_counter()
            run_score(spark, cfg_base.replace(input=str(warm), output=str(work / "spark_warmup_out"),
                                                     mode="overwrite", output_format=output_format))
            cold_seconds = time.perf_counter() - t0
            loads_warm = len(load_log.read_text().splitlines())
            cpu0, started = tree_cpu_seconds(), time.perf_counter()
            summary = run_score(spark, cfg_base.replace(input=str(inputs), output=str(work / "spark_out"),
                                                        mode="overwrite", output_format=output_format))
            seconds, cpu = time.perf_counter() - started, tree_cpu_seconds() - cpu0
            scored = spark.read.format(output_format).load(str(work / "spark_out")).select("id", "similarity").toPandas()
        finally:
            spark.stop()
    if summary.scored != len(df):
        raise RuntimeError(f"d: scored {summary.scored} of {len(df)} rows")
    scores = scored.set_index("id").similarity.reindex(df.id).to_numpy(np.float32)
    info = {"cpu_seconds": round(cpu, 2), "master": master, "input_files": n_files, "output_format": output_format,
            "warmup_job": {"rows": warm_rows, "seconds": round(cold_seconds, 2),
                           "model_loads": loads_warm,
                           "note": "starts Python workers and loads the model in each; not in the timed job"},
            "model_loads_in_timed_job": len(load_log.read_text().splitlines()) - loads_warm,
            "max_records_per_batch": cfg_base.max_records_per_batch, **rss.as_dict()}
    return Result("d", "Spark job: Parquet -> UDF -> write (local mode)", len(df), seconds, info), scores, info


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
