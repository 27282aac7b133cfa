"""Batched JPEG decode on the model's device (``gpu_decode``): nvJPEG on CUDA, libjpeg-turbo on the CPU."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from clipscore.schema.errors import row_error


class JpegDecoder:
    """Batched JPEG decode with torchvision on the model's device: nvJPEG on CUDA, libjpeg-turbo on CPU.

    Used only with ``gpu_decode`` (pixels differ slightly from PIL's decode). A batch that fails is
    decoded one image at a time, so one bad file gives one row error, not a lost batch.
    """

    def __init__(self, device: Any):
        self.device = device

    def __call__(self, encoded: Sequence[bytes]) -> list[tuple[Any, str | None]]:
        from torchvision.io import ImageReadMode, decode_jpeg

        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in encoded]
        try:
            return [(image, None) for image in decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)]
        except Exception:  # noqa: BLE001 - find the culprit(s) one by one
            pass
        out: list[tuple[Any, str | None]] = []
        for item in data:
            try:
                out.append((decode_jpeg(item, mode=ImageReadMode.RGB, device=self.device), None))
            except Exception as exc:  # noqa: BLE001 - a data error, not a code error
                out.append((None, row_error("image_undecodable", f"JPEG decode failed: {str(exc).strip()[:200]}")))
        return out
