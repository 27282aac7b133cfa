"""Databricks notebooks: source format, thin, and everything they call from clipscore exists.

Static checks parse each notebook (ast) and bind every call of a clipscore function to its real
signature (inspect). The exploration notebook is also run end to end against a local Delta table,
with a minimal stand-in for Databricks' ``dbutils``/``display``/``displayHTML`` (which exist only there).
"""
from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pandas as pd
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.py"))
HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"


def test_the_four_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_score_table.py", "02_explore_scores.py", "03_merge_into_lakehouse.py",
                                           "04_search_and_dedup.py"]


def _imported_names(tree: ast.Module) -> dict[str, object]:
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "clipscore":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                names[alias.asname or alias.name] = getattr(module, alias.name)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("clipscore") for a in node.names), "use `from clipscore... import name`"
    return names


def _placeholder_call(node: ast.Call):
    args = [None for _ in node.args]
    kwargs = {kw.arg: None for kw in node.keywords if kw.arg is not None}
    return args, kwargs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_databricks_source_and_calls_match_the_library(path):
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == HEADER
    assert text.count(SEPARATOR) >= 2
    tree = ast.parse(text, filename=str(path))
    assert "dbutils.widgets." in text, "parameters come from widgets"
    assert "sparkContext" not in text and "SparkSession.builder" not in text, "use the notebook's `spark`"

    imported = _imported_names(tree)
    assert imported, "a notebook calls the library"
    called = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported:
            target = imported[node.func.id]
            args, kwargs = _placeholder_call(node)
            try:
                inspect.signature(target).bind(*args, **kwargs)
            except TypeError as exc:
                pytest.fail(f"{path.name}:{node.lineno}: {node.func.id}(...) does not match its signature: {exc}")
            called.add(node.func.id)
    assert called == set(imported), f"imported but never called: {set(imported) - called}"
    # Thin: no function or class definitions; the logic lives in the library.
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


class _Widgets:
    def __init__(self, values: dict[str, str]):
        self.values = dict(values)

    def text(self, name, default, label=None):
        self.values.setdefault(name, default)

    def dropdown(self, name, default, choices, label=None):
        assert default in choices
        self.values.setdefault(name, default)

    def get(self, name):
        return self.values[name]


class _DbUtils:
    def __init__(self, values):
        self.widgets = _Widgets(values)


def test_explore_notebook_runs_on_a_scored_table(spark, odd_images, tmp_path):
    table = str(tmp_path / "scored")
    rows = [
        (odd_images["jpeg"], "a <b>bold</b> caption", 0.31, "b5_0.30_to_0.35", None),
        (odd_images["png"], "low one", 0.05, "b0_below_0.15", None),
        (odd_images["grayscale"], "lower one", 0.01, "b0_below_0.15", None),
        (b"", "broken", None, "error", "image_empty: no bytes"),
    ]
    spark.createDataFrame(
        rows, "image binary, caption string, similarity float, score_band string, score_error string"
    ).write.format("delta").save(table)

    shown, html_out = [], []
    namespace = {
        "spark": spark,
        "dbutils": _DbUtils({"table": table, "lowest": "2"}),
        "display": lambda obj: shown.append(obj),
        "displayHTML": lambda text: html_out.append(text),
    }
    exec(compile((NOTEBOOKS[1]).read_text(encoding="utf-8"), str(NOTEBOOKS[1]), "exec"), namespace)

    bands = [r.asDict() for r in shown[0].collect()]
    assert bands == [
        {"score_band": "b0_below_0.15", "rows": 2, "share": 0.5},
        {"score_band": "b5_0.30_to_0.35", "rows": 1, "share": 0.25},
        {"score_band": "error", "rows": 1, "share": 0.25},
    ]
    page, report = html_out
    assert 'id="summary"' in report and 'id="lowest"' in report and 'id="mislabels"' in report  # the report, inline
    assert page.count("data:image/jpeg;base64,") == 2  # the two lowest scored pairs, as thumbnails
    assert "lower one" in page and "low one" in page and "bold" not in page
    assert page.index("lower one") < page.index("low one")  # lowest first


def test_search_notebook_runs_on_a_table_with_embeddings(spark, tiny_cfg, tmp_path):
    from clipscore.jobs.score import run_score
    from clipscore.devtools.synthetic import generate

    model = str(Path(__file__).resolve().parents[2] / "models" / "clipscore-shapes")
    df = generate(12, seed=41)
    a, b = next((i, j) for i in range(1, 12) for j in range(i + 1, 12)
                if df.color[i] != df.color[j] and df["shape"][i] != df["shape"][j])
    df.loc[[a, b], "caption"] = [df.caption[b], df.caption[a]]  # one swapped pair: something to suggest
    df = df[["id", "image", "caption"]]
    df = pd.concat([df, df.iloc[[0]].assign(id="copy-of-0")], ignore_index=True)  # one exact copy
    df.to_parquet(tmp_path / "src.parquet")
    table = str(tmp_path / "scored")
    run_score(spark, tiny_cfg.replace(model=model, input=str(tmp_path / "src.parquet"), output=table,
                                      write_embeddings=True))
    shown = []
    namespace = {
        "spark": spark,
        "dbutils": _DbUtils({"table": table, "k": "3", "below": "1.0", "output": str(tmp_path / "deduped")}),
        "display": lambda obj: shown.append(obj),
    }
    exec(compile((NOTEBOOKS[3]).read_text(encoding="utf-8"), str(NOTEBOOKS[3]), "exec"), namespace)
    found, largest, suggestions = shown
    assert found.search_rank.tolist() == [1, 2, 3]
    assert set(largest.id) <= {df.id[0], "copy-of-0"} and largest.duplicate_group_size.tolist() == [2]
    assert len(suggestions) >= 1 and (suggestions.suggested_similarity > suggestions.similarity).all()
    marked = spark.read.format("delta").load(str(tmp_path / "deduped"))
    assert marked.count() == len(df) and marked.filter("duplicate_of IS NOT NULL").count() == 1
