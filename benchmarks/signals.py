"""The host cost of each curation signal group per pair (issue: "every signal from the same pass").

    python benchmarks/signals.py --model out/models/clip-vit-b-32-random [--pairs 320]

The same host run as ``bench.py``'s h (everything but the model forward, process CPU time), with
and without each group, alternated; concepts and heads timed on embeddings. Results in
benchmarks/results/signals.json. ``make bench`` runs the same measurement inside its h step.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import cached_dataset  # noqa: E402
from host import signal_costs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--pairs", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sizes", default="640x480,1024x768")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "signals.json"))
    args = parser.parse_args(argv)
    from clipscore.config.job import load_config

    cfg = load_config(overrides={"model": args.model, "device": "cpu", "precision": "fp32"})
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    df, _ = cached_dataset(args.pairs, sizes, 0, REPO / "out" / "bench" / "data")
    load_start = os.getloadavg()
    result = signal_costs(cfg, df, "cpu", rounds=args.rounds)
    report = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "model": args.model, "pairs": len(df),
              "load_avg_start": load_start, "load_avg_end": os.getloadavg(), "host_signals": result}
    Path(args.results).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
