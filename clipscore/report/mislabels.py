"""Where the report's sample matrix and likely mislabels come from, on numpy and pandas (no Spark).

In order of preference (``clipscore.jobs.report.sample_and_mislabels`` picks what the table allows):

* the matrix: the table's stored embeddings of the sampled rows (``stored_matrix``), else the sample
  re-embedded with the table's model (``clipscore.report.sample.similarity_matrix``);
* the mislabels: the table's own ``suggested_caption`` column (``from_suggestions``), else the sample's
  images against the table's distinct captions by stored embeddings (``ranked_by_gain`` of what
  ``clipscore.retrieval.suggest`` found), else the sample's images against the sample's own captions
  (``clipscore.report.sample.likely_mislabels``).

Each returns its result with the note the page shows about where it came from.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from clipscore.report.sample import SampleMatrix, likely_mislabels

MISLABEL_COLUMNS = ("own_score", "suggested_caption", "suggested_score")
NO_MATRIX_NOTE = "no model recorded for this table and no stored embeddings: pass --model to re-embed the sample"
NO_MISLABELS_NOTE = "none: no suggested_caption column, no stored embeddings and no model"


def no_mislabels(image_col: str, caption_col: str) -> pd.DataFrame:
    return pd.DataFrame(columns=[image_col, caption_col, *MISLABEL_COLUMNS])


def stored_matrix(sample: pd.DataFrame, images: np.ndarray, with_image: np.ndarray, texts: np.ndarray,
                  with_text: np.ndarray, drop: list[str], seed: int) -> tuple[SampleMatrix, np.ndarray, str]:
    """(the matrix, the rows' image embeddings, the note) from the sample's decoded stored embeddings.

    ``images``/``texts`` hold the rows at positions ``with_image``/``with_text`` (sorted); rows with both
    are kept, without the ``drop`` columns (the embedding cells).
    """
    both = np.intersect1d(with_image, with_text)
    sample_images, texts = images[np.searchsorted(with_image, both)], texts[np.searchsorted(with_text, both)]
    rows = sample.iloc[both].drop(columns=drop).reset_index(drop=True)
    note = (f"{len(rows)} rows sampled with seed {seed}, from the table's stored embeddings; "
            "the diagonal is each row's own pair")
    return SampleMatrix(rows, sample_images @ texts.T), sample_images, note


def reembedded_note(matrix: SampleMatrix, seed: int, model: str) -> str:
    return (f"{len(matrix.rows)} rows sampled with seed {seed}, re-embedded with {model}; "
            "the diagonal is each row's own pair")


def from_suggestions(best: pd.DataFrame, score_col: str) -> tuple[pd.DataFrame, str]:
    """The table's best ``suggested_caption`` rows (``clipscore suggest``), in the report's columns."""
    found = best.rename(columns={score_col: "own_score", "suggested_similarity": "suggested_score"})
    return found, ("Rows of the whole table that clipscore suggest gave a better caption (its suggested_caption "
                   "column), largest gain first.")


def ranked_by_gain(rows: pd.DataFrame, own: np.ndarray, text: np.ndarray, score: np.ndarray, pool: int,
                   distinct: int, margin: float) -> tuple[pd.DataFrame, str]:
    """Rows with a suggested caption (``text`` not null), largest gain over ``own`` first."""
    hit = np.flatnonzero(pd.notna(text))
    hit = hit[np.argsort(-(score[hit] - own[hit]))]
    found = rows.iloc[hit].assign(own_score=own[hit], suggested_caption=text[hit],
                                  suggested_score=score[hit]).reset_index(drop=True)
    return found, (f"Sampled rows whose image is closer to another caption of the table ({pool:,} of its "
                   f"{distinct:,} distinct captions, by stored embeddings) than to its own, by more than "
                   f"{margin:g}; that caption is the suggestion.")


def within_sample(matrix: SampleMatrix, caption_col: str, margin: float) -> tuple[pd.DataFrame, str]:
    """The sample's rows where another sampled caption beats their own (``likely_mislabels``)."""
    return likely_mislabels(matrix, caption_col, margin), (
        f"Sampled rows where another sampled caption scores higher than the row's own by more than "
        f"{margin:g}; that caption is the suggestion.")
