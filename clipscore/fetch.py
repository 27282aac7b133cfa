"""Stage 1a: turn an image reference (bytes, a path or a URL) into encoded bytes, or a row error.

Every failure is a ``FetchError(code, detail)`` whose code is a registered category
(``clipscore.errors``); ``ImageLoader`` turns it into the row's ``score_error``. A reference is never
trusted: it comes from a table that anyone upstream may have filled.

* **Bytes** are capped by ``max_image_bytes`` on every source, before they are read in full; a
  compressed HTTP body (``Content-Encoding: gzip`` / ``deflate``) counts its *decompressed* bytes
  while streaming, so a gzip bomb costs no more memory than ``max_image_bytes``.
* **Time** per http(s) URL is bounded (see ``Fetcher._read_url`` for the formula): one deadline of
  ``http_timeout_s`` per attempt covers DNS, connect, TLS, every redirect hop, the headers and the
  whole body, enforced by a watchdog that shuts the socket down when it passes, so no server can
  stretch it by sending one byte at a time.
* **Reach**: a URL whose host resolves to a loopback, private, link-local (cloud metadata),
  multicast, CGNAT, reserved or unspecified address is refused (``url_blocked``) unless
  ``allow_private_urls``; the check runs on the resolved addresses at every hop, and the connection
  is opened to the address that was checked (no second lookup, so no DNS rebinding). Redirects go
  to http(s) only. Proxies and ``.netrc`` from the environment are ignored unless ``http_trust_env``.
* **Paths**: only regular files are read; devices, FIFOs and sockets are refused from ``stat``
  without being opened (and the opened descriptor is checked again). fsspec URLs are read only for
  the schemes in ``fsspec_schemes``; chained URLs (``simplecache::s3://...``) are refused.
* **Reasons** never echo credentials, query strings or fragments of a URL (``redact_url``).
"""
from __future__ import annotations

import concurrent.futures
import email.utils
import ipaddress
import math
import os
import random
import socket
import stat
import sys
import threading
import time
import zlib
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin, urlsplit

from clipscore.config import ScoreConfig
from clipscore.errors import row_error

_CHUNK = 64 * 1024  # raw bytes per socket read (the watchdog, not the chunk size, bounds the time)
_PIECE = 256 * 1024  # decompressed bytes per zlib call, so a bomb is stopped after one piece
_REDIRECTS = (301, 302, 303, 307, 308)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_ACCEPTED_ENCODINGS = ("gzip", "x-gzip", "deflate")


class FetchError(Exception):
    """A row error while fetching: ``code`` is a category of ``clipscore.errors``.

    ``retryable`` marks failures a later attempt may cure (timeouts, dropped connections, 429, 5xx);
    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(self, code: str, detail: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(row_error(code, detail))
        self.code, self.detail = code, detail
        self.retryable, self.retry_after = retryable, retry_after


def is_remote(ref: str) -> bool:
    return "://" in ref and not ref.lower().startswith("file://")


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


def _scrub(detail: str, urls: list[str]) -> str:
    """Last line of defence: remove any secret part of the URLs of this fetch from a reason."""
    for url in urls:
        for secret in _secrets_of(url):
            detail = detail.replace(secret, "…")
    return detail


# -------------------------------------------------------------------------------------------------
# Reach: which addresses a URL may connect to
# -------------------------------------------------------------------------------------------------
def blocked_reason(ip: str) -> str | None:
    """Why a connection to ``ip`` is refused by default (``allow_private_urls`` lifts it), or None."""
    try:
        addr: Any = ipaddress.ip_address(ip.strip("[]").split("%", 1)[0])
    except ValueError:
        return "unparseable"
    embedded = []
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:a.b.c.d is a.b.c.d
    elif addr.version == 6:
        if addr.sixtofour is not None:
            embedded.append(addr.sixtofour)
        if addr.teredo is not None:
            embedded.extend(addr.teredo)
        if addr in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    for candidate in (addr, *embedded):
        for test, name in (
            (candidate.is_unspecified, "unspecified"),
            (candidate.is_loopback, "loopback"),
            (candidate.is_link_local, "link-local (cloud metadata)"),
            (candidate.is_multicast, "multicast"),
            (candidate.version == 4 and candidate in _CGNAT, "shared (CGNAT)"),
            (candidate.is_private, "private"),
            (candidate.is_reserved, "reserved"),
            (not candidate.is_global, "non-global"),
        ):
            if test:
                return name
    return None


class _Budget:
    """One attempt's deadline, and the sockets to shut down when it passes.

    It holds a duplicate descriptor of each socket the attempt uses: shutting the duplicate down cuts
    every read on the connection, also through the TLS socket that replaces the plain one during the
    handshake, and also after http.client has dropped its own reference (``Connection: close``).
    The duplicates are closed when the attempt ends.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self._done = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            if self._done:
                return
            try:
                dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
            except (OSError, ValueError):
                return
            self._socks.append(dup)
            if self.expired:
                _shutdown(dup)

    def expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for dup in self._socks:
                _shutdown(dup)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            for dup in self._socks:
                dup.close()
            self._socks.clear()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Watchdog:
    """One thread that shuts down the sockets of attempts past their deadline.

    A blocked ``recv`` (a drip server, a stalled TLS handshake, headers that never end) returns at
    once when its socket is shut down, so the deadline holds whatever the server does. The thread
    exits after a few idle seconds and is started again on demand.
    """

    _IDLE_S = 5.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._budgets: set[_Budget] = set()
        self._thread: threading.Thread | None = None

    def watch(self, budget: _Budget) -> None:
        with self._cond:
            self._budgets.add(budget)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="clipscore-deadline", daemon=True)
                self._thread.start()
            self._cond.notify()

    def unwatch(self, budget: _Budget) -> None:
        with self._cond:
            self._budgets.discard(budget)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for budget in [b for b in self._budgets if b.deadline <= now]:
                    self._budgets.discard(budget)
                    budget.expire()
                if not self._budgets:
                    self._cond.wait(self._IDLE_S)
                    if not self._budgets:
                        self._thread = None
                        return
                    continue
                self._cond.wait(min(b.deadline for b in self._budgets) - now)


class _ReachGuard:
    """Resolves, checks and pins the addresses a fetch connects to; owns the per-thread deadline."""

    def __init__(self, allow_private: bool, dns_threads: int):
        self.allow_private = allow_private
        self.watchdog = _Watchdog()
        self._local = threading.local()
        self._dns_threads = max(1, dns_threads)
        self._dns: concurrent.futures.ThreadPoolExecutor | None = None
        self._dns_lock = threading.Lock()
        self._pool_classes: dict[str, type] | None = None

    # --- the current attempt's deadline (urllib3 calls our connection classes in this thread) ----
    def begin(self, budget: _Budget) -> None:
        self._local.budget = budget
        self.watchdog.watch(budget)

    def end(self, budget: _Budget) -> None:
        budget.finish()
        self.watchdog.unwatch(budget)
        self._local.budget = None

    def current(self) -> _Budget | None:
        return getattr(self._local, "budget", None)

    def close(self) -> None:
        if self._dns is not None:
            self._dns.shutdown(wait=False, cancel_futures=True)
            self._dns = None

    # --- resolution ---------------------------------------------------------------------------
    def resolve(self, host: str, port: int, budget: _Budget | None, fallback_s: float) -> list[tuple]:
        """``getaddrinfo`` entries for ``host``, within the deadline, every address checked."""
        host = host.strip("[]")
        try:  # numeric hosts (127.0.0.1, ::1, 2130706433, 0x7f.1): no lookup, no thread
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        except (socket.gaierror, UnicodeError, ValueError):
            infos = self._lookup(host, port, budget, fallback_s)
        if not infos:
            raise FetchError("url_unreachable", f"{host} has no address")
        if not self.allow_private:
            for info in infos:
                ip = info[4][0]
                reason = blocked_reason(ip)
                if reason is not None:
                    shown = host if host == ip else f"{host} resolves to {ip}, which"
                    raise FetchError("url_blocked", f"{shown} is a {reason} address "
                                                    "(set allow_private_urls=true to fetch from it)")
        return infos

    def _lookup(self, host: str, port: int, budget: _Budget | None, fallback_s: float) -> list[tuple]:
        # getaddrinfo cannot be interrupted: run it in a thread and stop waiting at the deadline.
        with self._dns_lock:
            if self._dns is None:
                self._dns = concurrent.futures.ThreadPoolExecutor(self._dns_threads, thread_name_prefix="clipscore-dns")
            future = self._dns.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        wait = budget.remaining() if budget is not None else fallback_s
        try:
            return future.result(timeout=max(0.0, wait))
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise FetchError("url_timeout", f"resolving {host} took over the deadline", retryable=True) from None
        except socket.gaierror as exc:
            transient = exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None))
            raise FetchError("url_unreachable", f"cannot resolve host {host}", retryable=transient) from None
        except (UnicodeError, ValueError):
            raise FetchError("url_invalid", f"invalid host name {host!r}") from None

    def check_peer(self, sock: socket.socket) -> None:
        """The address actually connected to (belt and braces after connecting to a checked one)."""
        if self.allow_private:
            return
        peer = sock.getpeername()[0]
        reason = blocked_reason(peer)
        if reason is not None:
            sock.close()
            raise FetchError("url_blocked", f"connected to {peer}, a {reason} address "
                                            "(set allow_private_urls=true to fetch from it)")

    # --- urllib3 plumbing ---------------------------------------------------------------------
    def install(self, manager: Any) -> None:
        """Make a urllib3 pool manager open its connections through this guard."""
        if self._pool_classes is None:
            self._pool_classes = _guarded_pool_classes(self)
        manager.pool_classes_by_scheme = dict(self._pool_classes)


def _guarded_pool_classes(guard: _ReachGuard) -> dict[str, type]:
    """urllib3 pool classes whose connections resolve through ``guard`` and obey its deadline."""
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
    from urllib3.util import connection as u3connection

    class GuardedConnection:
        def _new_conn(self):  # type: ignore[no-untyped-def]
            budget = guard.current()
            if self.proxy is not None:
                # The operator's proxy (http_trust_env); the target host was checked before sending.
                sock = super()._new_conn()
            else:
                sock = self._clipscore_connect(budget)
            if budget is not None:
                budget.attach(sock)  # from here on the watchdog can cut it (TLS handshake included)
            return sock

        def _clipscore_connect(self, budget):  # type: ignore[no-untyped-def]
            infos = guard.resolve(self._dns_host, self.port, budget, fallback_s=self.timeout or 10.0)
            last: Exception | None = None
            for info in infos:
                remaining = budget.remaining() if budget is not None else (self.timeout or 10.0)
                if remaining <= 0:
                    last = socket.timeout("deadline")
                    break
                try:  # connect to the address that was checked: no second lookup to rebind
                    sock = u3connection.create_connection(
                        (info[4][0], self.port), remaining,
                        source_address=self.source_address, socket_options=self.socket_options)
                except OSError as exc:
                    last = exc
                    continue
                guard.check_peer(sock)
                sys.audit("http.client.connect", self, self.host, self.port)
                return sock
            if isinstance(last, socket.timeout):
                raise ConnectTimeoutError(self, f"connecting to {self.host} timed out") from last
            raise NewConnectionError(self, f"Failed to establish a new connection: {last}") from last

        def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            budget = guard.current()
            if budget is not None and self.sock is not None:
                budget.attach(self.sock)  # a pooled connection serves this attempt now
            return super().request(*args, **kwargs)

    class GuardedHTTPConnection(GuardedConnection, HTTPConnection):
        pass

    class GuardedHTTPSConnection(GuardedConnection, HTTPSConnection):
        pass

    class GuardedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPConnectionPool, "https": GuardedHTTPSConnectionPool}


def _guarded_adapter(guard: _ReachGuard, pool_size: int):
    from requests.adapters import HTTPAdapter

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().init_poolmanager(*args, **kwargs)
            guard.install(self.poolmanager)

        def proxy_manager_for(self, proxy, **proxy_kwargs):  # type: ignore[no-untyped-def]
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if not proxy.lower().startswith("socks"):  # SOCKS pools have their own classes
                guard.install(manager)
            return manager

    return GuardedAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)


# -------------------------------------------------------------------------------------------------
# Bodies
# -------------------------------------------------------------------------------------------------
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


# -------------------------------------------------------------------------------------------------
# Fetcher
# -------------------------------------------------------------------------------------------------
class Fetcher:
    """Reads image bytes from cells, paths, fsspec URLs and http(s), with the config's limits.

    Thread-safe: ``ImageLoader`` calls ``read_bytes`` from its I/O threads at once.
    """

    def __init__(self, cfg: ScoreConfig):
        self.max_bytes = cfg.max_image_bytes
        self.timeout_s = cfg.http_timeout_s
        self.retries = cfg.http_retries
        self.max_redirects = cfg.http_max_redirects
        self.retry_after_max_s = cfg.http_retry_after_max_s
        self.trust_env = cfg.http_trust_env
        self.fsspec_schemes = tuple(s.lower() for s in cfg.fsspec_schemes)
        self.base_path = cfg.image_base_path
        self._io_threads = cfg.io_threads
        self._guard = _ReachGuard(cfg.allow_private_urls, cfg.io_threads)
        self._http = None
        self._http_lock = threading.Lock()

    @property
    def max_seconds_per_url(self) -> float:
        """The most one http(s) reference can take (see ``_read_url``)."""
        return (self.retries + 1) * self.timeout_s + self.retries * self.retry_after_max_s

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self._guard.close()

    def read_bytes(self, ref: Any) -> bytes:
        if ref is None or (isinstance(ref, float) and ref != ref):  # None or NaN from pandas
            raise FetchError("image_null", "the image cell is null")
        if isinstance(ref, (bytes, bytearray, memoryview)):
            data = bytes(ref)
            if not data:
                raise FetchError("image_empty", "the image bytes are empty")
            if len(data) > self.max_bytes:
                raise FetchError("image_too_large", f"{len(data)} bytes (limit max_image_bytes={self.max_bytes})")
            return data
        if not isinstance(ref, str):
            raise FetchError("image_bad_type", f"expected bytes, a path or a URL, got {type(ref).__name__}")
        ref = ref.strip()
        if not ref:
            raise FetchError("image_null", "the image path is empty")
        lowered = ref.lower()
        if lowered.startswith(("http://", "https://")):
            return self._read_url(ref)
        if "://" in ref and not lowered.startswith("file://"):
            return self._read_fsspec(ref)
        return self._read_local(self._local_path(ref))

    # ---------------------------------------------------------------------------------------------
    # Local files
    # ---------------------------------------------------------------------------------------------
    def _local_path(self, ref: str) -> str:
        if ref.lower().startswith("file://"):
            ref = ref[len("file://"):]
            if ref.lower().startswith("localhost/"):
                ref = ref[len("localhost"):]
        elif ref.startswith("dbfs:/"):  # Databricks: DBFS is mounted at /dbfs on every node
            ref = "/dbfs/" + ref[len("dbfs:/"):].lstrip("/")
        if self.base_path and not os.path.isabs(ref):
            ref = os.path.join(self.base_path, ref)
        return ref

    def _check_file(self, path: str, info: os.stat_result) -> None:
        if stat.S_ISDIR(info.st_mode):
            raise FetchError("path_is_directory", f"{path} is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise FetchError("file_not_regular", f"{path} is {_file_kind(info.st_mode)}, not a regular file "
                                                 "(not read)")
        if info.st_size > self.max_bytes:
            raise FetchError("image_too_large",
                             f"{path} is {info.st_size} bytes (limit max_image_bytes={self.max_bytes})")

    def _read_local(self, path: str) -> bytes:
        try:
            self._check_file(path, os.stat(path))
        except (FileNotFoundError, NotADirectoryError):
            raise FetchError("file_not_found", f"no such file: {path}") from None
        except OSError as exc:
            raise FetchError("file_unreadable", f"{path}: {exc.strerror or exc}") from None
        # O_NONBLOCK: if the path was swapped for a FIFO since stat, opening it must not wait for a
        # writer; the descriptor is checked again before any read.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise FetchError("file_not_found", f"no such file: {path}") from None
        except OSError as exc:
            raise FetchError("file_unreadable", f"{path}: {exc.strerror or exc}") from None
        try:
            self._check_file(path, os.fstat(fd))
            with os.fdopen(fd, "rb", closefd=True) as handle:
                fd = -1
                data = handle.read(self.max_bytes + 1)
        except OSError as exc:
            raise FetchError("file_unreadable", f"{path}: {exc.strerror or exc}") from None
        finally:
            if fd != -1:
                os.close(fd)
        if not data:
            raise FetchError("image_empty", f"{path} is an empty file")
        if len(data) > self.max_bytes:
            raise FetchError("image_too_large", f"{path} grew over max_image_bytes={self.max_bytes} while read")
        return data

    # ---------------------------------------------------------------------------------------------
    # fsspec
    # ---------------------------------------------------------------------------------------------
    def _read_fsspec(self, ref: str) -> bytes:
        shown = redact_url(ref)
        if "::" in ref:  # fsspec chains filesystems (simplecache::s3://...): caches, other protocols
            raise FetchError("unsupported_scheme", f"{shown}: chained URLs ('::') are not read; "
                                                   "give the plain URL of the file")
        scheme = ref.split("://", 1)[0].lower()
        if scheme not in self.fsspec_schemes:
            raise FetchError("unsupported_scheme",
                             f"{shown}: '{scheme}://' is not in fsspec_schemes "
                             f"({', '.join(self.fsspec_schemes) or 'empty'}); add it to that option to read it")
        try:
            import fsspec
        except ImportError:
            raise FetchError(
                "unsupported_scheme",
                f"no filesystem for '{scheme}://' (pip install fsspec and its {scheme} driver, e.g. s3fs)",
            ) from None
        try:
            with fsspec.open(ref, "rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise FetchError("file_not_found", f"no such file: {shown}") from None
        except IsADirectoryError:
            raise FetchError("path_is_directory", f"{shown} is a directory, not an image file") from None
        except ImportError as exc:
            raise FetchError("unsupported_scheme", _scrub(f"{shown}: {short(exc)}", [ref])) from None
        except Exception as exc:  # noqa: BLE001 - any filesystem failure is a row error
            raise FetchError("file_unreadable", _scrub(f"{shown}: {type(exc).__name__}: {short(exc)}", [ref])) from None
        if not data:
            raise FetchError("image_empty", f"{shown} is an empty file")
        if len(data) > self.max_bytes:
            raise FetchError("image_too_large", f"{shown} is over max_image_bytes={self.max_bytes}")
        return data

    # ---------------------------------------------------------------------------------------------
    # http(s)
    # ---------------------------------------------------------------------------------------------
    def _session(self):
        with self._http_lock:
            if self._http is None:
                import http.cookiejar

                import requests

                session = requests.Session()
                session.trust_env = self.trust_env  # proxies, .netrc and CA bundles from the environment
                session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))  # no cookies
                adapter = _guarded_adapter(self._guard, self._io_threads)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.headers["User-Agent"] = "clipscore/0.1 (+https://github.com/clipscore/clipscore)"
                session.headers["Accept-Encoding"] = "gzip, deflate"
                session.headers["Accept"] = "image/*, */*;q=0.8"
                self._http = session
            return self._http

    def _read_url(self, url: str) -> bytes:
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
                    raise FetchError(failed.code, _scrub(failed.detail, seen)) from None
                attempt += 1
                backoff = min(self.retry_after_max_s, 0.25 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                wait = backoff if failed.retry_after is None else min(failed.retry_after, self.retry_after_max_s)
                # The next attempt must fit in the budget as a whole.
                wait = min(wait, budget_end - time.monotonic() - self.timeout_s)
                if wait > 0:
                    time.sleep(wait)

    def _attempt(self, url: str, seen: list[str]) -> bytes:
        budget = _Budget(self.timeout_s)
        self._guard.begin(budget)
        try:
            return self._follow(url, budget, seen)
        finally:
            self._guard.end(budget)

    def _follow(self, url: str, budget: _Budget, seen: list[str]) -> bytes:
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

    def _request(self, url: str, budget: _Budget):
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

    def _check_proxied_target(self, url: str, budget: _Budget) -> None:
        """With a proxy from the environment the proxy resolves the host: check it here first."""
        import requests.utils

        proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
        if proxy:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            self._guard.resolve(parts.hostname or "", port, budget, self.timeout_s)

    def _read_body(self, resp: Any, shown: str, budget: _Budget) -> bytes:
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

    def _timeout(self, url: str, budget: _Budget) -> FetchError:
        return FetchError("url_timeout", f"{redact_url(url)}: no complete answer within "
                                         f"http_timeout_s={self.timeout_s:g}s", retryable=True)


def _file_kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
