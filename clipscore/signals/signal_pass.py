"""``SignalPass``: the curation signals of one scorer, computed where the pass already holds their inputs.

The scorer calls it at three points: in the decode thread with each frame (``frame_signal``: the
pHash), once per batch with the rows' captions and image facts (``row_columns``: facts, language),
and with the primary model's unit image embeddings (``embedding_columns``: concepts, heads). Each
column is null where its input is missing: an image fact needs only the image, a caption fact only
the caption (a row with a bad caption still gets its image facts, and the other way round).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from clipscore.config.options import ScoringOptions
from clipscore.schema.columns import signal_columns
from clipscore.signals.concepts import ConceptBank
from clipscore.signals.facts import caption_facts, image_facts
from clipscore.signals.heads import Head, head_column
from clipscore.signals.language import language_columns
from clipscore.signals.phash import PHASH_COLUMN, phash_hex


class SignalPass:
    def __init__(self, options: ScoringOptions, primary: Any):
        """``primary``: the scorer's primary ``ModelRun`` (its model, tokenizer and encoder)."""
        self.groups = frozenset(options.signals)
        self.columns = signal_columns(options.signals, [c.name for c in options.concepts], [h.name for h in options.heads])
        self.max_chars = options.max_caption_chars
        self.model = primary.model
        self.concepts = None
        if options.concepts:
            self.concepts = ConceptBank(options.concepts,
                                        lambda prompts: primary.encoder.embed_texts(**primary.tokenize(prompts)),
                                        primary.model)
        self.heads = [(head.name, Head(head.path)) for head in options.heads]

    @property
    def active(self) -> bool:
        return bool(self.columns)

    @property
    def phash(self) -> bool:
        return "phash" in self.groups

    @property
    def needs_every_image(self) -> bool:
        """Image signals are wanted for rows whose caption is bad too: load their images as well."""
        return bool(self.groups & {"image", "phash"}) or self.needs_embeddings

    @property
    def needs_embeddings(self) -> bool:
        return self.concepts is not None or bool(self.heads)

    # --- in the decode thread ------------------------------------------------------------------
    def frame_signal(self, frame: torch.Tensor) -> str | None:
        return phash_hex(frame) if self.phash else None

    # --- per batch -------------------------------------------------------------------------------
    def row_columns(self, captions: Sequence[Any], facts: Sequence[Any], hashes: Sequence[str | None]) -> dict:
        out: dict[str, np.ndarray] = {}
        if "image" in self.groups:
            out.update(image_facts(facts))
        if "caption" in self.groups:
            out.update(caption_facts(captions, lambda texts: self.model.token_counts(texts, self.max_chars),
                                     self.model.context_length))
        if "language" in self.groups:
            out.update(language_columns(captions))
        if self.phash:
            out[PHASH_COLUMN] = np.array(list(hashes), dtype=object)
        return out

    def embedding_columns(self, n: int, rows: np.ndarray, image_embeds: torch.Tensor | None) -> dict:
        """``image_embeds[i]`` is row ``rows[i]``'s unit image embedding (primary model); others stay null."""
        names = [*(self.concepts.columns() if self.concepts else ()), *(head_column(h) for h, _ in self.heads)]
        out = {name: np.full(n, np.nan, dtype=np.float32) for name in names}
        if image_embeds is None or not len(rows):
            return out
        values: dict[str, torch.Tensor] = dict(self.concepts.scores(image_embeds)) if self.concepts else {}
        for name, head in self.heads:
            values[head_column(name)] = head(image_embeds)
        for name, tensor in values.items():
            column = tensor.float().cpu().numpy()
            column[~np.isfinite(column)] = np.nan
            out[name][rows] = column
        return out
