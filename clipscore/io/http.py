"""The http(s) client of the fetch stage: ``HttpFetcher(cfg).read(url)`` returns a body, or raises ``FetchError``.

* **Time** per URL is bounded (see ``HttpFetcher.read`` for the formula): each attempt gets one
  ``clipscore.io.reach.Deadline`` of ``http_timeout_s`` that covers DNS, connect, TLS, every redirect hop,
  the headers and the whole body; only timeouts, dropped connections, 429 and 5xx are retried.
* **Bytes** are capped by ``max_image_bytes`` before they are read in full; a compressed body
  (``Content-Encoding: gzip`` / ``deflate``) counts its *decompressed* bytes while streaming
  (``_BodyDecoder``), so a gzip bomb costs no more memory than ``max_image_bytes``.
* **Reach**: connections go through a ``clipscore.io.reach.ReachGuard`` (resolved addresses checked at
  every hop). Redirects are followed by hand, to http(s) only. Proxies and ``.netrc`` from the
  environment are ignored unless ``http_trust_env``; cookies are never kept.
"""
from __future__ import annotations

import email.utils
import math
import random
import socket
import threading
import time
import zlib
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin, urlsplit

from clipscore.config.options import ScoringOptions
from clipscore.io.fetch_errors import FetchError, redact_url, scrub
from clipscore.io.reach import Deadline, ReachGuard, guarded_adapter

_CHUNK = 64 * 1024  # raw bytes per socket read (the watchdog, not the chunk size, bounds the time)
_PIECE = 256 * 1024  # decompressed bytes per zlib call, so a bomb is stopped after one piece
_REDIRECTS = (301, 302, 303, 307, 308)
_ACCEPTED_ENCODINGS = ("gzip", "x-gzip", "deflate")


class HttpFetcher:
    """Reads the body of http(s) URLs with the config's limits; thread-safe (one shared session)."""

    def __init__(self, cfg: ScoringOptions):
        self.max_bytes = cfg.max_image_bytes
        self.timeout_s = cfg.http_timeout_s
        self.retries = cfg.http_retries
        self.max_redirects = cfg.http_max_redirects
        self.retry_after_max_s = cfg.http_retry_after_max_s
        self.trust_env = cfg.http_trust_env
        self._io_threads = cfg.io_threads
        self._guard = ReachGuard(cfg.allow_private_urls, cfg.io_threads)
        self._requests_session = None
        self._session_lock = threading.Lock()

    @property
    def max_seconds_per_url(self) -> float:
        """The most one http(s) URL can take (see ``read``)."""
        return (self.retries + 1) * self.timeout_s + self.retries * self.retry_after_max_s

    def close(self) -> None:
        if self._requests_session is not None:
            self._requests_session.close()
            self._requests_session = None
        self._guard.close()

    def _session(self):
        with self._session_lock:
            if self._requests_session is None:
                import http.cookiejar

                import requests

                session = requests.Session()
                session.trust_env = self.trust_env  # proxies, .netrc and CA bundles from the environment
                session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))  # no cookies
                adapter = guarded_adapter(self._guard, self._io_threads)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.headers["User-Agent"] = "clipscore/0.1 (+https://github.com/clipscore/clipscore)"
                session.headers["Accept-Encoding"] = "gzip, deflate"
                session.headers["Accept"] = "image/*, */*;q=0.8"
                self._requests_session = session
            return self._requests_session

    def read(self, url: str) -> bytes:
        """The body of an http(s) URL, following redirects, retrying what can succeed later.

        Each attempt gets a fresh deadline of ``http_timeout_s`` that covers DNS, connect, TLS, every
        redirect hop, the headers and the whole body. Only timeouts, dropped connections, 429 and
        5xx are retried, at most ``http_retries`` times, after the server's ``Retry-After`` (seconds
        or HTTP-date) or else a jittered exponential backoff (0.25 s, 0.5 s, 1 s, ... x U(0.5, 1)),
        either capped at ``http_retry_after_max_s``. So one URL takes at most

            (http_retries + 1) x http_timeout_s + http_retries x http_retry_after_max_s

        (25 s with the defaults 1, 10 s and 5 s), plus milliseconds of scheduling; the retry loop
        also stops at that budget. Other 4xx, blocked addresses and bad redirects are never retried.
        """
        seen = [url]
        budget_end = time.monotonic() + self.max_seconds_per_url
        attempt = 0
        while True:
            try:
                return self._attempt(url, seen)
            except FetchError as failed:
                if not failed.retryable or attempt >= self.retries:
                    raise FetchError(failed.code, scrub(failed.detail, seen)) from None
                attempt += 1
                backoff = min(self.retry_after_max_s, 0.25 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                wait = backoff if failed.retry_after is None else min(failed.retry_after, self.retry_after_max_s)
                # The next attempt must fit in the budget as a whole.
                wait = min(wait, budget_end - time.monotonic() - self.timeout_s)
                if wait > 0:
                    time.sleep(wait)

    def _attempt(self, url: str, seen: list[str]) -> bytes:
        budget = Deadline(self.timeout_s)
        self._guard.begin(budget)
        try:
            return self._follow(url, budget, seen)
        finally:
            self._guard.end(budget)

    def _follow(self, url: str, budget: Deadline, seen: list[str]) -> bytes:
        current, redirects = url, 0
        while True:
            resp = self._request(current, budget)
            try:
                status = resp.status_code
                location = resp.headers.get("Location")
                if status in _REDIRECTS and location:
                    target = urljoin(current, location.strip())
                    seen.append(target)
                    scheme = urlsplit(target).scheme.lower() if "://" in target else ""
                    if scheme not in ("http", "https"):
                        raise FetchError("url_blocked", f"{redact_url(current)} redirects to "
                                                        f"{redact_url(target)}: only http(s) redirects are followed")
                    if redirects >= self.max_redirects:
                        raise FetchError("url_too_many_redirects",
                                         f"{redact_url(url)}: more than http_max_redirects={self.max_redirects} "
                                         f"redirects (last to {redact_url(target)})")
                    redirects += 1
                    current = target
                    continue
                shown = redact_url(current)
                if status == 429:
                    raise FetchError("url_rate_limited", f"HTTP 429 from {shown}", retryable=True,
                                     retry_after=retry_after_s(resp.headers.get("Retry-After")))
                if status >= 500:
                    raise FetchError("url_server_error", f"HTTP {status} from {shown}", retryable=True,
                                     retry_after=retry_after_s(resp.headers.get("Retry-After")))
                if status >= 300 or status < 200:
                    raise FetchError("url_http_error", f"HTTP {status} from {shown}")
                return self._read_body(resp, shown, budget)
            finally:
                resp.close()

    def _request(self, url: str, budget: Deadline):
        import requests

        remaining = budget.remaining()
        if remaining <= 0:
            raise self._timeout(url, budget)
        if self.trust_env:
            self._check_proxied_target(url, budget)
        try:
            return self._session().get(url, stream=True, allow_redirects=False, timeout=(remaining, remaining))
        except FetchError:
            raise
        except Exception as exc:  # noqa: BLE001 - every transport failure is a row error
            if budget.expired or budget.remaining() <= 0 or isinstance(exc, requests.exceptions.Timeout):
                raise self._timeout(url, budget) from None
            invalid = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                       requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader,
                       UnicodeError, ValueError)
            if isinstance(exc, invalid):
                raise FetchError("url_invalid", f"{redact_url(url)}: not a valid URL "
                                                    f"({type(exc).__name__})") from None
            raise FetchError("url_unreachable", f"{redact_url(url)}: {_cause(exc)}", retryable=True) from None

    def _check_proxied_target(self, url: str, budget: Deadline) -> None:
        """With a proxy from the environment the proxy resolves the host: check it here first."""
        import requests.utils

        proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
        if proxy:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            self._guard.resolve(parts.hostname or "", port, budget, self.timeout_s)

    def _read_body(self, resp: Any, shown: str, budget: Deadline) -> bytes:
        declared = resp.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError("image_too_large",
                             f"{shown} declares {declared} bytes (limit max_image_bytes={self.max_bytes})")
        decoder = _BodyDecoder(resp.headers.get("Content-Encoding", ""), self.max_bytes, shown)
        raw_total = 0
        while True:
            if budget.remaining() <= 0:
                raise self._timeout(shown, budget)
            try:
                piece = resp.raw.read(_CHUNK, decode_content=False)
            except Exception as exc:  # noqa: BLE001 - a broken or cut stream
                if budget.expired or budget.remaining() <= 0:
                    raise self._timeout(shown, budget) from None
                raise FetchError("url_unreachable", f"{shown}: the body was cut ({_cause(exc)})",
                                 retryable=True) from None
            if budget.expired:  # the watchdog cut the stream: what came is not the whole body
                raise self._timeout(shown, budget)
            if not piece:
                break
            raw_total += len(piece)
            if raw_total > self.max_bytes:
                raise FetchError("image_too_large", f"{shown} sent over max_image_bytes={self.max_bytes}")
            decoder.feed(piece)
        data = decoder.result()
        if not data:
            raise FetchError("image_empty", f"{shown} returned an empty body")
        return data

    def _timeout(self, url: str, budget: Deadline) -> FetchError:
        return FetchError("url_timeout", f"{redact_url(url)}: no complete answer within "
                                         f"http_timeout_s={self.timeout_s:g}s", retryable=True)


class _BodyDecoder:
    """Decodes a ``Content-Encoding`` while streaming; the decoded size never passes ``limit``."""

    def __init__(self, encoding: str, limit: int, shown: str):
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip() and c.strip().lower() != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in _ACCEPTED_ENCODINGS):
            raise FetchError("image_undecodable", f"{shown}: unsupported Content-Encoding {encoding!r} "
                                                  "(accepted: gzip, deflate)")
        self.coding = codings[0] if codings else None
        self.limit, self.shown = limit, shown
        self.out = bytearray()
        self._z: Any = None  # the decompressor of the current member; None between members
        self._members = 0
        self._ended = False
        self._raw_deflate = False

    def _new(self) -> Any:
        if self.coding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS if self._raw_deflate else zlib.MAX_WBITS)

    def _append(self, data: bytes) -> None:
        self.out += data
        if len(self.out) > self.limit:
            what = "decompressed body" if self.coding else "body"
            raise FetchError("image_too_large", f"{self.shown}: {what} over max_image_bytes={self.limit}")

    def feed(self, data: bytes) -> None:
        if self.coding is None:
            self._append(data)
            return
        try:
            self._inflate(data)
        except zlib.error:
            if self.coding == "deflate" and not self._raw_deflate and not self.out and self._members == 1:
                # "deflate" is zlib-wrapped by the RFC, raw by some servers: try the other one.
                self._raw_deflate, self._z, self._members = True, None, 0
                try:
                    self._inflate(data)
                    return
                except zlib.error:
                    pass
            raise FetchError("image_undecodable", f"{self.shown}: corrupt {self.coding} body") from None

    def _inflate(self, data: bytes) -> None:
        while not self._ended:
            if self._z is None:
                if not data:
                    return
                # Concatenated gzip members are one body (RFC 1952); other trailing bytes are padding.
                if self._members and (self.coding == "deflate" or not b"\x1f\x8b".startswith(data[:2])):
                    self._ended = True
                    return
                self._z, self._members = self._new(), self._members + 1
            piece = self._z.decompress(data, _PIECE)  # at most _PIECE bytes out, whatever came in
            self._append(piece)
            if self._z.eof:
                data, self._z = self._z.unused_data, None
                continue
            data = self._z.unconsumed_tail
            if not data and len(piece) < _PIECE:
                return

    def result(self) -> bytes:
        return bytes(self.out)


def retry_after_s(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP-date) in seconds from now, or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _cause(exc: BaseException) -> str:
    """What went wrong on the wire, in a few words, without the URL requests/urllib3 put in messages."""
    import ssl

    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        err = stack.pop()
        if not isinstance(err, BaseException) or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, socket.gaierror):
            return "cannot resolve the host"
        if isinstance(err, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({err.verify_message or err.reason})"
        if isinstance(err, ssl.SSLError):
            return f"TLS error ({err.reason or type(err).__name__})"
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        if isinstance(err, ConnectionResetError):
            return "connection reset"
        if isinstance(err, (socket.timeout, TimeoutError)):
            return "timed out"
        stack.extend([err.__cause__, err.__context__, getattr(err, "reason", None),
                      *(a for a in getattr(err, "args", ()) if isinstance(a, BaseException))])
        if isinstance(err, OSError) and err.strerror:
            return err.strerror.lower()
    return type(exc).__name__
