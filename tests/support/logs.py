"""The per-batch logs Spark's Python workers append to (see the ``pair_log`` fixture)."""
from __future__ import annotations

from pathlib import Path


def pairs_scored(pair_log: Path) -> int:
    return sum(int(line.split("\t")[1]) for line in pair_log.read_text().splitlines() if line.strip())
