"""Configuration: defaults, YAML, --set overrides, and fail-fast messages that say what to change."""
from dataclasses import fields

import pytest
import yaml

from clipscore.config.coerce import ConfigError
from clipscore.config.job import ScoreConfig, default_config_path, load_config


def test_default_yaml_matches_dataclass_defaults():
    data = yaml.safe_load(default_config_path().read_text())
    defaults = {f.name: f.default for f in fields(ScoreConfig)}
    assert set(data) == set(defaults)
    for key, value in data.items():
        wanted = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
        assert value == wanted, key


def test_precedence_yaml_then_flags_then_set(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("batch_size: 8\nmodel: from-yaml\ndevice: cpu\n")
    cfg = load_config(conf, overrides={"model": "from-flag", "image_col": None}, set_args=["batch_size=16"])
    assert (cfg.batch_size, cfg.model, cfg.device, cfg.image_col) == (16, "from-flag", "cpu", "image")


def test_set_parses_types():
    cfg = load_config(set_args=["band_edges=[0.1, 0.3]", "gpu_decode=true", "http_timeout_s=2.5",
                                "merge_keys=id,shard", "model_revision=null"])
    assert cfg.band_edges == (0.1, 0.3)
    assert cfg.gpu_decode is True and cfg.http_timeout_s == 2.5
    assert cfg.merge_keys == ("id", "shard") and cfg.model_revision is None


def test_unknown_option_suggests_the_right_name():
    with pytest.raises(ConfigError, match="Unknown option 'batchsize'.*Did you mean 'batch_size'"):
        load_config(set_args=["batchsize=3"])


@pytest.mark.parametrize(
    "item, message",
    [
        ("precision=fp8", "precision' must be one of auto, fp32, fp16, bf16, int8"),
        ("device=tpu", "device' must be one of"),
        ("batch_size=0", "batch_size' must be at least 1"),
        ("batch_size=abc", "batch_size' expects a whole number"),
        ("band_edges=[0.3, 0.2]", "strictly increasing"),
        ("band_edges=[0.2, 1.5]", r"must lie in \[-1, 1\]"),
        ("gpu_decode=maybe", "expects true or false"),
        ("preprocess=quick", "preprocess' must be one of exact, fast"),
        ("jpeg_draft=true", "'jpeg_draft' was replaced: use preprocess=fast"),
        ("mode=replace", "mode' must be one of overwrite, append, error"),
        ("nokeyvalue", "--set expects key=value"),
    ],
)
def test_bad_values_fail_with_what_to_change(item, message):
    with pytest.raises(ConfigError, match=message):
        load_config(set_args=[item])


def test_int8_on_cuda_is_rejected():
    with pytest.raises(ConfigError, match="int8 is a CPU option"):
        ScoreConfig(device="cuda", precision="int8")


def test_same_image_and_caption_column_is_rejected():
    with pytest.raises(ConfigError, match="same column"):
        ScoreConfig(image_col="x", caption_col="x")


def test_missing_conf_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_config_is_frozen():
    with pytest.raises(Exception):
        ScoreConfig().batch_size = 3  # type: ignore[misc]


def test_python_construction_coerces_like_yaml_and_flags():
    cfg = ScoreConfig(merge_keys="id", batch_size="8", band_edges=[0.2, 0.3], skip_scored="false",
                      drop_columns=["image"])
    assert cfg.merge_keys == ("id",) and cfg.batch_size == 8 and cfg.band_edges == (0.2, 0.3)
    assert cfg.skip_scored is False and cfg.drop_columns == ("image",)
    assert cfg.replace(merge_keys="a,b").merge_keys == ("a", "b")
    with pytest.raises(ConfigError, match="batch_size' expects a whole number"):
        ScoreConfig(batch_size="eight")


def test_scoring_and_job_options_split_and_validate_alike():
    from clipscore.config.job import JobOptions
    from clipscore.config.options import ScoringOptions

    cfg = ScoreConfig(merge_keys="id", batch_size="8", input="src")
    assert isinstance(cfg.scoring, ScoringOptions) and not isinstance(cfg.scoring, JobOptions)
    assert cfg.scoring.batch_size == 8 and not hasattr(cfg.scoring, "merge_keys")
    assert cfg.job.merge_keys == ("id",) and cfg.job.input == "src" and not hasattr(cfg.job, "batch_size")
    assert JobOptions(merge_keys="id").merge_keys == ("id",)
    assert ScoringOptions(band_edges="0.2,0.3").band_edges == (0.2, 0.3)
    with pytest.raises(ConfigError, match="precision' must be one of"):
        ScoringOptions(precision="fp8")
    with pytest.raises(ConfigError, match="mode' must be one of"):
        JobOptions(mode="replace")
    with pytest.raises(ConfigError, match="batch_size' expects a whole number"):
        ScoringOptions(batch_size="eight")


def test_load_config_reads_the_packaged_defaults_like_the_cli(tmp_path, monkeypatch):
    import clipscore.config.job as config

    conf = tmp_path / "default.yaml"
    conf.write_text("batch_size: 7\nmodel: from-defaults\n")
    monkeypatch.setattr(config, "default_config_path", lambda: conf)
    assert load_config().batch_size == 7 and load_config().model == "from-defaults"
    assert load_config(defaults=False).batch_size == 64


def test_models_list_names_and_precedence(tmp_path):
    from clipscore.config.options import ModelSpec

    cfg = ScoreConfig(models=["b32=openai/clip-vit-base-patch32", {"model": "google/siglip-base-patch16-224",
                                                                   "revision": "abc"}])
    assert [m.name for m in cfg.models] == ["b32", "siglip_base_patch16_224"]
    assert cfg.models[1].revision == "abc" and cfg.model == "openai/clip-vit-base-patch32" and cfg.multi_model
    assert ScoreConfig(models="open_clip:ViT-B-32/laion2b_s34b_b79k").models == (
        ModelSpec("open_clip:ViT-B-32/laion2b_s34b_b79k", "vit_b_32_laion2b_s34b_b79k"),)
    assert cfg.replace(model="x/y").models == (ModelSpec("x/y", "y"),)
    # A layer that sets `models` replaces a lower layer's `model`, and the other way round.
    conf = tmp_path / "c.yaml"
    conf.write_text("model: from-yaml\nmodel_revision: v1\n")
    assert [m.model for m in load_config(conf, overrides={"models": ["a/b", "c/d"]}).models] == ["a/b", "c/d"]
    conf.write_text("models: [a/b, c/d]\n")
    assert load_config(conf, overrides={"model": "e/f"}).models == (ModelSpec("e/f", "f"),)
    with pytest.raises(ConfigError, match="either 'model' .* or 'models'"):
        ScoreConfig(model="a/b", models=["c/d"])
    with pytest.raises(ConfigError, match="'d' is used twice"):
        ScoreConfig(models=["a/d", "c/d"])
    with pytest.raises(ConfigError, match="Model name 'B-32' must be lower-case"):
        ScoreConfig(models=[{"model": "a/b", "name": "B-32"}])
