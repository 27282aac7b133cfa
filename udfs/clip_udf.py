"""The Spark adapter: an iterator pandas UDF around the pure scoring core.

Per Python worker, the first batch builds a ``PairScorer`` through the process-wide ``ModelCache``
(the model loads once per worker and stays across tasks while Spark reuses the worker). Arrow
batches (``spark.sql.execution.arrow.maxRecordsPerBatch`` rows) are re-sliced to ``batch_size``
before they reach the model, and the scorer prepares the next slice while the model runs.

The device is the GPU that Spark assigned to this task (``TaskContext.resources()["gpu"]``), else
the first visible GPU, else the CPU; see ``clipscore.models.runtime.resolve_device``.

Unless the driver's ``clipscore`` logger is at DEBUG, the workers' transformers logs only errors and
draws no progress bars (``Loading weights``): executor logs stay readable, and so does a local run's console.
"""
from __future__ import annotations

import logging
from typing import Iterator, Sequence

import pandas as pd

from clipscore.schema.columns import STATUS_COLUMNS, column_type
from clipscore.config.options import ScoringOptions

# Besides the core's columns, what actually ran on this worker (resolved from ``auto``): the device
# class (cpu/cuda) and precision, for provenance and the score fingerprint.
RUNTIME_COLUMNS = ("score_device", "score_precision")


def result_schema(columns: Sequence[str], embedding_format: str = "array") -> str:
    """The UDF's struct schema for the core's ``columns`` (typed by ``column_type``) plus the runtime columns."""
    types = {c: column_type(c, embedding_format) for c in columns}
    types.update({c: "string" for c in RUNTIME_COLUMNS})
    return ", ".join(f"`{c}` {t}" for c, t in types.items())


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


def score_iterator(options: ScoringOptions, batches: Iterator[tuple[pd.Series, pd.Series]],
                   columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    """What the UDF runs on the executor; plain Python, so tests can drive it without Spark.

    ``columns``: what the driver planned (``planned_columns``); the models loaded here must give
    exactly those, or the task fails loudly (a model folder changed under the job).
    """
    from clipscore.scoring.scorer import PairScorer

    scorer = PairScorer.from_config(options, assigned_gpus())
    cfg = scorer.cfg
    if columns is not None and tuple(columns) != (*scorer.columns, *STATUS_COLUMNS):
        raise RuntimeError(f"the driver planned columns {list(columns)} but the models loaded on this executor "
                           f"give {[*scorer.columns, *STATUS_COLUMNS]}; did a model change during the job?")
    device_class = str(scorer.device).split(":", 1)[0]
    precision = scorer.precision
    try:
        for out in scorer.score_batches(reslice(batches, cfg.batch_size)):
            yield out.assign(score_device=device_class, score_precision=precision)
    finally:
        scorer.close()


def quiet_libraries() -> None:
    """This process's transformers: errors only, no progress bars (the workers, below DEBUG on the driver)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def make_score_udf(options: ScoringOptions, columns: Sequence[str] | None = None):
    """A pandas UDF ``(image, caption) -> struct<score columns, score_band, score_error, runtime>``.

    ``columns`` defaults to ``planned_columns(options)``, which checks every model on the driver.
    Only the scoring options travel to the executors, never the job's.
    """
    from pyspark.sql.functions import pandas_udf

    from clipscore.scoring.plan import planned_columns

    options = options.scoring
    columns = tuple(columns) if columns is not None else planned_columns(options)
    quiet = not logging.getLogger("clipscore").isEnabledFor(logging.DEBUG)  # decided on the driver

    @pandas_udf(result_schema(columns, options.embedding_format))
    def clip_score(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        if quiet:
            quiet_libraries()
        yield from score_iterator(options, batches, columns)

    # Non-deterministic: the optimiser must never duplicate or re-run an expensive model call.
    return clip_score.asNondeterministic()
