"""clipscore: score image-caption pairs with CLIP-family models, from pandas or on Spark.

The core (this package) imports no Spark. Its sub-packages are its layers, bottom up: ``schema``
(error categories, columns, bands), ``config`` (options), ``io`` (bytes of a reference), ``images``
(frames), ``models`` (families, runtime, cache), ``scoring`` (the scorer), then ``retrieval``,
``report`` and ``training`` side by side, and ``devtools`` (offline fixtures). ``clipscore.udfs``
and ``clipscore.jobs`` adapt it to Spark. docs/architecture.md has the data flow.
"""
__version__ = "0.1.0"

from clipscore import _moved  # noqa: E402
from clipscore.config import ConfigError, ScoreConfig, ScoringOptions, load_config  # noqa: E402

_moved.install()  # the import paths from before the layers (clipscore.scorer ...), with a warning


def __getattr__(name: str):
    """``clipscore.score_pandas`` and ``clipscore.PairScorer`` without importing torch at ``import clipscore``."""
    if name in ("score_pandas", "PairScorer"):
        from clipscore.scoring import scorer

        return getattr(scorer, name)
    raise AttributeError(f"module 'clipscore' has no attribute {name!r}")


__all__ = ["__version__", "ConfigError", "PairScorer", "ScoreConfig", "ScoringOptions", "load_config", "score_pandas"]
