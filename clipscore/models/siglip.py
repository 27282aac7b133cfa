"""SigLIP and SigLIP2 through transformers, with the text side fed exactly as the models trained.

* ``siglip`` (``SiglipModel``): SigLIP, and SigLIP2's fixed-resolution releases
  (google/siglip2-*-patch16-224 ...), which ship as ``SiglipModel`` with a Gemma tokenizer.
* ``siglip2`` (``Siglip2Model``): SigLIP2's NaFlex releases, whose processor keeps the aspect ratio
  and cuts each image into at most ``max_num_patches`` patches (padded, with a mask).

The text tower as trained (big_vision ``text_transformer.py``; open_clip's SigLIP configs say the
same: ``no_causal_mask``, ``pool_type: last``): the caption normalised, tokenized, EOS appended and
kept when truncating, padded to the tower's fixed length, and the **ids alone** fed to a
bidirectional transformer that pools the last position. The padding is part of what the model
saw: transformers 5's tokenizers also return an ``attention_mask``, and passing it on (what
``model(**processor(text=...))`` does) masks that padding and moves the cosine by up to 0.5 on
short captions. So only ``input_ids`` reach the tower here.

Normalisation as trained, by text generation (read from the tokenizer, since SigLIP2's fixed-resolution
releases are ``siglip`` checkpoints with SigLIP2's text side):

* SigLIP v1 (``SiglipTokenizer``, SentencePiece): big_vision's ``canonicalize_text`` ("_" becomes a
  space, ASCII punctuation removed, lower case, whitespace collapsed). transformers' tokenizer does
  all of it but the "_" (it drops the underscore, joining the words), so we canonicalize first.
* SigLIP2 (Gemma tokenizer): lower case, as the model card says it trained; the Gemma tokenizer
  keeps case, so we lower it. Punctuation is kept (big_vision's SigLIP2 demo lowercases only;
  open_clip's SigLIP2 configs also strip punctuation, a choice of theirs we do not copy).

Long captions are truncated to the fixed length with EOS kept last (the model card's call would fail
on them). ``probability`` is what the sigmoid loss trains: sigmoid(exp(logit_scale) * cos +
logit_bias), ``logits_per_image`` through a sigmoid, the model card's "probabilities".

``COMPUTATION_VERSION`` names this computation in the merge fingerprint, so tables scored by the
masked computation (version 1, before it) are scored again.
"""
from __future__ import annotations

import math
import re
import string
from typing import Any, Callable

import torch

from clipscore.models.base import ImageInput, Tokenizer
from clipscore.models.hf import TransformersModel
from clipscore.models.preprocess import CaptionTokenizer

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_SPACES = re.compile(r"\s+")


def canonicalize(text: str) -> str:
    """big_vision's ``canonicalize_text`` (evaluators/proj/image_text/prompt_engineering.py), SigLIP v1's text."""
    return _SPACES.sub(" ", text.replace("_", " ").translate(_PUNCTUATION).lower()).strip()


def lowercase(text: str) -> str:
    """SigLIP2's text: lower case (the model card: "trained with lowercased text")."""
    return text.lower()


def text_normaliser(tokenizer: Any) -> Callable[[str], str]:
    """The normalisation a checkpoint's text tower trained on, from its tokenizer's generation."""
    return canonicalize if type(tokenizer).__name__.startswith("Siglip") else lowercase


class SiglipFamilyModel(TransformersModel):
    family = "siglip"
    bucket_captions = False
    model_class = "SiglipModel"
    padding = "max_length"
    COMPUTATION_VERSION = 2  # 2: ids only, normalised as trained; 1 (unrecorded): with transformers' mask

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._scale = float(self.model.logit_scale.float().exp())
        self._bias = float(self.model.logit_bias.float())

    @property
    def has_probability(self) -> bool:
        return True

    def tokenizer(self, max_chars: int) -> Tokenizer:
        tokenizer = self.processor.tokenizer
        return CaptionTokenizer(tokenizer, self.max_length, max_chars, padding="max_length", keys=("input_ids",),
                                normalise=text_normaliser(tokenizer))

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.vision_model(pixel_values=pixels.to(self.dtype)).pooler_output

    def text_features(self, input_ids: torch.Tensor) -> torch.Tensor:
        # The ids alone: no attention mask, as trained (see the module docstring).
        return self.model.text_model(input_ids=input_ids).pooler_output

    def probability(self, cosine: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(cosine * self._scale + self._bias)


class Siglip2FamilyModel(SiglipFamilyModel):
    family = "siglip2"
    model_class = "Siglip2Model"

    def preprocessor(self, gpu_decode: bool = False) -> ImageInput:
        return PatchPreprocessor(self.processor.image_processor)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        values, mask, shapes = PatchPreprocessor.unpack(pixels)
        return self.model.vision_model(pixel_values=values.to(self.dtype), pixel_attention_mask=mask,
                                       spatial_shapes=shapes).pooler_output


class PatchPreprocessor:
    """SigLIP2 NaFlex: the processor's own per-image call, its three outputs packed in one tensor.

    An image becomes ``[max_num_patches, D + 3]`` float32: the patch values, then the patch mask
    and the (rows, columns) patch grid repeated on every row (small integers, exact in float32), so
    the scoring core batches, indexes and moves it like any fixed-size pixel tensor.
    """

    def __init__(self, image_processor: Any):
        self.image_processor = image_processor

    def target_size(self) -> tuple[int, int]:
        # A frame whose sides both cover patch * sqrt(max patches) covers every aspect ratio's grid.
        p = self.image_processor
        side = int(p.patch_size * math.ceil(math.sqrt(p.max_num_patches)))
        return side, side

    def new_batch(self, n: int, pinned: bool = False) -> torch.Tensor | None:
        return None

    def one(self, frame: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        encoded = self.image_processor(images=[frame.cpu()], return_tensors="pt", input_data_format="channels_first")
        values = encoded["pixel_values"][0].float()
        n = values.shape[0]
        mask = encoded["pixel_attention_mask"][0].float().reshape(n, 1)
        shapes = encoded["spatial_shapes"][0].float().reshape(1, 2).expand(n, 2)
        return torch.cat([values, mask, shapes], dim=1)

    def finish(self, pixels: torch.Tensor, device: Any = None) -> torch.Tensor:
        return pixels.to(device) if device is not None else pixels

    @staticmethod
    def unpack(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        values = packed[..., :-3]
        mask = packed[..., -3].round().long()
        shapes = packed[:, 0, -2:].round().long()
        return values, mask, shapes
