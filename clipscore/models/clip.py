"""CLIP through transformers: ``CLIPModel`` checkpoints (OpenAI CLIP, MetaCLIP, TinyCLIP, fine-tunes).

Runs the towers exactly as ``CLIPModel.forward`` does (tower -> pooled output -> projection). The
text tower is causal and pools the end-of-text token, so trailing padding never reaches it and the
encoder may cut captions per length bucket.
"""
from __future__ import annotations

import torch

from clipscore.models.hf import TransformersModel


class ClipFamilyModel(TransformersModel):
    family = "clip"
    bucket_captions = True
    model_class = "CLIPModel"

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.visual_projection(self.model.vision_model(pixel_values=pixels.to(self.dtype)).pooler_output)

    def text_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.model.text_projection(self.model.text_model(**inputs).pooler_output)
