"""SigLIP and SigLIP2 through transformers.

* ``siglip`` (``SiglipModel``): SigLIP, and SigLIP2's fixed-resolution releases
  (google/siglip2-*-patch16-224 ...), which ship as ``SiglipModel`` with a Gemma tokenizer.
* ``siglip2`` (``Siglip2Model``): SigLIP2's NaFlex releases, whose processor keeps the aspect ratio
  and cuts each image into at most ``max_num_patches`` patches (padded, with a mask).

Both towers end in their own heads (no separate projection). Captions are padded to the text
tower's fixed length, as the model cards say and as SigLIP trained: the tower is bidirectional
and pools the last position, so no caption is ever cut to a shorter bucket. Long captions are
truncated to that length (the model card's call would fail on them). ``probability`` is what the
sigmoid loss trains: sigmoid(exp(logit_scale) * cos + logit_bias), ``logits_per_image`` through a
sigmoid, the model card's "probabilities".
"""
from __future__ import annotations

import math
from typing import Any

import torch

from clipscore.families.base import ImageInput
from clipscore.families.hf import TransformersModel


class SiglipFamilyModel(TransformersModel):
    family = "siglip"
    bucket_captions = False
    model_class = "SiglipModel"
    padding = "max_length"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._scale = float(self.model.logit_scale.float().exp())
        self._bias = float(self.model.logit_bias.float())

    @property
    def has_probability(self) -> bool:
        return True

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.vision_model(pixel_values=pixels.to(self.dtype)).pooler_output

    def text_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.model.text_model(**inputs).pooler_output

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
