"""HTML for people: image-caption pairs with their scores, as a table of small inline thumbnails.

Pure pandas and Pillow (no Spark), so it works in a Databricks notebook (``displayHTML``), Jupyter
(``IPython.display.HTML``) or a static report. Images given as bytes or local paths are embedded as
base64 JPEG thumbnails, read with the scorer's limits; http(s) URLs are linked, not downloaded.
"""
from __future__ import annotations

import html
from typing import Any

import pandas as pd

from clipscore.images.thumbnails import data_uri, thumbnails

SCORE_COLUMNS = ("similarity", "score_band", "score_error")


def thumbnail_data_uri(image: Any, size: int = 128, base_path: str = "") -> str | None:
    """A ``data:image/jpeg;base64,...`` thumbnail of encoded bytes or a local file; None if unreadable.

    Read and decoded by the scorer's loader with its limits (``clipscore.images.thumbnails``).
    """
    if not isinstance(image, (bytes, bytearray, memoryview, str)):
        return None
    if isinstance(image, str) and image.startswith("file:"):
        image = image[len("file:"):]
    (thumb,) = thumbnails([bytes(image) if not isinstance(image, str) else image], size, image_base_path=base_path)
    return data_uri(thumb, quality=80)


def _image_cell(image: Any, size: int, base_path: str) -> str:
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        url = html.escape(image, quote=True)
        return f'<a href="{url}"><img src="{url}" style="max-width:{size}px;max-height:{size}px"></a>'
    uri = thumbnail_data_uri(image, size, base_path)
    if uri is None:
        return "<i>(no image)</i>"
    return f'<img src="{uri}" style="max-width:{size}px;max-height:{size}px">'


def pairs_html(
    pairs: pd.DataFrame,
    image_col: str = "image",
    caption_col: str = "caption",
    size: int = 128,
    base_path: str = "",
) -> str:
    """An HTML table: thumbnail, caption, similarity, band and error for each row of ``pairs``."""
    rows = []
    for _, row in pairs.iterrows():
        similarity = row.get("similarity")
        shown = "" if similarity is None or pd.isna(similarity) else f"{float(similarity):.4f}"
        cells = [
            _image_cell(row.get(image_col), size, base_path),
            html.escape(str(row.get(caption_col, ""))),
            shown,
            html.escape(str(row.get("score_band", "") or "")),
            html.escape(str(row.get("score_error", "") or "")),
        ]
        rows.append("<tr>" + "".join(f'<td style="padding:4px;vertical-align:top">{c}</td>' for c in cells) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in ("image", "caption", "similarity", "band", "error"))
    return f'<table style="border-collapse:collapse"><tr>{header}</tr>{"".join(rows)}</table>'
