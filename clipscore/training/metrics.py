"""Retrieval and separation metrics on unit-length embeddings (pure torch)."""
from __future__ import annotations

import torch


def recall_at_k(image_embeds: torch.Tensor, text_embeds: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Instance-level recall@k both ways: pair i is image i and caption i (chance is k / N)."""
    sims = image_embeds @ text_embeds.T
    target = torch.arange(len(sims))
    out = {}
    for name, matrix in (("image_to_text", sims), ("text_to_image", sims.T)):
        # rank of the true partner: how many candidates score strictly higher
        true = matrix[target, target].unsqueeze(1)
        rank = (matrix > true).sum(dim=1)
        for k in ks:
            out[f"{name}_recall@{k}"] = float((rank < k).float().mean())
    return out


def roc_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """ROC AUC: the probability that a random positive scores above a random negative (ties count half)."""
    scores = torch.cat([positive, negative]).double()
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    for value in torch.unique(scores):  # average ranks over ties
        tied = scores == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def swapped_pairs(captions: list[str], seed: int = 0) -> torch.Tensor:
    """For each row, the index of another row whose caption text differs (a wrong caption)."""
    n = len(captions)
    generator = torch.Generator().manual_seed(seed)
    choice = torch.randperm(n, generator=generator)
    for i in range(n):
        j = int(choice[i])
        tries = 0
        while (j == i or captions[j] == captions[i]) and tries < n:
            j = (j + 1) % n
            tries += 1
        choice[i] = j
    return choice
