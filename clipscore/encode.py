"""Stage 3: pixel tensors and token ids to unit-length CLIP embeddings.

Runs the towers exactly as ``CLIPModel.forward`` does (tower -> pooled output -> projection), under
``torch.inference_mode``, in model-sized chunks, and returns float32 embeddings normalised in float32
whatever the model's precision.
"""
from __future__ import annotations

import torch

from clipscore.model import ClipBundle


class ClipEncoder:
    def __init__(self, bundle: ClipBundle, batch_size: int):
        self.model = bundle.model
        self.device = bundle.device
        self.dtype = bundle.dtype
        self.batch_size = batch_size
        self._non_blocking = self.device.type == "cuda"

    @torch.inference_mode()
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, len(pixel_values), self.batch_size):
            chunk = pixel_values[start : start + self.batch_size]
            chunk = chunk.to(self.device, dtype=self.dtype, non_blocking=self._non_blocking)
            pooled = self.model.vision_model(pixel_values=chunk).pooler_output
            out.append(self.model.visual_projection(pooled))
        return _normalise(torch.cat(out)) if out else torch.empty(0)

    @torch.inference_mode()
    def embed_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, len(input_ids), self.batch_size):
            ids = input_ids[start : start + self.batch_size].to(self.device, non_blocking=self._non_blocking)
            mask = attention_mask[start : start + self.batch_size].to(self.device, non_blocking=self._non_blocking)
            pooled = self.model.text_model(input_ids=ids, attention_mask=mask).pooler_output
            out.append(self.model.text_projection(pooled))
        return _normalise(torch.cat(out)) if out else torch.empty(0)


def _normalise(embeddings: torch.Tensor) -> torch.Tensor:
    embeddings = embeddings.float()
    return embeddings / embeddings.norm(p=2, dim=-1, keepdim=True)


def cosine_rows(image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                image_index: torch.Tensor, text_index: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of pair i = image_embeds[image_index[i]] . text_embeds[text_index[i]] (on CPU)."""
    image_rows = image_embeds.index_select(0, image_index.to(image_embeds.device))
    text_rows = text_embeds.index_select(0, text_index.to(text_embeds.device))
    return (image_rows * text_rows).sum(dim=-1).cpu()
