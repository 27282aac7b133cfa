"""The whole job on local Spark: Parquet, CSV and Delta in; bytes, paths and loopback URLs; bad rows kept."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import types as T

from clipscore.schema.bands import band_labels
from clipscore.jobs.cli import main as cli_main
from clipscore.config.coerce import ConfigError
from clipscore.jobs.score import run_score
from clipscore.scoring.scorer import score_pandas

REPO = Path(__file__).resolve().parents[2]


def pairs_frame(odd_images, bad_images) -> pd.DataFrame:
    good = ["jpeg", "png", "cmyk_jpeg", "sixteen_bit", "palette", "rgba", "animated_gif", "one_pixel", "very_wide"]
    rows = [(f"g{i}", odd_images[name], f"a picture number {i} of something") for i, name in enumerate(good)]
    rows += [(f"bad_{name}", data, "a caption") for name, (data, _) in bad_images.items()]
    rows += [("null_image", None, "a caption"), ("null_caption", odd_images["png"], None),
             ("blank_caption", odd_images["png"], "  \t ")]
    return pd.DataFrame(rows, columns=["id", "image", "caption"])


def read_back(spark, path, fmt="delta") -> pd.DataFrame:
    return spark.read.format(fmt).load(str(path)).toPandas().sort_values("id").reset_index(drop=True)


@pytest.fixture(scope="module")
def parquet_source(spark, tmp_path_factory, odd_images, bad_images):
    path = tmp_path_factory.mktemp("src") / "pairs.parquet"
    frame = pairs_frame(odd_images, bad_images)
    schema = T.StructType([T.StructField("id", T.StringType()), T.StructField("image", T.BinaryType()),
                           T.StructField("caption", T.StringType())])
    # Three input partitions: the job must keep rows and order-independent results across them.
    spark.createDataFrame(frame, schema).repartition(3).write.parquet(str(path))
    return path, frame


def test_parquet_bytes_to_delta_partitioned_by_band(spark, tmp_path, tiny_cfg, parquet_source, model_load_log):
    source, frame = parquet_source
    out = tmp_path / "scores"
    cfg = tiny_cfg.replace(input=str(source), output=str(out), max_records_per_batch=5, batch_size=3)
    summary = run_score(spark, cfg)

    result = read_back(spark, out)
    assert len(result) == len(frame)  # exactly the input's rows
    assert list(result.columns)[:3] == ["id", "image", "caption"]
    assert {"similarity", "score_band", "score_error"} <= set(result.columns)
    assert spark.read.format("delta").load(str(out)).schema["similarity"].dataType == T.FloatType()

    # Same numbers as the pure core: Spark only moves the data.
    expected = score_pandas(frame, tiny_cfg).sort_values("id").reset_index(drop=True)
    np.testing.assert_allclose(result["similarity"].to_numpy(np.float64),
                               expected["similarity"].to_numpy(np.float64), atol=1e-6, equal_nan=True)
    assert result["score_error"].fillna("").tolist() == expected["score_error"].fillna("").tolist()

    errors = result.set_index("id")["score_error"].str.split(":").str[0]
    assert errors["null_image"] == "image_null" and errors["null_caption"] == "caption_null"
    assert errors["blank_caption"] == "caption_empty" and errors["bad_bomb"] == "image_too_large"
    assert errors["bad_truncated"] == "image_truncated"
    assert result.loc[result["score_error"].notna(), "similarity"].isna().all()
    assert (result.loc[result["score_error"].notna(), "score_band"] == "error").all()

    # Partition layout: one folder per band present, named by the band label.
    folders = {p.name for p in out.iterdir() if p.is_dir() and p.name.startswith("score_band=")}
    assert folders == {f"score_band={b}" for b in result["score_band"].unique()}
    assert folders <= {f"score_band={b}" for b in [*band_labels(cfg.band_edges), "error"]}

    # The summary counts this run's rows.
    assert summary.rows == len(frame) and summary.scored == 9
    assert summary.errors_by_reason["image_undecodable"] == 3
    assert sum(summary.rows_per_band.values()) == len(frame)

    # The model was loaded at most once per Python worker process, over the whole session: workers are
    # reused across jobs and tests, so this run may load it nowhere new (an earlier test's worker has it).
    loads = [tuple(line.split("\t")) for line in model_load_log.read_text().splitlines()]
    mine = [entry for entry in loads if entry[1] == tiny_cfg.model]
    assert mine and len(mine) == len(set(mine))


def test_csv_paths_to_parquet_and_write_modes(spark, tmp_path, tiny_cfg, odd_images):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(odd_images["jpeg"])
    (images / "b.png").write_bytes(odd_images["rgba"])
    csv = tmp_path / "pairs.csv"
    pd.DataFrame({
        "id": ["1", "2", "3", "4"],
        "path": ["images/a.jpg", str(images / "b.png"), "images/missing.jpg", "images"],
        "text": ['a "quoted", caption\nover two lines', "plain", "x", "y"],
    }).to_csv(csv, index=False)
    out = tmp_path / "scores"
    cfg = tiny_cfg.replace(input=str(csv), output=str(out), output_format="parquet", image_col="path",
                           caption_col="text", image_base_path=str(tmp_path))
    run_score(spark, cfg)
    result = read_back(spark, out, "parquet")
    assert result["text"][0] == 'a "quoted", caption\nover two lines'
    assert result["similarity"].notna().tolist() == [True, True, False, False]
    assert result["score_error"][2].startswith("file_not_found") and result["score_error"][3].startswith("path_is_dir")

    with pytest.raises(ConfigError, match="already exists.*--mode overwrite"):
        run_score(spark, cfg)
    run_score(spark, cfg.replace(mode="append"))
    assert spark.read.parquet(str(out)).count() == 8
    run_score(spark, cfg.replace(mode="overwrite"))
    assert spark.read.parquet(str(out)).count() == 4


def test_delta_source_with_urls_to_a_catalog_table(spark, tmp_path, tiny_cfg, http_server):
    source = tmp_path / "urls"
    frame = pd.DataFrame({
        "id": ["ok", "gif", "404", "slow"],
        "image": [f"{http_server}/img/jpeg", f"{http_server}/img/animated_gif", f"{http_server}/img/nope",
                  f"{http_server}/slow/4"],
        "caption": ["a", "b", "c", "d"],
    })
    spark.createDataFrame(frame).write.format("delta").save(str(source))
    cfg = tiny_cfg.replace(input=str(source), output="url_scores", mode="overwrite", http_timeout_s=1.0, http_retries=0)
    summary = run_score(spark, cfg)
    result = spark.read.table("url_scores").toPandas().set_index("id")
    assert result["similarity"].notna().to_dict() == {"ok": True, "gif": True, "404": False, "slow": False}
    assert result.loc["404", "score_error"].startswith("url_http_error: HTTP 404")
    assert result.loc["slow", "score_error"].startswith("url_timeout")
    assert summary.errors_by_reason == {"url_http_error": 1, "url_timeout": 1}


def test_rescoring_an_output_replaces_the_score_columns(spark, tmp_path, tiny_cfg, parquet_source):
    source, frame = parquet_source
    first, second = tmp_path / "first", tmp_path / "second"
    run_score(spark, tiny_cfg.replace(input=str(source), output=str(first), output_format="parquet"))
    run_score(spark, tiny_cfg.replace(input=str(first), output=str(second), output_format="parquet",
                                      input_format="parquet"))
    again = spark.read.parquet(str(second))
    assert again.columns.count("similarity") == 1 and again.count() == len(frame)


# --- configuration errors: before any scoring --------------------------------------------------
def test_missing_column_fails_before_scoring(spark, tmp_path, tiny_cfg, parquet_source, model_load_log):
    source, _ = parquet_source
    before = model_load_log.read_text()
    with pytest.raises(ConfigError, match=r"Column 'picture' \(image_col\) is not in the input.*id, image, caption.*--image-col"):
        run_score(spark, tiny_cfg.replace(input=str(source), output=str(tmp_path / "o"), image_col="picture"))
    assert model_load_log.read_text() == before and not (tmp_path / "o").exists()


def test_wrong_column_types_fail_before_scoring(spark, tmp_path, tiny_cfg):
    source = tmp_path / "typed"
    spark.createDataFrame([(1, 2.0, "c")], "image int, caption double, other string").write.parquet(str(source))
    with pytest.raises(ConfigError, match="Image column 'image' is int; it must be binary"):
        run_score(spark, tiny_cfg.replace(input=str(source), output=str(tmp_path / "o")))
    with pytest.raises(ConfigError, match="Caption column 'caption' is double"):
        run_score(spark, tiny_cfg.replace(input=str(source), output=str(tmp_path / "o"), image_col="other"))


def test_unloadable_model_fails_before_scoring(spark, tmp_path, tiny_cfg, parquet_source):
    source, _ = parquet_source
    with pytest.raises(ConfigError, match="does not exist.*--model"):
        run_score(spark, tiny_cfg.replace(input=str(source), output=str(tmp_path / "o"), model=str(tmp_path / "nope")))
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="incomplete: missing .*model.safetensors"):
        run_score(spark, tiny_cfg.replace(input=str(source), output=str(tmp_path / "o"), model=str(incomplete)))


def test_hub_model_without_network_says_how_to_use_a_local_folder(monkeypatch):
    from clipscore.models import check_model_loadable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="pass --model /path/to/model"):
        check_model_loadable("openai/clip-vit-base-patch32-not-cached-here")


def test_missing_input_fails_with_the_path(spark, tmp_path, tiny_cfg):
    with pytest.raises(ConfigError, match="Could not read --input .*nothing-here"):
        run_score(spark, tiny_cfg.replace(input=str(tmp_path / "nothing-here"), output=str(tmp_path / "o"),
                                          input_format="parquet"))


# --- the command line and the spark-submit entry point ------------------------------------------
def test_cli_config_error_exit_code_and_message(capsys, tiny_model_dir):
    code = cli_main(["score", "--input", "x", "--output", "y", "--model", tiny_model_dir, "--set", "batchsize=3"])
    assert code == 2
    assert "Did you mean 'batch_size'" in capsys.readouterr().err


def test_cli_runs_on_the_active_session(spark, tmp_path, tiny_model_dir, parquet_source):
    source, frame = parquet_source
    out = tmp_path / "cli_out"
    code = cli_main(["score", "--input", str(source), "--output", str(out), "--model", tiny_model_dir,
                     "--set", "device=cpu", "--set", "batch_size=8", "--output-format", "parquet"])
    assert code == 0
    assert spark.read.parquet(str(out)).count() == len(frame)
    assert spark.range(1).count() == 1  # the CLI did not stop a session it did not create


def test_spark_submit_entry_takes_the_same_flags():
    result = subprocess.run([sys.executable, str(REPO / "jobs" / "score.py"), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    for flag in ("--input", "--output", "--input-format", "--output-format", "--model", "--image-col",
                 "--caption-col", "--conf", "--set", "--mode"):
        assert flag in result.stdout


def test_relative_output_path_with_provenance(spark, tmp_path, tiny_cfg, parquet_source):
    """`make demo` writes to a relative path: Delta's path identifiers need it made absolute."""
    import os

    from clipscore.jobs.provenance import table_provenance

    source, frame = parquet_source
    relative = os.path.relpath(tmp_path / "scores")  # the JVM shares this process's working directory
    run_score(spark, tiny_cfg.replace(input=str(source), output=relative))
    assert spark.read.format("delta").load(str(tmp_path / "scores")).count() == len(frame)
    assert table_provenance(spark, relative)["clipscore.model"] == tiny_cfg.model
