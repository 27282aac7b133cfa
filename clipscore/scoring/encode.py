"""Stage 3: pixel tensors and caption tensors to unit-length embeddings, for any model family.

Calls the family's towers (``ScoringModel.image_features``/``text_features``) under
``torch.inference_mode`` in ``batch_size`` chunks, and returns float32 embeddings normalised in
float32 whatever the model's precision.
"""
from __future__ import annotations

from typing import Callable

import torch

from clipscore.models.base import ScoringModel


class Encoder:
    def __init__(self, model: ScoringModel, batch_size: int):
        self.model = model
        self.device = model.device
        self.batch_size = batch_size
        self._non_blocking = self.device.type == "cuda"
        self._autocast = model.autocast

    def _precision(self):
        """The autocast context the model asks for (bf16 on CPU), else a no-op."""
        return torch.autocast("cpu", dtype=self._autocast, enabled=self._autocast is not None)

    @torch.inference_mode()
    def embed_images(self, pixel_values: torch.Tensor, finish: Callable | None = None) -> torch.Tensor:
        """``finish(chunk, device)``: the last preprocessing step, run per chunk on the model's device
        (``ImageInput.finish``: e.g. uint8 crops -> normalised float32)."""
        out = []
        for start in range(0, len(pixel_values), self.batch_size):
            chunk = pixel_values[start : start + self.batch_size]
            if finish is not None:
                chunk = finish(chunk, self.device)
            chunk = chunk.to(self.device, non_blocking=self._non_blocking)
            with self._precision():
                out.append(self.model.image_features(chunk).float())
        return _normalise(torch.cat(out)) if out else torch.empty(0)

    @torch.inference_mode()
    def embed_texts(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Embeds captions in chunks; for causal text towers (``bucket_captions``) in length buckets.

        A batch padded to its longest caption spends most of the text tower on padding when a few
        captions are long (alt text: mostly 10-25 tokens, some 77). CLIP's causal mask means
        trailing padding never reaches the pooled end-of-text token, so cutting it changes no score
        (beyond float rounding); it is only done for right-padded inputs, where that holds. SigLIP
        (bidirectional, pools the last position of a fixed length) always runs full width.
        """
        first = next(iter(inputs.values()))
        n = len(first)
        if n == 0:
            return torch.empty(0)
        mask = inputs.get("attention_mask")
        if self.model.bucket_captions and mask is not None:
            chunks = _length_buckets(mask, self.batch_size)
        else:
            chunks = ((torch.arange(s, min(n, s + self.batch_size)), first.shape[1]) for s in range(0, n, self.batch_size))
        out: torch.Tensor | None = None
        for rows, length in chunks:
            part = {k: v[rows, :length].to(self.device, non_blocking=self._non_blocking) for k, v in inputs.items()}
            with self._precision():
                embedded = _normalise(self.model.text_features(**part)).cpu()
            if out is None:
                out = torch.empty(n, embedded.shape[1], dtype=torch.float32)
            out[rows] = embedded
        return out


def _length_buckets(attention_mask: torch.Tensor, batch_size: int, max_waste: float = 0.2):
    """(row indices, token length) chunks of at most ``batch_size`` rows of similar caption length.

    Rows are taken shortest first; a chunk is closed when the padding it would need exceeds
    ``max_waste`` of its tokens. Left-padded or gapped masks fall back to plain order and full width.
    """
    n, width = attention_mask.shape
    lengths = attention_mask.sum(dim=1)
    right_padded = bool((attention_mask == (torch.arange(width) < lengths[:, None])).all())
    if not right_padded:
        for start in range(0, n, batch_size):
            yield torch.arange(start, min(n, start + batch_size)), width
        return
    order = torch.argsort(lengths, stable=True).tolist()
    lengths = lengths.tolist()
    chunk: list[int] = []
    tokens = 0
    for row in order:
        length = lengths[row]
        if chunk and (len(chunk) >= batch_size or length * (len(chunk) + 1) - (tokens + length) > max_waste * length * (len(chunk) + 1)):
            yield torch.tensor(chunk), max(1, lengths[chunk[-1]])
            chunk, tokens = [], 0
        chunk.append(row)
        tokens += length
    if chunk:
        yield torch.tensor(chunk), max(1, lengths[chunk[-1]])


def _normalise(embeddings: torch.Tensor) -> torch.Tensor:
    embeddings = embeddings.float()
    return embeddings / embeddings.norm(p=2, dim=-1, keepdim=True)


def cosine_rows(image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                image_index: torch.Tensor, text_index: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of pair i = image_embeds[image_index[i]] . text_embeds[text_index[i]] (on CPU)."""
    image_rows = image_embeds.index_select(0, image_index.to(image_embeds.device))
    text_rows = text_embeds.index_select(0, text_index.to(text_embeds.device))
    return (image_rows * text_rows).sum(dim=-1).cpu()
