"""Fetcher hardening: time, reach, size and reasons, against real servers on loopback (no mocks).

Every server here runs on 127.0.0.1, so the configs that must reach it set ``allow_private_urls``;
the tests of the default (loopback refused) use ``ScoreConfig()`` as shipped.
"""
from __future__ import annotations

import email.utils
import gzip
import os
import socket
import sys
import threading
import time
import tracemalloc
import uuid
import zlib
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pytest

import clipscore.io.reach as reach_module
from clipscore.config.job import ScoreConfig
from clipscore.io.fetch import Fetcher
from clipscore.io.fetch_errors import FetchError, redact_url

from support.servers import loopback_server

PAYLOAD = bytes(range(256)) * 40  # 10 KiB of "image" bytes: the fetcher does not decode
DRIP_S = 0.25


def _gzip_bomb() -> bytes:
    """Concatenated gzip members (one body by RFC 1952): ~4 MB on the wire, 4 GiB decompressed."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    member = b"".join(packer.compress(zeros) for _ in range(64)) + packer.flush()  # 64 MiB of zeros
    return member * 64


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counts: dict[str, int] = {}
    lock = threading.Lock()
    bomb = b""

    def log_message(self, *args):  # keep test output clean
        pass

    def handle(self):
        try:
            super().handle()
        except ConnectionError:  # the client hung up mid-request (a size cap, a deadline)
            pass

    def _count(self) -> int:
        with self.lock:
            self.counts[self.path] = self.counts.get(self.path, 0) + 1
            return self.counts[self.path]

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # the client stopped reading (a size cap): expected
            self.close_connection = True

    def _drip(self, piece: bytes, seconds: float = 60.0) -> None:
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                self.wfile.write(piece)
                self.wfile.flush()
                time.sleep(DRIP_S)
        except OSError:  # the client hung up: what the deadline is for
            pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        seen = self._count()
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        route = parts[0]
        if route == "ok":
            self._send(200, PAYLOAD)
        elif route == "ok-close":  # no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(PAYLOAD)
            self.close_connection = True
        elif route == "empty":
            self._send(200, b"")
        elif route == "drip":  # /drip/<bytes per 0.25 s>[?length=1]
            self.send_response(200)
            if query.get("length"):
                self.send_header("Content-Length", "1000000")
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self._drip(b"x" * int(parts[1]))
        elif route == "drip-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self._drip(b"X")
            self.close_connection = True
        elif route == "silent":
            time.sleep(30)
            self.close_connection = True
        elif route == "hop":  # /hop/<redirects left>/<seconds per hop>
            left, delay = int(parts[1]), float(parts[2])
            time.sleep(delay)
            if left:
                self._send(302, headers={"Location": f"/hop/{left - 1}/{delay}?{url.query}"})
            else:
                self._send(200, PAYLOAD)
        elif route == "loop":
            self._send(302, headers={"Location": self.path})
        elif route == "redirect":  # /redirect/<n>: n relative redirects, then the payload
            left = int(parts[1])
            if left:
                self._send(302, headers={"Location": f"/redirect/{left - 1}?{url.query}"})
            else:
                self._send(200, PAYLOAD)
        elif route == "to":  # /to?u=<location>
            self._send(302, headers={"Location": query["u"]})
        elif route == "status":  # /status/<code>?after=<n>&ra=<Retry-After>: <code> n times, then 200
            if seen <= int(query.get("after", "1")):
                headers = {}
                if query.get("ra", "").startswith("date:"):
                    when = time.time() + float(query["ra"][5:])
                    headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
                elif query.get("ra"):
                    headers["Retry-After"] = query["ra"]
                self._send(int(parts[1]), b"no", headers)
            else:
                self._send(200, PAYLOAD)
        elif route == "bomb":
            self._send(200, self.bomb, {"Content-Encoding": "gzip"})
        elif route == "gzip":
            self._send(200, gzip.compress(PAYLOAD), {"Content-Encoding": "gzip"})
        elif route == "deflate":
            self._send(200, zlib.compress(PAYLOAD), {"Content-Encoding": "deflate"})
        elif route == "rawdeflate":
            packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            self._send(200, packer.compress(PAYLOAD) + packer.flush(), {"Content-Encoding": "deflate"})
        elif route == "br":
            self._send(200, os.urandom(2000), {"Content-Encoding": "br"})
        elif route == "big":
            self._send(200, b"\0" * 300_000)
        elif route == "big-stream":  # no Content-Length, more than the cap
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for _ in range(100):
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
        elif route == "auth":
            self._send(200, b"auth:yes" if self.headers.get("Authorization") else b"auth:no")
        else:
            self._send(404, b"missing")


@pytest.fixture(scope="module")
def server():
    _Handler.bomb = _gzip_bomb()
    with loopback_server(_Handler) as url:
        yield url


def hits(path: str) -> int:
    with _Handler.lock:
        return _Handler.counts.get(path, 0)


def tag() -> str:
    return uuid.uuid4().hex[:10]


def local(**options) -> Fetcher:
    """A fetcher that may reach the loopback test server."""
    options.setdefault("http_retries", 0)
    return Fetcher(ScoreConfig(allow_private_urls=True, **options))


def fails(fetcher: Fetcher, ref) -> tuple[FetchError, float]:
    start = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetcher.read_bytes(ref)
    return caught.value, time.monotonic() - start


# Every socket connect in this process, while a test records (sys.audit, no patching).
_connects: list | None = None


def _audit(event, args):
    if event == "socket.connect" and _connects is not None:
        _connects.append(args[1])


sys.addaudithook(_audit)


@contextmanager
def recorded_connects():
    global _connects
    _connects = []
    try:
        yield _connects
    finally:
        _connects = None


# -------------------------------------------------------------------------------------------------
# Time: one deadline per attempt, whatever the server does
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("piece", [1, 100, 4096])
@pytest.mark.parametrize("length", ["", "1"])
def test_drip_body_ends_at_the_deadline(server, piece, length):
    error, took = fails(local(http_timeout_s=1.0), f"{server}/drip/{piece}?length={length}&t={tag()}")
    assert error.code == "url_timeout", error
    assert 0.9 <= took < 1.0 + 1.5


def test_drip_headers_end_at_the_deadline(server):
    error, took = fails(local(http_timeout_s=1.0), f"{server}/drip-headers?t={tag()}")
    assert error.code == "url_timeout", error
    assert took < 1.0 + 1.5


def test_silent_server_times_out(server):
    error, took = fails(local(http_timeout_s=1.0), f"{server}/silent?t={tag()}")
    assert error.code == "url_timeout"
    assert took < 1.0 + 1.5


def test_tls_handshake_drip_ends_at_the_deadline():
    # A "TLS server" that sends a record header announcing 16 KiB, then one byte every 0.25 s.
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)  # the ClientHello
            try:
                conn.sendall(b"\x16\x03\x03\x40\x00")
                for _ in range(240):
                    conn.sendall(b"\x02")
                    time.sleep(DRIP_S)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        error, took = fails(local(http_timeout_s=1.0), f"https://127.0.0.1:{listener.getsockname()[1]}/x.jpg")
    finally:
        listener.close()
    assert error.code == "url_timeout", error
    assert took < 1.0 + 1.5


def test_slow_redirect_chain_shares_one_deadline(server):
    chain = f"{server}/hop/5/0.4?t={tag()}"  # 6 requests of 0.4 s each: 2.4 s in all
    assert local(http_timeout_s=5.0, http_max_redirects=10).read_bytes(chain) == PAYLOAD
    error, took = fails(local(http_timeout_s=1.5, http_max_redirects=10), f"{server}/hop/5/0.4?t={tag()}")
    assert error.code == "url_timeout", error
    assert took < 1.5 + 1.5


def test_timeouts_are_retried_within_the_documented_bound(server):
    fetcher = local(http_timeout_s=1.0, http_retries=1, http_retry_after_max_s=0.5)
    assert fetcher.max_seconds_per_url == 2 * 1.0 + 1 * 0.5
    path = f"/drip/1?t={tag()}"
    error, took = fails(fetcher, server + path)
    assert error.code == "url_timeout"
    assert hits(path) == 2  # a fresh deadline for the retry
    assert 2.0 <= took < fetcher.max_seconds_per_url + 1.5


# -------------------------------------------------------------------------------------------------
# Redirects
# -------------------------------------------------------------------------------------------------
def test_redirects_are_followed_up_to_the_limit(server):
    fetcher = local(http_max_redirects=3)
    assert fetcher.read_bytes(f"{server}/redirect/3?t={tag()}") == PAYLOAD  # 3 redirects, then the payload
    error, _ = fails(fetcher, f"{server}/redirect/4?t={tag()}")
    assert error.code == "url_too_many_redirects" and "http_max_redirects=3" in error.detail
    assert fails(local(http_max_redirects=0), f"{server}/redirect/1?t={tag()}")[0].code == "url_too_many_redirects"


def test_redirect_loop_stops(server):
    path = f"/loop?t={tag()}"
    error, _ = fails(local(http_max_redirects=5), server + path)
    assert error.code == "url_too_many_redirects"
    assert hits(path) == 6  # the first request and 5 redirects, then no more


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x.jpg", "gopher://127.0.0.1:70/x",
                                    "data:image/png;base64,AAAA"])
def test_redirects_to_other_schemes_are_blocked(server, target):
    from urllib.parse import quote

    error, _ = fails(local(), f"{server}/to?u={quote(target, safe='')}")
    assert error.code == "url_blocked", error
    assert "root:" not in str(error)


def test_every_redirect_hop_is_checked(server, monkeypatch):
    # Only loopback servers exist here, so treat 127.0.0.1 as public and 127.0.0.2 as private: the
    # first hop passes, the redirect to 127.0.0.2 must be refused before any connection to it.
    monkeypatch.setattr(reach_module, "blocked_reason", lambda ip: "private" if ip == "127.0.0.2" else None)
    fetcher = Fetcher(ScoreConfig(http_retries=0))
    port = server.rsplit(":", 1)[1]
    assert fetcher.read_bytes(f"{server}/ok") == PAYLOAD
    with recorded_connects() as connects:
        error, _ = fails(fetcher, f"{server}/to?u=http://127.0.0.2:{port}/ok")
    assert error.code == "url_blocked" and "127.0.0.2" in error.detail
    assert not [a for a in connects if a[0] == "127.0.0.2"]


# -------------------------------------------------------------------------------------------------
# Size
# -------------------------------------------------------------------------------------------------
def test_gzip_bomb_is_stopped_with_flat_memory(server):
    fetcher = local(max_image_bytes=8 * 1024 * 1024)
    tracemalloc.start()
    try:
        error, _ = fails(fetcher, f"{server}/bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code == "image_too_large" and "decompressed" in error.detail
    assert peak < 100 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB for a 4 GiB bomb"


@pytest.mark.parametrize("route", ["gzip", "deflate", "rawdeflate"])
def test_compressed_bodies_are_decoded(server, route):
    assert local().read_bytes(f"{server}/{route}") == PAYLOAD


def test_compressed_body_counts_decompressed_bytes(server):
    error, _ = fails(local(max_image_bytes=len(PAYLOAD) - 1), f"{server}/gzip")
    assert error.code == "image_too_large"  # the gzip body itself is far smaller than the cap


def test_unsupported_content_encoding_is_a_row_error(server):
    error, _ = fails(local(), f"{server}/br")
    assert error.code == "image_undecodable" and "Content-Encoding" in error.detail


@pytest.mark.parametrize("route", ["big", "big-stream"])
def test_max_image_bytes_on_http(server, route):
    error, _ = fails(local(max_image_bytes=100_000), f"{server}/{route}")
    assert error.code == "image_too_large"


def test_bodies_without_length_and_empty_bodies(server):
    assert local().read_bytes(f"{server}/ok-close") == PAYLOAD
    assert fails(local(), f"{server}/empty")[0].code == "image_empty"


# -------------------------------------------------------------------------------------------------
# Retries
# -------------------------------------------------------------------------------------------------
def test_429_with_retry_after_seconds_then_success(server):
    path = f"/status/429?after=1&ra=1&t={tag()}"
    start = time.monotonic()
    assert local(http_retries=1, http_retry_after_max_s=5).read_bytes(server + path) == PAYLOAD
    took = time.monotonic() - start
    assert hits(path) == 2
    assert 0.9 <= took < 2.5  # waited the server's 1 s


def test_429_with_retry_after_http_date(server):
    path = f"/status/429?after=1&ra=date:2&t={tag()}"
    start = time.monotonic()
    assert local(http_retries=1, http_retry_after_max_s=5).read_bytes(server + path) == PAYLOAD
    assert 0.5 <= time.monotonic() - start < 3.5
    assert hits(path) == 2


def test_huge_retry_after_is_capped(server):
    path = f"/status/429?after=1&ra=100000&t={tag()}"
    start = time.monotonic()
    assert local(http_retries=1, http_retry_after_max_s=1).read_bytes(server + path) == PAYLOAD
    assert 0.9 <= time.monotonic() - start < 2.5


def test_rate_limited_after_the_retries(server):
    path = f"/status/429?after=99&ra=0&t={tag()}"
    error, _ = fails(local(http_retries=2), server + path)
    assert error.code == "url_rate_limited"
    assert hits(path) == 3


def test_503_then_200_succeeds_on_retry(server):
    path = f"/status/503?after=1&t={tag()}"
    assert local(http_retries=1, http_retry_after_max_s=0.5).read_bytes(server + path) == PAYLOAD
    assert hits(path) == 2


def test_server_error_after_the_retries(server):
    path = f"/status/500?after=99&t={tag()}"
    error, _ = fails(local(http_retries=1, http_retry_after_max_s=0.2), server + path)
    assert error.code == "url_server_error" and "HTTP 500" in error.detail
    assert hits(path) == 2


@pytest.mark.parametrize("status", [404, 403, 410])
def test_client_errors_are_not_retried(server, status):
    path = f"/status/{status}?after=99&t={tag()}"
    error, _ = fails(local(http_retries=3), server + path)
    assert error.code == "url_http_error" and f"HTTP {status}" in error.detail
    assert hits(path) == 1


# -------------------------------------------------------------------------------------------------
# Reach
# -------------------------------------------------------------------------------------------------
def test_loopback_is_refused_by_default_and_allowed_by_the_switch(server):
    path = f"/ok?t={tag()}"
    error, _ = fails(Fetcher(ScoreConfig(http_retries=3)), server + path)
    assert error.code == "url_blocked" and "allow_private_urls" in error.detail
    assert hits(path) == 0  # refused, not retried, never reached the server
    assert local().read_bytes(server + path) == PAYLOAD


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.8.9.10", "[::1]", "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0.0.0.0", "[::]",
    "[::ffff:127.0.0.1]", "169.254.169.254", "[fe80::1]", "10.1.2.3", "172.16.0.1", "192.168.1.1",
    "[fc00::1]", "[fd12:3456::1]", "100.64.0.1", "224.0.0.1", "[ff02::1]", "240.0.0.1", "255.255.255.255",
    "[64:ff9b::a9fe:a9fe]", "[2002:7f00:1::1]",
])
def test_special_addresses_are_refused_without_connecting(host):
    with recorded_connects() as connects:
        error, took = fails(Fetcher(ScoreConfig(http_timeout_s=5.0, http_retries=2)), f"http://{host}:8080/latest")
    assert error.code == "url_blocked", error
    assert connects == []
    assert took < 0.5


def test_a_name_resolving_to_loopback_is_refused(server):
    port = server.rsplit(":", 1)[1]
    with recorded_connects() as connects:
        error, _ = fails(Fetcher(ScoreConfig()), f"http://localhost:{port}/ok")
    assert error.code == "url_blocked" and "localhost" in error.detail
    assert connects == []
    assert local().read_bytes(f"http://localhost:{port}/ok") == PAYLOAD


def test_https_to_a_blocked_address_is_refused_too():
    assert fails(Fetcher(ScoreConfig()), "https://169.254.169.254/latest/meta-data")[0].code == "url_blocked"


def test_proxy_environment_is_ignored_unless_trusted(server, monkeypatch):
    with socket.socket() as dead:  # a loopback port with nobody listening
        dead.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert local().read_bytes(f"{server}/ok") == PAYLOAD
    assert fails(local(http_trust_env=True), f"{server}/ok")[0].code == "url_unreachable"  # via the dead proxy


def test_netrc_is_ignored_unless_trusted(server, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert local().read_bytes(f"{server}/auth") == b"auth:no"
    assert local(http_trust_env=True).read_bytes(f"{server}/auth") == b"auth:yes"


# -------------------------------------------------------------------------------------------------
# Reasons never show secrets
# -------------------------------------------------------------------------------------------------
def test_reasons_never_show_credentials_or_queries(server):
    from urllib.parse import quote

    port = server.rsplit(":", 1)[1]
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
    secret = "Signature=TOPSECRET&X-Amz-Credential=AKIAEXAMPLE"
    signed_redirect = quote(f"http://127.0.0.1:{port}/missing?{secret}", safe="")
    cases = [
        (Fetcher(ScoreConfig()), f"http://bob:hunter22@127.0.0.1:{port}/ok?{secret}#frag-secret"),
        (local(), f"http://bob:hunter22@127.0.0.1:{port}/missing?{secret}#frag-secret"),
        (local(), f"http://bob:hunter22@127.0.0.1:{dead_port}/x.jpg?{secret}"),
        (local(http_timeout_s=0.5), f"http://bob:hunter22@127.0.0.1:{port}/silent?{secret}"),
        (local(), f"http://bob:hunter22@127.0.0.1:{port}/to?u={signed_redirect}"),
        (local(http_max_redirects=1), f"http://bob:hunter22@127.0.0.1:{port}/loop?{secret}"),
        (local(max_image_bytes=10), f"http://bob:hunter22@127.0.0.1:{port}/ok?{secret}"),
        (local(), f"s3://bob:hunter22@bucket/key.jpg?{secret}&x=1::simplecache"),
        (Fetcher(ScoreConfig(fsspec_schemes=("memory",))), f"memory://nothing/here.jpg?{secret}"),
        (local(), f"ftp://bob:hunter22@example.com/x.jpg?{secret}"),
    ]
    for fetcher, url in cases:
        error, _ = fails(fetcher, url)
        for leak in ("hunter22", "TOPSECRET", "AKIAEXAMPLE", "frag-secret"):
            assert leak not in str(error), (url, str(error))


def test_redact_url():
    assert redact_url("https://u:p@host.example:8443/a/b.jpg?sig=1#f") == "https://host.example:8443/a/b.jpg?…"
    assert redact_url("http://host/a.jpg") == "http://host/a.jpg"
    assert redact_url("http://host/a.jpg#frag") == "http://host/a.jpg"
    assert redact_url("s3://key:secret@bucket/k?x=y") == "s3://bucket/k?…"
    assert redact_url("http://user:p@ss@host/x") == "http://host/x"
    assert redact_url("http://[::1]:80?q") == "http://[::1]:80?…"


# -------------------------------------------------------------------------------------------------
# Local paths and fsspec
# -------------------------------------------------------------------------------------------------
def test_devices_are_refused_without_reading():
    error, took = fails(local(), "/dev/zero")
    assert error.code == "file_not_regular" and "character device" in error.detail
    assert took < 1.0


def _in_thread(fn, timeout: float):
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), "the fetch hung"
    return box


def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    box = _in_thread(lambda: local().read_bytes(str(fifo)), timeout=5)
    assert isinstance(box.get("error"), FetchError) and box["error"].code == "file_not_regular"
    assert "FIFO" in box["error"].detail


def test_unix_socket_file_is_refused(tmp_path):
    path = str(tmp_path / "s.jpg")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)
        box = _in_thread(lambda: local().read_bytes(path), timeout=5)
    assert isinstance(box.get("error"), FetchError) and box["error"].code == "file_not_regular"


def test_local_sources_still_work(tmp_path):
    (tmp_path / "a.jpg").write_bytes(PAYLOAD)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    fetcher = Fetcher(ScoreConfig(image_base_path=str(tmp_path), max_image_bytes=len(PAYLOAD)))
    assert fetcher.read_bytes(PAYLOAD) == PAYLOAD
    assert fetcher.read_bytes(str(tmp_path / "a.jpg")) == PAYLOAD
    assert fetcher.read_bytes("a.jpg") == PAYLOAD  # relative to image_base_path
    assert fetcher.read_bytes(f"file://{tmp_path / 'a.jpg'}") == PAYLOAD
    assert fails(fetcher, "empty.jpg")[0].code == "image_empty"
    assert fails(fetcher, "sub")[0].code == "path_is_directory"
    assert fails(fetcher, "missing.jpg")[0].code == "file_not_found"
    error, _ = fails(fetcher, "dbfs:/nowhere/x.jpg")
    assert error.code == "file_not_found" and "/dbfs/nowhere/x.jpg" in error.detail
    small = Fetcher(ScoreConfig(image_base_path=str(tmp_path), max_image_bytes=len(PAYLOAD) - 1))
    assert fails(small, "a.jpg")[0].code == "image_too_large"
    assert fails(small, PAYLOAD)[0].code == "image_too_large"


def test_fsspec_only_for_listed_schemes():
    pytest.importorskip("fsspec")
    error, _ = fails(Fetcher(ScoreConfig()), "memory://bucket/a.jpg")
    assert error.code == "unsupported_scheme" and "fsspec_schemes" in error.detail
    assert fails(Fetcher(ScoreConfig()), "nosuchscheme://bucket/a.jpg")[0].code == "unsupported_scheme"


@pytest.mark.parametrize("ref", ["simplecache::s3://bucket/a.jpg", "s3://bucket/a.jpg::memory://x",
                                 "filecache::memory://bucket/a.jpg", "blockcache::file:///etc/passwd"])
def test_chained_urls_are_refused(ref):
    error, _ = fails(Fetcher(ScoreConfig(fsspec_schemes=("s3", "memory"))), ref)
    assert error.code == "unsupported_scheme" and "chained" in error.detail


def test_fsspec_listed_scheme_reads_with_the_size_cap():
    fsspec = pytest.importorskip("fsspec")
    name = f"memory://clipscore-{tag()}/a.jpg"
    fsspec.filesystem("memory").pipe(name, PAYLOAD)
    assert Fetcher(ScoreConfig(fsspec_schemes=("memory",))).read_bytes(name) == PAYLOAD
    capped = Fetcher(ScoreConfig(fsspec_schemes=("memory",), max_image_bytes=100))
    assert fails(capped, name)[0].code == "image_too_large"


def test_malformed_urls_are_invalid_not_transient():
    from clipscore.schema.errors import TRANSIENT_CODES

    fetcher = Fetcher(ScoreConfig(http_retries=2))
    for url in ("http://", "http://exa mple.com/x.jpg", "http://[::1/x.jpg"):
        with pytest.raises(FetchError) as caught:
            fetcher.read_bytes(url)
        assert caught.value.code == "url_invalid", (url, str(caught.value))
        assert caught.value.code not in TRANSIENT_CODES
