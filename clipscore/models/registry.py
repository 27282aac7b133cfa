"""The family registry: a model name -> its family, the loader, and the driver-side check.

=========  ==========================================  =========================================
family     model names                                  library and class
=========  ==========================================  =========================================
clip       openai/clip-vit-base-patch32,               transformers ``CLIPModel`` (any CLIP
           facebook/metaclip-b32-400m, a folder        checkpoint: OpenAI, MetaCLIP, TinyCLIP)
siglip     google/siglip-base-patch16-224,             transformers ``SiglipModel`` (SigLIP, and
           google/siglip2-base-patch16-224             SigLIP2's fixed-resolution releases)
siglip2    google/siglip2-base-patch16-naflex          transformers ``Siglip2Model`` (NaFlex)
open_clip  open_clip:ViT-B-32/laion2b_s34b_b79k,       open_clip_torch
           open_clip:hf-hub:apple/DFN5B-CLIP-ViT-H-14
=========  ==========================================  =========================================

A transformers checkpoint's family is its ``config.json`` ``model_type``; ``open_clip:`` names are
open_clip's. Nothing else in clipscore branches on the family.
"""
from __future__ import annotations

import functools

from clipscore.config.coerce import ConfigError
from clipscore.models.base import ModelInfo, ScoringModel
from clipscore.models.clip import ClipFamilyModel
from clipscore.models.hf import check_processor, pinned_revision, read_config
from clipscore.models.openclip import PREFIX, OpenClipFamilyModel
from clipscore.models.openclip import describe as describe_open_clip
from clipscore.models.runtime import ModelKey
from clipscore.models.siglip import Siglip2FamilyModel, SiglipFamilyModel

_TRANSFORMERS_TYPES = {"clip": "clip", "siglip": "siglip", "siglip2": "siglip2"}
_SIGMOID_FAMILIES = ("siglip", "siglip2")


FAMILIES: dict[str, type[ScoringModel]] = {
    cls.family: cls for cls in (ClipFamilyModel, SiglipFamilyModel, Siglip2FamilyModel, OpenClipFamilyModel)}


def is_open_clip(model: str) -> bool:
    return model.startswith(PREFIX)


def family_of(model: str, revision: str | None = None) -> str:
    """The family of a model name (reads a transformers checkpoint's config.json)."""
    if is_open_clip(model):
        return "open_clip"
    model_type = getattr(read_config(model, revision), "model_type", None)
    if model_type not in _TRANSFORMERS_TYPES:
        raise ConfigError(f"Model '{model}' is a '{model_type}' checkpoint; supported: CLIP (clip), SigLIP (siglip), "
                          "SigLIP2 (siglip2) through transformers, and open_clip models as open_clip:ARCH/PRETRAINED.")
    return _TRANSFORMERS_TYPES[model_type]


def load_model(key: ModelKey) -> ScoringModel:
    """Load ``key`` with its family's own library (the loader the scorer hands ``MODEL_CACHE``: once per process)."""
    return FAMILIES[family_of(key.model, key.revision)].load(key)


@functools.lru_cache(maxsize=64)
def describe(model: str, revision: str | None = None) -> ModelInfo:
    """The driver-side check: fail fast (ConfigError) unless ``model`` is loadable with safetensors.

    Reads only config, processor and tokenizer files (or open_clip's registry); the weights load
    later, on the executors. The revision returned is the commit the hub resolved, which the jobs
    pin so that every executor loads the same weights.
    """
    if is_open_clip(model):
        return describe_open_clip(model, revision)
    config = read_config(model, revision)
    family = family_of(model, revision)
    check_processor(model, revision)
    return ModelInfo(family, pinned_revision(config, model), family in _SIGMOID_FAMILIES, embedding_dim(config, family))


def embedding_dim(config, family: str) -> int | None:
    """The unit embeddings' size, from a transformers config: CLIP's projection, SigLIP's tower width."""
    if family == "clip":
        return int(config.projection_dim)
    text = getattr(config, "text_config", None)
    size = getattr(text, "projection_size", None) or getattr(getattr(config, "vision_config", None), "hidden_size", None)
    return int(size) if size else None


def computation_version(model: str, revision: str | None = None) -> int:
    """The version of how a family computes its scores (1 unless the family changed it since tables were
    first scored: SigLIP's text side is 2). Recorded in the merge fingerprint when above 1, so a table
    scored by an older computation is scored again and other families' fingerprints never change."""
    return int(getattr(FAMILIES[describe(model, revision).family], "COMPUTATION_VERSION", 1))


def check_model_loadable(model: str, revision: str | None = None) -> str | None:
    """``describe`` for one model; returns the pinned commit (None for local files)."""
    return describe(model, revision).revision
