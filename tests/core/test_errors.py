"""Error categories come from one registry, which the summary, docs/reliability.md and the core all use."""
from pathlib import Path

import pytest

from clipscore.schema import errors

RELIABILITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def test_reliability_doc_bad_input_table_is_the_registry():
    assert errors.markdown_table() in RELIABILITY_DOC.read_text(encoding="utf-8")


def test_unregistered_category_is_a_code_error():
    assert errors.row_error("image_null", "x") == "image_null: x"
    with pytest.raises(ValueError, match="unregistered"):
        errors.row_error("image_exploded", "x")


def test_transient_categories_are_the_retryable_network_ones():
    assert set(errors.TRANSIENT_CODES) == {"url_timeout", "url_unreachable", "url_server_error", "url_rate_limited"}
    assert errors.error_code("url_timeout: slow") == "url_timeout" and errors.error_code(None) is None
