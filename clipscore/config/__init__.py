"""Options, coerced and validated on construction, for the core and for the jobs.

* ``coerce``: ``ConfigError``, one coercion for YAML, flags and Python, and ``Options`` (the base of every option object);
* ``options``: ``ScoringOptions`` (what the core and the UDF take) and ``ModelSpec``;
* ``job``: ``JobOptions`` (input/output, Spark, merge), ``ScoreConfig`` (both, flat as YAML) and ``load_config``.
"""
from clipscore.config.coerce import ConfigError
from clipscore.config.job import JobOptions, ScoreConfig, config_from_mapping, default_config_path, load_config, parse_set
from clipscore.config.options import ModelSpec, ScoringOptions

__all__ = ["ConfigError", "JobOptions", "ModelSpec", "ScoreConfig", "ScoringOptions", "config_from_mapping",
           "default_config_path", "load_config", "parse_set"]
