"""clipscore: score image-caption pairs with CLIP, from pandas or on Spark.

The scoring core (this package) imports no Spark; ``clipscore.udfs`` and ``clipscore.jobs`` adapt it to
Spark. See README.md, "Architecture", for the stages in data-flow order.
"""
__version__ = "0.1.0"

from clipscore.config import ConfigError, ScoreConfig, load_config  # noqa: E402

__all__ = ["__version__", "ConfigError", "ScoreConfig", "load_config"]
