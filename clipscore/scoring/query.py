"""A search query embedded once, with the model a table was scored with (no Spark).

The query goes through the scorer's own steps (the image loader with its limits, the model's
preprocessing, its tokenizer, the encoder), so a query image or text lands in the same space as the
stored ``image_embedding``/``text_embedding`` of the rows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from clipscore.config.coerce import ConfigError
from clipscore.config.options import ScoringOptions
from clipscore.scoring.captions import caption_error
from clipscore.scoring.scorer import PairScorer

PLACEHOLDER_CAPTION = "an image"  # pairs an image query with some text so the scorer's prepare() accepts it


def embed_query(options: ScoringOptions, text: str | None = None, image=None) -> np.ndarray:
    """The unit-length float32 embedding of one text or one image (bytes, path or URL) with the primary model.

    Raises ``ConfigError`` with the reason when the text is blank or the image cannot be read: a
    query is configuration, not data, so it fails before any table is scanned.
    """

    if (text is None) == (image is None):
        raise ConfigError("A search needs exactly one query: --text \"...\" or --image PATH_OR_URL.")
    caption = text if text is not None else PLACEHOLDER_CAPTION
    scorer = PairScorer.from_config(options)
    try:
        run = scorer.primary
        if text is not None:

            reason = caption_error(text)
            if reason:
                raise ConfigError(f"The --text query cannot be embedded: {reason}.")
            embedded = run.encoder.embed_texts(**run.tokenize([caption]))
        else:
            prepared = scorer.prepare(pd.Series([image], dtype=object), pd.Series([caption]))
            if prepared.errors[0] is not None:
                raise ConfigError(f"The --image query {str(image)[:200]!r} cannot be read: {prepared.errors[0]}.")
            embedded = run.encoder.embed_images(prepared.pixel_values[0], run.preprocess.finish)
    finally:
        scorer.close()
    return embedded[0].float().numpy()
