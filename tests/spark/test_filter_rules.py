"""``clipscore filter --where`` and ``--preset``: SQL rules over any columns, alone or with a score cut.

The reference is pandas: the same predicate written as a pandas mask (null fails, as in SQL), and the
top fraction of the rows that pass it by numpy's inverted-CDF quantile (what percentile_approx returns
at this accuracy on distinct scores).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clipscore.config.coerce import ConfigError
from clipscore.jobs.cli import main as cli_main
from clipscore.jobs.filter import FilterOptions, run_filter
from clipscore.jobs.provenance import table_provenance

N = 4000


@pytest.fixture(scope="module")
def signals_table(spark, tmp_path_factory) -> tuple[str, pd.DataFrame]:
    rng = np.random.default_rng(11)
    lang = rng.choice(["en", "de", "fr", None], size=N, p=[0.6, 0.2, 0.1, 0.1])
    words = rng.integers(1, 12, N).astype(float)
    words[rng.random(N) < 0.05] = np.nan
    chars = (words * 5 + rng.integers(0, 4, N)).astype(float)
    width = rng.integers(50, 1200, N).astype(float)
    height = rng.integers(50, 1200, N).astype(float)
    width[rng.random(N) < 0.05] = np.nan
    score = rng.normal(0.25, 0.05, N)
    score[rng.random(N) < 0.05] = np.nan
    df = pd.DataFrame({"id": np.arange(N), "similarity": score.astype("float32"), "caption_language": lang,
                       "caption_words": pd.array(words, dtype="Int32"), "caption_chars": pd.array(chars, dtype="Int32"),
                       "image_width": pd.array(width, dtype="Int32"), "image_height": pd.array(height, dtype="Int32")})
    path = str(tmp_path_factory.mktemp("rules") / "scored")
    spark.createDataFrame(df.astype(object).where(df.notna(), None),
                          "id long, similarity float, caption_language string, caption_words int, caption_chars int, "
                          "image_width int, image_height int").write.format("delta").save(path)
    return path, df


def _kept(spark, path) -> set[int]:
    return {r.id for r in spark.read.format("delta").load(path).select("id").collect()}


def _mask(df: pd.DataFrame, expr) -> pd.Series:
    return expr(df).fillna(False).astype(bool)


def _top(df: pd.DataFrame, passes: pd.Series, fraction: float) -> set[int]:
    pool = df[passes & df.similarity.notna()]
    cut = np.quantile(pool.similarity.to_numpy(np.float64), 1 - fraction, method="inverted_cdf")
    return set(pool.id[pool.similarity >= cut])


def test_where_keeps_what_the_same_predicate_keeps_in_pandas(spark, signals_table, tmp_path):
    path, df = signals_table
    where = "caption_language = 'en' AND image_width >= 400 AND caption_words > 2"
    record = run_filter(spark, FilterOptions(input=path, output=str(tmp_path / "w"), where=where))
    passes = _mask(df, lambda d: (d.caption_language == "en") & (d.image_width >= 400) & (d.caption_words > 2))
    expected = set(df.id[passes & df.similarity.notna()])  # rows without a score are never kept
    assert _kept(spark, str(tmp_path / "w")) == expected and len(expected) > 300
    props = table_provenance(spark, str(tmp_path / "w"))
    assert props["clipscore.filter.where"] == f"({where})" and where in props["clipscore.filter.rule"]
    assert record["kept"] == len(expected)


def test_the_fraction_is_taken_among_the_rows_that_pass_where(spark, signals_table, tmp_path):
    path, df = signals_table
    out = str(tmp_path / "wf")
    run_filter(spark, FilterOptions(input=path, output=out, where="caption_language = 'de'", top_fraction=0.25))
    expected = _top(df, _mask(df, lambda d: d.caption_language == "de"), 0.25)
    assert _kept(spark, out) == expected
    assert abs(len(expected) - 0.25 * ((df.caption_language == "de") & df.similarity.notna()).sum()) <= 1


def test_datacomp_basic_preset(spark, signals_table, tmp_path):
    path, df = signals_table
    out = str(tmp_path / "dc")
    record = run_filter(spark, FilterOptions(input=path, output=out, preset="datacomp-basic"))

    def basic(d):
        short, long = np.minimum(d.image_width, d.image_height), np.maximum(d.image_width, d.image_height)
        return ((d.caption_language == "en") & (d.caption_words > 2) & (d.caption_chars > 5) & (short >= 200)
                & (long <= 3 * short))

    assert _kept(spark, out) == _top(df, _mask(df, basic), 0.3)
    assert record["top_fraction"] == 0.3 and record["preset"] == "datacomp-basic"
    assert "caption_language = 'en'" in record["where"]


def test_bad_rules_fail_before_any_work(spark, signals_table, tmp_path):
    path, _ = signals_table
    out = tmp_path / "bad"
    with pytest.raises(ConfigError, match="does not apply"):
        run_filter(spark, FilterOptions(input=path, output=str(out), where="caption_language = = 'en'"))
    with pytest.raises(ConfigError, match="no_such_column|does not apply"):
        run_filter(spark, FilterOptions(input=path, output=str(out), where="no_such_column > 1"))
    assert not out.exists()
    with pytest.raises(ConfigError, match="Unknown --preset"):
        FilterOptions(input=path, output=str(out), preset="laion")
    with pytest.raises(ConfigError, match="not both"):
        FilterOptions(input=path, output=str(out), min_score=0.2, top_fraction=0.3)


def test_a_preset_without_its_signals_says_which_to_compute(spark, tmp_path):
    path = str(tmp_path / "plain")
    spark.createDataFrame([(1, 0.3)], "id long, similarity float").write.format("delta").save(path)
    with pytest.raises(ConfigError, match=r"signals=\[image, caption, language\]"):
        run_filter(spark, FilterOptions(input=path, output=str(tmp_path / "o"), preset="datacomp-basic"))


def test_cli_where(spark, signals_table, tmp_path):
    path, df = signals_table
    out = str(tmp_path / "cli")
    assert cli_main(["filter", "--input", path, "--output", out, "--where", "image_height < 100"]) == 0
    assert _kept(spark, out) == set(df.id[_mask(df, lambda d: d.image_height < 100) & df.similarity.notna()])
    assert json.loads(table_provenance(spark, out)["clipscore.filter.kept"]) == len(_kept(spark, out))
