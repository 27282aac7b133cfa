"""Model families behind one interface, and what runs them.

* ``base``: ``ScoringModel`` (load, preprocessor, tokenizer, towers, probability) and ``ModelInfo``;
* ``registry``: a model name -> its family (``clip``, ``siglip``, ``siglip2``, ``open_clip``), ``load_model``, ``describe``;
* ``clip``, ``siglip``, ``openclip`` (and ``hf``, the transformers families' loading): one module per family;
* ``preprocess``: a transformers processor's image steps and tokenizer; ``runtime``: device, precision, int8;
  ``cache``: the per-process model cache (given its loader by the caller).
"""
from clipscore.models.base import ImageInput, ModelInfo, ScoringModel, Tokenizer
from clipscore.models.registry import (FAMILIES, check_model_loadable, computation_version, describe, family_of,
                                       is_open_clip, load_model)

__all__ = ["FAMILIES", "ImageInput", "ModelInfo", "ScoringModel", "Tokenizer", "check_model_loadable",
           "computation_version", "describe", "family_of", "is_open_clip", "load_model"]
