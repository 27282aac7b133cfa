"""Merge re-scores SigLIP tables scored before SigLIP was scored as trained, and not CLIP ones (the scores
themselves: tests/core/test_siglip_fidelity.py)."""
from __future__ import annotations

import hashlib
import json

import pytest
from pyspark.sql import functions as F

from clipscore.devtools.random_families import build_random_siglip
from support.images import encode, photo_like

CAPTIONS = ("a dog", "A Red Dog on the Grass!", "close up of a cat, near the lake.", "hot_dog on a table")


@pytest.fixture(scope="module")
def sigmoid_models(tmp_path_factory) -> dict[str, str]:
    """The SigLIP model of tests/core/test_siglip_fidelity.py (same seed, logit bias 0)."""
    return {"siglip": str(build_random_siglip(tmp_path_factory.mktemp("sigmoid-models") / "siglip", seed=1,
                                              logit_bias=0.0))}


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return [encode(photo_like(64, 48, seed=s), "JPEG", quality=90) for s in range(len(CAPTIONS))]


def _fingerprint_before_the_fix(cfg, device="cpu", precision="fp32") -> str:
    """What a table scored before this change carries: the same options, no computation version."""
    options = {"model": cfg.model, "model_revision": cfg.model_revision, "gpu_decode": False, "jpeg_draft": False,
               "band_edges": [float(e) for e in cfg.band_edges]}
    text = json.dumps(options, sort_keys=True, separators=(",", ":")) + f"|{device}|{precision}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def test_merge_rescores_siglip_tables_scored_before_the_fix_and_not_clip_ones(spark, tiny_cfg, sigmoid_models, photos,
                                                                             tmp_path):
    from clipscore.jobs.merge import run_merge
    from clipscore.jobs.provenance import score_fingerprint

    rows = [(i, photos[i], CAPTIONS[i]) for i in range(4)]
    source = str(tmp_path / "source")
    spark.createDataFrame(rows, "id int, image binary, caption string").write.format("delta").save(source)
    for model, rescored in ((sigmoid_models["siglip"], True), (tiny_cfg.model, False)):
        target = str(tmp_path / f"target-{rescored}")
        spark.createDataFrame(rows, "id int, image binary, caption string").write.format("delta").save(target)
        cfg = tiny_cfg.replace(model=model, input=source, output=target, merge_keys=("id",))
        assert run_merge(spark, cfg).scored == 4
        old = _fingerprint_before_the_fix(cfg)
        assert (score_fingerprint(cfg, "cpu", "fp32") != old) is rescored
        # The table as an earlier clipscore left it: every row carries the old fingerprint.
        from delta.tables import DeltaTable

        DeltaTable.forPath(spark, target).update(set={"score_fingerprint": F.lit(old)})
        again = run_merge(spark, cfg)
        assert (again.scored, again.skipped) == ((4, 0) if rescored else (0, 4))
