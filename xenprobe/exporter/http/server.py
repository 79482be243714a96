# SPDX-License-Identifier: GPL-2.0-only
"""The HTTP(S) endpoint: a landing page at /, the metrics at /metrics, liveness at
/-/healthy (what each request gets is `handler`; this module moves the bytes).

Built so that nobody can lock a scraper out without credentials:
- one front thread owns every socket, non-blocking, through a selector: accepting,
  TLS handshakes, reading request heads, writing responses. A connection that is
  waiting for bytes costs a file descriptor, never a thread;
- a request head must arrive complete (TLS handshake included) within HEAD_TIMEOUT
  of the connection's start or of its first byte on a kept-alive connection, and be
  at most MAX_HEAD bytes; a response must be taken within WRITE_TIMEOUT;
- only requests that have fully arrived reach the small worker pool, so what is
  limited is the work in flight, not what is accepted;
- connections are capped (file descriptors are finite) by closing the one that has
  waited longest, not by refusing the newcomer: a flood cannot keep a scraper,
  whose request arrives in one packet, from being answered.

Each request is judged by the web config in force when it arrives, including on a
connection kept alive from before the change. A connection made under one TLS
setting is closed (not answered) once the setting changes, so the client reconnects
under the new one.

Serving never touches the hypervisor: /metrics renders the registry, whose collector
reads the last sweep's snapshot.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import resource
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from xenprobe.exporter.config import Listen
from xenprobe.exporter.http import handler
from xenprobe.exporter.http.handler import App
from xenprobe.exporter.web.config import WebConfig
from xenprobe.exporter.web.tls import TLS
from xenprobe.support.errors import ConfigError

__all__ = ["App", "Server", "bind"]

log = structlog.get_logger("xenprobe.exporter.http.server")

HEAD_TIMEOUT = 10.0    # seconds for a complete request head, TLS handshake included
IDLE_TIMEOUT = 120.0   # seconds a kept-alive connection may wait for its next request
WRITE_TIMEOUT = 30.0   # seconds for the client to take a response
MAX_HEAD = 16384       # bytes in a request head (line and header fields)
WORKERS = 4            # requests being answered at once
MAX_CONNECTIONS = 1024  # at most; fewer if RLIMIT_NOFILE is lower (see _connection_cap)

TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello
PLAIN_ON_TLS = b"Client sent an HTTP request to an HTTPS server.\n"


def _connection_cap() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(8, min(MAX_CONNECTIONS, (soft - 64) // 2))


class _Conn:
    """One client connection and where it is: handshaking, reading, at a worker or
    writing. `deadline` is the monotonic time by which its current step must end."""

    def __init__(self, sock: socket.socket, peer: str, tls: TLS | None) -> None:
        self.sock: socket.socket = sock
        self.peer = peer
        self.tls = tls          # the TLS setting it was accepted under (None: plain)
        self.state = "peek" if tls is not None else "read"
        self.buf = b""          # bytes received and not yet part of an answered request
        self.out = memoryview(b"")
        self.keep = True
        self.eof = False        # the client shut its side after sending a request
        self.deadline = time.monotonic() + HEAD_TIMEOUT
        self.events = selectors.EVENT_READ


class _Front:
    """The listening socket, the selector loop and the worker pool."""

    def __init__(self, address: tuple[Any, ...], family: int, app: App) -> None:
        self.app = app
        self.address_family = family
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # "every address" means IPv4 too, whatever net.ipv6.bindv6only says.
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.socket.bind(address)
            self.socket.listen(128)
            self.socket.setblocking(False)
        except OSError:
            self.socket.close()
            raise
        self.server_address = self.socket.getsockname()
        self.cap = _connection_cap()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.socket, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._done: queue.SimpleQueue[tuple[_Conn, bytes, bool]] = queue.SimpleQueue()
        self._waiting: OrderedDict[_Conn, None] = OrderedDict()  # oldest first
        self._busy: set[_Conn] = set()
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="xenprobe-http")
        self._stop = threading.Event()
        self._stopped = threading.Event()

    # -- the loop -------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                soonest = min((c.deadline for c in self._waiting), default=now + 60)
                timeout = max(0.0, min(poll_interval, soonest - now))
                for key, mask in self._sel.select(timeout):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        self._step(key.data, mask)
                self._collect()
                self._expire()
        finally:
            self._stopped.set()

    def _accept(self) -> None:
        for _ in range(64):  # then let the others have a turn
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: back off until next round
                log.warning("accept_failed", error=e.strerror)
                return
            sock.setblocking(False)
            try:
                web = self._web()
            except Exception:  # the web config raises ConfigError only; never drop a scrape
                log.exception("web_config_failed")
                web = WebConfig()
            conn = _Conn(sock, str(addr[0]), web.tls)
            while len(self._waiting) + len(self._busy) >= self.cap and self._waiting:
                oldest = next(iter(self._waiting))
                log.info("connection_evicted", client=oldest.peer, cap=self.cap)
                self._close(oldest)
            self._watch(conn)

    def _web(self) -> WebConfig:
        return self.app.web.current()

    def _watch(self, conn: _Conn) -> None:
        self._waiting[conn] = None
        try:
            self._sel.register(conn.sock, conn.events, conn)
        except (KeyError, ValueError, OSError):
            self._close(conn)

    def _events(self, conn: _Conn, events: int) -> None:
        if events != conn.events:
            conn.events = events
            self._sel.modify(conn.sock, events, conn)

    def _close(self, conn: _Conn) -> None:
        self._waiting.pop(conn, None)
        self._busy.discard(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._sel.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _expire(self) -> None:
        now = time.monotonic()
        late = [c for c in self._waiting if c.deadline <= now]
        for conn in late:
            log.debug("connection_timed_out", client=conn.peer, state=conn.state)
            self._close(conn)

    # -- one connection's progress ----------------------------------------------------

    def _step(self, conn: _Conn, mask: int) -> None:
        try:
            if conn.state == "peek":
                self._peek(conn)
            if conn.state == "handshake":
                self._handshake(conn)
            if conn.state == "read":
                self._read(conn)
            elif conn.state == "write":
                self._write(conn)
        except (ssl.SSLError, OSError) as e:
            log.debug("connection_failed", client=conn.peer, error=str(e))
            self._close(conn)
        except Exception:  # a bug: lose this connection, not the server
            log.exception("connection_failed", client=conn.peer)
            self._close(conn)

    def _peek(self, conn: _Conn) -> None:
        try:
            first = conn.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        if not first:
            self._close(conn)
            return
        if first[0] != TLS_HANDSHAKE:
            # Plain HTTP on the TLS port: say so, as Go's servers do, rather than reset.
            self._reply(conn, handler.render(
                handler.Response(400, PLAIN_ON_TLS, close=True), self._web().headers),
                keep=False)
            return
        assert conn.tls is not None
        conn.sock = conn.tls.context.wrap_socket(conn.sock, server_side=True,
                                                 do_handshake_on_connect=False)
        self._sel.modify(conn.sock, conn.events, conn)
        conn.state = "handshake"

    def _handshake(self, conn: _Conn) -> None:
        assert isinstance(conn.sock, ssl.SSLSocket) and conn.tls is not None
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._events(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._events(conn, selectors.EVENT_WRITE)
            return
        if conn.tls.allowed_sans and not _san_allowed(conn.sock.getpeercert(),
                                                      conn.tls.allowed_sans):
            log.info("tls_client_refused", client=conn.peer,
                     reason="no subject alternative name is in client_allowed_sans")
            self._close(conn)
            return
        conn.state = "read"
        self._events(conn, selectors.EVENT_READ)

    def _read(self, conn: _Conn) -> None:
        while True:
            try:
                data = conn.sock.recv(8192)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                break
            except ssl.SSLWantWriteError:  # renegotiation is off; be safe anyway
                self._events(conn, selectors.EVENT_WRITE)
                return
            if not data:
                if b"\r\n\r\n" in conn.buf:  # sent its request, then shut its side
                    conn.eof = True
                    break
                self._close(conn)
                return
            if not conn.buf:  # the first byte of a request starts its clock
                conn.deadline = min(conn.deadline, time.monotonic() + HEAD_TIMEOUT)
            conn.buf += data
            if b"\r\n\r\n" in conn.buf or len(conn.buf) > MAX_HEAD:
                break
        self._dispatch(conn)

    def _dispatch(self, conn: _Conn) -> None:
        """Hand a complete request head to a worker (or refuse an oversized one)."""
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0 or end + 4 > MAX_HEAD:
            if len(conn.buf) > MAX_HEAD:
                self._reply(conn, handler.render(handler.Response(
                    431, b"Request header fields too large\n", close=True),
                    self._web().headers), keep=False)
            return
        head, conn.buf = conn.buf[:end + 4], conn.buf[end + 4:]
        self._waiting.pop(conn, None)
        self._sel.unregister(conn.sock)
        self._busy.add(conn)
        conn.state = "busy"
        self._pool.submit(self._work, conn, head)

    def _work(self, conn: _Conn, head: bytes) -> None:
        """In a worker: judge the request by the web config in force now."""
        try:
            web = self._web()
            if web.tls is not conn.tls and not _same_tls(web.tls, conn.tls):
                out, keep = b"", False  # made under another TLS setting: reconnect
            else:
                out, keep = handler.answer(self.app, web, head)
        except Exception:  # never leave a connection hanging on a bug
            log.exception("request_failed", client=conn.peer)
            out, keep = b"", False
        self._done.put((conn, out, keep))
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _collect(self) -> None:
        while True:
            try:
                conn, out, keep = self._done.get_nowait()
            except queue.Empty:
                return
            self._busy.discard(conn)
            if not out:
                self._close(conn)
                continue
            keep = keep and not conn.eof
            conn.events = 0  # not registered while at the worker
            self._reply(conn, out, keep=keep, registered=False)

    def _reply(self, conn: _Conn, out: bytes, *, keep: bool, registered: bool = True
               ) -> None:
        conn.out, conn.keep, conn.state = memoryview(out), keep, "write"
        conn.deadline = time.monotonic() + WRITE_TIMEOUT
        if registered:
            self._waiting.move_to_end(conn)
            self._events(conn, selectors.EVENT_WRITE)
        else:
            conn.events = selectors.EVENT_WRITE
            self._watch(conn)

    def _write(self, conn: _Conn) -> None:
        while conn.out:
            try:
                n = conn.sock.send(conn.out)
            except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                return
            except ssl.SSLWantReadError:
                return
            conn.out = conn.out[n:]
        if not conn.keep:
            self._close(conn)
            return
        # Kept alive: wait for the next request, which may already be here.
        conn.state = "read"
        conn.deadline = time.monotonic() + (HEAD_TIMEOUT if conn.buf else IDLE_TIMEOUT)
        self._waiting.move_to_end(conn)
        self._events(conn, selectors.EVENT_READ)
        if b"\r\n\r\n" in conn.buf or (isinstance(conn.sock, ssl.SSLSocket)
                                       and conn.sock.pending()):
            self._read(conn)

    # -- the socketserver-like surface Server uses ----------------------------------------

    def shutdown(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        self._stopped.wait()

    def server_close(self) -> None:
        for conn in [*self._waiting, *self._busy]:
            self._close(conn)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(self.socket)
        self._sel.close()
        for s in (self.socket, self._wake_r, self._wake_w):
            s.close()


def _same_tls(a: TLS | None, b: TLS | None) -> bool:
    return a is not None and b is not None and a.fingerprint == b.fingerprint


def _san_allowed(cert: dict[str, Any] | None, allowed: tuple[str, ...]) -> bool:
    if not cert:
        return False  # VerifyClientCertIfGiven and none given: nothing to match
    names = {str(value) for _, value in cert.get("subjectAltName", ())}
    return not names.isdisjoint(allowed)


def bind(listen: Listen, app: App) -> _Front:
    """A server bound to `listen`; ConfigError names the key when that fails."""
    candidates: list[tuple[int, tuple[Any, ...]]]
    if listen.host == "":
        candidates = [(socket.AF_INET6, ("::", listen.port)),
                      (socket.AF_INET, ("0.0.0.0", listen.port))]
    else:
        try:
            infos = socket.getaddrinfo(listen.host, listen.port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        except socket.gaierror as e:
            raise ConfigError(f"listen_address {listen}: cannot resolve "
                              f"{listen.host!r}: {e.strerror}") from None
        candidates = [(family, addr) for family, _, _, _, addr in infos]
    error: OSError | None = None
    for family, addr in candidates:
        try:
            return _Front(addr, family, app)
        except OSError as e:
            error = e
            # Only "no IPv6 here" moves on to the next candidate.
            if e.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                break
    reason = error.strerror if error is not None else "no address"
    raise ConfigError(f"listen_address {listen}: cannot listen: {reason}")


class Server:
    """A bound server and its thread; `replace` moves it to another address."""

    def __init__(self, listen: Listen, app: App) -> None:
        self.app = app
        self.listen = listen
        self._httpd = bind(listen, app)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self._httpd.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="xenprobe-http", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def replace(self, listen: Listen) -> None:
        """Listen somewhere else: bind the new address first, so a failure leaves the
        old one serving."""
        new = bind(listen, self.app)
        old, self._httpd, self.listen = self._httpd, new, listen
        self.start()
        old.shutdown()
        old.server_close()

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for a serve_forever() to end
            self._httpd.shutdown()
        self._httpd.server_close()
