"""Row facts that cost nothing in the pass: the image's header and size, the caption's length in three units."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

IMAGE_FACT_COLUMNS = ("image_width", "image_height", "image_format", "image_bytes")
CAPTION_FACT_COLUMNS = ("caption_chars", "caption_words", "caption_tokens", "caption_truncated")


def image_facts(facts: Sequence[Any]) -> dict[str, np.ndarray]:
    """Per row ``ImageFacts`` (or None: not loaded) -> the image columns (None where not loaded)."""
    out = {name: np.full(len(facts), None, dtype=object) for name in IMAGE_FACT_COLUMNS}
    for row, fact in enumerate(facts):
        if fact is not None:
            out["image_width"][row] = fact.width
            out["image_height"][row] = fact.height
            out["image_format"][row] = fact.format
            out["image_bytes"][row] = fact.nbytes
    return out


def caption_facts(captions: Sequence[Any], token_counts, context_length: int) -> dict[str, np.ndarray]:
    """Per row caption (any cell) -> the caption columns; a cell that is not text gives nulls.

    ``token_counts(texts)``: the primary model's tokens per caption, special tokens included, before
    truncation; ``caption_truncated`` is whether that exceeds the model's ``context_length``.
    Words are whitespace-separated (``str.split()``), characters are Unicode code points (``len``).
    """
    n = len(captions)
    out = {name: np.full(n, None, dtype=object) for name in CAPTION_FACT_COLUMNS}
    rows = [i for i, c in enumerate(captions) if isinstance(c, str)]
    if not rows:
        return out
    texts = [captions[i] for i in rows]
    counts = token_counts(texts)
    for row, text, tokens in zip(rows, texts, counts):
        out["caption_chars"][row] = len(text)
        out["caption_words"][row] = len(text.split())
        out["caption_tokens"][row] = int(tokens)
        out["caption_truncated"][row] = bool(tokens > context_length)
    return out
