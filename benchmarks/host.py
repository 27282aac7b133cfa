"""(h) The host side of scoring: everything an executor does for a batch except the model forward.

On a GPU node this is what caps throughput: every pair is read, decoded, resized, normalised and
tokenized on CPU cores. ``run_host`` measures it as process CPU time (all threads: the decode pool,
the tokenizer, Arrow), so a figure holds however many cores a node has: cores per GPU =
pairs/s the GPU can take x CPU-ms per pair / 1000.

Also here: fast-vs-exact score deviation per image format, and on the sample's real photos.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench_data import reencode
from measure import least_cpu_pass, sync

SAMPLE_PHOTOS = Path(__file__).resolve().parents[1] / "data" / "sample" / "images"
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")


def run_host(cfg, df, device: str, repeats: int = 2) -> dict:
    """CPU-ms per pair for Arrow -> pandas, load/decode/resize, tokenize, normalise and result assembly.

    The model is never run; the similarity column is filled with zeros. Normalisation runs where the
    scorer runs it, on the model's device: on a GPU it is not host work. Best of ``repeats`` passes.
    """
    import pyarrow as pa
    import torch

    from clipscore.scoring.scorer import PairScorer

    scorer = PairScorer.from_config(cfg)
    model_device = scorer.device
    runtime = {"score_device": str(model_device).split(":")[0], "score_precision": scorer.precision}
    table = pa.Table.from_pandas(df[["image", "caption"]], preserve_index=False)
    batches = table.to_batches(max_chunksize=cfg.max_records_per_batch)

    def one_pass() -> tuple[dict, dict]:
        scorer.times.seconds.clear()
        cpu = dict.fromkeys(("arrow_in", "prepare", "normalise", "assemble"), 0.0)
        for batch in batches:
            t = time.process_time()
            images, captions = batch.column(0).to_pandas(), batch.column(1).to_pandas()  # as Spark's serializer
            cpu["arrow_in"] += time.process_time() - t
            for start in range(0, len(images), cfg.batch_size):
                t = time.process_time()
                prepared = scorer.prepare(images.iloc[start : start + cfg.batch_size],
                                          captions.iloc[start : start + cfg.batch_size])
                cpu["prepare"] += time.process_time() - t
                t = time.process_time()
                for run, pixels in zip(scorer.runs, prepared.pixel_values):
                    if pixels is not None:
                        run.preprocess.finish(pixels, model_device)
                sync(str(model_device))
                cpu["normalise"] += time.process_time() - t
                t = time.process_time()
                zeros = np.where(prepared.text_index >= 0, 0.0, np.nan).astype(np.float32)
                scores = {f"{c}_{run.spec.name}": zeros for run in scorer.runs for c in run.columns}
                out = scorer.assemble(prepared, scores).assign(**runtime)
                pa.RecordBatch.from_pandas(out, preserve_index=False)  # the UDF's result goes back to Arrow
                cpu["assemble"] += time.process_time() - t
        return cpu, dict(scorer.times.seconds)

    try:
        scorer.prepare(df.image.iloc[:2], df.caption.iloc[:2])  # warm-up: thread pools, first allocations
        best, _ = least_cpu_pass(repeats, one_pass)
    finally:
        scorer.close()
    cpu, wall, (stage_cpu, stage_wall) = best.cpu_seconds, best.seconds, best.value
    n = len(df)
    return {
        "pairs": n, "cpu_seconds": round(cpu, 3), "seconds": round(wall, 3),
        "cpu_ms_per_pair": round(1000 * cpu / n, 3),
        "pairs_per_s": round(n / wall, 1), "pairs_per_s_per_core": round(n / cpu, 1),
        "cpu_ms_per_pair_by_step": {k: round(1000 * v / n, 3) for k, v in stage_cpu.items()},
        "prepare_wall_ms_per_pair_by_stage": {k: round(1000 * v / n, 3) for k, v in stage_wall.items()},
        "decode_threads": cfg.decode_threads or "auto", "normalise_on": str(model_device),
    }


def _score(cfg, images: list[bytes], caption: str = "a photo") -> np.ndarray:
    import pandas as pd

    from clipscore.scoring.scorer import PairScorer

    scorer = PairScorer.from_config(cfg)
    try:
        out = scorer.score_frame(pd.Series(images), pd.Series([caption] * len(images)))
    finally:
        scorer.close()
    if out.score_error.notna().any():
        raise RuntimeError(f"fidelity: rows failed: {out.score_error.dropna().iloc[0]}")
    return out.similarity.to_numpy(np.float64)


def fast_vs_exact(cfg, images: list[bytes]) -> dict:
    exact = _score(cfg.replace(preprocess="exact"), images)
    fast = _score(cfg.replace(preprocess="fast"), images)
    diff = np.abs(fast - exact)
    return {"pairs": len(images), "max_abs": float(diff.max()), "mean_abs": float(diff.mean())}


def per_format(cfg, df, device: str, n: int) -> dict:
    """For each allowed format: host CPU-ms per pair in both modes, and fast-vs-exact score deviation."""
    out = {}
    base = df.iloc[:n]
    for fmt in FORMATS:
        images = [reencode(b, fmt) for b in base.image]
        frame = base.assign(image=images)
        out[fmt] = {
            "mean_kb": round(float(np.mean([len(b) for b in images])) / 1e3, 1),
            "exact_cpu_ms_per_pair": run_host(cfg.replace(preprocess="exact"), frame, device, repeats=1)["cpu_ms_per_pair"],
            "fast_cpu_ms_per_pair": run_host(cfg.replace(preprocess="fast"), frame, device, repeats=1)["cpu_ms_per_pair"],
            **fast_vs_exact(cfg, images),
        }
    return out


def real_photos() -> list[bytes]:
    """The sample's real photographs (JPEG and PNG; the deliberately broken files are left out)."""
    names = ["astronaut.jpg", "camera_gray.jpg", "chelsea.jpg", "clock.jpg", "coffee_palette.png",
             "coins_16bit.png", "hubble_deep_field.jpg", "immunohistochemistry_cmyk.jpg", "retina.jpg", "rocket.jpg"]
    return [(SAMPLE_PHOTOS / name).read_bytes() for name in names if (SAMPLE_PHOTOS / name).is_file()]


SIGNAL_RUNS = ("image", "caption", "language", "phash")


def signal_costs(cfg, df, device: str, rounds: int = 2) -> dict:
    """Host CPU-ms per pair of each signal group, against the same host run without signals.

    Runs alternate (baseline, each group, baseline, each group ...) so a neighbour's load falls on
    both sides; each figure is the least of its ``rounds``. Concepts and heads need no host work in
    ``run_host`` (they reuse the pass's embeddings): their own cost is timed apart, per pair, on
    unit embeddings of the model's size (``embedding_side``).
    """
    base_cfg = cfg.replace(preprocess="exact", signals=())
    fast_cfg = cfg.replace(preprocess="fast", signals=())
    runs = {"none": [], **{g: [] for g in SIGNAL_RUNS}, "none_fast": [], "phash_fast": []}
    for _ in range(rounds):
        runs["none"].append(run_host(base_cfg, df, device, repeats=1)["cpu_ms_per_pair"])
        for group in SIGNAL_RUNS:
            runs[group].append(run_host(base_cfg.replace(signals=(group,)), df, device, repeats=1)["cpu_ms_per_pair"])
        runs["none_fast"].append(run_host(fast_cfg, df, device, repeats=1)["cpu_ms_per_pair"])
        runs["phash_fast"].append(run_host(fast_cfg.replace(signals=("phash",)), df, device, repeats=1)["cpu_ms_per_pair"])
    out = {"baseline_cpu_ms_per_pair": min(runs["none"]), "baseline_fast_cpu_ms_per_pair": min(runs["none_fast"]),
           "rounds": rounds}
    for group in (*SIGNAL_RUNS, "phash_fast"):
        best, base = min(runs[group]), min(runs["none_fast" if group.endswith("_fast") else "none"])
        out[group] = {"cpu_ms_per_pair": best, "added_cpu_ms_per_pair": round(best - base, 3),
                      "all_runs": runs[group]}
    out["baseline_all_runs"], out["baseline_fast_all_runs"] = runs["none"], runs["none_fast"]
    out.update(embedding_side(cfg))
    return out


def embedding_side(cfg, rows: int = 4096, prompts_per_concept: int = 4, concepts: int = 3) -> dict:
    """CPU-ms per pair of concepts (3 concepts x 4 prompts) and of a LAION-layout head on ``rows`` embeddings."""
    import tempfile

    import torch
    from safetensors.torch import save_file

    from clipscore.scoring.scorer import PairScorer
    from clipscore.signals.signal_pass import SignalPass

    scorer = PairScorer.from_config(cfg.replace(signals=()))
    try:
        dim = scorer.primary.encoder.embed_texts(**scorer.primary.tokenize(["a"])).shape[1]
        spec = {f"c{i}": {"positive": [f"positive prompt {i} {j}" for j in range(prompts_per_concept // 2)],
                          "negative": [f"negative prompt {i} {j}" for j in range(prompts_per_concept // 2)]}
                for i in range(concepts)}
        with tempfile.TemporaryDirectory() as folder:
            head = f"{folder}/h.safetensors"
            torch.manual_seed(0)
            sizes = [dim, 1024, 128, 64, 16, 1]
            save_file({f"layers.{i}.{p}": (torch.randn(o, n) if p == "weight" else torch.randn(o)) * 0.01
                       for i, (n, o) in zip((0, 2, 4, 6, 7), zip(sizes, sizes[1:])) for p in ("weight", "bias")}, head)
            timings = {}
            for label, opts in (("concepts", {"concepts": spec}), ("head", {"heads": {"h": head}})):
                signals = SignalPass(cfg.replace(signals=(), **opts), scorer.primary)
                embeds = torch.nn.functional.normalize(torch.randn(rows, dim), dim=1)
                signals.embedding_columns(8, np.arange(8), embeds[:8])  # warm-up
                t = time.process_time()
                for start in range(0, rows, cfg.batch_size):
                    part = embeds[start : start + cfg.batch_size]
                    signals.embedding_columns(len(part), np.arange(len(part)), part)
                timings[label] = {"cpu_ms_per_pair": round(1000 * (time.process_time() - t) / rows, 4),
                                  "image_tower_runs_added": 0}
    finally:
        scorer.close()
    return {"embedding_dim": dim, **timings}
