"""CLIP through transformers: ``CLIPModel`` checkpoints (OpenAI CLIP, MetaCLIP, TinyCLIP, fine-tunes).

Runs the towers exactly as ``CLIPModel.forward`` does (tower -> pooled output -> projection). The
text tower is causal and pools the end-of-text token, so trailing padding never reaches it and the
encoder may cut captions per length bucket.
"""
from __future__ import annotations

import torch

from clipscore.families.base import ImageInput, ScoringModel, Tokenizer
from clipscore.families.hf import load_pretrained
from clipscore.model import ModelKey
from clipscore.preprocess import CaptionTokenizer, ImagePreprocessor


class ClipFamilyModel(ScoringModel):
    family = "clip"
    bucket_captions = True

    def __init__(self, key: ModelKey, model, processor, dtype, autocast, load_seconds: float):
        super().__init__(key, model, dtype, autocast, load_seconds)
        self.processor = processor
        self.max_length = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def load(cls, key: ModelKey) -> "ClipFamilyModel":
        from transformers import CLIPModel

        return cls(key, *load_pretrained(key, CLIPModel))

    def preprocessor(self, gpu_decode: bool = False) -> ImageInput:
        return ImagePreprocessor(self.processor.image_processor, self.device if gpu_decode else None,
                                 normalise_in_one=self.device.type == "cpu")

    def tokenizer(self, max_chars: int) -> Tokenizer:
        return CaptionTokenizer(self.processor.tokenizer, self.max_length, max_chars, padding="longest")

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.visual_projection(self.model.vision_model(pixel_values=pixels.to(self.dtype)).pooler_output)

    def text_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.model.text_projection(self.model.text_model(**inputs).pooler_output)
