"""Zero-shot concepts on the primary model: prompts embedded once per scorer, one matrix product per batch.

``concept_<name>``: with a list of prompts, the maximum cosine of the row's unit image embedding with
the prompts' unit text embeddings; with ``{positive, negative}``, the family's probability of the
positive side (``ScoringModel.concept_probability``: softmax with CLIP's logit scale, sigmoid with
SigLIP's scale and bias). No image-tower work beyond the pass's own.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from clipscore.config.signals import ConceptSpec


def concept_column(name: str) -> str:
    return f"concept_{name}"


class ConceptBank:
    """The prompts of every concept, embedded with ``embed_texts`` (the primary model's text path) once."""

    def __init__(self, concepts: Sequence[ConceptSpec], embed_texts: Callable[[list[str]], torch.Tensor], model):
        self.concepts = tuple(concepts)
        self.model = model
        prompts = sorted({p for c in self.concepts for p in (*c.positive, *c.negative)})
        self.index = {p: i for i, p in enumerate(prompts)}
        self.embeddings = embed_texts(prompts).float().cpu() if prompts else torch.empty(0)

    def columns(self) -> tuple[str, ...]:
        return tuple(concept_column(c.name) for c in self.concepts)

    @torch.inference_mode()
    def scores(self, image_embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unit image embeddings ``[m, D]`` -> one float32 ``[m]`` tensor per concept column."""
        cos = image_embeds.float().cpu() @ self.embeddings.T  # [m, prompts]
        out = {}
        for concept in self.concepts:
            positive = cos[:, [self.index[p] for p in concept.positive]]
            if not concept.contrast:
                out[concept_column(concept.name)] = positive.max(dim=1).values
            else:
                negative = cos[:, [self.index[p] for p in concept.negative]]
                out[concept_column(concept.name)] = self.model.concept_probability(positive, negative).float()
        return out
