"""One typed, frozen configuration for a scoring run.

Precedence, lowest first: dataclass defaults (mirrored in ``conf/default.yaml``) < a YAML file
(``--conf``) < explicit CLI flags (``--model``, ``--input`` ...) < ``--set key=value`` overrides.

Everything is validated here, before any Spark or model work, and every message says what to change.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.util
import math
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

DEFAULT_MODEL = "openai/clip-vit-base-patch32"

INPUT_FORMATS = ("auto", "delta", "parquet", "csv", "table")
OUTPUT_FORMATS = ("delta", "parquet")
WRITE_MODES = ("overwrite", "append", "error")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
_NEVER_DECODE = ("EPS", "PS", "PDF")

# Score-affecting options: a row scored under the same values of these needs no re-scoring.
SCORE_AFFECTING = ("model", "model_revision", "precision", "preprocess", "gpu_decode")
PREPROCESS_MODES = ("exact", "fast")
# Options that were renamed or folded into another one: what to write instead.
RENAMED = {"jpeg_draft": "preprocess=fast (JPEG DCT-scaled decode, and reduced frames for other formats)"}


class ConfigError(ValueError):
    """Bad configuration: raised before any work starts, with a message that says what to change."""


@dataclass(frozen=True)
class ScoreConfig:
    # --- what to score ---------------------------------------------------------------------------
    input: str | None = None
    output: str | None = None
    input_format: str = "auto"
    output_format: str = "delta"
    mode: str = "error"
    image_col: str = "image"
    caption_col: str = "caption"
    # Relative image paths are resolved against this folder (empty: the executor's working dir).
    image_base_path: str = ""

    # --- model -----------------------------------------------------------------------------------
    model: str = DEFAULT_MODEL
    model_revision: str | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64

    # --- bands -----------------------------------------------------------------------------------
    band_edges: tuple[float, ...] = (0.15, 0.20, 0.25, 0.28, 0.30, 0.35)

    # --- image loading limits --------------------------------------------------------------------
    max_image_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 100_000_000
    # Longer side / shorter side; beyond it a row fails with image_aspect_ratio (the processor's
    # shortest-side resize would cost memory and time proportional to the ratio).
    max_aspect_ratio: float = 200.0
    # Full-resolution pixels decoding at once in one Python worker (a budget shared by the decode
    # threads); an image larger than the budget still decodes, alone.
    max_pixels_in_flight: int = 200_000_000
    # Formats Pillow may decode (Pillow format ids); never EPS/PostScript (Ghostscript).
    image_formats: tuple[str, ...] = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")
    # Characters of a caption handed to the tokenizer; far beyond what 77 tokens can use.
    max_caption_chars: int = 8192
    http_timeout_s: float = 10.0
    http_retries: int = 1
    http_max_redirects: int = 5
    http_retry_after_max_s: float = 5.0  # longest Retry-After (429/503) we wait before a retry
    # Refuse URLs whose host resolves to loopback, private, link-local or reserved addresses.
    allow_private_urls: bool = False
    # Use proxies and .netrc credentials from the environment (off: requests' trust_env=False).
    http_trust_env: bool = False
    # URL schemes read through fsspec (besides http(s) and local paths); chained URLs are refused.
    fsspec_schemes: tuple[str, ...] = ("s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "wasb", "wasbs",
                                       "hdfs", "dbfs", "oci", "oss")
    io_threads: int = 16
    decode_threads: int = 0  # 0: one per CPU core, at most 8
    prefetch_batches: int = 1
    # exact: pixels equal the model's own processor on Pillow's decode (scores within 1e-5 of the
    # reference). fast: JPEGs decoded at a reduced DCT scale and other formats box-reduced before the
    # resize; |score - exact| < 1e-3, about half the host CPU per image (benchmarks/README.md).
    preprocess: str = "exact"
    # JPEGs decoded (nvJPEG) and resized on the model's GPU; pixels differ slightly. Off by default.
    gpu_decode: bool = False

    # --- Spark -----------------------------------------------------------------------------------
    max_records_per_batch: int = 1024
    # spark.sql.execution.arrow.maxBytesPerBatch for scoring: image bytes per Arrow batch in a worker.
    max_bytes_per_batch: int = 64 * 1024 * 1024
    # Input columns not copied into the output (e.g. the image bytes, already in the source table).
    drop_columns: tuple[str, ...] = ()
    partition_by_band: bool = True
    repartition: int = 0  # 0: keep the input's partitioning

    # --- merge / incremental ---------------------------------------------------------------------
    merge_keys: tuple[str, ...] = ()
    skip_scored: bool = True
    # Rows per MERGE commit: a killed run loses at most one chunk of work and resumes from the rest.
    merge_chunk_rows: int = 1_000_000
    # Where a merge stages the rows it will score (read once from the source, then chunk by chunk).
    # Empty: a hidden sibling of a path target, else <spark.sql.warehouse.dir>/_clipscore_staging.
    merge_staging_dir: str = ""

    def __post_init__(self) -> None:
        # Built from Python, values get the same coercion as from YAML or --set: merge_keys="id" is
        # ("id",), not ("i", "d"); batch_size="8" is 8; a bad type is a ConfigError, not a late crash.
        for f in fields(self):
            value = getattr(self, f.name)
            coerced = _coerce(f.name, value)
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)
        _validate(self)

    # ---------------------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> "ScoreConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @property
    def score_fingerprint(self) -> dict[str, Any]:
        """The options that change a score; equal fingerprints mean a stored score can be reused."""
        return {key: getattr(self, key) for key in SCORE_AFFECTING}


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
) -> ScoreConfig:
    """Build a validated config: defaults < YAML file < ``overrides`` < ``--set key=value`` strings."""
    values: dict[str, Any] = {}
    if conf_path is not None:
        values.update(_read_yaml(Path(conf_path)))
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    for item in set_args or []:
        key, value = _parse_set(item)
        values[key] = value
    return config_from_mapping(values)


def config_from_mapping(values: Mapping[str, Any]) -> ScoreConfig:
    known = {f.name: f for f in fields(ScoreConfig)}
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
        kwargs[key] = _coerce(key, raw)
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


def _parse_set(item: str) -> tuple[str, Any]:
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


def _coerce(key: str, raw: Any) -> Any:
    hint = _type_hints()[key]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
                return raw.strip().lower() in ("true", "yes", "1")
            raise ValueError
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if origin is tuple:
            item_type = args[0]
            if isinstance(raw, str):
                raw = [part for part in raw.split(",") if part.strip()]
            if not isinstance(raw, (list, tuple)):
                raise ValueError
            return tuple(item_type(x) if item_type is not str else str(x).strip() for x in raw)
        if hint is str or (origin in (typing.Union, types.UnionType) and str in args):
            if raw is None:
                return None
            return str(raw)
    except (TypeError, ValueError):
        pass
    else:
        return raw
    raise ConfigError(f"Option '{key}' expects {_type_name(hint)}, got {raw!r}.")


@functools.lru_cache(maxsize=1)
def _type_hints() -> dict[str, Any]:
    return typing.get_type_hints(ScoreConfig)


def _type_name(hint: Any) -> str:
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if typing.get_origin(hint) is tuple:
        return "a list (e.g. [0.2, 0.3] or 0.2,0.3)"
    return "a string"


# -------------------------------------------------------------------------------------------------
# Validation
# -------------------------------------------------------------------------------------------------
def _choice(cfg: ScoreConfig, key: str, allowed: tuple[str, ...]) -> None:
    value = getattr(cfg, key)
    if value not in allowed:
        raise ConfigError(f"Option '{key}' must be one of {', '.join(allowed)}; got '{value}'.")


def _validate(cfg: ScoreConfig) -> None:
    _choice(cfg, "input_format", INPUT_FORMATS)
    _choice(cfg, "output_format", OUTPUT_FORMATS)
    _choice(cfg, "mode", WRITE_MODES)
    _choice(cfg, "device", DEVICES)
    _choice(cfg, "precision", PRECISIONS)
    _choice(cfg, "preprocess", PREPROCESS_MODES)
    if cfg.precision == "int8" and cfg.device == "cuda":
        raise ConfigError("precision=int8 is a CPU option (dynamic quantisation); use fp16 or bf16 with device=cuda.")
    if cfg.precision == "int8" and importlib.util.find_spec("torchao") is None:
        from clipscore.model import int8_backend  # imports torch: only for int8 configs

        if int8_backend() is None:
            raise ConfigError("precision=int8 needs torchao with this torch: pip install 'clipscore[int8]' "
                              "(or torchao), or choose precision=bf16 (CPUs with AVX512-BF16/AMX) or fp32.")
    for key in ("batch_size", "max_image_bytes", "max_image_pixels", "io_threads", "max_records_per_batch",
                "max_bytes_per_batch",
                "merge_chunk_rows", "max_pixels_in_flight", "max_caption_chars"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"Option '{key}' must be at least 1; got {getattr(cfg, key)}.")
    for key in ("decode_threads", "prefetch_batches", "http_retries", "repartition", "http_max_redirects"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"Option '{key}' must be 0 or more; got {getattr(cfg, key)}.")
    if not (cfg.http_timeout_s > 0 and math.isfinite(cfg.http_timeout_s)):
        raise ConfigError(f"Option 'http_timeout_s' must be a positive number of seconds; got {cfg.http_timeout_s}.")
    if not (cfg.max_aspect_ratio >= 1 and math.isfinite(cfg.max_aspect_ratio)):
        raise ConfigError(f"Option 'max_aspect_ratio' must be a number >= 1 (longer side / shorter side); "
                          f"got {cfg.max_aspect_ratio}.")
    if not (cfg.http_retry_after_max_s >= 0 and math.isfinite(cfg.http_retry_after_max_s)):
        raise ConfigError(f"Option 'http_retry_after_max_s' must be 0 or more seconds; got {cfg.http_retry_after_max_s}.")
    if not cfg.image_formats:
        raise ConfigError("Option 'image_formats' needs at least one Pillow format id, e.g. [JPEG, PNG, WEBP].")
    if any(f.upper() in _NEVER_DECODE for f in cfg.image_formats):
        raise ConfigError(f"Option 'image_formats' must not name {', '.join(_NEVER_DECODE)}: decoding them runs "
                          "an external interpreter (Ghostscript). Remove them from the list.")
    for scheme in cfg.fsspec_schemes:
        if not scheme.isidentifier() or scheme.lower() in ("http", "https", "file", "local"):
            raise ConfigError(f"Option 'fsspec_schemes' holds '{scheme}'; list remote filesystem schemes such as "
                              "s3, gs, abfss (http(s) and local paths are handled without fsspec).")
    edges = cfg.band_edges
    if not edges:
        raise ConfigError("Option 'band_edges' needs at least one edge, e.g. [0.2, 0.28, 0.3].")
    if any(not (-1.0 <= e <= 1.0) for e in edges):
        raise ConfigError(f"Option 'band_edges' must lie in [-1, 1] (cosine similarity); got {list(edges)}.")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"Option 'band_edges' must be strictly increasing; got {list(edges)}.")
    for key in ("image_col", "caption_col", "model"):
        if not getattr(cfg, key):
            raise ConfigError(f"Option '{key}' must not be empty.")
    if cfg.max_bytes_per_batch >= 2**31:
        raise ConfigError(f"Option 'max_bytes_per_batch' must be below 2 GiB (Spark's limit); got {cfg.max_bytes_per_batch}.")
    if set(cfg.drop_columns) & set(cfg.merge_keys):
        raise ConfigError("Options 'drop_columns' and 'merge_keys' share a column; merge keys must be kept.")
    if cfg.image_col == cfg.caption_col:
        raise ConfigError("Options 'image_col' and 'caption_col' name the same column; point them at two columns.")
