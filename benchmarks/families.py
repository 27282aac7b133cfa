"""bf16 on a CPU, family by family, at one size: is each family's speed-up as good as CLIP's?

    python benchmarks/families.py [--pairs 128] [--repeats 2]      (make bench-families)

Three random-weight models of CLIP ViT-B/32's size (no pretrained weights here; speed does not depend
on them): the transformers CLIP (``../shared`` config), a SigLIP with SigLIP base's towers on the same
224 px / patch-32 grid and 64 text positions, and open_clip's own ``ViT-B-32``. Each runs through the
scoring core (``run_core``: the UDF's path without Spark) on the same pairs in fp32 and in bf16, both
ways bf16 can run on a CPU: autocast over fp32 weights and the weights cast once. The rounds alternate
over every (family, precision, way) so a neighbour's load falls on all; each figure is its least-CPU
pass. Writes ``benchmarks/results/families.json``: per family the pairs per CPU-second, the speed-up of
each bf16 way against the family's fp32, the deviation from fp32 (max |delta similarity|), the way
clipscore uses (``ScoringModel.cpu_bf16``), and that speed-up against CLIP's (target >= 0.8).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import REPO, load_avg, resolve_model, _cpu_name  # noqa: E402
from bench_data import cached_dataset  # noqa: E402
from runs import run_core  # noqa: E402

log = logging.getLogger("bench.families")
MODELS = REPO / "out" / "models"
WAYS = ("autocast", "cast")


def build_models() -> dict[str, str]:
    """family -> model spec for the score config (built once into out/models)."""
    from clipscore.devtools.random_families import build_random_siglip

    clip, label = resolve_model(None)
    if "tiny" in label:
        raise SystemExit("../shared/models/clip-vit-b-32-config is missing: this comparison needs ViT-B/32's size")
    siglip = MODELS / "siglip-base-b32-random"
    if not (siglip / "model.safetensors").is_file():
        build_random_siglip(siglip, seed=0, image_size=224, logit_bias=0.0, size="base-b32")
    weights = MODELS / "open-clip-vit-b-32-random" / "open_clip_model.safetensors"
    if not weights.is_file():
        import open_clip
        import torch
        from safetensors.torch import save_file

        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32")  # open_clip's own architecture and initialisation
        weights.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return {"clip": clip, "siglip": str(siglip), "open_clip": f"open_clip:ViT-B-32/{weights}"}


def family_class(spec: str):
    from clipscore.models.registry import FAMILIES, family_of

    return FAMILIES[family_of(spec)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="rounds over every variant (least-CPU pass counts)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "families.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for noisy in ("transformers", "clipscore", "root"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch

    from clipscore.config.job import load_config
    from clipscore.models.cache import MODEL_CACHE
    from clipscore.models.runtime import BF16_MAX_ABS, cpu_has_native_bf16

    load_start = load_avg()
    specs = build_models()
    df, _ = cached_dataset(args.pairs, [(640, 480), (1024, 768)], 0, REPO / "out" / "bench" / "data")
    variants = [(f, "fp32", None) for f in specs] + [(f, "bf16", w) for f in specs for w in WAYS]
    passes: dict[tuple, list] = {v: [] for v in variants}
    scores: dict[tuple, np.ndarray] = {}
    for round_ in range(max(1, args.repeats)):
        for family, precision, way in variants:
            cls = family_class(specs[family])
            chosen = cls.cpu_bf16
            if way:
                cls.cpu_bf16 = way  # measure both ways; the class attribute is what place() follows
            try:
                cfg = load_config(overrides={"model": specs[family], "device": "cpu", "precision": precision,
                                             "batch_size": args.batch_size, "preprocess": "exact"})
                result, sims, _ = run_core(cfg, df, f"{family} {precision} {way or ''}", name=family)
            finally:
                cls.cpu_bf16 = chosen
                MODEL_CACHE.clear()  # the next variant loads its own copy (a cast one must not be reused)
            passes[(family, precision, way)].append(result)
            scores[(family, precision, way)] = sims
            log.info("round %d %-9s %s %-8s %.2f pairs per CPU-second", round_ + 1, family, precision, way or "",
                     result.pairs_per_cpu_s)

    def best(v):
        return max(passes[v], key=lambda r: r.pairs_per_cpu_s)

    out = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "pairs": len(df), "batch_size": args.batch_size,
           "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                       "torch_threads": torch.get_num_threads(), "native_bf16": cpu_has_native_bf16(),
                       "load_avg_start": load_start, "load_avg_end": load_avg()},
           "bound_max_abs": BF16_MAX_ABS, "models": specs, "families": {}}
    clip_speedup = None
    for family in specs:
        fp32 = best((family, "fp32", None))
        row = {"fp32_pairs_per_cpu_s": round(fp32.pairs_per_cpu_s, 3),
               "chosen_way": family_class(specs[family]).cpu_bf16}
        for way in WAYS:
            r = best((family, "bf16", way))
            diff = np.abs(scores[(family, "bf16", way)] - scores[(family, "fp32", None)])
            row[way] = {"pairs_per_cpu_s": round(r.pairs_per_cpu_s, 3),
                        "speedup_vs_fp32": round(r.pairs_per_cpu_s / fp32.pairs_per_cpu_s, 3),
                        "max_abs_vs_fp32": float(np.nanmax(diff))}
        within = [w for w in WAYS if row[w]["max_abs_vs_fp32"] <= BF16_MAX_ABS]
        row["fastest_within_bound"] = max(within, key=lambda w: row[w]["pairs_per_cpu_s"]) if within else None
        row["speedup_vs_fp32"] = row[row["chosen_way"]]["speedup_vs_fp32"]
        if family == "clip":
            clip_speedup = row["speedup_vs_fp32"]
        out["families"][family] = row
    for row in out["families"].values():
        row["speedup_vs_clip_speedup"] = round(row["speedup_vs_fp32"] / clip_speedup, 3) if clip_speedup else None
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"{'family':<10} {'fp32':>7} {'autocast':>9} {'cast':>7} {'chosen':>9} {'vs CLIP':>8}  max |d| (chosen)"
          f"  fastest within {BF16_MAX_ABS:g}")
    for family, row in out["families"].items():
        print(f"{family:<10} {row['fp32_pairs_per_cpu_s']:7.2f} {row['autocast']['speedup_vs_fp32']:8.2f}x "
              f"{row['cast']['speedup_vs_fp32']:6.2f}x {row['chosen_way']:>9} {row['speedup_vs_clip_speedup']:7.2f}x  "
              f"{row[row['chosen_way']]['max_abs_vs_fp32']:.1e}  {row['fastest_within_bound']}")
    print(f"load average {out['machine']['load_avg_start']} -> {out['machine']['load_avg_end']}; results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
