"""Scoring options: what the scoring core and the UDF take (models, device, precision, limits, bands).

Job options (input, output, formats, Spark, merge) live in ``clipscore.config.job``; ``ScoreConfig``
there is both together, flat, as the YAML file and the command line spell them. Building a
``ScoringOptions`` or a ``ModelSpec`` from Python coerces and validates exactly as that path does.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from clipscore.config.choices import (BAND_COLUMNS, DEVICES, EMBEDDING_DTYPES, EMBEDDING_FORMATS, PRECISIONS,
                                       PREPROCESS_MODES, SIGNAL_GROUPS)
from clipscore.config.coerce import ConfigError, Options, choice, coerce_fields
from clipscore.config.signals import ConceptSpec, HeadSpec

DEFAULT_MODEL = "openai/clip-vit-base-patch32"

_NEVER_DECODE = ("EPS", "PS", "PDF")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class ModelSpec:
    """One model of a run: a short ``name`` (its column suffix), the model, and a hub revision.

    ``model`` is a Hugging Face id or local folder (CLIP, SigLIP, SigLIP2: the family is read from
    its config.json) or ``open_clip:ARCH/PRETRAINED`` (see ``clipscore.models.open_clip``).
    """

    model: str
    name: str = ""
    revision: str | None = None

    def __post_init__(self) -> None:
        coerce_fields(self)
        if not self.model or not self.model.strip():
            raise ConfigError("A model entry has an empty model; give a Hugging Face id, a folder or open_clip:ARCH/TAG.")
        if not self.name:
            object.__setattr__(self, "name", default_name(self.model))
        if not _NAME.match(self.name):
            raise ConfigError(f"Model name '{self.name}' must be lower-case letters, digits and _, starting with a "
                              "letter (it becomes the column suffix, e.g. similarity_b32).")

    @classmethod
    def coerce(cls, value: Any) -> "ModelSpec":
        """From a ``ModelSpec``, ``"name=model"``, ``"model"`` or ``{model, name, revision}``."""
        if isinstance(value, ModelSpec):
            return value
        if isinstance(value, str):
            name, sep, model = value.partition("=")
            if sep and re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name.strip()) and model.strip():
                return cls(model=model.strip(), name=name.strip())
            return cls(model=value.strip())
        if isinstance(value, dict):
            unknown = set(value) - {"model", "name", "revision"}
            if unknown or "model" not in value:
                raise ConfigError(f"A models entry takes model, name and revision; got {sorted(value)}.")
            return cls(**value)
        raise ConfigError(f"A models entry must be 'name=model', 'model' or a mapping; got {value!r}.")

    @staticmethod
    def type_name() -> str:
        return "a list of models ('name=model', 'model' or {model, name, revision})"


def default_name(model: str) -> str:
    """A column-safe short name from a model id: openai/clip-vit-base-patch32 -> clip_vit_base_patch32."""
    text = model.split(":", 1)[1] if model.startswith("open_clip:") else model
    hub_only = text.startswith("hf-hub:")  # open_clip:hf-hub:org/name: the repo names the model
    parts = [p for p in re.split(r"[\\/]", text.replace("hf-hub:", "")) if p]
    if model.startswith("open_clip:") and len(parts) > 1:
        tail = parts[-1].rsplit(".", 1)[0] if parts[-1].endswith(".safetensors") else parts[-1]
        text = parts[-1] if hub_only else f"{parts[0]}_{tail}"
    else:
        text = parts[-1] if parts else text
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not slug or not slug[0].isalpha():
        slug = f"m_{slug}".rstrip("_")
    return slug[:48]


@dataclass(frozen=True)
class ScoringOptions(Options):
    # --- models ----------------------------------------------------------------------------------
    # One model: ``model`` (+ ``model_revision``). Several: ``models``; the first is the primary,
    # which fills ``similarity`` (and ``probability``), the bands and the partitioning.
    model: str | None = None
    model_revision: str | None = None
    models: tuple[ModelSpec, ...] = ()
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 64

    # --- bands -----------------------------------------------------------------------------------
    band_edges: tuple[float, ...] = (0.15, 0.20, 0.25, 0.28, 0.30, 0.35)
    # The primary model's column the bands cut: similarity (cosine) or probability (SigLIP families).
    band_column: str = "similarity"

    # --- image loading limits --------------------------------------------------------------------
    # Relative image paths are resolved against this folder (empty: the executor's working dir).
    image_base_path: str = ""
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
    # exact: pixels equal each model's own processor on Pillow's decode (scores within 1e-5 of the
    # reference). fast: JPEGs decoded at a reduced DCT scale and other formats box-reduced before the
    # resize; |score - exact| < 1e-3, about half the host CPU per image (benchmarks/README.md).
    preprocess: str = "exact"
    # JPEGs decoded (nvJPEG) and resized on the model's GPU; pixels differ slightly. Off by default.
    gpu_decode: bool = False
    # Also write each scored row's unit-length image and text embeddings (from the same forward pass):
    # embedding_format array (array<float>, what every lakehouse reader takes) or binary16/binary32
    # (little-endian cells: 2 or 4 bytes per dimension; "binary" uses embedding_dtype).
    write_embeddings: bool = False
    embedding_format: str = "array"
    embedding_dtype: str = "float16"

    # --- curation signals from the same pass (docs/curation.md) ----------------------------------
    # Row facts, opt-in by group: image (size, format, bytes), caption (chars, words, tokens,
    # truncated), language (caption_language, caption_language_score), phash (image_phash).
    signals: tuple[str, ...] = ()
    # Zero-shot concepts on the primary model: {name: [prompts]} or {name: {positive: [...], negative: [...]}}.
    concepts: tuple[ConceptSpec, ...] = ()
    # Small MLPs over the primary model's unit image embedding: {name: path/to/head.safetensors}.
    heads: tuple[HeadSpec, ...] = ()

    def __post_init__(self) -> None:
        coerce_fields(self)
        _resolve_models(self)
        validate_scoring(self)

    def replace(self, **changes: Any):
        """A copy with ``changes``; setting ``model`` replaces ``models`` and the other way round."""
        if ("model" in changes or "model_revision" in changes) and "models" not in changes:
            changes = {"models": (), "model_revision": self.model_revision, **changes}
            if "model" not in changes:
                changes["model"] = self.model
        elif "models" in changes and "model" not in changes:
            changes = {"model": None, "model_revision": None, **changes}
        return dataclasses.replace(self, **changes)

    @property
    def scoring(self) -> "ScoringOptions":
        """These options alone (a ``ScoreConfig`` gives its scoring part; the core takes this)."""
        if type(self) is ScoringOptions:
            return self
        return ScoringOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ScoringOptions)})

    @property
    def primary(self) -> ModelSpec:
        return self.models[0]

    @property
    def multi_model(self) -> bool:
        return len(self.models) > 1


def _resolve_models(opts: ScoringOptions) -> None:
    """After this, ``models`` holds every model and ``model``/``model_revision`` mirror the primary."""
    if opts.models:
        first = opts.models[0]
        if opts.model is not None and (opts.model != first.model or opts.model_revision not in (None, first.revision)):
            raise ConfigError("Set either 'model' (one model) or 'models' (several), not both; the first of "
                              "'models' is the primary.")
        if opts.model is None and opts.model_revision is not None:
            raise ConfigError("'model_revision' goes with 'model'; with 'models' give each entry its own revision.")
        models = opts.models
    else:
        models = (ModelSpec(model=opts.model or DEFAULT_MODEL, revision=opts.model_revision),)
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"Model names must differ (they name the columns); '{duplicates[0]}' is used twice. "
                          "Name them: --model b32=openai/clip-vit-base-patch32 --model l14=...")
    object.__setattr__(opts, "models", tuple(models))
    object.__setattr__(opts, "model", models[0].model)
    object.__setattr__(opts, "model_revision", models[0].revision)


def validate_scoring(opts: ScoringOptions) -> None:
    choice(opts, "device", DEVICES)
    choice(opts, "precision", PRECISIONS)
    choice(opts, "preprocess", PREPROCESS_MODES)
    choice(opts, "band_column", BAND_COLUMNS)
    choice(opts, "embedding_dtype", EMBEDDING_DTYPES)
    choice(opts, "embedding_format", EMBEDDING_FORMATS)
    if opts.embedding_format in ("binary16", "binary32"):  # one spelling: binary + the dtype
        object.__setattr__(opts, "embedding_dtype", "float16" if opts.embedding_format == "binary16" else "float32")
        object.__setattr__(opts, "embedding_format", "binary")
    if opts.precision == "int8" and opts.device == "cuda":
        raise ConfigError("precision=int8 is a CPU option (dynamic quantisation); use fp16 or bf16 with device=cuda.")
    for key in ("batch_size", "max_image_bytes", "max_image_pixels", "io_threads", "max_pixels_in_flight",
                "max_caption_chars"):
        if getattr(opts, key) < 1:
            raise ConfigError(f"Option '{key}' must be at least 1; got {getattr(opts, key)}.")
    for key in ("decode_threads", "prefetch_batches", "http_retries", "http_max_redirects"):
        if getattr(opts, key) < 0:
            raise ConfigError(f"Option '{key}' must be 0 or more; got {getattr(opts, key)}.")
    if not (opts.http_timeout_s > 0 and math.isfinite(opts.http_timeout_s)):
        raise ConfigError(f"Option 'http_timeout_s' must be a positive number of seconds; got {opts.http_timeout_s}.")
    if not (opts.max_aspect_ratio >= 1 and math.isfinite(opts.max_aspect_ratio)):
        raise ConfigError(f"Option 'max_aspect_ratio' must be a number >= 1 (longer side / shorter side); "
                          f"got {opts.max_aspect_ratio}.")
    if not (opts.http_retry_after_max_s >= 0 and math.isfinite(opts.http_retry_after_max_s)):
        raise ConfigError(f"Option 'http_retry_after_max_s' must be 0 or more seconds; got {opts.http_retry_after_max_s}.")
    if not opts.image_formats:
        raise ConfigError("Option 'image_formats' needs at least one Pillow format id, e.g. [JPEG, PNG, WEBP].")
    if any(f.upper() in _NEVER_DECODE for f in opts.image_formats):
        raise ConfigError(f"Option 'image_formats' must not name {', '.join(_NEVER_DECODE)}: decoding them runs "
                          "an external interpreter (Ghostscript). Remove them from the list.")
    for scheme in opts.fsspec_schemes:
        if not scheme.isidentifier() or scheme.lower() in ("http", "https", "file", "local"):
            raise ConfigError(f"Option 'fsspec_schemes' holds '{scheme}'; list remote filesystem schemes such as "
                              "s3, gs, abfss (http(s) and local paths are handled without fsspec).")
    _validate_bands(opts)
    _validate_signals(opts)


def _validate_signals(opts: ScoringOptions) -> None:
    unknown = [g for g in opts.signals if g not in SIGNAL_GROUPS]
    if unknown:
        raise ConfigError(f"Option 'signals' has unknown group(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(SIGNAL_GROUPS)} (e.g. signals: [image, caption, language, phash]).")
    if len(set(opts.signals)) != len(opts.signals):
        object.__setattr__(opts, "signals", tuple(dict.fromkeys(opts.signals)))
    for kind, items in (("concept", opts.concepts), ("head", opts.heads)):
        names = [item.name for item in items]
        if len(set(names)) != len(names):
            raise ConfigError(f"Two {kind}s share a name in {names}; each becomes a column {kind}_<name>.")


def _validate_bands(opts: ScoringOptions) -> None:
    edges = opts.band_edges
    low, what = (0.0, "probability") if opts.band_column == "probability" else (-1.0, "cosine similarity")
    if not edges:
        raise ConfigError("Option 'band_edges' needs at least one edge, e.g. [0.2, 0.28, 0.3].")
    if any(not (low <= e <= 1.0) for e in edges):
        raise ConfigError(f"Option 'band_edges' must lie in [{low:g}, 1] ({what}); got {list(edges)}.")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ConfigError(f"Option 'band_edges' must be strictly increasing; got {list(edges)}.")
