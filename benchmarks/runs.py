"""The benchmark's runs: (a) baseline, (b) bare model, (c) scoring core, (d) Spark job."""
from __future__ import annotations

import io
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from measure import (JOB_KINDS, PeakRSS, Result, cpu_by_kind, cpu_by_process, gpu_peak, gpu_reset, least_cpu_pass,
                     sync, tree_cpu_seconds)


def run_baseline(model_dir: str, df, device: str, repeats: int = 1) -> tuple[Result, np.ndarray]:
    """(a) What users start from: processor + model for one pair at a time (the reference scores too)."""
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    processor = CLIPProcessor.from_pretrained(model_dir)
    model = CLIPModel.from_pretrained(model_dir).eval().to(device)

    def one(data: bytes, caption: str) -> float:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        inputs = processor(text=[caption], images=[image], return_tensors="pt", padding=True, truncation=True,
                           max_length=model.config.text_config.max_position_embeddings)
        with torch.no_grad():
            out = model(**{k: v.to(device) for k, v in inputs.items()})
        return float((out.image_embeds * out.text_embeds).sum())

    one(df.image.iloc[0], df.caption.iloc[0])  # warm-up: first-call allocations and kernel selection
    gpu_reset(device)
    with PeakRSS() as rss:
        best, _ = least_cpu_pass(repeats, lambda: np.array(
            [one(data, caption) for data, caption in zip(df.image, df.caption)], np.float32), device)
    seconds, cpu, scores = best.seconds, best.cpu_seconds, best.value
    del model
    return Result("a", "baseline: transformers, one pair at a time", len(df), seconds,
                  {"cpu_seconds": round(cpu, 2), **rss.as_dict(), **gpu_peak(device)}), scores


def run_bare(bundle, df, batch_size: int, repeats: int, bucketed: bool = False) -> Result:
    """(b) The ceiling: the same model, batched forward passes on tensors prepared beforehand (not timed).

    Captions are padded to the longest in each batch, as a tokenizer call does. ``bucketed`` runs the
    text tower the way the core does instead (length buckets, see ``clipscore.scoring.encode``): the ceiling
    for our own text path, reported as b2.
    """
    import torch
    from PIL import Image

    from clipscore.scoring.encode import Encoder

    device, dtype, model = bundle.device, bundle.dtype, bundle.model
    batches = []
    for start in range(0, len(df), batch_size):
        part = df.iloc[start : start + batch_size]
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in part.image]
        pixels = bundle.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        tokens = bundle.processor.tokenizer(list(part.caption), padding="longest", truncation=True,
                                  max_length=bundle.max_length, return_tensors="pt")
        batches.append((pixels.to(device, dtype), tokens["input_ids"].to(device), tokens["attention_mask"].to(device)))

    encoder = Encoder(bundle, batch_size)

    @torch.inference_mode()
    def forward(pixels, ids, mask):
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output).float()
        img = img / img.norm(dim=-1, keepdim=True)
        if bucketed:
            txt = encoder.embed_texts(input_ids=ids, attention_mask=mask).to(img.device)
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


def run_core(cfg, df, label: str, name: str = "c", repeats: int = 1) -> tuple[Result, np.ndarray, dict]:
    """(c) The scoring core as the UDF drives it: slices of ``batch_size`` through ``score_batches``.

    With ``repeats`` > 1 the pass with the least CPU time counts (a shared machine's noise only ever
    adds time); the same rule applies to d, so their ratio compares like with like.
    """
    from clipscore.scoring.scorer import PairScorer

    scorer = PairScorer.from_config(cfg)
    device = str(scorer.device)
    try:
        scorer.score_frame(df.image.iloc[:2], df.caption.iloc[:2])  # warm-up (pools, first-call allocations)
        scorer.times.seconds.clear()
        scorer.times.rows = scorer.times.scored = 0
        gpu_reset(device)
        def one_pass():
            scorer.times.seconds.clear()
            slices = ((df.image.iloc[s : s + cfg.batch_size], df.caption.iloc[s : s + cfg.batch_size])
                      for s in range(0, len(df), cfg.batch_size))
            parts = list(scorer.score_batches(slices))
            sync(device)  # before the stage times are read
            return parts, {k: round(v, 3) for k, v in scorer.times.seconds.items()}

        with PeakRSS() as rss:
            best, _ = least_cpu_pass(repeats, one_pass, device)
        seconds, cpu, (parts, stages) = best.seconds, best.cpu_seconds, best.value
    finally:
        scorer.close()
    import pandas as pd

    out = pd.concat(parts, ignore_index=True)
    errors = out.score_error.dropna()
    if len(errors):
        raise RuntimeError(f"{name}: {len(errors)} rows failed to score, e.g. {errors.iloc[0]}")
    return (Result(name, label, len(df), seconds, {"cpu_seconds": round(cpu, 2), "repeats": repeats,
                                                    "stage_seconds": stages,
                                                    **rss.as_dict(), **gpu_peak(device)}),
            out.similarity.to_numpy(np.float32), stages)


def run_spark(cfg_base, df, work: Path, master: str, n_files: int, output_format: str,
              name: str = "d", label: str = "Spark job: Parquet -> UDF -> write (local mode)",
              repeats: int = 1) -> tuple[Result, np.ndarray, dict]:
    """(d) The whole job in local mode: Parquet with image bytes -> UDF -> write, after a warm-up job.

    Its CPU figures count the whole process tree (``tree_cpu_seconds``: this driver, the JVM, the
    pyspark daemon and its workers, with the CPU of exited workers through the daemon's reaped-children
    times); ``cpu_seconds_by_process`` splits the same total by process kind.
    """
    from clipscore.jobs.score import run_score
    from clipscore.jobs.session import local_session

    inputs, warm, warm_rows = _write_inputs(df, work, n_files)

    from clipscore.models.runtime import LOAD_LOG_ENV

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
            # Both jobs write a new table, as a first scoring run does (an overwrite of a table with a
            # long history would add Delta log replay, which grows with every bench run).
            for out in (work / "spark_warmup_out", work / "spark_out"):
                shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            run_score(spark, cfg_base.replace(input=str(warm), output=str(work / "spark_warmup_out"),
                                                     mode="overwrite", output_format=output_format))
            cold_seconds = time.perf_counter() - t0
            loads_warm = len(load_log.read_text().splitlines())
            def one_pass():
                shutil.rmtree(work / "spark_out", ignore_errors=True)
                by_process0 = cpu_by_process()
                summary = run_score(spark, cfg_base.replace(input=str(inputs), output=str(work / "spark_out"),
                                                            mode="overwrite", output_format=output_format))
                return summary, {k: round(v - by_process0.get(k, 0.0), 2) for k, v in cpu_by_process().items()}

            def small_pass():  # the warm-up input again: the per-job fixed cost, subtracted for the steady rate
                shutil.rmtree(work / "spark_small_out", ignore_errors=True)
                return run_score(spark, cfg_base.replace(input=str(warm), output=str(work / "spark_small_out"),
                                                         mode="overwrite", output_format=output_format))

            all_passes, small_passes = [], []
            for _ in range(max(1, repeats)):  # alternated, so a neighbour's load falls on both sizes
                all_passes += least_cpu_pass(1, one_pass)[1]
                small_passes += least_cpu_pass(1, small_pass)[1]
            best = min(all_passes, key=lambda p: p.cpu_seconds)  # the same rule as for c
            small = min(small_passes, key=lambda p: p.cpu_seconds)
            seconds, cpu, (summary, by_process) = best.seconds, best.cpu_seconds, best.value
            passes = [{"seconds": round(p.seconds, 2), "cpu_seconds": round(p.cpu_seconds, 2), "by_process": p.value[1]}
                      for p in all_passes]
            scored = spark.read.format(output_format).load(str(work / "spark_out")).select("id", "similarity").toPandas()
        finally:
            spark.stop()
    if summary.scored != len(df):
        raise RuntimeError(f"d: scored {summary.scored} of {len(df)} rows")
    scores = scored.set_index("id").similarity.reindex(df.id).to_numpy(np.float32)
    info = {"cpu_seconds": round(cpu, 2), "cpu_seconds_by_process": by_process, "passes": passes, "master": master, "input_files": n_files, "output_format": output_format,
            "warmup_job": {"rows": warm_rows, "seconds": round(cold_seconds, 2),
                           "model_loads": loads_warm,
                           "note": "starts Python workers, loads the model in each, warms the JIT; not in the timed job"},
            "model_loads_in_timed_job": len(load_log.read_text().splitlines()) - loads_warm,
            "steady": steady_rate(len(df), seconds, cpu, warm_rows, small.seconds, small.cpu_seconds),
            "max_records_per_batch": cfg_base.max_records_per_batch, **rss.as_dict()}
    return Result(name, label, len(df), seconds, info), scores, info


def steady_rate(rows: int, seconds: float, cpu: float, small_rows: int, small_seconds: float,
                small_cpu: float) -> dict:
    """The job's rate without its per-job fixed cost (planning, the Delta commit, the first batch in each
    worker): (rows - small_rows) over the difference between a job on ``rows`` and one on ``small_rows``.
    This is the rate a long job runs at, the one that decides a cluster's throughput over a big table."""
    extra, extra_cpu, extra_s = rows - small_rows, cpu - small_cpu, seconds - small_seconds
    small = {"rows": small_rows, "seconds": round(small_seconds, 3), "cpu_seconds": round(small_cpu, 3)}
    if extra <= 0 or extra_cpu <= 0:  # too few rows between the two jobs to rise above the noise
        return {"pairs_per_cpu_s": None, "pairs_per_s": None, "fixed_cpu_seconds_per_job": None, "small_job": small}
    return {"pairs_per_cpu_s": round(extra / extra_cpu, 3),
            "pairs_per_s": round(extra / extra_s, 2) if extra_s > 0 else None,
            "fixed_cpu_seconds_per_job": round(cpu - rows * extra_cpu / extra, 3), "small_job": small}


def _write_inputs(df, work: Path, n_files: int, tag: str = "spark") -> tuple[Path, Path, int]:
    """The job's Parquet input (one file per core: one task per core) and a warm-up input of a quarter of
    the rows per file: the warm-up job starts the Python workers, loads the model in each and gets the
    JVM's JIT past its first compilations, with the same query shape."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    inputs, warm = work / f"{tag}_input", work / f"{tag}_warmup_input"
    for folder in (inputs, warm):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    table = pa.Table.from_pandas(df[["id", "image", "caption"]], preserve_index=False)
    per_file = -(-len(df) // n_files)
    for k in range(n_files):
        pq.write_table(table.slice(k * per_file, per_file), inputs / f"part-{k:05d}.parquet", row_group_size=64)
    warm_per_file = max(4, per_file // 4)
    for k in range(n_files):
        pq.write_table(table.slice(k * warm_per_file, warm_per_file), warm / f"part-{k:05d}.parquet")
    return inputs, warm, min(len(df), warm_per_file * n_files)


def _load_avg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


JOB_HOST_VARIANTS = {"exact": ("exact", ()), "exact_drop": ("exact", ("image",)),
                     "fast": ("fast", ()), "fast_drop": ("fast", ("image",))}


def run_job_host(cfg_base, df, work: Path, master: str, n_files: int, output_format: str = "delta",
                 variants: tuple[str, ...] = tuple(JOB_HOST_VARIANTS), rounds: int = 2,
                 extra_variants: dict | None = None) -> dict:
    """(d0) The job's host cost: the whole Spark job with a near-free model (``cfg_base.model``: a tiny
    random CLIP), so what is measured is everything around the model, per process kind.

    One Spark session; each variant (preprocess mode, with or without ``drop_columns: [image]``) first
    runs a warm-up job, then the timed jobs alternate over the variants for ``rounds`` rounds (a
    neighbour's load falls on all of them); each variant's figure is its round with the least CPU.
    CPU-ms per pair of the whole process tree (``cpu_by_kind``), split into driver, JVM, Python
    workers, daemon. ``extra_variants``: name -> (ScoreConfig overrides, Spark conf) for one-off trials.
    """
    from clipscore.jobs.score import run_score
    from clipscore.jobs.session import local_session

    inputs, warm, warm_rows = _write_inputs(df, work, n_files, tag="d0")
    configs = {name: cfg_base.replace(preprocess=JOB_HOST_VARIANTS[name][0], drop_columns=JOB_HOST_VARIANTS[name][1])
               for name in variants}
    confs: dict[str, dict] = {name: {} for name in configs}
    for name, (overrides, conf) in (extra_variants or {}).items():
        configs[name], confs[name] = cfg_base.replace(**overrides), dict(conf)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = local_session("clipscore-bench-d0", master=master, extra_conf={
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": str(n_files),
        "spark.driver.memory": "4g", "spark.sql.warehouse.dir": str(work / "warehouse"),
    })
    spark.sparkContext.setLogLevel("ERROR")
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    small: dict[str, list[dict]] = {name: [] for name in configs}

    def job(name: str, source: Path, out: Path):
        shutil.rmtree(out, ignore_errors=True)  # a new table each time, as a first scoring run writes
        saved = {k: spark.conf.get(k, None) for k in confs[name]}
        for k, v in confs[name].items():
            spark.conf.set(k, v)
        try:
            return run_score(spark, configs[name].replace(input=str(source), output=str(out), mode="overwrite",
                                                          output_format=output_format))
        finally:
            for k, v in saved.items():
                spark.conf.unset(k) if v is None else spark.conf.set(k, v)

    try:
        for name in configs:
            job(name, warm, work / "d0_warmup_out")
        for _ in range(max(1, rounds)):
            for name in configs:
                # The full input, then the warm-up input again (a quarter of the rows): their difference
                # is the per-row cost without the per-job fixed cost (planning, commit, JIT).
                for source, rows, into in ((inputs, len(df), runs), (warm, warm_rows, small)):
                    load0, cpu0, t0 = _load_avg(), cpu_by_kind(), time.perf_counter()
                    summary = job(name, source, work / "d0_out")
                    seconds, cpu1 = time.perf_counter() - t0, cpu_by_kind()
                    if summary.scored != rows:
                        raise RuntimeError(f"d0 {name}: scored {summary.scored} of {rows} rows")
                    by_kind = {k: cpu1[k] - cpu0[k] for k in JOB_KINDS}
                    into[name].append({"rows": rows, "seconds": round(seconds, 3),
                                       "cpu_seconds": round(sum(by_kind.values()), 3),
                                       "cpu_seconds_by_kind": {k: round(v, 3) for k, v in by_kind.items()},
                                       "load_avg_start": load0, "load_avg_end": _load_avg()})
    finally:
        spark.stop()
    n = len(df)
    out = {}
    for name, passes in runs.items():
        best = min(passes, key=lambda p: p["cpu_seconds"])
        per = {k: round(1000 * v / n, 3) for k, v in best["cpu_seconds_by_kind"].items()}
        least = min(small[name], key=lambda p: p["cpu_seconds"])
        extra_rows = n - warm_rows
        marginal = {k: round(1000 * (best["cpu_seconds_by_kind"][k] - least["cpu_seconds_by_kind"][k]) / extra_rows, 3)
                    for k in JOB_KINDS} if extra_rows > 0 else {}
        # The headline is the steady per-row cost (what a long job pays per row, what decides a GPU
        # node's throughput); the whole job's, fixed cost included, is kept beside it.
        head = marginal or per
        out[name] = {
            "cpu_ms_per_pair": round(sum(head.values()), 3),
            "jvm_ms": head["jvm"], "python_ms": head["python_workers"], "driver_ms": head["driver"],
            "daemon_ms": head["daemon"], "other_ms": head["other"],
            "whole_job_cpu_ms_per_pair": round(1000 * best["cpu_seconds"] / n, 3),
            "whole_job_ms_by_kind": per,
            "pairs": n, "seconds": best["seconds"], "pairs_per_s": round(n / best["seconds"], 1),
            "load_avg_start": best["load_avg_start"], "load_avg_end": best["load_avg_end"],
            "preprocess": configs[name].preprocess, "drop_columns": list(configs[name].drop_columns),
            "max_records_per_batch": configs[name].max_records_per_batch, "spark_conf": confs[name],
            "all_passes": passes,
            # Per row without the per-job fixed cost: (full job - job on warmup_rows) / the rows between.
            "marginal_cpu_ms_per_pair": round(sum(marginal.values()), 3) if marginal else None,
            "marginal_ms_by_kind": marginal,
            "fixed_cpu_seconds_per_job": (round(best["cpu_seconds"] - sum(marginal.values()) * n / 1000, 3)
                                          if marginal else None),
            "small_job_passes": small[name],
        }
    out["_setup"] = {"model": cfg_base.model, "master": master, "input_files": n_files, "output_format": output_format,
                     "rounds": rounds, "warmup_rows": warm_rows,
                     "note": "cpu_ms_per_pair: CPU-ms per pair of the whole process tree without the per-job fixed "
                             "cost ((job on all pairs - job on warmup_rows) / the rows between); *_ms split it by "
                             "process kind; whole_job_cpu_ms_per_pair includes the fixed cost"}
    return out
