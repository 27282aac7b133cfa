"""The scoring core: pandas in, pandas out, no Spark.

``PairScorer.score_batches`` takes an iterator of (images, captions) batches and yields, per batch, a
DataFrame with ``similarity`` (float32, null when not scored), ``score_band`` and ``score_error``:

    captions checked -> images loaded (image_loader) -> pixels + tokens (preprocess)
      -> embeddings (encode) -> cosine per row -> band (bands)

Preparing batch k+1 (I/O, decode, resize, tokenize: threads that release the GIL) overlaps the model
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

from clipscore.bands import assign_bands
from clipscore.config import ScoreConfig
from clipscore.encode import ClipEncoder, cosine_rows
from clipscore.errors import row_error
from clipscore.image_loader import ImageLoader, LoadedImage
from clipscore.model import MODEL_CACHE, ClipBundle, ModelKey, resolve_device, resolve_precision
from clipscore.preprocess import CaptionTokenizer, ImagePreprocessor, JpegDecoder, caption_error

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("similarity", "score_band", "score_error")

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
class PreparedBatch:
    n_rows: int
    errors: np.ndarray  # object: reason per row, None where scorable
    image_index: np.ndarray  # int64: row -> distinct image, -1 if none
    text_index: np.ndarray  # int64: row -> distinct caption, -1 if none
    pixel_values: torch.Tensor | None
    text_inputs: dict | None
    index: pd.Index


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
    """Scores (image, caption) pairs with one loaded CLIP. Cheap to build once the model is cached."""

    def __init__(self, cfg: ScoreConfig, bundle: ClipBundle):
        self.cfg = cfg
        self.bundle = bundle
        self.preprocess = ImagePreprocessor(bundle.image_processor, bundle.device if cfg.gpu_decode else None,
                                            normalise_in_one=bundle.device.type == "cpu")
        self.loader = ImageLoader(cfg)
        self.loader.set_target(*self.preprocess.target_size())
        self.jpeg_decoder: JpegDecoder | None = None
        if cfg.gpu_decode:
            # JPEGs skip PIL: checked from the header, then batch-decoded and resized on the device.
            self.loader.defer_jpeg = True
            self.jpeg_decoder = JpegDecoder(bundle.device)
        self.tokenize = CaptionTokenizer(bundle.tokenizer, bundle.max_length, cfg.max_caption_chars)
        self.encoder = ClipEncoder(bundle, cfg.batch_size)
        self._pinned = bundle.device.type == "cuda"
        if bundle.device.type == "cuda":
            _single_threaded_host_ops()
        self.times = StageTimes()
        self._prep_pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_config(cls, cfg: ScoreConfig, assigned_gpus: Sequence[str] = ()) -> "PairScorer":
        """Build a scorer on the right device, loading the model through the process-wide cache."""
        device = resolve_device(cfg.device, assigned_gpus)
        key = ModelKey(cfg.model, cfg.model_revision, device, resolve_precision(cfg.precision, device))
        return cls(cfg, MODEL_CACHE.get(key))

    # ------------------------------------------------------------------------------------------
    def score_frame(self, images: pd.Series, captions: pd.Series) -> pd.DataFrame:
        """Score one batch synchronously (any length; the model runs in ``batch_size`` chunks)."""
        return self._compute(self.prepare(images, captions))

    def score_batches(self, batches: Iterable[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        """Score a stream of batches, preparing up to ``prefetch_batches`` ahead of the model."""
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
        """Host work before the model: caption checks, image load/decode/resize, tokenize (CPU threads)."""
        if len(images) != len(captions):
            raise ValueError(f"images and captions differ in length: {len(images)} != {len(captions)}")
        t = time.perf_counter()
        n = len(images)
        image_values = images.tolist()
        caption_values = captions.tolist()
        errors = np.array([caption_error(c) for c in caption_values], dtype=object)

        # Load each distinct image reference once; rows whose caption is already bad are skipped.
        candidate_rows = [i for i in range(n) if errors[i] is None]
        distinct_refs, row_to_ref = _dedupe(image_values, candidate_rows)
        # Each frame is reduced to a model-sized tensor in the thread that decoded it, straight into
        # its slot of the batch when the size is fixed: a batch never holds full-resolution frames
        # (the loader's pixel budget bounds those in flight) and is never copied whole.
        batch = (self.preprocess.new_batch(len(distinct_refs), pinned=self._pinned)
                 if self.jpeg_decoder is None else None)  # gpu_decode resizes JPEGs later, on the device
        reduce = ([functools.partial(self.preprocess.one, out=batch[i]) for i in range(len(distinct_refs))]
                  if batch is not None else self.preprocess.one)
        loaded = self.loader.load_many(distinct_refs, reduce=reduce)
        t = self.times.add("load_decode_resize", t)
        if self.jpeg_decoder is not None:
            loaded = self._decode_deferred(loaded)

        good_images: list = []
        ref_to_good: dict[int, int] = {}
        for ref_idx, item in enumerate(loaded):
            if item.image is not None:
                ref_to_good[ref_idx] = len(good_images)
                good_images.append(item.image)
        image_index = np.full(n, -1, dtype=np.int64)
        for row in candidate_rows:
            ref_idx = row_to_ref[row]
            if ref_idx in ref_to_good:
                image_index[row] = ref_to_good[ref_idx]
            else:
                errors[row] = loaded[ref_idx].error

        if not good_images:
            pixel_values = None
        elif batch is not None and len(good_images) == len(batch):
            pixel_values = batch  # every slot filled: no copy
        else:
            # gpu_decode leaves JPEG crops on the model's device: stack there (a few CPU crops move up)
            # rather than sending the device's crops down and back up again.
            device = next((t.device for t in good_images if t.device.type != "cpu"), None)
            pixel_values = torch.stack([t.to(device) for t in good_images] if device is not None else good_images)
        t = self.times.add("preprocess", t)

        scorable = [i for i in range(n) if errors[i] is None]
        distinct_captions, row_to_caption = _dedupe(caption_values, scorable)
        text_index = np.full(n, -1, dtype=np.int64)
        for row in scorable:
            text_index[row] = row_to_caption[row]
        text_inputs = self.tokenize(distinct_captions) if distinct_captions else None
        self.times.add("tokenize", t)
        return PreparedBatch(n, errors, image_index, text_index, pixel_values, text_inputs, images.index)

    def _decode_deferred(self, loaded: list[LoadedImage]) -> list[LoadedImage]:
        """Decode the JPEGs the loader left encoded, in one batch on the model's device, then resize them."""
        pending = [i for i, item in enumerate(loaded) if item.jpeg is not None]
        if not pending:
            return loaded
        loaded = list(loaded)
        decoded = self.jpeg_decoder([loaded[i].jpeg for i in pending])
        ok = [(i, image) for i, (image, _) in zip(pending, decoded) if image is not None]
        for i, (image, error) in zip(pending, decoded):
            if image is None:
                loaded[i] = LoadedImage(None, error)
        for i, image in ok:  # resized and cropped on the device
            loaded[i] = LoadedImage(self.preprocess.one(image))  # stays on the device
        return loaded

    def _compute(self, prepared: PreparedBatch) -> pd.DataFrame:
        t = time.perf_counter()
        similarity = np.full(prepared.n_rows, np.nan, dtype=np.float32)
        scorable = np.flatnonzero(prepared.text_index >= 0)
        if len(scorable):
            # Encode only the distinct images that some scorable row uses.
            used_images = np.unique(prepared.image_index[scorable])
            remap = np.full(len(prepared.pixel_values), -1, dtype=np.int64)
            remap[used_images] = np.arange(len(used_images))
            pixels = prepared.pixel_values
            if len(used_images) < len(pixels):  # skip the copy in the usual case: every image is used
                pixels = pixels[torch.from_numpy(used_images)]
            image_embeds = self.encoder.embed_images(pixels, self.preprocess.finish)
            text_embeds = self.encoder.embed_texts(**prepared.text_inputs)
            cos = cosine_rows(
                image_embeds,
                text_embeds,
                torch.from_numpy(remap[prepared.image_index[scorable]]),
                torch.from_numpy(prepared.text_index[scorable]),
            )
            similarity[scorable] = cos.numpy().astype(np.float32)
            # A NaN, infinite or zero embedding (fp16 overflow, a degenerate input) is a row error
            # with its own reason, never a null score without one.
            invalid = scorable[~np.isfinite(similarity[scorable])]
            for row in invalid:
                prepared.errors[row] = row_error(
                    "embedding_invalid", f"the {self.bundle.key.precision} model gave a NaN, infinite or zero embedding")
            similarity[invalid] = np.nan
        t = self.times.add("model", t)
        out = self.assemble(prepared, similarity)
        _record_pairs(len(scorable))
        self.times.add("band", t)
        return out

    def assemble(self, prepared: PreparedBatch, similarity: np.ndarray) -> pd.DataFrame:
        """The output frame for one batch: scores (NaN where not scored), bands, reasons; counts rows."""
        out = pd.DataFrame(
            {
                "similarity": pd.Series(similarity, dtype="float32"),
                "score_band": assign_bands(pd.Series(similarity), self.cfg.band_edges),
                "score_error": pd.Series(prepared.errors, dtype=object),
            }
        )
        if len(out) != prepared.n_rows:  # a code error, never a data error: fail loudly
            raise RuntimeError(f"scorer produced {len(out)} rows for {prepared.n_rows} inputs")
        self.times.rows += prepared.n_rows
        self.times.scored += int(np.isfinite(similarity).sum())
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


def score_pandas(df: pd.DataFrame, cfg: ScoreConfig, assigned_gpus: Sequence[str] = ()) -> pd.DataFrame:
    """Notebooks, Ray or Dask: ``df`` plus the three score columns (model from the process-wide cache).

    Memory is bounded whatever ``len(df)``: rows go to the model in ``batch_size`` slices with
    ``prefetch_batches`` prepared ahead, as in the Spark UDF; only the (small) score columns of the
    whole frame are kept.
    """
    scorer = PairScorer.from_config(cfg, assigned_gpus)
    images, captions = df[cfg.image_col], df[cfg.caption_col]
    slices = ((images.iloc[i : i + cfg.batch_size], captions.iloc[i : i + cfg.batch_size])
              for i in range(0, len(df), cfg.batch_size))
    try:
        parts = list(scorer.score_batches(slices))
    finally:
        scorer.close()
    scores = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(OUTPUT_COLUMNS))
    scores.index = df.index
    return pd.concat([df, scores], axis=1)
