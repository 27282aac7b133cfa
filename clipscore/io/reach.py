"""Reach and time for http(s) fetches: where a request may connect, and how long an attempt may take.

* **Reach**: a URL whose host resolves to a loopback, private, link-local (cloud metadata),
  multicast, CGNAT, reserved or unspecified address is refused (``url_blocked``, see
  ``blocked_reason``) unless ``allow_private_urls``; ``ReachGuard`` runs the check on the resolved
  addresses at every hop, and the connection is opened to the address that was checked (no second
  lookup, so no DNS rebinding).
* **Time**: one ``Deadline`` per attempt covers DNS, connect, TLS, every redirect hop, the headers and
  the whole body. A watchdog thread shuts the attempt's sockets down when it passes, so no server can
  stretch it by sending one byte at a time; DNS runs in a thread that is abandoned at the deadline.

``guarded_adapter`` is the requests adapter whose urllib3 pools open every connection through a
``ReachGuard`` and under the current thread's ``Deadline``; ``clipscore.io.http`` mounts it.
"""
from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
import sys
import threading
import time
from typing import Any

from clipscore.io.fetch_errors import FetchError

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


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


class Deadline:
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
        self._budgets: set[Deadline] = set()
        self._thread: threading.Thread | None = None

    def watch(self, budget: Deadline) -> None:
        with self._cond:
            self._budgets.add(budget)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="clipscore-deadline", daemon=True)
                self._thread.start()
            self._cond.notify()

    def unwatch(self, budget: Deadline) -> None:
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


class ReachGuard:
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
    def begin(self, budget: Deadline) -> None:
        self._local.budget = budget
        self.watchdog.watch(budget)

    def end(self, budget: Deadline) -> None:
        budget.finish()
        self.watchdog.unwatch(budget)
        self._local.budget = None

    def current(self) -> Deadline | None:
        return getattr(self._local, "budget", None)

    def close(self) -> None:
        if self._dns is not None:
            self._dns.shutdown(wait=False, cancel_futures=True)
            self._dns = None

    # --- resolution ---------------------------------------------------------------------------
    def resolve(self, host: str, port: int, budget: Deadline | None, fallback_s: float) -> list[tuple]:
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

    def _lookup(self, host: str, port: int, budget: Deadline | None, fallback_s: float) -> list[tuple]:
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


def _guarded_pool_classes(guard: ReachGuard) -> dict[str, type]:
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


def guarded_adapter(guard: ReachGuard, pool_size: int):
    """A requests adapter whose pools (proxy pools included, SOCKS aside) connect through ``guard``."""
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
