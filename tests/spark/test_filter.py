"""``clipscore filter``: an absolute threshold, a top fraction (whole table or per group), recorded."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clipscore.config.coerce import ConfigError
from clipscore.jobs.filter import FilterOptions, run_filter
from clipscore.jobs.provenance import table_provenance

N = 20_000


@pytest.fixture(scope="module")
def scored_table(spark, tmp_path_factory) -> tuple[str, pd.DataFrame]:
    """A scored-like Delta table: scores, groups of unequal size and score level, and rows with errors."""
    rng = np.random.default_rng(7)
    group = rng.choice(["laion", "coyo", "cc12m"], size=N, p=[0.6, 0.3, 0.1])
    score = rng.normal(0.25, 0.05, N) + np.where(group == "coyo", 0.05, 0.0)
    score[rng.random(N) < 0.05] = np.nan  # rows that could not be scored
    df = pd.DataFrame({"id": np.arange(N), "source": group, "similarity": score.astype("float32"),
                       "score_error": np.where(np.isnan(score), "image_null: no image", None)})
    df["score_band"] = np.where(np.isnan(score), "error", np.where(score >= 0.28, "high", "low"))
    path = str(tmp_path_factory.mktemp("filter") / "scored")
    spark.createDataFrame(df).write.format("delta").partitionBy("score_band").save(path)
    return path, df


def _kept_ids(spark, path) -> set[int]:
    return {r.id for r in spark.read.format("delta").load(path).select("id").collect()}


def test_top_fraction_keeps_that_fraction_within_the_stated_accuracy(spark, scored_table, tmp_path):
    path, df = scored_table
    out = str(tmp_path / "top")
    record = run_filter(spark, FilterOptions(input=path, output=out, top_fraction=0.3))
    scores = df.similarity.dropna().to_numpy(np.float64)
    kept = _kept_ids(spark, out)
    # rank error of percentile_approx <= n / accuracy; float32 scores have no ties here
    assert abs(len(kept) - 0.3 * len(scores)) <= len(scores) / 10_000 + 1
    exact_cut = np.sort(scores)[::-1][int(round(0.3 * len(scores))) - 1]
    assert abs(record["cuts"]["all"] - exact_cut) < 1e-3
    assert kept == set(df.id[df.similarity >= record["cuts"]["all"]])  # exactly the rows at or above the cut
    assert record["kept"] == len(kept) and record["scored"] == len(scores) and record["rows"] == N
    props = table_provenance(spark, out)
    assert props["clipscore.filter.rule"] == "top 0.3 by similarity" and props["clipscore.filter.source"] == path
    assert json.loads(props["clipscore.filter.cuts"])["all"] == record["cuts"]["all"]


def test_top_fraction_per_group(spark, scored_table, tmp_path):
    path, df = scored_table
    out = str(tmp_path / "per")
    record = run_filter(spark, FilterOptions(input=path, output=out, top_fraction=0.1, per="source"))
    kept = df[df.id.isin(_kept_ids(spark, out))]
    for group, rows in df.dropna(subset=["similarity"]).groupby("source"):
        got = (kept.source == group).sum()
        assert abs(got - 0.1 * len(rows)) <= len(rows) / 10_000 + 1, group
    assert record["cuts"]["coyo"] > record["cuts"]["laion"]  # the groups get their own cuts


def test_min_score_and_keep_column(spark, scored_table, tmp_path):
    path, df = scored_table
    out = str(tmp_path / "threshold")
    run_filter(spark, FilterOptions(input=path, output=out, min_score=0.28, keep_column=True, output_format="parquet"))
    result = spark.read.parquet(out).toPandas().set_index("id").sort_index()
    assert len(result) == N  # every row, marked
    expected = (df.set_index("id").sort_index().similarity >= 0.28).fillna(False)
    assert result["keep"].tolist() == expected.tolist()
    assert json.loads((tmp_path / "threshold" / "_clipscore_filter.json").read_text())["min_score"] == 0.28


@pytest.mark.parametrize("changes, message", [
    ({}, "Pass --where"),
    ({"min_score": 0.2, "top_fraction": 0.3}, "not both"),
    ({"top_fraction": 1.5}, r"must be in \(0, 1\]"),
    ({"min_score": 0.2, "per": "source"}, "--per applies to --top-fraction"),
])
def test_bad_filter_options_fail_fast(changes, message):
    with pytest.raises(ConfigError, match=message):
        FilterOptions(input="x", output="y", **changes)


def test_missing_column_fails_before_writing(spark, scored_table, tmp_path):
    with pytest.raises(ConfigError, match="Column 'category' is not in"):
        run_filter(spark, FilterOptions(input=scored_table[0], output=str(tmp_path / "o"), top_fraction=0.3,
                                        per="category"))
    assert not (tmp_path / "o").exists()


def test_filter_from_the_command_line(spark, scored_table, tmp_path):
    from clipscore.jobs.cli import main

    path, df = scored_table
    out = str(tmp_path / "cli_top")
    assert main(["filter", "--input", path, "--output", out, "--top-fraction", "0.5", "--per", "source"]) == 0
    kept = spark.read.format("delta").load(out).count()
    assert abs(kept - 0.5 * df.similarity.notna().sum()) <= 3 * (len(df) / 10_000 + 1)
    with pytest.raises(SystemExit) as refused:  # one rule or the other, never both
        main(["filter", "--input", path, "--output", out, "--min-score", "0.3", "--top-fraction", "0.5"])
    assert refused.value.code == 2
