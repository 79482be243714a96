"""The HTTP(S) endpoint: a landing page at /, the metrics at /metrics, liveness at
/-/healthy. TLS and basic auth come from the web config, looked up per connection so
a changed file applies to the next scrape.

Serving never touches the hypervisor: /metrics renders the registry, whose collector
reads the last sweep's snapshot.
"""

from __future__ import annotations

import base64
import binascii
import errno
import gzip
import html
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import structlog
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from xenprobe import __version__
from xenprobe.errors import ConfigError
from xenprobe.exporter.config import Listen
from xenprobe.exporter.state import Health
from xenprobe.exporter.webconfig import BasicAuth, Watcher, WebConfig

log = structlog.get_logger("xenprobe.exporter.server")

# Bounds on what a client can hold: concurrent connections (each is a thread) and
# seconds a connection may sit idle or take over a TLS handshake.
MAX_CONNECTIONS = 64
TIMEOUT = 30.0

TLS_HANDSHAKE = b"\x16"  # the first byte of a TLS record carrying a ClientHello
PLAIN_ON_TLS = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Connection: close\r\n\r\n"
                b"Client sent an HTTP request to an HTTPS server.\n")

LANDING = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>xenprobe</title></head>
<body>
<h1>xenprobe {version}</h1>
<p>Reads Xen hypercall results at every layer between the hypervisor and user space,
and reports where a value was truncated, sign-flipped, clamped or turned into a false
error. Sweeps run in the background; a scrape only reads the last one.</p>
<ul>
<li><a href="metrics">Metrics</a></li>
<li><a href="-/healthy">Health</a></li>
</ul>
</body></html>
"""


class App:
    """What the request handlers need, shared by every connection."""

    def __init__(self, registry: CollectorRegistry, web: Watcher,
                 health: Callable[[], Health]) -> None:
        self.registry = registry
        self.web = web
        self.health = health
        self.auth = BasicAuth()


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses its connection
    timeout = TIMEOUT

    def __init__(self, request: Any, client_address: Any, server: _HTTPServer,
                 web: WebConfig) -> None:
        self.web = web
        super().__init__(request, client_address, server)

    def version_string(self) -> str:
        return f"xenprobe/{__version__}"

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        app = self.server.app
        if self.web.users and not self._authorized(app):
            self._send(401, "text/plain; charset=utf-8", b"Unauthorized\n", head,
                       [("WWW-Authenticate", 'Basic realm="xenprobe"')])
            return
        path = urlsplit(self.path).path
        if path == "/metrics":
            try:
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                body = encoder(app.registry)
            except Exception:
                log.exception("render_failed")
                self._send(500, "text/plain; charset=utf-8",
                           b"xenprobe: rendering the metrics failed; see its log\n", head)
                return
            extra = []
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body)
                extra.append(("Content-Encoding", "gzip"))
            self._send(200, content_type, body, head, extra)
        elif path == "/":
            page = LANDING.format(version=html.escape(__version__))
            self._send(200, "text/html; charset=utf-8", page.encode(), head)
        elif path == "/-/healthy":
            h = app.health()
            if h.stuck:
                text = f"Unhealthy: a sweep is stuck ({h.running_for:.0f} s in progress)\n"
                self._send(503, "text/plain; charset=utf-8", text.encode(), head)
            else:
                self._send(200, "text/plain; charset=utf-8", b"Healthy\n", head)
        else:
            self._send(404, "text/plain; charset=utf-8", b"Not Found\n", head)

    def _authorized(self, app: App) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode(
                "utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(sep) and app.auth.check(self.web.users, user, password)

    def _send(self, code: int, content_type: str, body: bytes, head: bool,
              extra: list[tuple[str, str]] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in [*self.web.headers, *(extra or [])]:
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http", client=self.client_address[0], message=format % args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(self, address: tuple[Any, ...], family: int, app: App) -> None:
        self.address_family = family
        self.app = app
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)  # type: ignore[arg-type]

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # "every address" means IPv4 too, whatever net.ipv6.bindv6only says.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # Not HTTPServer.server_bind: it resolves the host name (getfqdn) at start.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("too_many_connections", limit=MAX_CONNECTIONS,
                        client=client_address[0])
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(TIMEOUT)
        web = self.app.web.current()
        if web.tls is None:
            _Handler(request, client_address, self, web)
            return
        try:
            first = request.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first and first != TLS_HANDSHAKE:
            # Plain HTTP on the TLS port: say so, as Go's servers do, rather than reset.
            request.sendall(PLAIN_ON_TLS)
            return
        try:
            conn = web.tls.context.wrap_socket(request, server_side=True,
                                               do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as e:
            log.debug("tls_failed", client=client_address[0], error=str(e))
            return
        try:
            conn.do_handshake()  # here, in the connection's thread, not in accept()
            if web.tls.allowed_sans and not _san_allowed(conn.getpeercert(),
                                                         web.tls.allowed_sans):
                log.info("tls_client_refused", client=client_address[0],
                         reason="no subject alternative name is in client_allowed_sans")
                return
            _Handler(conn, client_address, self, web)
        except (ssl.SSLError, OSError) as e:
            log.debug("tls_failed", client=client_address[0], error=str(e))
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("connection_failed", client=client_address[0])


def _san_allowed(cert: dict[str, Any] | None, allowed: tuple[str, ...]) -> bool:
    if not cert:
        return False  # VerifyClientCertIfGiven and none given: nothing to match
    names = {str(value) for _, value in cert.get("subjectAltName", ())}
    return not names.isdisjoint(allowed)


def bind(listen: Listen, app: App) -> _HTTPServer:
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
            return _HTTPServer(addr, family, app)
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
