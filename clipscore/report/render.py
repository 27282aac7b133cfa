"""The report page from what Spark computed: histogram arrays, thumbnail grids, mislabel cards, the HTML, the files.

Pure numpy, pandas, Pillow, matplotlib and jinja2 (no Spark): ``clipscore.jobs.report`` computes the
aggregates and picks the rows, this module turns them into one self-contained page
(``templates/report.html``; figures and thumbnails embedded as data URIs, nothing refers to the network).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from clipscore.images.thumbnails import data_uri, thumbnails
from clipscore.report import figures

# Provenance properties shown in the summary table (without their ``clipscore.`` prefix).
SHOWN_PROVENANCE = ("clipscore.models", "clipscore.model", "clipscore.model_revision", "clipscore.precision",
                    "clipscore.device", "clipscore.version", "clipscore.band_edges", "clipscore.band_column")


def histogram_arrays(hist: pd.DataFrame, lo: float, hi: float, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges, rows per bin) from Spark's rows per bin (columns ``bin``, ``rows``); empty bins count 0."""
    counts = np.zeros(bins)
    counts[hist["bin"].to_numpy(int)] = hist["rows"].to_numpy()
    return np.linspace(lo, hi if hi > lo else lo + 1, bins + 1), counts


def borderline_centre(thresholds: Sequence[float], edges: np.ndarray, counts: np.ndarray) -> float:
    """Where the borderline grid is centred: the first threshold, else the median score (by bin)."""
    if thresholds:
        return thresholds[0]
    return float(np.median(np.repeat(edges[:-1], counts.astype(int)))) if counts.sum() else 0.0


def grid_section(key: str, title: str, rows: pd.DataFrame, image_col: str, caption_col: str, score_col: str,
                 image_base_path: str = "") -> tuple[bytes, dict[str, Any]]:
    """(the grid as a PNG figure, the page's section) for a few picked rows: thumbnail, caption, score."""
    thumbs = thumbnails(rows[image_col].tolist(), image_base_path=image_base_path)
    captions, scores = rows[caption_col].tolist(), rows[score_col].astype(float).tolist()
    section = {"id": key, "title": title, "pairs": [
        {"thumb": data_uri(t), "caption": c, "score": s} for t, c, s in zip(thumbs, captions, scores)]}
    return figures.grid(thumbs, captions, scores, title), section


def mislabel_cards(found: pd.DataFrame, image_col: str, caption_col: str, image_base_path: str = "") -> list[dict]:
    """The page's likely mislabels: thumbnail, caption and own score, the suggestion and its score."""
    if not len(found):
        return []
    thumbs = thumbnails(found[image_col].tolist(), image_base_path=image_base_path)
    return [{"thumb": data_uri(t), "caption": r[caption_col], "own": r["own_score"],
             "suggestion": r["suggested_caption"], "suggested": r["suggested_score"]}
            for t, (_, r) in zip(thumbs, found.iterrows())]


def render_page(*, source: str, score_col: str, category_col: str | None, summary: dict[str, Any],
                provenance: dict[str, str], figs: dict[str, bytes], categories: list, grids: list, mislabels: list,
                sample_note: str, mislabel_note: str, bands: list, seconds: float, signals: list | None = None,
                rules: dict | None = None) -> str:
    """The report's HTML from ``templates/report.html``; figures embedded as PNG data URIs."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("clipscore.report", "templates"), autoescape=select_autoescape(["html"]))
    shown = {k.removeprefix("clipscore."): v for k, v in provenance.items() if k in SHOWN_PROVENANCE}
    return env.get_template("report.html").render(
        source=source, generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        seconds=seconds, summary=summary, score_col=score_col, provenance=shown,
        figures={k: data_uri(v) for k, v in figs.items()}, bands=bands, category_col=category_col,
        categories=categories, grids=grids, mislabels=mislabels, mislabel_note=mislabel_note, sample_note=sample_note,
        signals=signals or [], rules=rules)


def write_report(output: str, html: str, figs: dict[str, bytes], figures_dir: str | None = None) -> None:
    """The HTML file (its folder made), and with ``figures_dir`` every figure as ``<name>.png`` there."""
    path = Path(output).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    if figures_dir:
        folder = Path(figures_dir).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        for name, png in figs.items():
            (folder / f"{name}.png").write_bytes(png)
