"""``clipscore report``: a self-contained HTML page about a scored table, checked as a browser would."""
from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from clipscore.jobs.report import ReportOptions, run_report
from clipscore.devtools.synthetic import generate

MODEL = str(Path(__file__).resolve().parents[2] / "models" / "clipscore-shapes")
SECTIONS = ("summary", "distribution", "categories", "lowest", "highest", "borderline", "matrix", "mislabels")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.images, self.urls = set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith("data:"):
                self.urls.append(attrs[key])


@pytest.fixture(scope="module")
def scored(spark, tmp_path_factory, tiny_cfg):
    """60 shapes pairs scored with the shipped model; rows 3 and 7 have each other's caption."""
    from clipscore.jobs.score import run_score

    df = generate(60, seed=31)[["id", "image", "caption", "shape"]]
    df.loc[3, "caption"], df.loc[7, "caption"] = df.loc[7, "caption"], df.loc[3, "caption"]
    root = tmp_path_factory.mktemp("report")
    spark.createDataFrame(df).write.parquet(str(root / "src"))
    out = str(root / "scored")
    run_score(spark, tiny_cfg.replace(model=MODEL, input=str(root / "src"), output=out,
                                      band_edges=[0.2, 0.4, 0.6, 0.8]))
    return out, df


def test_report_sections_images_offline_and_planted_mislabel(spark, scored, tmp_path):
    table, df = scored
    html_path, figures = tmp_path / "report.html", tmp_path / "figures"
    found = run_report(spark, ReportOptions(input=table, output=str(html_path), category_col="shape", sample=60,
                                            figures=str(figures), thresholds=(0.5,)))
    html = html_path.read_text()
    page = _Page()
    page.feed(html)
    assert set(SECTIONS) <= page.ids
    assert page.urls == [] and not re.search(r"https?://", html)  # nothing to fetch: works offline
    assert len(page.images) >= 3 * 12 + 3  # three grids of thumbnails, histogram, per-category, matrix
    for src in page.images:
        header, data = src.split(",", 1)
        assert header.startswith("data:image/")
        Image.open(io.BytesIO(base64.b64decode(data))).verify()  # every embedded image decodes
    assert 'alt="per-category distributions"' in html and "circle" in html.split('id="categories"')[1]
    # The swapped pair is found: each image's true caption (now on the other row) is the suggestion.
    planted = {(df.caption[3], df.caption[7]), (df.caption[7], df.caption[3])}
    assert planted <= {(m["caption"], m["suggestion"]) for m in found["mislabels"]}
    assert {p.name for p in figures.iterdir()} >= {"histogram.png", "grid_lowest.png", "grid_highest.png",
                                                  "grid_borderline.png", "matrix.png", "per_category.png"}
    assert "Rows per band" in html and "clipscore_shapes" in html  # provenance: the model that scored it


def test_report_without_a_recorded_model_still_renders(spark, scored, tmp_path):
    table, _ = scored
    plain = str(tmp_path / "plain.parquet")
    spark.read.format("delta").load(table).write.parquet(plain)
    run_report(spark, ReportOptions(input=plain, output=str(tmp_path / "r.html"), sample=8))
    html = (tmp_path / "r.html").read_text()
    assert "pass --model to re-embed the sample" in html and 'id="lowest"' in html


def test_report_from_the_command_line(scored, tmp_path):
    from clipscore.jobs.cli import main

    html = tmp_path / "cli.html"
    assert main(["report", "--input", scored[0], "--output", str(html), "--category-col", "shape", "--sample", "6",
                 "--threshold", "0.5", "--figures", str(tmp_path / "figs")]) == 0
    assert 'id="categories"' in html.read_text() and (tmp_path / "figs" / "matrix.png").is_file()
    assert main(["report", "--input", scored[0], "--output", str(html), "--category-col", "nope"]) == 2
