"""What a failed fetch reports: ``FetchError(code, detail)``, and URLs made safe to show in it.

Every failure of the fetch stage (``clipscore.io.fetch``, ``clipscore.io.http``, ``clipscore.io.reach``)
is a ``FetchError`` whose code is a registered category (``clipscore.schema.errors``); ``ImageLoader`` turns it
into the row's ``score_error``. Reasons never echo credentials, query strings or fragments of a URL:
``redact_url`` shows ``scheme://host[:port]/path`` and ``scrub`` removes any secret part of the URLs
of a fetch that an exception's message may still carry. This module imports nothing of the fetch
stage, so the modules above can all use it without an import cycle.
"""
from __future__ import annotations

from clipscore.schema.errors import row_error


class FetchError(Exception):
    """A row error while fetching: ``code`` is a category of ``clipscore.schema.errors``.

    ``retryable`` marks failures a later attempt may cure (timeouts, dropped connections, 429, 5xx);
    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(self, code: str, detail: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(row_error(code, detail))
        self.code, self.detail = code, detail
        self.retryable, self.retry_after = retryable, retry_after


def short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` of a URL, safe for a reason or a log line.

    Credentials (``user:pass@``) are dropped, a query string becomes ``?…`` (signed URLs carry their
    signature there) and a fragment is dropped. Works on malformed URLs too (no parsing that can fail).
    """
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    cut = len(rest)
    for mark in "?#":
        at = rest.find(mark)
        if at != -1:
            cut = min(cut, at)
    head, tail = rest[:cut], rest[cut:]
    slash = head.find("/")
    authority, path = (head, "") if slash == -1 else (head[:slash], head[slash:])
    authority = authority.rpartition("@")[2]
    query = "?…" if tail.startswith("?") and len(tail.split("#", 1)[0]) > 1 else ""
    return f"{scheme}{sep}{authority}{path}{query}"


def _secrets_of(url: str) -> list[str]:
    """The parts of a URL that must never reach a reason: userinfo, query, fragment."""
    secrets = []
    scheme, sep, rest = str(url).partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0] if sep else ""
    if "@" in authority:
        userinfo = authority.rpartition("@")[0]
        secrets += [userinfo, userinfo.partition(":")[2]]
    for mark in "?#":
        if mark in rest:
            part = rest.split(mark, 1)[1].split("#", 1)[0]
            secrets += [part, *(kv.partition("=")[2] for kv in part.split("&"))]
    return sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True)


def scrub(detail: str, urls: list[str]) -> str:
    """Last line of defence: remove any secret part of the URLs of this fetch from a reason."""
    for url in urls:
        for secret in _secrets_of(url):
            detail = detail.replace(secret, "…")
    return detail
