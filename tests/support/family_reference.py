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


# -------------------------------------------------------------------------------------------------
# SigLIP and SigLIP 2: the text side written from the training contract, not from transformers' call.
#
# big_vision trains and evaluates SigLIP with the caption normalised, tokenized by SentencePiece,
# EOS appended and kept when truncating ("sticky"), padded to the tower's fixed length, and the ids
# ALONE fed to a bidirectional transformer that pools the LAST position (text_transformer.py,
# pool_type="last"; open_clip's SigLIP configs: no_causal_mask, pool_type "last", no attention mask).
# So the reference tokenizes with the `sentencepiece` library itself, never with transformers'
# tokenizer, and runs the text tower in plain torch from the saved weights, with no mask at all.
# Normalisation: SigLIP v1, big_vision's canonicalize_text (evaluators/proj/image_text/
# prompt_engineering.py: "_" -> space, ASCII punctuation removed, lower case, whitespace collapsed);
# SigLIP 2, lower case (the model card: "trained with lowercased text"; big_vision's SigLIP 2 demo
# puts lower() before the Gemma tokenizer).
# -------------------------------------------------------------------------------------------------
def big_vision_canonicalize(text: str) -> str:
    import re
    import string

    text = text.replace("_", " ").translate(str.maketrans("", "", string.punctuation)).lower()
    return re.sub(r"\s+", " ", text).strip()


def training_contract_ids(folder: str | Path, caption: str, generation: int, length: int) -> list[int]:
    """The ids big_vision feeds: normalised text, SentencePiece pieces, sticky EOS, padded to ``length``.

    v1 pads with the EOS id (big_vision ``pad_value=1``; ``</s>`` is 1 in SigLIP's vocabulary), SigLIP 2
    with Gemma's ``<pad>`` (0).
    """
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(Path(folder) / ("spiece.model" if generation == 1 else "tokenizer.model")))
    text = big_vision_canonicalize(caption) if generation == 1 else caption.lower()
    eos = sp.eos_id()
    ids = sp.encode(text)[: length - 1] + [eos]
    pad = eos if generation == 1 else sp.pad_id()
    return ids + [pad] * (length - len(ids))


@functools.lru_cache(maxsize=8)
def _weights(folder: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(Path(folder) / "model.safetensors")).items()}


def plain_siglip_text_tower(folder: str | Path, ids: list[int]) -> torch.Tensor:
    """SigLIP's text tower in plain torch from the saved weights: embeddings + positions, pre-LN blocks
    (bidirectional attention over every position, padding included), final LayerNorm, the LAST
    position, the head. Nothing from transformers' modeling code."""
    import json

    w = _weights(str(folder))
    cfg = json.loads((Path(folder) / "config.json").read_text())["text_config"]
    heads, eps = int(cfg["num_attention_heads"]), float(cfg.get("layer_norm_eps", 1e-6))
    t = "text_model."
    x = w[t + "embeddings.token_embedding.weight"][torch.tensor(ids)] + w[t + "embeddings.position_embedding.weight"][: len(ids)]
    x = x[None]
    n_layers = 1 + max(int(k.split(".")[3]) for k in w if k.startswith(t + "encoder.layers."))

    def ln(v, name):
        return F.layer_norm(v, v.shape[-1:], w[name + ".weight"], w[name + ".bias"], eps)

    def lin(v, name):
        return F.linear(v, w[name + ".weight"], w[name + ".bias"])

    for i in range(n_layers):
        p = f"{t}encoder.layers.{i}."
        h = ln(x, p + "layer_norm1")
        b, n, d = h.shape
        q, k, v = (lin(h, p + f"self_attn.{s}_proj").view(b, n, heads, d // heads).transpose(1, 2) for s in "qkv")
        attn = torch.softmax(q @ k.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1) @ v
        x = x + lin(attn.transpose(1, 2).reshape(b, n, d), p + "self_attn.out_proj")
        h = ln(x, p + "layer_norm2")
        x = x + lin(F.gelu(lin(h, p + "mlp.fc1"), approximate="tanh"), p + "mlp.fc2")
    x = ln(x, t + "final_layer_norm")
    return lin(x[:, -1, :], t + "head")


def _reference_sigmoid_family(family: str, generation: int, folder: str | Path, image: Image.Image,
                              caption: str) -> tuple[float, float]:
    model, processor = _load_transformers(family, str(folder))
    length = int(model.config.text_config.max_position_embeddings)
    with torch.no_grad():
        image_embeds = model.get_image_features(**processor(images=image, return_tensors="pt"))
        image_embeds = getattr(image_embeds, "pooler_output", image_embeds)
        text_embeds = plain_siglip_text_tower(folder, training_contract_ids(folder, caption, generation, length))
    cosine = _cosine(image_embeds, text_embeds)
    w = _weights(str(folder))
    logit = cosine * float(w["logit_scale"].reshape(-1)[0].exp()) + float(w["logit_bias"].reshape(-1)[0])
    return cosine, float(torch.sigmoid(torch.tensor(logit, dtype=torch.float64)))


def reference_siglip(folder: str | Path, image: Image.Image, caption: str) -> tuple[float, float]:
    """(cosine, sigmoid probability) of a SigLIP v1 ``SiglipModel`` folder, its text as big_vision feeds it."""
    return _reference_sigmoid_family("siglip", 1, folder, image, caption)


def reference_siglip2(folder: str | Path, image: Image.Image, caption: str) -> tuple[float, float]:
    """(cosine, sigmoid probability) of a SigLIP 2 NaFlex ``Siglip2Model`` folder (Gemma tokenizer, lower case)."""
    return _reference_sigmoid_family("siglip2", 2, folder, image, caption)


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
