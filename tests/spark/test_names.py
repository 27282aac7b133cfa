"""Odd names end to end: columns with spaces, dots and backticks; catalog names checked before any work.

Each odd character (space, dot, backtick) appears in an image column, a caption column, a merge key
(one key of three columns) and a passthrough column; the model folder name holds a quote and a
backslash, which must survive the Delta table properties unchanged.
"""
from __future__ import annotations

import logging
import re
import shutil

import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clipscore.config.coerce import ConfigError
from clipscore.jobs.explore import lowest_scoring
from clipscore.jobs.merge import merge_sql, run_merge
from clipscore.jobs.provenance import delta_identifier, table_provenance
from clipscore.jobs.score import run_score
from clipscore.jobs.tables import check_names, col, parse_table_name, quote_identifier, table_identifier
from clipscore.scoring.scorer import score_pandas

IMAGES = ("jpeg", "png", "grayscale", "webp")



def _version(spark, ident: str) -> int:
    return spark.sql(f"DESCRIBE HISTORY {ident}").agg(F.max("version")).first()[0]


@pytest.fixture(scope="module")
def odd_model_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny CLIP in a folder whose name holds a quote and a backslash (SQL string literal escapes)."""
    folder = tmp_path_factory.mktemp("models") / "bob's \\ clip"
    shutil.copytree(tiny_model_dir, folder)
    return str(folder)


# -------------------------------------------------------------------------------------------------
# Helpers
# -------------------------------------------------------------------------------------------------
def test_quote_identifier_and_col(spark):
    assert quote_identifier("we`ird") == "`we``ird`"
    assert quote_identifier("cap.tion") == "`cap.tion`"
    # A struct `cap` with field `tion` next to a top-level column `cap.tion`: col() means the column.
    df = spark.createDataFrame([(("field",), "column", "tick")],
                               "cap struct<tion: string>, `cap.tion` string, `a``b` string")
    assert df.select(col("cap.tion"), col("a`b")).first()[:] == ("column", "tick")


def test_table_names_parsed_and_requoted():
    assert table_identifier("scores") == "`scores`"
    assert table_identifier("spark_catalog.default.merge_src") == "`spark_catalog`.`default`.`merge_src`"
    assert table_identifier("`my-table`.`we``ird`") == "`my-table`.`we``ird`"
    assert parse_table_name("`a.b`.c") == ["a.b", "c"]
    assert delta_identifier("db.t") == "`db`.`t`"
    bad = {
        "bad;name": "semicolon", "it's": "quote", 'a"b': "quote", "a b": "needs backticks",
        "my-table": "needs backticks", "c.s.t.x": "4 dot-separated parts", "a..b": "empty part",
        "a.": "empty part", ".a": "empty part", "`open": "unbalanced backtick", "a`b": "unbalanced backtick",
        "x\ny": "control character", "`ok`.t'": "quote",
    }
    for name, problem in bad.items():
        with pytest.raises(ConfigError, match=f"Table name .*{problem}.*For a path, write ./"):
            table_identifier(name, "output")


def test_merge_sql_quotes_keys_and_target():
    sql = merge_sql("db.t", "_v", ["we`ird", "cap.tion"], only_changed=False)
    assert "INTO `db`.`t` AS t USING `_v` AS s ON t.`we``ird` = s.`we``ird` AND t.`cap.tion` = s.`cap.tion` " in sql


def test_bare_names_say_how_they_were_taken(tiny_cfg, caplog):
    caplog.set_level(logging.INFO, logger="clipscore")
    check_names(tiny_cfg.replace(input="pairs.parquet", output="scores"))
    text = caplog.text
    assert ("output 'scores' has no '/' or scheme: taken as the catalog table `scores`; "
            "for a path, write ./scores") in text
    assert "input 'pairs.parquet' has no '/': taken as a path (by its suffix); for a catalog table, write " \
           "`pairs`.`parquet`" in text
    caplog.clear()
    check_names(tiny_cfg.replace(input="./pairs", output="/tmp/x/scores", input_format="auto"))
    assert "taken as" not in caplog.text  # a '/' is unambiguous: nothing to say


# -------------------------------------------------------------------------------------------------
# Unusable table names: refused before any work
# -------------------------------------------------------------------------------------------------
def test_unusable_table_names_fail_before_any_model_load(spark, tiny_cfg, tmp_path, odd_images, model_load_log):
    source = str(tmp_path / "src.parquet")
    spark.createDataFrame([(0, odd_images["png"], "a caption")], "id int, image binary, caption string") \
        .write.parquet(source)
    loads = len(model_load_log.read_text().splitlines())
    for name in ("bad;name", "x.y.z.w", "a..b", "it's", "my scores"):
        with pytest.raises(ConfigError, match=re.escape(f"Table name '{name}' (output)")):
            run_score(spark, tiny_cfg.replace(input=source, output=name))
        with pytest.raises(ConfigError, match=re.escape(f"Table name '{name}' (input)")):
            run_score(spark, tiny_cfg.replace(input=name, output=str(tmp_path / "out")))
        with pytest.raises(ConfigError, match=re.escape(f"Table name '{name}'")):
            run_merge(spark, tiny_cfg.replace(input=source, output=name, merge_keys=("id",)))
    assert len(model_load_log.read_text().splitlines()) == loads  # no executor loaded a model
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------------------------
# Odd column names through score, explore and merge
# -------------------------------------------------------------------------------------------------
def _frame(spark, odd_images, keys, image, caption, extra):
    schema = T.StructType([*[T.StructField(k, T.IntegerType()) for k in keys], T.StructField(image, T.BinaryType()),
                           T.StructField(caption, T.StringType()), T.StructField(extra, T.StringType())])
    rows = [(*[i for _ in keys], odd_images[name], f"a picture number {i}", f"kept {i}")
            for i, name in enumerate(IMAGES)]
    return spark.createDataFrame(rows, schema)


@pytest.mark.parametrize("image, caption, extra, fmt", [
    ("image bytes`", "cap.tion", "note. `x` y", "delta"),  # image: space + backtick; caption: dot
    ("im.age", "cap `tion", "a b.c`d", "parquet"),          # image: dot; caption: space + backtick
], ids=["to-delta", "to-parquet"])
def test_odd_column_names_score(spark, tiny_cfg, odd_images, odd_model_dir, tmp_path, image, caption, extra, fmt):
    key = "k.ey"
    source_df = _frame(spark, odd_images, [key], image, caption, extra)
    source, output = str(tmp_path / "source"), str(tmp_path / "scored")
    source_df.write.parquet(source)
    cfg = tiny_cfg.replace(input=source, output=output, output_format=fmt, image_col=image, caption_col=caption,
                           model=odd_model_dir)

    summary = run_score(spark, cfg)
    scored = spark.read.format(fmt).load(output)
    assert scored.columns[:4] == [key, image, caption, extra]  # every input column kept, in order, with its values
    result = scored.toPandas().sort_values(key).reset_index(drop=True)
    assert result[extra].tolist() == [f"kept {i}" for i in range(len(IMAGES))]
    assert result[caption].tolist() == [f"a picture number {i}" for i in range(len(IMAGES))]
    expected = score_pandas(source_df.toPandas(), cfg).sort_values(key).reset_index(drop=True)
    np.testing.assert_allclose(result["similarity"].to_numpy(np.float64),
                               expected["similarity"].to_numpy(np.float64), atol=1e-6)
    assert summary.rows == len(IMAGES) and summary.scored == len(IMAGES)
    if fmt == "delta":  # the quote and backslash of the model path survive the table property
        assert table_provenance(spark, output)["clipscore.model"] == odd_model_dir

    lowest = lowest_scoring(spark, cfg, output, n=2, fmt=fmt)
    assert list(lowest.columns)[:2] == [image, caption] and len(lowest) == 2


def test_odd_column_names_merge(spark, tiny_cfg, odd_images, odd_model_dir, tmp_path):
    keys = ("we`ird", "k.ey", "key id")  # one key of three parts: backtick, dot, space
    image, caption, extra = "image bytes", "cap.tion", "`x`.y z"
    source_df = _frame(spark, odd_images, keys, image, caption, extra)
    source, target = str(tmp_path / "source"), str(tmp_path / "target")
    source_df.write.parquet(source)
    # The target holds the rows without scores; Delta stores such names only with column mapping.
    source_df.write.format("delta").option("delta.columnMapping.mode", "name").save(target)
    cfg = tiny_cfg.replace(input=source, output=target, image_col=image, caption_col=caption, model=odd_model_dir,
                           merge_keys=keys, merge_chunk_rows=2)  # two chunks: the chunk hash reads the keys too

    first = run_merge(spark, cfg)
    assert (first.rows, first.skipped, first.extra["rows updated"], first.extra["rows inserted"]) == (4, 0, 4, 0)
    assert first.extra["commits"] == 2
    merged = spark.read.format("delta").load(target)
    assert merged.count() == len(IMAGES)
    merged = merged.toPandas().sort_values("k.ey").reset_index(drop=True)
    assert merged[extra].tolist() == [f"kept {i}" for i in range(len(IMAGES))]
    assert merged["similarity"].notna().all() and merged["score_input_hash"].str.len().eq(64).all()
    expected = score_pandas(source_df.toPandas(), cfg).sort_values("k.ey").reset_index(drop=True)
    np.testing.assert_allclose(merged["similarity"].to_numpy(np.float64),
                               expected["similarity"].to_numpy(np.float64), atol=1e-6)
    assert table_provenance(spark, target)["clipscore.model"] == odd_model_dir

    # Rerun: every row skipped, no commit (not even for properties: the stored model path is exact).
    version = _version(spark, delta_identifier(target))
    again = run_merge(spark, cfg)
    assert (again.rows, again.skipped, again.extra["commits"]) == (0, 4, 0)
    assert _version(spark, delta_identifier(target)) == version

    # Duplicate keys are reported by the odd names.
    dup = str(tmp_path / "dup")
    source_df.union(source_df.filter(col("k.ey") == 2)).write.parquet(dup)
    with pytest.raises(ConfigError, match="occur more than once.*" + re.escape("we`ird=2, k.ey=2, key id=2 (2 rows)")):
        run_merge(spark, cfg.replace(input=dup))
