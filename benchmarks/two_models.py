"""Host-side cost of scoring with two models: one two-model pass against two one-model passes.

    python benchmarks/two_models.py [--pairs 320] [--repeats 2]

Both ways run the executor's host work (``host.run_host``: Arrow in, read, decode, each model's
resize/crop/normalise and tokenizer, result assembly; never the model forward, which costs the same
either way) on the bench's JPEG mix. The models are the bench's random ViT-B/32 (CLIP processor:
shortest side 224, crop) and a random SigLIP with a 224x224 input (SigLIP processor: squash to
224x224, its SentencePiece tokenizer padded to the fixed length): two families' own preprocessing,
as a B/32 + SigLIP curation pass would run them. Baseline and candidate are measured in the same run
and reported as process CPU seconds (all threads), least of ``--repeats`` passes, so a loaded
machine distorts them less than wall time; the load average is printed beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(REPO))

from bench import load_avg, resolve_model  # noqa: E402
from bench_data import cached_dataset  # noqa: E402
from host import run_host  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", default="640x480,1024x768")
    parser.add_argument("--preprocess", default="exact", choices=["exact", "fast"])
    parser.add_argument("--work", default=str(REPO / "out" / "bench"))
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    from clipscore.config.job import load_config
    from clipscore.devtools.random_families import build_random_siglip

    clip_dir, clip_label = resolve_model(None)
    siglip_dir = Path(args.work) / "models" / "siglip-224-random"
    if not (siglip_dir / "model.safetensors").is_file():
        build_random_siglip(siglip_dir, seed=0, image_size=224)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    df, _ = cached_dataset(args.pairs, sizes, 0, Path(args.work) / "data")
    cfg = load_config(overrides={"device": "cpu", "precision": "fp32", "preprocess": args.preprocess})
    load_before = load_avg()
    clip = run_host(cfg.replace(model=clip_dir), df, "cpu", args.repeats)
    siglip = run_host(cfg.replace(model=str(siglip_dir)), df, "cpu", args.repeats)
    both = run_host(cfg.replace(models=[f"clip={clip_dir}", f"siglip={siglip_dir}"]), df, "cpu", args.repeats)
    two_passes = clip["cpu_ms_per_pair"] + siglip["cpu_ms_per_pair"]
    result = {
        "pairs": len(df), "preprocess": args.preprocess, "cores": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": load_avg(),
        "models": {"clip": clip_label, "siglip": "SigLIP, 224x224 input, random weights (host side only)"},
        "one_model_cpu_ms_per_pair": {"clip": clip["cpu_ms_per_pair"], "siglip": siglip["cpu_ms_per_pair"]},
        "two_one_model_passes_cpu_ms_per_pair": round(two_passes, 3),
        "one_two_model_pass_cpu_ms_per_pair": both["cpu_ms_per_pair"],
        "ratio_two_model_pass_vs_two_passes": round(both["cpu_ms_per_pair"] / two_passes, 3),
        "by_step": {"clip": clip["cpu_ms_per_pair_by_step"], "siglip": siglip["cpu_ms_per_pair_by_step"],
                    "both": both["cpu_ms_per_pair_by_step"]},
    }
    out = Path(args.results) / f"two-models-host-{args.preprocess}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"preprocess={args.preprocess}; load average before {load_before}, after {result['load_avg_after']} ({result['cores']} cores)")
    print(f"host CPU-ms per pair: clip alone {clip['cpu_ms_per_pair']:.2f}, siglip alone {siglip['cpu_ms_per_pair']:.2f}, "
          f"two passes {two_passes:.2f}")
    print(f"one two-model pass: {both['cpu_ms_per_pair']:.2f} CPU-ms per pair = "
          f"{result['ratio_two_model_pass_vs_two_passes']:.2f}x the two passes")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
