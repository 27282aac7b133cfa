"""The job summary counts every registered error category by name (core registry: tests/core/test_errors.py)."""
from clipscore.jobs.summary import summary_from_metrics, summary_metrics
from clipscore.schema import errors


def test_summary_counts_every_registered_category_by_name(spark):
    rows = [(None, "error", f"{code}: detail") for code in errors.ERROR_CODES] + [(0.25, "b1_0.20_to_0.30", None)]
    df = spark.createDataFrame(rows, "similarity float, score_band string, score_error string")
    summary = summary_from_metrics(df.agg(*summary_metrics((0.2, 0.3))).first().asDict(), 1.0)
    assert summary.errors_by_reason == {code: 1 for code in errors.ERROR_CODES}  # nothing lands in "other"
    assert summary.rows == len(errors.ERROR_CODES) + 1 and summary.scored == 1
