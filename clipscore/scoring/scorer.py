"""The scoring core: pandas in, pandas out, no Spark, any number of models of any family.

``PairScorer.score_batches`` takes an iterator of (images, captions) batches and yields, per batch, a
DataFrame with the score columns (``clipscore.schema.columns``: ``similarity``, ``probability`` for SigLIP
families, ``similarity_<name>``... with several models; float32, null when not scored),
``score_band`` and ``score_error``:

    captions checked -> images loaded and decoded once (image_loader)
      -> per model: its own resize/crop of the shared frame, its own tokens (its family's preprocess)
      -> per model: embeddings (encode) -> cosine per row -> band from the primary model (bands)

Preparing batch k+1 (I/O, decode, resize, tokenize: threads that release the GIL) overlaps the models
running on batch k. Within a batch each distinct image reference and each distinct caption is
loaded and encoded once.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from clipscore.schema.bands import assign_bands
from clipscore.schema.columns import EMBEDDING_COLUMNS, PRIMARY_COLUMNS, STATUS_COLUMNS, pandas_dtype, score_columns
from clipscore.scoring.encode import Encoder, cosine_rows
from clipscore.schema.errors import row_error
from clipscore.models.base import ImageInput, ScoringModel, Tokenizer
from clipscore.images.loader import ImageLoader, LoadedImage
from clipscore.models import load_model
from clipscore.models.cache import MODEL_CACHE
from clipscore.models.runtime import ModelKey, resolve_device, resolve_precision
from clipscore.config.options import ModelSpec, ScoringOptions
from clipscore.images.jpeg import JpegDecoder
from clipscore.scoring.captions import caption_error
from clipscore.signals.signal_pass import SignalPass

log = logging.getLogger(__name__)

# Optional (ops, tests): append "pid<TAB>pairs" per batch for the pairs the model scored, so a run can
# prove that every row went through the model exactly once.
PAIR_LOG_ENV = "CLIPSCORE_PAIR_LOG"


@dataclass
class StageTimes:
    """Seconds spent per stage (wall time on the thread that ran it), and row counts."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    rows: int = 0
    scored: int = 0

    def add(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - started
        return now


@dataclass
class ModelRun:
    """One model of a scorer: its spec, the loaded model and the parts cut from it for this run."""

    spec: ModelSpec
    model: ScoringModel
    preprocess: ImageInput
    tokenize: Tokenizer
    encoder: Encoder

    @property
    def columns(self) -> tuple[str, ...]:
        return ("similarity", "probability") if self.model.has_probability else ("similarity",)


@dataclass
class PreparedBatch:
    n_rows: int
    errors: np.ndarray  # object: reason per row, None where scorable
    image_index: np.ndarray  # int64: row -> distinct image, -1 if none
    text_index: np.ndarray  # int64: row -> distinct caption, -1 if none
    pixel_values: list  # per model: a tensor of its distinct images' inputs, or None
    text_inputs: list  # per model: its tokenizer's tensors for the distinct captions, or None
    index: pd.Index
    signals: dict = field(default_factory=dict)  # signal column -> values computed before the models


def _dedupe(values: Sequence[Any], rows: Iterable[int]) -> tuple[list[Any], dict[int, int]]:
    """Distinct values among ``rows`` (first-seen order) and the row -> distinct index map."""
    distinct: list[Any] = []
    position: dict[Any, int] = {}
    row_to_distinct: dict[int, int] = {}
    for row in rows:
        value = values[row]
        key = bytes(value) if isinstance(value, (bytearray, memoryview)) else value
        if key not in position:
            position[key] = len(distinct)
            distinct.append(value)
        row_to_distinct[row] = position[key]
    return distinct, row_to_distinct


class PairScorer:
    """Scores (image, caption) pairs with one or more loaded models. Cheap to build once they are cached."""

    def __init__(self, options: ScoringOptions, models: Sequence[ScoringModel]):
        options = options.scoring
        if len(models) != len(options.models):
            raise ValueError(f"{len(models)} loaded models for {len(options.models)} model specs")
        self.cfg = options
        self.runs = [ModelRun(spec, model, model.preprocessor(options.gpu_decode),
                              model.tokenizer(options.max_caption_chars), Encoder(model, options.batch_size))
                     for spec, model in zip(options.models, models)]
        self.device = models[0].device
        self.signals = SignalPass(options, self.runs[0])
        self.columns = (*score_columns([(r.spec.name, r.model.has_probability) for r in self.runs],
                                       options.write_embeddings), *self.signals.columns)
        if options.band_column not in self.columns:
            raise RuntimeError(f"band_column={options.band_column} but the primary model "
                               f"{options.primary.model} ({models[0].family}) gives only {', '.join(self.columns)}")
        self.loader = ImageLoader(options)
        # The shared frame must cover every model's input (fast mode reduces frames to this).
        targets = [run.preprocess.target_size() for run in self.runs]
        self.loader.set_target(max(t[0] for t in targets), max(t[1] for t in targets))
        self.jpeg_decoder: JpegDecoder | None = None
        if options.gpu_decode:
            # JPEGs skip PIL: checked from the header, then batch-decoded and resized on the device.
            self.loader.defer_jpeg = True
            self.jpeg_decoder = JpegDecoder(self.device)
        self._pinned = self.device.type == "cuda"
        if self.device.type == "cuda":
            _single_threaded_host_ops()
        self.times = StageTimes()
        self._prep_pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_config(cls, options: ScoringOptions, assigned_gpus: Sequence[str] = ()) -> "PairScorer":
        """Build a scorer on the right device, loading each model through the process-wide cache."""
        options = options.scoring
        device = resolve_device(options.device, assigned_gpus)
        precision = resolve_precision(options.precision, device)
        models = [MODEL_CACHE.get(ModelKey(spec.model, spec.revision, device, precision), load_model)
                  for spec in options.models]
        return cls(options, models)

    @property
    def primary(self) -> ModelRun:
        return self.runs[0]

    @property
    def precision(self) -> str:
        return self.primary.model.key.precision

    # ------------------------------------------------------------------------------------------
    def score_frame(self, images: pd.Series, captions: pd.Series) -> pd.DataFrame:
        """Score one batch synchronously (any length; the models run in ``batch_size`` chunks)."""
        return self._compute(self.prepare(images, captions))

    def score_batches(self, batches: Iterable[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        """Score a stream of batches, preparing up to ``prefetch_batches`` ahead of the models."""
        depth = self.cfg.prefetch_batches
        if depth == 0:
            for images, captions in batches:
                yield self.score_frame(images, captions)
            return
        if self._prep_pool is None:
            self._prep_pool = ThreadPoolExecutor(1, thread_name_prefix="clipscore-prepare")
        pending: list[Future] = []
        source = iter(batches)
        exhausted = False
        while True:
            while not exhausted and len(pending) <= depth:
                try:
                    images, captions = next(source)
                except StopIteration:
                    exhausted = True
                    break
                pending.append(self._prep_pool.submit(self.prepare, images, captions))
            if not pending:
                return
            yield self._compute(pending.pop(0).result())

    def close(self) -> None:
        self.loader.close()
        if self._prep_pool is not None:
            self._prep_pool.shutdown(wait=False, cancel_futures=True)
            self._prep_pool = None

    # ------------------------------------------------------------------------------------------
    def prepare(self, images: pd.Series, captions: pd.Series) -> PreparedBatch:
        """Host work before the models: caption checks, one image load/decode per distinct reference,
        each model's resize, each model's tokenizer (CPU threads)."""
        if len(images) != len(captions):
            raise ValueError(f"images and captions differ in length: {len(images)} != {len(captions)}")
        t = time.perf_counter()
        n = len(images)
        image_values = images.tolist()
        caption_values = captions.tolist()
        errors = np.array([caption_error(c) for c in caption_values], dtype=object)

        # Load each distinct image reference once; rows whose caption is already bad are skipped,
        # unless an image signal (facts, pHash, concepts, heads) is wanted for them too.
        candidate_rows = list(range(n)) if self.signals.needs_every_image else [i for i in range(n) if errors[i] is None]
        distinct_refs, row_to_ref = _dedupe(image_values, candidate_rows)
        # Each frame is decoded once and reduced to every model's input in the thread that decoded
        # it, straight into its slot of each model's batch when the size is fixed: a batch never
        # holds full-resolution frames (the loader's pixel budget bounds those in flight) and is
        # never copied whole.
        deferred = self.jpeg_decoder is not None  # gpu_decode resizes JPEGs later, on the device
        batches = [None if deferred else run.preprocess.new_batch(len(distinct_refs), pinned=self._pinned)
                   for run in self.runs]
        reduce = [functools.partial(self._reduce, slots=[b[i] if b is not None else None for b in batches])
                  for i in range(len(distinct_refs))]
        loaded = self.loader.load_many(distinct_refs, reduce=reduce)
        t = self.times.add("load_decode_resize", t)
        if deferred:
            loaded = self._decode_deferred(loaded)

        good: list[tuple] = []
        ref_to_good: dict[int, int] = {}
        for ref_idx, item in enumerate(loaded):
            if item.image is not None:
                ref_to_good[ref_idx] = len(good)
                good.append(item.image)
        image_index = np.full(n, -1, dtype=np.int64)
        facts: list = [None] * n
        hashes: list = [None] * n
        for row in candidate_rows:
            ref_idx = row_to_ref[row]
            if ref_idx in ref_to_good:
                image_index[row] = ref_to_good[ref_idx]
                facts[row] = loaded[ref_idx].facts
                if self.signals.phash:
                    hashes[row] = loaded[ref_idx].image[-1]
            elif errors[row] is None:  # a row keeps its first reason (a bad caption before its image)
                errors[row] = loaded[ref_idx].error
        pixel_values = [self._stack(batches[m], [item[m] for item in good]) for m in range(len(self.runs))]
        t = self.times.add("preprocess", t)

        scorable = [i for i in range(n) if errors[i] is None]
        distinct_captions, row_to_caption = _dedupe(caption_values, scorable)
        text_index = np.full(n, -1, dtype=np.int64)
        for row in scorable:
            text_index[row] = row_to_caption[row]
        text_inputs = [run.tokenize(distinct_captions) if distinct_captions else None for run in self.runs]
        t = self.times.add("tokenize", t)
        signals = self.signals.row_columns(caption_values, facts, hashes) if self.signals.active else {}
        self.times.add("signals", t)
        return PreparedBatch(n, errors, image_index, text_index, pixel_values, text_inputs, images.index, signals)

    def _reduce(self, frame: torch.Tensor, slots: list) -> tuple:
        """One decoded frame -> each model's input (its own resize/crop), in the decode thread; then the
        frame's own signal (the pHash) last when one is asked for."""
        inputs = tuple(run.preprocess.one(frame, out=slot) for run, slot in zip(self.runs, slots))
        return (*inputs, self.signals.frame_signal(frame)) if self.signals.phash else inputs

    @staticmethod
    def _stack(batch: torch.Tensor | None, images: list) -> torch.Tensor | None:
        if not images:
            return None
        if batch is not None and len(images) == len(batch):
            return batch  # every slot filled: no copy
        # gpu_decode leaves JPEG crops on the model's device: stack there (a few CPU crops move up)
        # rather than sending the device's crops down and back up again.
        device = next((t.device for t in images if t.device.type != "cpu"), None)
        return torch.stack([t.to(device) for t in images] if device is not None else images)

    def _decode_deferred(self, loaded: list[LoadedImage]) -> list[LoadedImage]:
        """Decode the JPEGs the loader left encoded, in one batch on the model's device, then resize them."""
        pending = [i for i, item in enumerate(loaded) if item.jpeg is not None]
        if not pending:
            return loaded
        loaded = list(loaded)
        decoded = self.jpeg_decoder([loaded[i].jpeg for i in pending])
        for i, (image, error) in zip(pending, decoded):
            # resized and cropped on the device by each model's preprocessor; stays there
            loaded[i] = LoadedImage(None, error) if image is None else LoadedImage(
                self._reduce(image, [None] * len(self.runs)), facts=loaded[i].facts)
        return loaded

    def _compute(self, prepared: PreparedBatch) -> pd.DataFrame:
        t = time.perf_counter()
        scores: dict[str, np.ndarray] = {}
        scorable = np.flatnonzero(prepared.text_index >= 0)
        for m, run in enumerate(self.runs):
            values = self._score_model(run, prepared, scorable, prepared.pixel_values[m], prepared.text_inputs[m],
                                       signals=m == 0 and self.signals.needs_embeddings)
            scores.update({f"{column}_{run.spec.name}": array for column, array in values.pop("model").items()})
            scores.update(values)  # the primary's embedding signals (concepts, heads), under their own names
        t = self.times.add("model", t)
        out = self.assemble(prepared, scores)
        _record_pairs(len(scorable) * len(self.runs))
        self.times.add("band", t)
        return out

    def _score_model(self, run: ModelRun, prepared: PreparedBatch, scorable: np.ndarray, pixels, text_inputs,
                     signals: bool = False) -> dict:
        """``{"model": this model's columns}``, plus the embedding signals' columns when ``signals``
        (concepts and heads describe every loaded image, scorable or not)."""
        similarity = np.full(prepared.n_rows, np.nan, dtype=np.float32)
        probability = np.full(prepared.n_rows, np.nan, dtype=np.float32) if run.model.has_probability else None
        embed_rows = np.flatnonzero(prepared.image_index >= 0) if signals else scorable  # a superset of scorable
        image_embeds = remap = None
        if len(embed_rows):
            image_embeds, remap = self._embed_images(run, prepared, pixels, embed_rows)
        extra: dict = {}
        if signals:
            described = None if image_embeds is None else image_embeds.index_select(
                0, torch.from_numpy(remap[prepared.image_index[embed_rows]]).to(image_embeds.device))
            extra = self.signals.embedding_columns(prepared.n_rows, embed_rows, described)
        if len(scorable):
            text_embeds = run.encoder.embed_texts(**text_inputs)
            image_rows = torch.from_numpy(remap[prepared.image_index[scorable]])
            text_rows = torch.from_numpy(prepared.text_index[scorable])
            cos = cosine_rows(image_embeds, text_embeds, image_rows, text_rows)
            similarity[scorable] = cos.numpy().astype(np.float32)
            if probability is not None:
                probability[scorable] = run.model.probability(cos).numpy().astype(np.float32)
            # A NaN, infinite or zero embedding (fp16 overflow, a degenerate input) is a row error
            # with its own reason, never a null score without one.
            invalid = scorable[~np.isfinite(similarity[scorable])]
            which = f"the {run.model.key.precision} model" + (f" '{run.spec.name}'" if len(self.runs) > 1 else "")
            for row in invalid:
                if prepared.errors[row] is None:
                    prepared.errors[row] = row_error("embedding_invalid", f"{which} gave a NaN, infinite or zero embedding")
            similarity[invalid] = np.nan
            if probability is not None:
                probability[invalid] = np.nan
        out = {"similarity": similarity} if probability is None else {"similarity": similarity, "probability": probability}
        if self.cfg.write_embeddings:
            out.update(self._embedding_cells(prepared.n_rows, scorable, similarity,
                                             *((image_embeds, text_embeds, image_rows, text_rows) if len(scorable) else ())))
        return {"model": out, **extra}

    @staticmethod
    def _embed_images(run: ModelRun, prepared: PreparedBatch, pixels, rows: np.ndarray):
        """Unit embeddings of the distinct images ``rows`` use (each once), and the distinct -> embedding map."""
        used_images = np.unique(prepared.image_index[rows])
        remap = np.full(len(pixels), -1, dtype=np.int64)
        remap[used_images] = np.arange(len(used_images))
        if len(used_images) < len(pixels):  # skip the copy in the usual case: every image is used
            pixels = pixels[torch.from_numpy(used_images)]
        return run.encoder.embed_images(pixels, run.preprocess.finish), remap

    def _embedding_cells(self, n: int, scorable: np.ndarray, similarity: np.ndarray, *embeds) -> dict:
        """Each scored row's unit-length embeddings (None elsewhere): float32 arrays (``embedding_format: array``)
        or little-endian ``embedding_dtype`` bytes (``binary``)."""
        cells = {"image_embedding": np.full(n, None, dtype=object), "text_embedding": np.full(n, None, dtype=object)}
        if not embeds:
            return cells
        image_embeds, text_embeds, image_rows, text_rows = embeds
        as_array = self.cfg.embedding_format == "array"
        dtype = np.dtype(np.float32 if as_array else self.cfg.embedding_dtype).newbyteorder("<")
        images = image_embeds.index_select(0, image_rows.to(image_embeds.device)).cpu().numpy().astype(dtype)
        texts = text_embeds.index_select(0, text_rows.to(text_embeds.device)).cpu().numpy().astype(dtype)
        for i, row in enumerate(scorable):
            if np.isfinite(similarity[row]):
                cells["image_embedding"][row] = images[i] if as_array else images[i].tobytes()
                cells["text_embedding"][row] = texts[i] if as_array else texts[i].tobytes()
        return cells

    def assemble(self, prepared: PreparedBatch, scores: dict[str, np.ndarray]) -> pd.DataFrame:
        """The output frame for one batch: score columns (NaN where not scored), bands, reasons.

        ``scores`` maps each model's column (``similarity_<name>``, ``probability_<name>``) to its
        values; the primary's are also the plain ``similarity``/``probability`` columns.
        """
        primary, single = self.primary.spec.name, len(self.runs) == 1
        data = {}
        for column in self.columns:
            if column in prepared.signals:
                data[column] = pd.Series(prepared.signals[column], dtype=pandas_dtype(column))
                continue
            key = f"{column}_{primary}" if column in PRIMARY_COLUMNS or (single and column in EMBEDDING_COLUMNS) else column
            data[column] = pd.Series(scores[key], dtype=pandas_dtype(column))
        out = pd.DataFrame(data)
        out["score_band"] = assign_bands(pd.Series(out[self.cfg.band_column]), self.cfg.band_edges)
        out["score_error"] = pd.Series(prepared.errors, dtype=object)
        if len(out) != prepared.n_rows:  # a code error, never a data error: fail loudly
            raise RuntimeError(f"scorer produced {len(out)} rows for {prepared.n_rows} inputs")
        self.times.rows += prepared.n_rows
        self.times.scored += int(np.isfinite(out["similarity"].to_numpy()).sum())
        return out


def _single_threaded_host_ops() -> None:
    """With the model on a GPU, keep torch's own CPU ops single-threaded (process-wide, logged once).

    The host's torch work is then the per-image resize and crop, already run in parallel by the
    decode threads; an OpenMP team per op on top (Spark sets ``OMP_NUM_THREADS`` to
    ``spark.task.cpus``, often all of a GPU's cores) would put decode_threads x task.cpus threads on
    those cores. PyTorch's DataLoader workers do the same for the same reason. On the 2-core machine
    here 1 and 2 threads per op were within noise of each other; the case it guards is a GPU node.
    """
    if torch.get_num_threads() != 1:
        log.info("model on a GPU: torch CPU ops single-threaded (was %d); image work runs on the decode "
                 "threads", torch.get_num_threads())
        torch.set_num_threads(1)


def _record_pairs(pairs: int) -> None:
    path = os.environ.get(PAIR_LOG_ENV)
    if path and pairs:
        with open(path, "a", encoding="utf-8") as handle:  # one short append: atomic across processes
            handle.write(f"{os.getpid()}\t{pairs}\n")


def score_pandas(df: pd.DataFrame, cfg: ScoringOptions, assigned_gpus: Sequence[str] = (), *,
                 image_col: str | None = None, caption_col: str | None = None) -> pd.DataFrame:
    """Notebooks, Ray or Dask: ``df`` plus the score columns (models from the process-wide cache).

    ``cfg`` is a ``ScoreConfig`` (its ``image_col``/``caption_col`` name the columns) or plain
    ``ScoringOptions`` (then ``image``/``caption`` unless given here).

    Memory is bounded whatever ``len(df)``: rows go to the model in ``batch_size`` slices with
    ``prefetch_batches`` prepared ahead, as in the Spark UDF; only the (small) score columns of the
    whole frame are kept.
    """
    scorer = PairScorer.from_config(cfg, assigned_gpus)
    images = df[image_col or getattr(cfg, "image_col", "image")]
    captions = df[caption_col or getattr(cfg, "caption_col", "caption")]
    slices = ((images.iloc[i : i + cfg.batch_size], captions.iloc[i : i + cfg.batch_size])
              for i in range(0, len(df), cfg.batch_size))
    try:
        parts = list(scorer.score_batches(slices))
    finally:
        scorer.close()
    scores = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*scorer.columns, *STATUS_COLUMNS])
    scores.index = df.index
    return pd.concat([df, scores], axis=1)
