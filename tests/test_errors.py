"""Error categories come from one registry, which the summary, docs/reliability.md and the core all use."""
from pathlib import Path

import pytest

from clipscore.schema import errors
from clipscore.jobs.summary import summary_from_metrics, summary_metrics

RELIABILITY_DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"


def test_reliability_doc_bad_input_table_is_the_registry():
    assert errors.markdown_table() in RELIABILITY_DOC.read_text(encoding="utf-8")


def test_unregistered_category_is_a_code_error():
    assert errors.row_error("image_null", "x") == "image_null: x"
    with pytest.raises(ValueError, match="unregistered"):
        errors.row_error("image_exploded", "x")


def test_summary_counts_every_registered_category_by_name(spark):
    rows = [(None, "error", f"{code}: detail") for code in errors.ERROR_CODES] + [(0.25, "b1_0.20_to_0.30", None)]
    df = spark.createDataFrame(rows, "similarity float, score_band string, score_error string")
    summary = summary_from_metrics(df.agg(*summary_metrics((0.2, 0.3))).first().asDict(), 1.0)
    assert summary.errors_by_reason == {code: 1 for code in errors.ERROR_CODES}  # nothing lands in "other"
    assert summary.rows == len(errors.ERROR_CODES) + 1 and summary.scored == 1


def test_transient_categories_are_the_retryable_network_ones():
    assert set(errors.TRANSIENT_CODES) == {"url_timeout", "url_unreachable", "url_server_error", "url_rate_limited"}
    assert errors.error_code("url_timeout: slow") == "url_timeout" and errors.error_code(None) is None
