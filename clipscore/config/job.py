"""The run configuration: scoring options (the core's) plus job options (the jobs'), flat as YAML.

Precedence, lowest first: dataclass defaults (mirrored in ``conf/default.yaml``) < a YAML file
(``--conf``; the packaged ``conf/default.yaml`` when none is given, from the CLI and from Python
alike) < explicit CLI flags (``--model``, ``--input`` ...) < ``--set key=value`` overrides. The model
selection is one setting across layers: a layer that sets ``model`` replaces a lower layer's
``models`` and the other way round.

Everything is validated here, before any Spark or model work, and every message says what to change.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from clipscore.config.coerce import ConfigError, choice, coerce_fields, coerce_value, type_hints
from clipscore.config.durations import parse_duration
from clipscore.config.choices import (  # noqa: F401 - re-exported: the names users import from here
    BAND_COLUMNS, DEVICES, INPUT_FORMATS, OUTPUT_FORMATS, PRECISIONS, PREPROCESS_MODES, WRITE_MODES)
from clipscore.config.options import DEFAULT_MODEL, ModelSpec, ScoringOptions  # noqa: F401 - re-exported

# Options that were renamed or folded into another one: what to write instead.
RENAMED = {"jpeg_draft": "preprocess=fast (JPEG DCT-scaled decode, and reduced frames for other formats)"}
_MODEL_KEYS = ("model", "model_revision")


@dataclass(frozen=True)
class JobOptions:
    """What only the jobs take: where to read and write, formats, Spark batching, merge."""

    input: str | None = None
    output: str | None = None
    input_format: str = "auto"
    output_format: str = "delta"
    mode: str = "error"
    image_col: str = "image"
    caption_col: str = "caption"

    # --- Spark -----------------------------------------------------------------------------------
    max_records_per_batch: int = 1024
    # spark.sql.execution.arrow.maxBytesPerBatch for scoring: image bytes per Arrow batch in a worker.
    max_bytes_per_batch: int = 64 * 1024 * 1024
    # Input columns not copied into the output (e.g. the image bytes, already in the source table).
    drop_columns: tuple[str, ...] = ()
    partition_by_band: bool = True
    repartition: int = 0  # 0: keep the input's partitioning
    # Size the written files aim at: the scored table (one band per task) and the merge's staging.
    target_file_mb: int = 128

    # --- merge / incremental ---------------------------------------------------------------------
    merge_keys: tuple[str, ...] = ()
    skip_scored: bool = True
    # Rows per MERGE commit: a killed run loses at most one chunk of work and resumes from the rest.
    merge_chunk_rows: int = 1_000_000
    # Where a merge stages the rows it will score (read once from the source, then chunk by chunk).
    # Empty: a hidden sibling of a path target, else <spark.sql.warehouse.dir>/_clipscore_staging.
    merge_staging_dir: str = ""
    # A staging folder left by a killed run is removed by a later run once nothing in it changed for this long.
    staging_stale_after: str = "1d"

    def __post_init__(self) -> None:
        coerce_fields(self)
        validate_job(self)

    @property
    def job(self) -> "JobOptions":
        if type(self) is JobOptions:
            return self
        return JobOptions(**{f.name: getattr(self, f.name) for f in fields(JobOptions)})


@dataclass(frozen=True)
class ScoreConfig(ScoringOptions, JobOptions):
    """A whole run, flat as YAML and the CLI spell it: ``.scoring`` for the core, ``.job`` for the jobs."""

    def __post_init__(self) -> None:
        # Built from Python, values get the same coercion as from YAML or --set: merge_keys="id" is
        # ("id",), not ("i", "d"); batch_size="8" is 8; a bad type is a ConfigError, not a late crash.
        ScoringOptions.__post_init__(self)
        validate_job(self)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["models"] = [dataclasses.asdict(m) for m in self.models]
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out


# -------------------------------------------------------------------------------------------------
# Loading
# -------------------------------------------------------------------------------------------------
def default_config_path() -> Path:
    from importlib.resources import files

    return Path(str(files("clipscore.conf").joinpath("default.yaml")))


def load_config(
    conf_path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    set_args: list[str] | None = None,
    *,
    defaults: bool = True,
) -> ScoreConfig:
    """A validated config: defaults < YAML file < ``overrides`` < ``--set key=value`` strings.

    Without ``conf_path`` the packaged ``conf/default.yaml`` is read, as the CLI does
    (``defaults=False`` skips it).
    """
    values: dict[str, Any] = {}
    if conf_path is None and defaults:
        conf_path = default_config_path()
    if conf_path is not None:
        _layer(values, _read_yaml(Path(conf_path)))
    _layer(values, {k: v for k, v in (overrides or {}).items() if v is not None})
    for item in set_args or []:
        _layer(values, dict([parse_set(item)]))
    return config_from_mapping(values)


def _layer(values: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """Apply one precedence layer; ``model`` and ``models`` replace each other across layers."""
    if layer.get("models") not in (None, [], ()):
        for key in _MODEL_KEYS:
            values.pop(key, None)
    if layer.get("model") is not None:
        values.pop("models", None)
    values.update(layer)


def config_from_mapping(values: Mapping[str, Any]) -> ScoreConfig:
    known = {f.name for f in fields(ScoreConfig)}
    hints = type_hints(ScoreConfig)
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        if key in RENAMED:
            raise ConfigError(f"Option '{key}' was replaced: use {RENAMED[key]}.")
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
            raise ConfigError(
                f"Unknown option '{key}'.{suggestion} Known options: {', '.join(sorted(known))}."
            )
        kwargs[key] = coerce_value(key, hints[key], raw)
    return ScoreConfig(**kwargs)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"Config file '{path}' does not exist. Pass --conf with a YAML file, e.g. conf/default.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file '{path}' is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file '{path}' must hold a mapping of option: value, got {type(data).__name__}.")
    return data


def parse_set(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got '{item}'. Example: --set batch_size=32")
    key, raw = item.split("=", 1)
    key = key.strip()
    # YAML parsing gives numbers, booleans, null and lists ("[0.2, 0.3]") their natural types.
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


# -------------------------------------------------------------------------------------------------
# Validation
# -------------------------------------------------------------------------------------------------
def validate_job(opts: JobOptions) -> None:
    choice(opts, "input_format", INPUT_FORMATS)
    choice(opts, "output_format", OUTPUT_FORMATS)
    choice(opts, "mode", WRITE_MODES)
    for key in ("max_records_per_batch", "max_bytes_per_batch", "merge_chunk_rows", "target_file_mb"):
        if getattr(opts, key) < 1:
            raise ConfigError(f"Option '{key}' must be at least 1; got {getattr(opts, key)}.")
    parse_duration(opts.staging_stale_after, "Option 'staging_stale_after'")
    if opts.repartition < 0:
        raise ConfigError(f"Option 'repartition' must be 0 or more; got {opts.repartition}.")
    for key in ("image_col", "caption_col"):
        if not getattr(opts, key):
            raise ConfigError(f"Option '{key}' must not be empty.")
    if opts.max_bytes_per_batch >= 2**31:
        raise ConfigError(f"Option 'max_bytes_per_batch' must be below 2 GiB (Spark's limit); got {opts.max_bytes_per_batch}.")
    if set(opts.drop_columns) & set(opts.merge_keys):
        raise ConfigError("Options 'drop_columns' and 'merge_keys' share a column; merge keys must be kept.")
    if opts.image_col == opts.caption_col:
        raise ConfigError("Options 'image_col' and 'caption_col' name the same column; point them at two columns.")
