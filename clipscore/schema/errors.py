"""Row error categories: the one list that the core produces, the summary counts and the README shows.

A row that cannot be scored gets ``score_error = "<category>: <detail>"``. The category is stable (a
person or a query filters on it); the detail is for people. Every category the core can produce is
registered here, with what causes it and whether a later run may succeed (``transient``: the next
``clipscore merge`` retries those rows instead of counting them as done).

``row_error("image_null", "...")`` builds the string and refuses an unregistered category, so a new
category can never reach a table without being counted and documented.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCategory:
    code: str
    cause: str
    transient: bool = False


_CATEGORIES = (
    ErrorCategory("image_null", "null image cell, or an empty path string"),
    ErrorCategory("image_empty", "0 bytes (cell, file or HTTP body)"),
    ErrorCategory("image_bad_type", "a cell value that is neither bytes nor text"),
    ErrorCategory("image_too_large",
                  "over `max_image_bytes` (checked before reading in full; compressed HTTP bodies count "
                  "after decompression) or over `max_image_pixels` (checked from the header, before decoding)"),
    ErrorCategory("image_aspect_ratio",
                  "longer side over `max_aspect_ratio` times the shorter side (1×100,000 strips, spacer GIFs)"),
    ErrorCategory("image_format_not_allowed",
                  "a format outside `image_formats` (e.g. EPS/PostScript, never handed to Ghostscript)"),
    ErrorCategory("image_undecodable", "random or non-image bytes, unsupported formats, corrupt files"),
    ErrorCategory("image_truncated", "a cut-off file"),
    ErrorCategory("file_not_found", "no file at the path"),
    ErrorCategory("path_is_directory", "the path is a directory"),
    ErrorCategory("file_not_regular",
                  "a device, FIFO, socket or other non-regular file (refused without reading)"),
    ErrorCategory("file_unreadable", "permissions, I/O errors, filesystem failures"),
    ErrorCategory("unsupported_scheme",
                  "a URL scheme outside `fsspec_schemes`, chained URLs (`simplecache::...`), no fsspec driver"),
    ErrorCategory("url_blocked",
                  "the host resolves to a loopback, private, link-local (cloud metadata) or reserved address "
                  "(`allow_private_urls` lifts it), or a redirect to a non-http(s) scheme"),
    ErrorCategory("url_invalid", "a malformed URL or host name"),
    ErrorCategory("url_http_error", "HTTP 4xx other than 429 (retrying cannot help)"),
    ErrorCategory("url_server_error", "HTTP 5xx after the retries", transient=True),
    ErrorCategory("url_rate_limited", "HTTP 429 after the retries", transient=True),
    ErrorCategory("url_too_many_redirects", "more than `http_max_redirects` redirects"),
    ErrorCategory("url_timeout",
                  "no complete answer within `http_timeout_s` (connect, every redirect and the whole body)",
                  transient=True),
    ErrorCategory("url_unreachable", "DNS failure, refused or reset connection, TLS failure", transient=True),
    ErrorCategory("caption_null", "null caption cell"),
    ErrorCategory("caption_empty", "empty or blank caption"),
    ErrorCategory("caption_bad_type", "a caption that is not text"),
    ErrorCategory("shard_truncated",
                  "a WebDataset tar that ends early or is corrupt: its samples before the damage are kept, "
                  "and this one extra row (key `__shard__:<path>`) names the shard"),
    ErrorCategory("shard_unreadable", "a WebDataset path that is not a tar at all (one row names it)"),
    ErrorCategory("member_too_large", "a WebDataset caption member larger than `max_image_bytes` (skipped in the stream)"),
    ErrorCategory("embedding_invalid",
                  "the model produced a NaN, infinite or zero embedding for this image or caption "
                  "(e.g. fp16 overflow)"),
)

CATEGORIES: dict[str, ErrorCategory] = {c.code: c for c in _CATEGORIES}
ERROR_CODES: tuple[str, ...] = tuple(CATEGORIES)
TRANSIENT_CODES: tuple[str, ...] = tuple(c.code for c in _CATEGORIES if c.transient)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when the message is empty), at most ``limit`` characters:
    what a one-line reason, log line or ConfigError quotes."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def row_error(code: str, detail: str) -> str:
    """``"code: detail"`` for a registered category; an unregistered one is a code error."""
    if code not in CATEGORIES:
        raise ValueError(f"unregistered error category {code!r}: add it to clipscore.schema.errors")
    return f"{code}: {detail}"


def error_code(reason: str | None) -> str | None:
    """The category of a ``score_error`` value (the text before the first colon)."""
    if reason is None:
        return None
    return reason.split(":", 1)[0]


def markdown_table() -> str:
    """The README's bad-input table, generated from the registry (a test keeps the README in sync)."""
    lines = ["| `score_error` category | cause | retried by the next merge |", "| --- | --- | --- |"]
    for c in _CATEGORIES:
        lines.append(f"| `{c.code}` | {c.cause} | {'yes' if c.transient else 'no'} |")
    return "\n".join(lines)
