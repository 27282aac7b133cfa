"""Stage 1: turn image references (bytes, paths, URLs) into small model-ready images, or reasons.

    reference --fetch.Fetcher--> encoded bytes --frames.FrameDecoder--> RGB frame --reduce--> small tensor

Every failure is a value, never an exception: an item comes back with ``error="code: detail"``
(a category of ``clipscore.schema.errors``) and the row keeps going with a null score.

Memory and time per image are bounded before any pixel is decoded:

* bytes are capped (``max_image_bytes``) by the fetcher, before they are read in full;
* from the header alone: the format must be in ``image_formats`` (never EPS, which Pillow hands to
  Ghostscript), the pixel count within ``max_image_pixels`` (Pillow's own bomb check follows it), the
  aspect ratio within ``max_aspect_ratio`` (the processor resizes the *shortest* side to the model's
  size, so a 1x100,000 strip would cost 224 x 22.4 M pixels);
* full-resolution frames in flight share a budget of ``max_pixels_in_flight`` pixels across the
  decode threads, and each frame is reduced to the model's input (``reduce``, the model's own
  processor on that one image) in the thread that decoded it, so a batch holds only small tensors.
"""
from __future__ import annotations

import io
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from PIL import Image, UnidentifiedImageError

from clipscore.config.options import ScoringOptions
from clipscore.schema.errors import row_error
from clipscore.io.fetch import Fetcher, is_remote
from clipscore.io.fetch_errors import FetchError, short
from clipscore.images.frames import FrameDecoder

# Our header checks run before Pillow's; its warning for sizes between its two thresholds is noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class ImageFacts:
    """What the header and the bytes say of an image, before any decode: the original's size and format."""

    width: int
    height: int
    format: str  # Pillow's format name (JPEG, PNG, WEBP, MPO ...)
    nbytes: int  # encoded size


@dataclass(frozen=True)
class LoadedImage:
    # What ``reduce`` made of the decoded RGB frame (a small tensor), or the RGB frame itself when
    # no reducer was given.
    image: Any | None
    error: str | None = None
    # With ``defer_jpeg`` set, a checked RGB/grayscale JPEG comes back undecoded here instead, for a
    # batched torchvision/nvJPEG decode on the model's device (``gpu_decode``).
    jpeg: bytes | None = None
    facts: ImageFacts | None = None  # set whenever the image loaded (the header passed every check)


def _fail(code: str, detail: str) -> LoadedImage:
    return LoadedImage(None, row_error(code, detail))


class PixelBudget:
    """A counting semaphore over pixels: at most ``limit`` full-resolution pixels decode at once.

    An image larger than the whole budget still runs, alone (it waits until nothing else holds pixels).
    """

    def __init__(self, limit: int):
        self.limit = max(1, int(limit))
        self._used = 0
        self._cond = threading.Condition()

    def acquire(self, pixels: int) -> int:
        want = min(int(pixels), self.limit)
        with self._cond:
            while self._used + want > self.limit:
                self._cond.wait()
            self._used += want
        return want

    def release(self, taken: int) -> None:
        with self._cond:
            self._used -= taken
            self._cond.notify_all()

    @property
    def in_use(self) -> int:
        return self._used


class ImageLoader:
    """Fetches and decodes images concurrently, with size, pixel, shape and time limits from the config."""

    def __init__(self, cfg: ScoringOptions):
        self.fetcher = Fetcher(cfg)
        self.max_pixels = cfg.max_image_pixels
        self.max_aspect = cfg.max_aspect_ratio
        self.formats = _registered_formats(cfg.image_formats)
        self.frames = FrameDecoder(cfg.preprocess)
        self.budget = PixelBudget(cfg.max_pixels_in_flight)
        self.defer_jpeg = False  # set by the scorer when JPEGs are decoded on the model's device
        self.target = (224, 224)  # (height, width) the model input needs; set_target() once the model is known
        self._io_threads = cfg.io_threads
        self._decode_threads = cfg.decode_threads or min(8, os.cpu_count() or 1)
        self._io_pool: ThreadPoolExecutor | None = None
        self._decode_pool: ThreadPoolExecutor | None = None
        _fixed_mmap_threshold()
        # Pillow's own decompression-bomb check (warning above MAX_IMAGE_PIXELS, error above twice
        # that) follows ours; process-wide, as Pillow's setting is.
        Image.MAX_IMAGE_PIXELS = self.max_pixels

    def set_target(self, height: int, width: int) -> None:
        self.target = (int(height), int(width))
        self.frames.set_target(height, width)

    # ------------------------------------------------------------------------------------------
    def load_many(self, refs: Sequence[Any], reduce: Callable | Sequence[Callable] | None = None) -> list[LoadedImage]:
        """Load every reference, concurrently; the result is aligned with ``refs``.

        ``reduce`` runs on each decoded RGB frame in the decode thread (while the frame holds its
        share of the pixel budget); its result is the item's ``image``. A sequence gives one reducer
        per reference (e.g. each writing into its own slot of a batch).
        """
        if self._decode_pool is None:
            self._decode_pool = ThreadPoolExecutor(self._decode_threads, thread_name_prefix="clipscore-decode")
        reducers = list(reduce) if isinstance(reduce, (list, tuple)) else [reduce] * len(refs)
        if len(reducers) != len(refs):
            raise ValueError(f"{len(reducers)} reducers for {len(refs)} references")
        futures = []
        for ref, reduce in zip(refs, reducers):
            if isinstance(ref, str) and is_remote(ref):
                if self._io_pool is None:
                    self._io_pool = ThreadPoolExecutor(self._io_threads, thread_name_prefix="clipscore-io")
                futures.append(self._io_pool.submit(self._fetch_then_decode, ref, reduce))
            else:
                futures.append(self._decode_pool.submit(self.load, ref, reduce))
        return [f.result() for f in futures]

    def _fetch_then_decode(self, ref: str, reduce) -> LoadedImage:
        # Downloads wait on I/O threads; decoding moves to the (CPU-sized) decode pool.
        try:
            data = self.fetcher.read_bytes(ref)
        except FetchError as failed:
            return LoadedImage(None, str(failed))
        return self._decode_pool.submit(self.decode, data, reduce).result()

    def load(self, ref: Any, reduce: Callable[[Image.Image], Any] | None = None) -> LoadedImage:
        try:
            data = self.fetcher.read_bytes(ref)
        except FetchError as failed:
            return LoadedImage(None, str(failed))
        return self.decode(data, reduce)

    def close(self) -> None:
        for pool in (self._io_pool, self._decode_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._io_pool = self._decode_pool = None
        self.fetcher.close()

    # ------------------------------------------------------------------------------------------
    # Decoding
    # ------------------------------------------------------------------------------------------
    def _open(self, data: bytes) -> Image.Image | LoadedImage:
        """The image, header read and checked (nothing decoded yet), or a row error."""
        try:
            image = Image.open(io.BytesIO(data), formats=self.formats)
        except Image.DecompressionBombError as exc:
            return _fail("image_too_large", f"{exc} (limit max_image_pixels={self.max_pixels})")
        except UnidentifiedImageError:
            known = _identify_any(data)
            if known is not None and known not in self.formats:
                return _fail("image_format_not_allowed",
                             f"{known} is not in image_formats ({', '.join(self.formats)})")
            return _fail("image_undecodable", "not a recognised image format")
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a row error
            return _fail("image_undecodable", f"{type(exc).__name__}: {short(exc)}")
        width, height = image.size
        failure = None
        if width < 1 or height < 1:
            failure = _fail("image_undecodable", f"image has size {width}x{height}")
        elif width * height > self.max_pixels:
            failure = _fail("image_too_large",
                            f"{width}x{height} = {width * height} pixels (limit max_image_pixels={self.max_pixels})")
        elif max(width, height) > self.max_aspect * min(width, height):
            failure = _fail("image_aspect_ratio",
                            f"{width}x{height} has aspect ratio {max(width, height) / min(width, height):.1f} "
                            f"(limit max_aspect_ratio={self.max_aspect:g})")
        if failure is not None:
            image.close()
            return failure
        return image

    def decode(self, data: bytes, reduce: Callable[[Any], Any] | None = None) -> LoadedImage:
        """Decode the first frame to RGB (``clipscore.images.frames``), then reduce it in this thread.

        Without ``reduce`` the item's ``image`` is the RGB frame itself, a uint8 ``[3, H, W]`` tensor.
        """
        opened = self._open(data)
        if isinstance(opened, LoadedImage):
            return opened
        image = opened
        taken = 0
        try:
            facts = ImageFacts(image.size[0], image.size[1], str(image.format), len(data))
            if self.defer_jpeg and image.format in ("JPEG", "MPO") and image.mode in ("RGB", "L"):
                return LoadedImage(None, None, jpeg=data, facts=facts)  # header checked; pixels decoded later
            width, height = self.frames.frame_size(image)
            # The frame and the processor's shortest-side resize of it (S x S x aspect) share the budget.
            side = max(self.target)
            resized = side * side * max(width, height) // min(width, height)
            taken = self.budget.acquire(width * height + resized)
            frame = self.frames.decode(data, image)
            return LoadedImage(reduce(frame) if reduce is not None else frame, facts=facts)
        except Image.DecompressionBombError as exc:
            return _fail("image_too_large", str(exc))
        except OSError as exc:
            message = short(exc)
            lowered = message.lower()
            if "truncated" in lowered or "broken data stream" in lowered or "premature end" in lowered:
                return _fail("image_truncated", message)
            return _fail("image_undecodable", message)
        except Exception as exc:  # noqa: BLE001
            return _fail("image_undecodable", f"{type(exc).__name__}: {short(exc)}")
        finally:
            if taken:
                self.budget.release(taken)
            image.close()


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_MMAP_THRESHOLD_SET = False


def _fixed_mmap_threshold(threshold: int = 1 << 20) -> None:
    """Make glibc return every buffer of 1 MiB or more to the OS when it is freed (once per process).

    glibc raises its mmap threshold dynamically after a large block is freed, after which frames
    come from per-thread arenas that never shrink: with 4 decode threads, RSS kept each thread's
    largest frame (8 x 27 MB PNGs: +390 MiB instead of +147 MiB). A fixed threshold ends that.
    """
    global _MMAP_THRESHOLD_SET
    if _MMAP_THRESHOLD_SET:
        return
    _MMAP_THRESHOLD_SET = True
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, threshold)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        pass


def _registered_formats(wanted) -> tuple[str, ...]:
    """The allowed formats Pillow can open here (AVIF/HEIF need their plugins; MPO opens as JPEG)."""
    Image.init()
    try:  # pillow-heif registers HEIF/AVIF openers when installed
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:
        pass
    return tuple(f.upper() for f in wanted if f.upper() in Image.OPEN)


def _identify_any(data: bytes) -> str | None:
    """Which Pillow format the bytes are, reading the header only (never decoding), or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:  # noqa: BLE001 - not an image Pillow knows at all
        return None
