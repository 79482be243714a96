# SPDX-License-Identifier: GPL-2.0-only
"""What one HTTP request gets: the request head parsed, judged by the web config in
force when it arrived (basic auth, response headers), and answered as bytes.

No sockets here: the server's front reads a complete head, a worker calls `answer`,
and the front writes what it returns. So every response (errors included) is built in
one place and carries the configured headers.
"""

from __future__ import annotations

import base64
import binascii
import email.message
import email.parser
import email.policy
import gzip
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import urlsplit

import structlog
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from xenprobe import __version__
from xenprobe.exporter.state import Health
from xenprobe.exporter.web.auth import AuthResult, BasicAuth
from xenprobe.exporter.web.config import WebConfig
from xenprobe.exporter.web.watcher import Watcher

log = structlog.get_logger("xenprobe.exporter.http.handler")

MAX_HEADERS = 100  # as http.client; a request head is also bounded in bytes by the front
TEXT = "text/plain; charset=utf-8"

LANDING = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>xenprobe</title></head>
<body>
<h1>xenprobe {version}</h1>
<p>Reads Xen hypercall results at every layer between the hypervisor and user space,
and reports where a value was truncated, sign-flipped, clamped or turned into a false
error. Sweeps run in the background; a scrape only reads the last one.</p>
<ul>
<li><a href="{metrics}">Metrics</a></li>
<li><a href="-/healthy">Health</a></li>
</ul>
</body></html>
"""


class App:
    """What the request handlers need, shared by every connection."""

    def __init__(self, registry: CollectorRegistry, web: Watcher,
                 health: Callable[[], Health], telemetry_path: str = "/metrics") -> None:
        self.registry = registry
        self.web = web
        self.health = health
        self.telemetry_path = telemetry_path  # the config's; replaced on reload
        self.auth = BasicAuth()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    version: str
    headers: email.message.Message


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = TEXT
    extra: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


class BadRequest(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


def parse(head: bytes) -> Request:
    """A complete request head (up to and including the blank line) -> Request."""
    line, _, rest = head.partition(b"\r\n")
    try:
        words = line.decode("ascii").split()
    except UnicodeDecodeError:
        raise BadRequest(400, "Bad request line") from None
    if len(words) != 3 or not words[2].startswith("HTTP/1."):
        raise BadRequest(400, "Bad request line")
    method, target, version = words
    if rest.count(b"\r\n") > MAX_HEADERS + 1:
        raise BadRequest(431, "Too many header fields")
    try:
        text = rest.decode("iso-8859-1")
        headers = email.parser.Parser(policy=email.policy.HTTP).parsestr(
            text, headersonly=True)
    except Exception:  # the parser's errors are not one documented type
        raise BadRequest(400, "Bad header fields") from None
    if headers.defects:
        raise BadRequest(400, "Bad header fields")
    return Request(method, urlsplit(target).path, version, headers)


def accepts_gzip(value: str) -> bool:
    """RFC 9110 12.5.3: gzip is acceptable if listed (or matched by *) with q > 0."""
    gzip_q: float | None = None
    star_q: float | None = None
    for item in value.split(","):
        coding, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for p in params:
            name, _, v = p.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0  # a q we cannot read does not say yes
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, token = str(request.headers.get("Authorization", "")).partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode(
            "utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _keep_alive(request: Request) -> bool:
    tokens = {t.strip().lower() for t in str(request.headers.get("Connection", "")).split(",")}
    if request.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def respond(app: App, web: WebConfig, request: Request) -> Response:
    """The response to `request` under `web`, the config in force when it arrived."""
    if request.method not in ("GET", "HEAD"):
        return Response(501, b"Unsupported method\n", close=True)
    if request.headers.get("Content-Length", "0").strip() not in ("", "0") or \
            "Transfer-Encoding" in request.headers:
        return Response(400, b"A GET or HEAD request has no body\n", close=True)
    if web.users:
        creds = _credentials(request)
        verdict = (app.auth.check(web.users, *creds) if creds is not None
                   else AuthResult.DENIED)
        if verdict is AuthResult.BUSY:
            return Response(429, b"Too many password checks at once; retry\n",
                            extra=[("Retry-After", "1")])
        if verdict is not AuthResult.OK:
            return Response(401, b"Unauthorized\n",
                            extra=[("WWW-Authenticate", 'Basic realm="xenprobe"')])
    if request.path == app.telemetry_path:
        try:
            encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
            body = encoder(app.registry)
        except Exception:
            log.exception("render_failed")
            return Response(500, b"xenprobe: rendering the metrics failed; see its log\n")
        extra = [("Vary", "Accept-Encoding")]
        if accepts_gzip(str(request.headers.get("Accept-Encoding", ""))):
            body = gzip.compress(body)
            extra.append(("Content-Encoding", "gzip"))
        return Response(200, body, content_type, extra)
    if request.path == "/":
        # Relative, so the link works behind a proxy that adds a prefix.
        page = LANDING.format(version=html.escape(__version__),
                              metrics=html.escape(app.telemetry_path[1:]))
        return Response(200, page.encode(), "text/html; charset=utf-8")
    if request.path == "/-/healthy":
        h = app.health()
        if h.stuck:
            text = f"Unhealthy: a sweep is stuck ({h.running_for:.0f} s in progress)\n"
            return Response(503, text.encode())
        return Response(200, b"Healthy\n")
    return Response(404, b"Not Found\n")


def render(response: Response, web_headers: tuple[tuple[str, str], ...], *,
           head: bool = False) -> bytes:
    """The bytes on the wire, with the configured headers on every response."""
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {response.status} {reason}",
             f"Server: xenprobe/{__version__}",
             f"Date: {formatdate(usegmt=True)}",
             f"Content-Type: {response.content_type}",
             f"Content-Length: {len(response.body)}",
             *(f"{n}: {v}" for n, v in [*web_headers, *response.extra])]
    if response.close:
        lines.append("Connection: close")
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return out if head else out + response.body


def answer(app: App, web: WebConfig, head: bytes) -> tuple[bytes, bool]:
    """Bytes to send for a complete request head, and whether to keep the connection."""
    try:
        request = parse(head)
    except BadRequest as e:
        return render(Response(e.status, f"{e.text}\n".encode(), close=True),
                      web.headers), False
    try:
        response = respond(app, web, request)
    except Exception:  # a bug: answer it as one, keep serving others
        log.exception("request_failed", path=request.path)
        response = Response(500, b"xenprobe: internal error; see its log\n", close=True)
    keep = _keep_alive(request) and not response.close
    response.close = not keep
    return render(response, web.headers, head=request.method == "HEAD"), keep
