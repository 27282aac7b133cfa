"""Stage 2: images to pixel tensors, captions to token ids, with the model's own processor.

We call the same ``CLIPImageProcessor`` and tokenizer that ``CLIPProcessor.from_pretrained`` builds,
but on a whole batch at once (the torchvision backend groups same-size images and resizes them as
one tensor), which is what keeps scores equal to the one-pair-at-a-time reference.
"""
from __future__ import annotations

from typing import Any, Sequence

from PIL import Image


class ImagePreprocessor:
    def __init__(self, image_processor: Any):
        self.image_processor = image_processor

    def __call__(self, images: Sequence[Image.Image]):
        """RGB images -> float32 ``[N, 3, H, W]`` on CPU (resize, centre crop, rescale, normalise)."""
        # PIL images always become channels-first tensors; saying so avoids a guess on 1xN images.
        return self.image_processor(
            images=list(images), return_tensors="pt", input_data_format="channels_first"
        )["pixel_values"]


class CaptionTokenizer:
    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, captions: Sequence[str]) -> dict:
        """Captions -> ``input_ids``/``attention_mask``, padded to the batch's longest, truncated to the model."""
        encoded = self.tokenizer(
            list(captions),
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def caption_error(caption: Any) -> str | None:
    """A reason when a caption cannot be scored (null, not text, empty or blank), else None."""
    if caption is None or (isinstance(caption, float) and caption != caption):
        return "caption_null: the caption cell is null"
    if not isinstance(caption, str):
        return f"caption_bad_type: expected text, got {type(caption).__name__}"
    if not caption.strip():
        return "caption_empty: the caption is empty or blank"
    return None
