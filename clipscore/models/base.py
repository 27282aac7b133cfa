"""The interface every model family implements, and what the scoring core sees of a loaded model.

A family (CLIP, SigLIP, SigLIP2, open_clip) knows how to load its checkpoints, preprocess an image
and tokenize a caption exactly as its own library does, and how to run its two towers. The scoring
core, the UDF and the jobs only use this interface; nothing outside ``clipscore.models`` imports a
family's library.

A loaded model hands out three parts:

* ``preprocessor(gpu_decode)``: decoded RGB frames -> the model's pixel input (``ImageInput``), one
  image at a time in the decode threads, then per batch on the model's device;
* ``tokenizer(max_chars)``: captions -> the tensors its text tower takes (padding as the family
  trained: SigLIP pads every caption to a fixed length);
* ``image_features`` / ``text_features``: the towers, returning projected, not yet normalised
  embeddings. ``clipscore.scoring.encode`` chunks, moves, autocasts and normalises around them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol, Sequence  # noqa: F401

import torch

from clipscore.models.runtime import ModelKey


@dataclass(frozen=True)
class ModelInfo:
    """What the driver learns about a model before any work: its family and pinned revision."""

    family: str
    revision: str | None  # the commit the hub resolved (None for local files)
    has_probability: bool  # a sigmoid-trained model (SigLIP): a probability column besides similarity
    embedding_dim: int | None = None  # size of the unit embeddings (what a head over them must take)


class ImageInput(Protocol):
    """Decoded RGB frames (uint8 ``[3, H, W]`` tensors) -> the model's pixel input."""

    def target_size(self) -> tuple[int, int]:
        """(height, width) a frame must cover for the family's resize to only ever shrink it."""

    def new_batch(self, n: int, pinned: bool = False) -> torch.Tensor | None:
        """An empty batch that ``one(frame, out=batch[i])`` fills in place, or None (then ``one`` allocates)."""

    def one(self, frame: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """One frame -> one model-sized tensor (in the decode thread)."""

    def finish(self, pixels: torch.Tensor, device: Any = None) -> torch.Tensor:
        """A stacked batch of ``one`` outputs -> the float input of the image tower on ``device``."""


Tokenizer = Callable[[Sequence[str]], dict]


class ScoringModel:
    """One loaded model. Subclasses set ``family`` and implement the five methods below."""

    family: ClassVar[str] = ""
    # Trailing padding may be cut per length bucket: true only for causal text towers whose pooled
    # token never sees the padding after it (CLIP). SigLIP's tower is bidirectional and pools the last
    # position of a fixed-length sequence, so its captions always run at full length.
    bucket_captions: ClassVar[bool] = False
    # bf16 on a CPU: "autocast" (fp32 weights, bf16 matmuls) or "cast" (weights cast once), whichever
    # the family runs faster within runtime.BF16_MAX_ABS of fp32, by benchmarks/families.py
    # (benchmarks/results/families.json; a test keeps this choice and that measurement in step). At
    # ViT-B/32's size, cast: CLIP 2.08x fp32 (autocast 1.84x), SigLIP 1.98x (1.81x), open_clip 1.90x (1.35x).
    cpu_bf16: ClassVar[str] = "cast"

    def __init__(self, key: ModelKey, model: Any, dtype: torch.dtype, autocast: torch.dtype | None,
                 load_seconds: float):
        self.key = key
        self.model = model
        self.device = torch.device(key.device)
        self.dtype = dtype  # the dtype of the pixel input the image tower expects
        self.autocast = autocast  # run the towers under torch.autocast on the CPU (bf16)
        self.load_seconds = load_seconds

    @property
    def has_probability(self) -> bool:
        return False

    def preprocessor(self, gpu_decode: bool = False) -> ImageInput:
        raise NotImplementedError

    def tokenizer(self, max_chars: int) -> Tokenizer:
        raise NotImplementedError

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def text_features(self, **inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def probability(self, cosine: torch.Tensor) -> torch.Tensor | None:
        """sigmoid(logit_scale * cos + logit_bias) for sigmoid-trained families, else None."""
        return None

    # --- what the curation signals need (clipscore.signals) --------------------------------------
    context_length: int = 0  # text positions of the tower: a caption with more tokens is truncated

    def token_counts(self, captions: Sequence[str], max_chars: int) -> list[int]:
        """Tokens per caption with the model's own tokenizer, special tokens included, before truncation."""
        raise NotImplementedError

    def logit_scale(self) -> float:
        """exp(logit_scale): the temperature the contrastive loss trained with."""
        raise NotImplementedError

    def concept_probability(self, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """P(positive side) for cosines ``[n, P]`` and ``[n, N]``, by the family's own loss.

        Softmax families (CLIP, open_clip CLIP): the softmax over all P + N prompts of
        ``exp(logit_scale) * cos``, summed over the positive prompts (zero-shot classification as trained).
        Sigmoid families (SigLIP, SigLIP2, open_clip SigLIP): each prompt's own probability
        ``sigmoid(exp(logit_scale) * cos + logit_bias)``; the answer is ``p+ / (p+ + p-)`` with ``p+``,
        ``p-`` the best positive and negative prompt's.
        """
        if self.has_probability:
            best_positive = self.probability(positive.max(dim=1).values)
            best_negative = self.probability(negative.max(dim=1).values)
            return best_positive / (best_positive + best_negative).clamp_min(torch.finfo(best_positive.dtype).tiny)
        logits = self.logit_scale() * torch.cat([positive, negative], dim=1)
        return torch.softmax(logits, dim=1)[:, : positive.shape[1]].sum(dim=1)
