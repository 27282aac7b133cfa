"""The report's figures with matplotlib (Agg, no display): PNG bytes, embedded in the HTML or written to files."""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import pandas as pd


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def histogram(edges: np.ndarray, counts: np.ndarray, band_edges: Sequence[float], thresholds: dict[str, float],
              label: str = "similarity") -> bytes:
    """Rows per score bin (computed by Spark), band edges dashed, thresholds solid and labelled."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4c72b0", edgecolor="white", linewidth=0.3)
    for edge in band_edges:
        ax.axvline(edge, color="#888888", linestyle="--", linewidth=0.8)
    for name, value in thresholds.items():
        ax.axvline(value, color="#c44e52", linewidth=1.5)
        ax.text(value, ax.get_ylim()[1] * 0.95, f" {name}", color="#c44e52", va="top", fontsize=8)
    ax.set_xlabel(label)
    ax.set_ylabel("rows")
    ax.set_title(f"{label}: rows per bin (band edges dashed)")
    return _png(fig)


def per_category(hist: pd.DataFrame, category: str, label: str = "similarity") -> bytes:
    """One normalised histogram line per category (``hist``: category, bin_lo, bin_hi, rows)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for name, rows in hist.groupby(category, dropna=False):
        rows = rows.sort_values("bin_lo")
        total = rows["rows"].sum()
        centres = (rows["bin_lo"] + rows["bin_hi"]) / 2
        ax.plot(centres, rows["rows"] / max(total, 1), label=f"{name} ({total:,})", linewidth=1.4)
    ax.set_xlabel(label)
    ax.set_ylabel("share of the category's rows")
    ax.set_title(f"{label} by {category}")
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def grid(thumbnails: Sequence, captions: Sequence[str], scores: Sequence[float], title: str, columns: int = 6) -> bytes:
    """Pairs as a figure: each image with its caption and score underneath."""
    import textwrap

    plt = _pyplot()
    n = max(1, len(thumbnails))
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption, score in zip(axes.flat, thumbnails, captions, scores):
        if image is not None:
            ax.imshow(image)
        ax.set_title("\n".join(textwrap.wrap(f"{score:.3f} · {caption}", 26)[:3]), fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def matrix(values: np.ndarray, captions: Sequence[str]) -> bytes:
    """Every sampled image (rows) against every sampled caption (columns); the diagonal outlined."""
    plt = _pyplot()
    n = len(values)
    size = min(12, 2 + 0.28 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    shown = ax.imshow(values, cmap="viridis", aspect="equal")
    for i in range(n):
        ax.add_patch(plt.Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=1.2))
    ax.set_xticks(range(n))
    ax.set_xticklabels([c[:28] for c in captions], rotation=90, fontsize=6)
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"image {i}" for i in range(n)], fontsize=6)
    ax.set_title("sample: image (row) against caption (column); own pairs outlined")
    fig.colorbar(shown, ax=ax, fraction=0.04)
    return _png(fig)


def signal(name: str, kind: str, data: pd.DataFrame) -> bytes:
    """One signal's distribution: a histogram (``kind`` numeric: bin_lo, bin_hi, rows) or bars (``kind``
    categorical: value, rows; the most frequent first)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    if kind == "numeric":
        rows = data.sort_values("bin_lo")
        ax.bar(rows["bin_lo"], rows["rows"], width=(rows["bin_hi"] - rows["bin_lo"]), align="edge", color="#55a868",
               edgecolor="white", linewidth=0.3)
        ax.set_xlabel(name)
    else:
        rows = data.iloc[::-1]
        ax.barh([str(v) for v in rows["value"]], rows["rows"], color="#8172b2")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("rows")
    ax.set_title(name, fontsize=9)
    return _png(fig)
