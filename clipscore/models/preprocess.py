"""Frames to pixel tensors and captions to token ids, with a transformers model's own processor.

We use the same image processor and tokenizer that ``AutoProcessor.from_pretrained`` builds,
which is what keeps scores equal to the one-pair-at-a-time reference; the image processor's steps
are split so that each runs where it costs least (see ``ImagePreprocessor``).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch



class ImagePreprocessor:
    """RGB frames -> the model's pixel input, in two steps that together are the model's own processor.

    ``one`` (per image, in the decode thread): the processor's own ``resize`` and ``center_crop`` on
    the uint8 frame, so a batch holds small tensors, never full frames. ``finish`` (per model batch,
    on the model's device): the processor's own fused rescale-and-normalise, so on a GPU the host
    never touches a float pixel and ships uint8 (a quarter of the bytes). With ``normalise_in_one``
    (the model is on the CPU) the normalisation runs in ``one`` instead, on the crop while it is still
    in the core's cache: on the whole batch it is a pass over 38 MB of floats per 64 images.

    The two steps equal one processor call bit for bit (tested): the processor treats each image of a
    batch independently, and these are its methods with its own resolved settings. A processor whose
    pipeline is not the standard torchvision one (a subclass with its own ``_preprocess``, padding)
    is called whole per image instead, and ``finish`` only moves its float output to the device.
    """

    def __init__(self, image_processor: Any, device: Any = None, normalise_in_one: bool = False):
        self.image_processor = image_processor
        # Only with gpu_decode: resize on the model's device too (torchvision backend only).
        self.device = device
        self.settings = _split_settings(image_processor)
        self.normalise_in_one = normalise_in_one

    @property
    def split(self) -> bool:
        return self.settings is not None

    def target_size(self) -> tuple[int, int]:
        """(height, width) that a frame must cover for the resize to only ever shrink it."""
        p = self.image_processor
        size = getattr(p, "size", None) or {}
        get = size.get if isinstance(size, dict) else (lambda k, d=None: getattr(size, k, d))
        if get("shortest_edge"):
            edge = int(get("shortest_edge"))
            return edge, edge
        if get("height") and get("width"):
            return int(get("height")), int(get("width"))
        crop = getattr(p, "crop_size", None) or {}
        cget = crop.get if isinstance(crop, dict) else (lambda k, d=None: getattr(crop, k, d))
        return int(cget("height") or 224), int(cget("width") or 224)

    def __call__(self, images: Sequence[Any]):
        """RGB images (PIL, or CHW uint8 tensors) -> float32 ``[N, 3, H, W]``: the whole processor, batched."""
        # PIL images always become channels-first tensors; saying so avoids a guess on 1xN images.
        kwargs = {"device": self.device} if self.device is not None else {}
        return self.image_processor(
            images=list(images), return_tensors="pt", input_data_format="channels_first", **kwargs
        )["pixel_values"]

    def output_size(self) -> tuple[int, int] | None:
        """(height, width) of every ``one`` output when the settings fix it (a crop or a fixed size)."""
        s = self.settings
        if s is None:
            return None
        if s["do_center_crop"] and s["crop_size"].height and s["crop_size"].width:
            return int(s["crop_size"].height), int(s["crop_size"].width)
        if not s["do_center_crop"] and s["do_resize"] and s["size"].height and s["size"].width:
            return int(s["size"].height), int(s["size"].width)
        return None

    def new_batch(self, n: int, pinned: bool = False):
        """An empty ``[n, 3, H, W]`` batch that ``one(frame, out=batch[i])`` fills in place, or None.

        Filling slots from the decode threads replaces a ``torch.stack`` of the whole batch (a pass
        over 38 MB of floats per 64 images on a CPU model). ``pinned``: page-locked, for a GPU copy.
        """
        size = self.output_size()
        if size is None or n == 0:
            return None
        dtype = torch.float32 if self.normalise_in_one else torch.uint8
        return torch.empty((n, 3, *size), dtype=dtype, pin_memory=pinned)

    def one(self, frame: Any, out: Any = None):
        """One RGB frame (CHW uint8 tensor) -> ``[3, H, W]`` on the CPU (written into ``out`` if given).

        uint8 when split (float32 when ``normalise_in_one``); float32 from a whole-processor call.
        """
        if self.settings is None:
            return self(images=[frame])[0]
        p, s = self.image_processor, self.settings
        image = frame
        if s["do_resize"]:
            image = p.resize(image=image, size=s["size"], resample=s["resample"])
        if s["do_center_crop"]:
            image = p.center_crop(image, s["crop_size"])
        normalise = self.normalise_in_one and image.device.type == "cpu"
        if out is None and normalise:
            # A contiguous float copy: the float passes run a third faster than on the channels-last
            # view (the batched processor normalises a stacked, hence contiguous, batch: same values).
            out = torch.empty(image.shape, dtype=torch.float32)
        if out is None:
            return image
        out.copy_(image)  # uint8 -> the slot's dtype, exact
        if normalise:
            self._normalise_in_place(out)
        return out

    def finish(self, pixels, device: Any = None):
        """A stacked batch from ``one`` -> float32 model input on ``device`` (rescaled and normalised)."""
        if device is not None:
            pixels = pixels.to(device, non_blocking=getattr(device, "type", str(device)) == "cuda")
        if pixels.dtype != torch.uint8:
            return pixels
        return self._normalise(pixels)

    def _normalise_in_place(self, pixels) -> None:
        """``rescale_and_normalize`` on a float tensor that already holds the uint8 values, in place.

        The processor's own fused mean/std and the same torchvision ``normalize`` (sub, then div),
        so the values equal ``_normalise`` bit for bit (tested).
        """
        from torchvision.transforms.v2 import functional as tvF

        s = self.settings
        mean, std, do_rescale = self.image_processor._fuse_mean_std_and_rescale_factor(
            do_normalize=s["do_normalize"], image_mean=s["image_mean"], image_std=s["image_std"],
            do_rescale=s["do_rescale"], rescale_factor=s["rescale_factor"], device=pixels.device)
        if s["do_normalize"]:
            tvF.normalize(pixels, mean, std, inplace=True)
        elif do_rescale:
            pixels.mul_(s["rescale_factor"])

    def _normalise(self, pixels):
        s = self.settings
        return self.image_processor.rescale_and_normalize(
            pixels, s["do_rescale"], s["rescale_factor"], s["do_normalize"], s["image_mean"], s["image_std"])


def _split_settings(image_processor: Any) -> dict | None:
    """The processor's resolved settings when its pipeline is the standard torchvision one, else None."""
    try:
        from transformers.image_processing_backends import TorchvisionBackend
    except ImportError:  # older transformers: call the processor whole
        return None
    if not isinstance(image_processor, TorchvisionBackend):
        return None
    if type(image_processor)._preprocess is not TorchvisionBackend._preprocess:
        return None
    p = image_processor
    kwargs = {name: getattr(p, name, None) for name in p._valid_kwargs_names}
    kwargs = p._standardize_kwargs(**kwargs)
    if kwargs.get("do_pad"):
        return None
    return kwargs


class CaptionTokenizer:
    """Captions -> the text tower's inputs with the model's own tokenizer.

    ``padding="longest"``: padded to the batch's longest caption (CLIP: the encoder then cuts each
    length bucket to its own longest). ``padding="max_length"``: every caption padded to
    ``max_length``, as SigLIP trained (its pooled token is the last position). Long captions are
    truncated to ``max_length`` tokens either way.
    """

    def __init__(self, tokenizer: Any, max_length: int, max_chars: int = 8192, padding: str = "longest",
                 keys: Sequence[str] | None = None, normalise: Callable[[str], str] | None = None):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.max_chars = max_chars
        self.padding = padding
        # What reaches the text tower: the tokenizer's own outputs unless the family says what it trained on
        # (SigLIP: the ids alone).
        self.keys = tuple(keys or getattr(tokenizer, "model_input_names", None) or ("input_ids", "attention_mask"))
        self.normalise = normalise  # the family's text normalisation as trained, before the tokenizer

    def __call__(self, captions: Sequence[str]) -> dict:
        """A caption is cut to ``max_chars`` characters first, so a megabyte-long cell costs no more
        than a long caption; 77 tokens never reach that far on real text (whitespace runs aside)."""
        texts = [c[: self.max_chars] for c in captions]
        if self.normalise is not None:
            texts = [self.normalise(t) for t in texts]
        encoded = self.tokenizer(
            texts,
            padding=self.padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {key: encoded[key] for key in self.keys if key in encoded and key != "token_type_ids"}

    def count(self, captions: Sequence[str]) -> list[int]:
        """Tokens per caption (cut to ``max_chars`` and normalised as for scoring), special tokens included,
        with no truncation and no padding: more than ``max_length`` means the model sees a cut caption."""
        texts = [c[: self.max_chars] for c in captions]
        if self.normalise is not None:
            texts = [self.normalise(t) for t in texts]
        return [len(ids) for ids in self.tokenizer(texts, truncation=False, padding=False)["input_ids"]]
