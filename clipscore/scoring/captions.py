"""Caption checks: the reason a caption cannot be scored (null, not text, empty or blank), before any tokenizer."""
from __future__ import annotations

from typing import Any

from clipscore.schema.errors import row_error


def caption_error(caption: Any) -> str | None:
    """A reason when a caption cannot be scored (null, not text, empty or blank), else None."""
    if caption is None or (isinstance(caption, float) and caption != caption):
        return row_error("caption_null", "the caption cell is null")
    if not isinstance(caption, str):
        return row_error("caption_bad_type", f"expected text, got {type(caption).__name__}")
    if not caption.strip():
        return row_error("caption_empty", "the caption is empty or blank")
    return None
