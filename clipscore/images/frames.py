"""Stage 1b: encoded image bytes (header already checked) -> one RGB frame, uint8 ``[3, H, W]``.

Two modes (``ScoringOptions.preprocess``):

``exact``
    The reference's pixels: the first frame of ``Image.open(...).convert("RGB")``. RGB and grayscale
    JPEGs (most of a web crawl) are decoded by libjpeg-turbo through simplejpeg straight into a
    numpy array, which Pillow does with the same library and settings (bit-identical, tested) but
    then copies into its own image memory and back out again (0.66 CPU-ms per 1024x768 frame).
    CMYK/YCCK JPEGs and every other format go through Pillow.
``fast``
    JPEGs are decoded at the smallest DCT scale (k/8) whose frame still covers the model input on
    both sides; other formats are decoded in full and then box-reduced by an integer factor while
    the frame stays at least twice the model input (Pillow's "reducing gap" of 2, after which the
    resize is indistinguishable from a direct one). Scores move by less than 1e-3 (measured and
    tested); the frames, and what the resize does with them, are smaller.

Whenever simplejpeg refuses a file (libjpeg warnings count, as ``strict``), Pillow decodes it, so
what a damaged file costs and which reason it gets are Pillow's, as in the reference.
"""
from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image

from clipscore.config.choices import PREPROCESS_MODES

try:  # libjpeg-turbo into numpy; without it every JPEG goes through Pillow (same pixels, slower)
    import simplejpeg
except ImportError:  # pragma: no cover - a declared dependency
    simplejpeg = None

_JPEG_FORMATS = ("JPEG", "MPO")  # an MPO's first frame is a plain JPEG at the start of the file
_REDUCING_GAP = 2
# Pillow's arrays are read-only views of a fresh copy; frames are only ever read (resize makes new
# tensors), so torch's warning about it would be noise, and a second copy a waste.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


class FrameDecoder:
    """Decodes checked images to RGB frames for a model input of ``min_height`` x ``min_width``."""

    def __init__(self, mode: str, min_height: int = 224, min_width: int = 224):
        if mode not in PREPROCESS_MODES:
            raise ValueError(f"preprocess mode must be one of {PREPROCESS_MODES}, got {mode!r}")
        self.fast = mode == "fast"
        self.min_height = int(min_height)
        self.min_width = int(min_width)

    def set_target(self, min_height: int, min_width: int) -> None:
        self.min_height, self.min_width = int(min_height), int(min_width)

    # ------------------------------------------------------------------------------------------
    def frame_size(self, image: Image.Image) -> tuple[int, int]:
        """(width, height) of the largest frame ``decode`` holds for this (opened, unloaded) image."""
        width, height = image.size
        if self.fast and image.format in _JPEG_FORMATS:
            eighths = self._dct_eighths(width, height)
            return _scaled(width, eighths), _scaled(height, eighths)
        return width, height

    def decode(self, data: bytes, image: Image.Image) -> torch.Tensor:
        """The RGB frame of ``image`` (opened from ``data``, header checked), as a uint8 CHW tensor."""
        if simplejpeg is not None and image.format in _JPEG_FORMATS and image.mode in ("RGB", "L"):
            array = self._decode_jpeg(data, image.size)
            if array is not None:
                return _chw(array)
        if self.fast and image.format in _JPEG_FORMATS:
            width, height = image.size
            eighths = self._dct_eighths(width, height)
            # Pillow's own DCT scaling offers 1/2, 1/4, 1/8 only: it picks the largest that fits this size.
            image.draft("RGB", (_scaled(width, eighths), _scaled(height, eighths)))
        image.load()
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if self.fast:
            factor = self._reduce_factor(*rgb.size)
            if factor > 1:
                rgb = rgb.reduce(factor)
        return _chw(np.asarray(rgb))

    # ------------------------------------------------------------------------------------------
    def _decode_jpeg(self, data: bytes, size: tuple[int, int]) -> np.ndarray | None:
        kwargs: dict[str, Any] = {}
        if self.fast:
            kwargs = {"min_height": min(self.min_height, size[1]), "min_width": min(self.min_width, size[0])}
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, **kwargs)
        except (ValueError, RuntimeError, OSError):
            return None  # Pillow decides (and names the error, if there is one)

    def _dct_eighths(self, width: int, height: int) -> int:
        """The smallest DCT scale k/8 whose frame still covers the model input on both sides (8: none smaller)."""
        for k in range(1, 8):
            if (_scaled(width, k) >= min(self.min_width, width)
                    and _scaled(height, k) >= min(self.min_height, height)):
                return k
        return 8

    def _reduce_factor(self, width: int, height: int) -> int:
        return max(1, min(width // (_REDUCING_GAP * self.min_width), height // (_REDUCING_GAP * self.min_height)))


def _scaled(side: int, eighths: int) -> int:
    return -(-side * eighths // 8)  # libjpeg rounds a scaled side up


def _chw(array: np.ndarray) -> torch.Tensor:
    """HWC (or HW) uint8 array -> CHW tensor view (channels-last in memory, as ``pil_to_tensor`` gives)."""
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return torch.from_numpy(array).permute(2, 0, 1)


def open_reference_rgb(data: bytes) -> np.ndarray:
    """The reference decode (Pillow, first frame, RGB) as an HWC array: what ``exact`` must equal."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))
