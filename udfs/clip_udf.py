"""The Spark adapter: an iterator pandas UDF around the pure scoring core.

Per Python worker, the first batch builds a ``PairScorer`` through the process-wide ``ModelCache``
(the model loads once per worker and stays across tasks while Spark reuses the worker). Arrow
batches (``spark.sql.execution.arrow.maxRecordsPerBatch`` rows) are re-sliced to ``batch_size``
before they reach the model, and the scorer prepares the next slice while the model runs.

The device is the GPU that Spark assigned to this task (``TaskContext.resources()["gpu"]``), else
the first visible GPU, else the CPU; see ``clipscore.model.resolve_device``.
"""
from __future__ import annotations

from typing import Iterator

import pandas as pd

from clipscore.config import ScoreConfig

# The core's three columns, plus what actually ran on this worker (resolved from ``auto``): the
# device class (cpu/cuda) and precision, for provenance and the score fingerprint.
RESULT_SCHEMA = "similarity float, score_band string, score_error string, score_device string, score_precision string"
RUNTIME_COLUMNS = ("score_device", "score_precision")


def assigned_gpus() -> list[str]:
    """GPU addresses Spark assigned to the running task; empty outside a task or without GPU scheduling."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:
        return []
    resource = context.resources().get("gpu")
    return list(resource.addresses) if resource is not None else []


def reslice(batches: Iterator[tuple[pd.Series, pd.Series]], size: int) -> Iterator[tuple[pd.Series, pd.Series]]:
    """Cut each incoming (images, captions) batch into consecutive slices of at most ``size`` rows."""
    for images, captions in batches:
        for start in range(0, len(images), size):
            yield images.iloc[start : start + size], captions.iloc[start : start + size]


def score_iterator(cfg: ScoreConfig, batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
    """What the UDF runs on the executor; plain Python, so tests can drive it without Spark."""
    from clipscore.scorer import PairScorer

    scorer = PairScorer.from_config(cfg, assigned_gpus())
    device_class = scorer.bundle.key.device.split(":", 1)[0]
    precision = scorer.bundle.key.precision
    try:
        for out in scorer.score_batches(reslice(batches, cfg.batch_size)):
            yield out.assign(score_device=device_class, score_precision=precision)
    finally:
        scorer.close()


def make_score_udf(cfg: ScoreConfig):
    """A pandas UDF ``(image, caption) -> struct<similarity, score_band, score_error>`` for ``cfg``."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(RESULT_SCHEMA)
    def clip_score(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        yield from score_iterator(cfg, batches)

    # Non-deterministic: the optimiser must never duplicate or re-run an expensive model call.
    return clip_score.asNondeterministic()
