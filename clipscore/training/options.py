"""``TrainOptions``: what ``clipscore train`` and ``run_train`` take, coerced and validated on construction."""
from __future__ import annotations

import math
from dataclasses import dataclass

from clipscore.config.choices import INPUT_FORMATS
from clipscore.config.coerce import ConfigError, Options, choice, coerce_fields



@dataclass(frozen=True)
class TrainOptions(Options):
    # --- data ------------------------------------------------------------------------------------
    input: str | None = None
    output: str | None = None  # the model folder written at the end (safetensors, processor, card)
    input_format: str = "auto"
    image_col: str = "image"
    caption_col: str = "caption"
    image_base_path: str = ""
    val_fraction: float = 0.1  # rows held out (by a hash of image and caption) for validation
    # Where the staged crops and the checkpoints go ("": <output>.clipscore-train/): a path every
    # training process can read, kept until the run finishes so a killed run resumes from it.
    work_dir: str = ""

    # --- model -----------------------------------------------------------------------------------
    # A saved CLIP folder (fine-tune) or a folder with config.json, processor and tokenizer files but
    # no weights (train from scratch with that config).
    init: str | None = None

    # --- optimisation ----------------------------------------------------------------------------
    epochs: int = 10
    batch_size: int = 128  # per process; InfoNCE runs over the batch gathered from every process
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05  # linear warm-up, then cosine decay to zero
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200  # optimiser steps between checkpoints (and one per epoch)

    # --- processes -------------------------------------------------------------------------------
    num_processes: int = 1  # TorchDistributor processes: one per GPU, or CPU processes with gloo
    use_gpu: bool = False
    # TorchDistributor local_mode: processes on the driver node (true) or as a barrier stage on the
    # executors (false, a GPU cluster).
    local_mode: bool = True
    torch_threads: int = 0  # intra-op threads per process (0: cores / processes)

    def __post_init__(self) -> None:
        coerce_fields(self)
        choice(self, "input_format", INPUT_FORMATS)
        for key in ("epochs", "batch_size", "num_processes", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"Option '{key}' must be at least 1; got {getattr(self, key)}.")
        if self.batch_size < 2:
            raise ConfigError("Option 'batch_size' must be at least 2: contrastive training needs negatives.")
        if not (0 < self.val_fraction < 1):
            raise ConfigError(f"Option 'val_fraction' must be between 0 and 1 (exclusive); got {self.val_fraction}.")
        for key in ("lr", "weight_decay", "warmup_fraction", "max_grad_norm"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0) or (key == "lr" and value == 0):
                raise ConfigError(f"Option '{key}' must be a finite number >= 0 (lr > 0); got {value}.")
        if self.torch_threads < 0:
            raise ConfigError("Option 'torch_threads' must be 0 (auto) or more.")
        if self.image_col == self.caption_col:
            raise ConfigError("Options 'image_col' and 'caption_col' name the same column; point them at two columns.")

