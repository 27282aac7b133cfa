"""Fidelity references for the tests: score ONE (image, caption) pair the way each family's library documents it.

Not a test module. Each function loads the model folder with the family's own classes and follows its
model card, in fp32, with ``model.eval()`` and ``torch.no_grad()``; clipscore's results are compared with
these. Loading is cached per folder, so repeated calls in a test session stay cheap.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image


def _cosine(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> float:
    return float(F.cosine_similarity(image_embeds, text_embeds, dim=-1)[0])


@functools.lru_cache(maxsize=8)
def _load_transformers(family: str, folder: str):
    import transformers

    model_class, processor_class = {
        "clip": (transformers.CLIPModel, transformers.CLIPProcessor),
        "siglip": (transformers.SiglipModel, transformers.SiglipProcessor),
        "siglip2": (transformers.Siglip2Model, transformers.Siglip2Processor),
    }[family]
    model = model_class.from_pretrained(folder, dtype=torch.float32).eval()
    return model, processor_class.from_pretrained(folder)


def reference_clip(folder: str | Path, image: Image.Image, caption: str) -> float:
    """Cosine of ``CLIPModel``'s ``image_embeds`` and ``text_embeds`` for the pair."""
    model, processor = _load_transformers("clip", str(folder))
    inputs = processor(text=[caption], images=image, return_tensors="pt", padding=True, truncation=True,
                       max_length=model.config.text_config.max_position_embeddings)
    with torch.no_grad():
        outputs = model(**inputs)
    return _cosine(outputs.image_embeds, outputs.text_embeds)


def reference_siglip(folder: str | Path, image: Image.Image, caption: str) -> tuple[float, float]:
    """(cosine, sigmoid probability) from ``SiglipModel``, text padded to ``max_length`` as the model card does.

    Plus ``truncation=True``, which the card leaves out: without it a caption longer than the text positions
    makes the model raise; it changes nothing for a caption that fits.
    """
    model, processor = _load_transformers("siglip", str(folder))
    inputs = processor(text=[caption], images=image, padding="max_length", truncation=True, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    return _cosine(outputs.image_embeds, outputs.text_embeds), float(torch.sigmoid(outputs.logits_per_image)[0, 0])


def reference_siglip2(folder: str | Path, image: Image.Image, caption: str) -> tuple[float, float]:
    """(cosine, sigmoid probability) from ``Siglip2Model``, text padded to the model's text positions."""
    model, processor = _load_transformers("siglip2", str(folder))
    inputs = processor(text=[caption], images=image, padding="max_length", truncation=True,
                       max_length=model.config.text_config.max_position_embeddings, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    return _cosine(outputs.image_embeds, outputs.text_embeds), float(torch.sigmoid(outputs.logits_per_image)[0, 0])


@functools.lru_cache(maxsize=8)
def _load_open_clip(name: str, pretrained: str | None):
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, precision="fp32")
    return model.eval(), preprocess, open_clip.get_tokenizer(name)


def reference_open_clip(spec_or_folder: str | Path, image: Image.Image, caption: str,
                        pretrained: str | None = None) -> tuple[float, float | None]:
    """(cosine, sigmoid probability or None) from an open_clip model, as its README scores a pair.

    ``spec_or_folder``: a model folder (loaded as ``local-dir:``), a ``local-dir:``/``hf-hub:`` spec, or an
    architecture name with ``pretrained`` (a tag or a checkpoint file). The probability needs ``logit_bias``
    (SigLIP-style models); plain CLIP models give None.
    """
    name = str(spec_or_folder)
    if os.path.isdir(name):
        name = f"local-dir:{name}"
    model, preprocess, tokenizer = _load_open_clip(name, pretrained)
    with torch.no_grad():
        image_features = model.encode_image(preprocess(image)[None])
        text_features = model.encode_text(tokenizer([caption]))
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        cosine = float((image_features * text_features).sum(dim=-1)[0])
        if getattr(model, "logit_bias", None) is None:
            return cosine, None
        logit = cosine * model.logit_scale.exp() + model.logit_bias
    return cosine, float(torch.sigmoid(logit).flatten()[0])
