"""The output columns of a run, known on the driver before any model loads (checks each model)."""
from __future__ import annotations

from clipscore.config.coerce import ConfigError
from clipscore.config.options import ScoringOptions
from clipscore.models import describe
from clipscore.models.runtime import check_precision_available
from clipscore.schema.columns import output_columns


def planned_columns(options: ScoringOptions) -> tuple[str, ...]:
    """The output columns of a run, known on the driver before any model loads (checks each model).

    Raises ``ConfigError`` when a model cannot load or ``band_column`` names a column the primary
    model does not give.
    """
    check_precision_available(options.precision)
    infos = [describe(spec.model, spec.revision) for spec in options.models]
    columns = output_columns([(spec.name, info.has_probability) for spec, info in zip(options.models, infos)],
                             options.write_embeddings)
    if options.band_column not in columns:
        raise ConfigError(f"band_column={options.band_column}, but the primary model {options.primary.model} "
                          f"({infos[0].family}) gives no {options.band_column}; use band_column=similarity or put a "
                          "SigLIP model first.")
    return columns
