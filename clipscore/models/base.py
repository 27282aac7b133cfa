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
from typing import Any, Callable, ClassVar, Protocol, Sequence

import torch

from clipscore.models.runtime import ModelKey


@dataclass(frozen=True)
class ModelInfo:
    """What the driver learns about a model before any work: its family and pinned revision."""

    family: str
    revision: str | None  # the commit the hub resolved (None for local files)
    has_probability: bool  # a sigmoid-trained model (SigLIP): a probability column besides similarity


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
