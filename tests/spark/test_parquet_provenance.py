"""A Parquet output carries its provenance in a sidecar, so search and report need no --model."""
from __future__ import annotations

import json
from pathlib import Path

from clipscore.devtools.synthetic import generate
from clipscore.jobs.provenance import SIDECAR, table_provenance
from clipscore.jobs.report import ReportOptions, run_report
from clipscore.jobs.score import run_score
from clipscore.jobs.search import SearchOptions, run_search

MODEL = str(Path(__file__).resolve().parents[2] / "models" / "clipscore-shapes")


def test_parquet_scored_table_is_searchable_and_reportable_without_model(spark, tiny_cfg, tmp_path):
    df = generate(24, seed=8).drop(columns=["template"])
    df.to_parquet(tmp_path / "src.parquet")
    out = str(tmp_path / "scored")
    run_score(spark, tiny_cfg.replace(model=MODEL, input=str(tmp_path / "src.parquet"), output=out,
                                      output_format="parquet", write_embeddings=True))
    sidecar = json.loads((Path(out) / SIDECAR).read_text())
    assert sidecar["clipscore.model"] == MODEL and sidecar["clipscore.embeddings"] == "array"
    assert table_provenance(spark, out)["clipscore.model"] == MODEL
    assert spark.read.parquet(out).count() == 24  # the sidecar is not read as data
    found = run_search(spark, SearchOptions(input=out, text="a red circle", k=3))  # no --model
    assert len(found) == 3
    result = run_report(spark, ReportOptions(input=out, output=str(tmp_path / "r.html"), sample=6))
    assert "models/clipscore-shapes" in (tmp_path / "r.html").read_text() and result["rows"] == 24
