"""Small previews of image cells for people (reports, notebooks), read and decoded with the scorer's limits.

Bytes, paths and URLs all go through ``ImageLoader``: the same size, pixel, aspect-ratio and format
limits, the same address guard and deadline, so a preview can never cost more than scoring the row.
"""
from __future__ import annotations

import base64
import io
from typing import Any, Sequence

from clipscore.config.options import ScoringOptions
from clipscore.images.loader import ImageLoader


def thumbnails(refs: Sequence[Any], size: int = 160, options: ScoringOptions | None = None,
               image_base_path: str = "") -> list:
    """PIL thumbnails (at most ``size`` pixels a side) of image cells, aligned with ``refs``; None if unreadable.

    ``options`` gives the limits (default: the scorer's defaults on the CPU, with ``image_base_path``).
    """
    from PIL import Image

    options = options or ScoringOptions(image_base_path=image_base_path, device="cpu")
    loader = ImageLoader(options)
    try:
        loaded = loader.load_many(list(refs))
    finally:
        loader.close()
    out = []
    for item in loaded:
        if item.image is None:
            out.append(None)
            continue
        image = Image.fromarray(item.image.permute(1, 2, 0).numpy())
        image.thumbnail((size, size))
        out.append(image)
    return out


def data_uri(png_or_image: Any, quality: int = 85) -> str | None:
    """PNG bytes (a figure) or a PIL image (a thumbnail, as JPEG) as a ``data:`` URI; None stays None."""
    if png_or_image is None:
        return None
    if isinstance(png_or_image, bytes):
        return "data:image/png;base64," + base64.b64encode(png_or_image).decode("ascii")
    buffer = io.BytesIO()
    png_or_image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
