"""The columns a scoring run adds, from its models: one place for the core, the UDF and the jobs.

One model: ``similarity`` (cosine of the two embeddings), plus ``probability`` for sigmoid-trained
families (SigLIP: sigmoid(exp(logit_scale) * cos + logit_bias)). Several models: the primary's (the
first) under those names, and every model's under ``similarity_<name>``/``probability_<name>``.
Then ``score_band`` (the bands of the primary's ``band_column``) and ``score_error``.
"""
from __future__ import annotations

from typing import Sequence

PRIMARY_COLUMNS = ("similarity", "probability")
STATUS_COLUMNS = ("score_band", "score_error")
ALL_MODEL_COLUMN_PREFIXES = ("similarity_", "probability_")


def score_columns(models: Sequence[tuple[str, bool]]) -> tuple[str, ...]:
    """Float score columns in output order, for (name, has_probability) per model, primary first."""
    (primary, primary_probability), *_ = models
    columns = ["similarity", *(["probability"] if primary_probability else [])]
    if len(models) > 1:
        for name, probability in models:
            columns += [f"similarity_{name}", *([f"probability_{name}"] if probability else [])]
    return tuple(columns)


def output_columns(models: Sequence[tuple[str, bool]]) -> tuple[str, ...]:
    return (*score_columns(models), *STATUS_COLUMNS)


def planned_columns(options) -> tuple[str, ...]:
    """The output columns of a run, known on the driver before any model loads (checks each model).

    Raises ``ConfigError`` when a model cannot load or ``band_column`` names a column the primary
    model does not give.
    """
    from clipscore.coerce import ConfigError
    from clipscore.families import describe

    infos = [describe(spec.model, spec.revision) for spec in options.models]
    columns = output_columns([(spec.name, info.has_probability) for spec, info in zip(options.models, infos)])
    if options.band_column not in columns:
        raise ConfigError(f"band_column={options.band_column}, but the primary model {options.primary.model} "
                          f"({infos[0].family}) gives no {options.band_column}; use band_column=similarity or put a "
                          "SigLIP model first.")
    return columns


def is_score_column(name: str) -> bool:
    """Whether a column is one a scoring run writes (replaced when a table is scored again)."""
    return name in PRIMARY_COLUMNS or name in STATUS_COLUMNS or name.startswith(ALL_MODEL_COLUMN_PREFIXES)
