"""Stage 2: images to pixel tensors, captions to token ids, with the model's own processor.

We call the same ``CLIPImageProcessor`` and tokenizer that ``CLIPProcessor.from_pretrained`` builds,
but on a whole batch at once (the torchvision backend groups same-size images and resizes them as
one tensor), which is what keeps scores equal to the one-pair-at-a-time reference.
"""
from __future__ import annotations

from typing import Any, Sequence

from clipscore.errors import row_error



class ImagePreprocessor:
    def __init__(self, image_processor: Any, device: Any = None):
        self.image_processor = image_processor
        # Only with gpu_decode: resize on the model's device too (torchvision backend only).
        self.device = device

    def __call__(self, images: Sequence[Any]):
        """RGB images (PIL, or CHW uint8 tensors) -> float32 ``[N, 3, H, W]`` (resize, crop, normalise)."""
        # PIL images always become channels-first tensors; saying so avoids a guess on 1xN images.
        kwargs = {"device": self.device} if self.device is not None else {}
        return self.image_processor(
            images=list(images), return_tensors="pt", input_data_format="channels_first", **kwargs
        )["pixel_values"]

    def one(self, image: Any):
        """One RGB image -> float32 ``[3, H, W]`` on the CPU, in the thread that decoded it.

        The processor treats each image of a batch independently, so this equals the batched call
        (tested); calling it per image lets the full-resolution frame go right after decoding.
        """
        return self.image_processor(
            images=[image], return_tensors="pt", input_data_format="channels_first"
        )["pixel_values"][0]


class JpegDecoder:
    """Batched JPEG decode with torchvision on the model's device: nvJPEG on CUDA, libjpeg-turbo on CPU.

    Used only with ``gpu_decode`` (pixels differ slightly from PIL's decode). A batch that fails is
    decoded one image at a time, so one bad file gives one row error, not a lost batch.
    """

    def __init__(self, device: Any):
        self.device = device

    def __call__(self, encoded: Sequence[bytes]) -> list[tuple[Any, str | None]]:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in encoded]
        try:
            return [(image, None) for image in decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)]
        except Exception:  # noqa: BLE001 - find the culprit(s) one by one
            pass
        out: list[tuple[Any, str | None]] = []
        for item in data:
            try:
                out.append((decode_jpeg(item, mode=ImageReadMode.RGB, device=self.device), None))
            except Exception as exc:  # noqa: BLE001 - a data error, not a code error
                out.append((None, row_error("image_undecodable", f"JPEG decode failed: {str(exc).strip()[:200]}")))
        return out


class CaptionTokenizer:
    def __init__(self, tokenizer: Any, max_length: int, max_chars: int = 8192):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_chars = max_chars

    def __call__(self, captions: Sequence[str]) -> dict:
        """Captions -> ``input_ids``/``attention_mask``, padded to the batch's longest, truncated to the model.

        A caption is cut to ``max_chars`` characters first, so a megabyte-long cell costs no more
        than a long caption; 77 tokens never reach that far on real text (whitespace runs aside).
        """
        encoded = self.tokenizer(
            [c[: self.max_chars] for c in captions],
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def caption_error(caption: Any) -> str | None:
    """A reason when a caption cannot be scored (null, not text, empty or blank), else None."""
    if caption is None or (isinstance(caption, float) and caption != caption):
        return row_error("caption_null", "the caption cell is null")
    if not isinstance(caption, str):
        return row_error("caption_bad_type", f"expected text, got {type(caption).__name__}")
    if not caption.strip():
        return row_error("caption_empty", "the caption is empty or blank")
    return None
