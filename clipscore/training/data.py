"""The staging table: crops and captions that Spark prepared, read by the training processes.

One Parquet row per source row: ``row_id`` (a hash of image and caption: a stable order), ``split``
(``train``/``val``), ``caption``, ``pixels`` (the model processor's uint8 crop, C x H x W bytes),
``height``/``width``, and ``error`` (the reason a row was skipped; null for rows that train).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

COLUMNS = ("row_id", "split", "caption", "pixels", "height", "width", "error")
SUCCESS = "_SUCCESS"


def read_split(staging: str | Path, split: str, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, list[str]]:
    """This process's shard of one split: uint8 crops ``[N, 3, H, W]`` and their captions.

    Rows are ordered by ``row_id`` and dealt out round-robin, so every process gets a disjoint,
    deterministic shard whatever order Spark wrote the files in.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(str(staging), format="parquet").to_table(
        columns=["row_id", "caption", "pixels", "height", "width"],
        filter=(pc.field("split") == split) & pc.field("error").is_null())
    table = table.sort_by([("row_id", "ascending"), ("caption", "ascending")])
    rows = range(rank, table.num_rows, world)
    if not len(rows):
        return torch.empty((0, 3, 0, 0), dtype=torch.uint8), []
    heights, widths = table.column("height").to_numpy(), table.column("width").to_numpy()
    if len(set(heights)) != 1 or len(set(widths)) != 1:
        raise RuntimeError("staged crops differ in size; the model's processor must crop to a fixed size to train")
    h, w = int(heights[0]), int(widths[0])
    blobs = table.column("pixels").to_pylist()
    pixels = np.stack([np.frombuffer(blobs[i], dtype=np.uint8).reshape(3, h, w) for i in rows])
    captions = table.column("caption").to_pylist()
    return torch.from_numpy(pixels), [captions[i] for i in rows]


def epoch_batches(n: int, batch_size: int, steps: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """``steps`` batches of row indices for one epoch: a fresh permutation per (seed, epoch)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]
