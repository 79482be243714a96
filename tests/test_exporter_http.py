# SPDX-License-Identifier: GPL-2.0-only
"""The HTTP(S) endpoint of a real `xenprobe serve`: pages, content negotiation, TLS,
basic auth, client certificates, and a web config changed while it runs."""

from __future__ import annotations

import gzip
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from tests.exporter_util import (
    Serve,
    http_get,
    make_ca,
    make_cert,
    samples,
    value,
    wait_for,
)
from xenprobe.support import revision

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    make_cert(d, "server", ca, "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "scraper", ca, "DNS:scraper", client=True)
    make_cert(d, "intruder", ca, "DNS:intruder", client=True)
    return d


def client_context(pki: Path, cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    return ctx


def test_pages() -> None:
    with Serve("healthy") as serve:
        serve.after_sweeps(1)
        status, headers, body = serve.get("/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b'href="metrics"' in body
        status, headers, body = serve.get("/metrics")
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert headers["Server"].startswith("xenprobe/")
        status, headers, body = serve.get("/metrics", headers={
            "Accept": "application/openmetrics-text; version=1.0.0"})
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n") and b"# TYPE xenprobe_build info" in body
        status, headers, body = serve.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip"
        assert value(samples(gzip.decompress(body).decode()), "xenprobe_up") == 1
        status, headers, body = serve.get("/metrics", method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
        assert serve.get("/nope")[0] == 404
        assert serve.get("/metrics", method="POST")[0] == 501


def test_telemetry_path() -> None:
    """--web.telemetry-path, as Prometheus's exporters name it (issue 23): the metrics
    move there, and the landing page links to them."""
    with Serve("healthy", "--web.telemetry-path", "/xen/metrics") as serve:
        def swept() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            status, _, body = serve.get("/xen/metrics")
            m = samples(body.decode()) if status == 200 else {}
            return m if (value(m, "xenprobe_sweeps_total") or 0) >= 1 else None

        assert value(wait_for("a sweep on /xen/metrics", swept), "xenprobe_up") == 1
        assert serve.get("/metrics")[0] == 404
        assert b'href="xen/metrics"' in serve.get("/")[2]


def write_web(d: Path, pki: Path, text: str) -> Path:
    for f in ("server.pem", "server.key", "ca.pem"):
        shutil.copy(pki / f, d / f)
    path = d / "web.yml"
    path.write_text(text)
    return path


def test_tls_and_basic_auth(tmp_path: Path, pki: Path) -> None:
    web = write_web(tmp_path, pki, f"""
tls_server_config: {{cert_file: server.pem, key_file: server.key}}
http_server_config:
  headers: {{X-Content-Type-Options: nosniff}}
basic_auth_users: {{prometheus: {HASH}}}
""")
    with Serve("large-memory", "--web-config-file", str(web)) as serve:
        url = f"https://localhost:{serve.port}/metrics"
        ctx = client_context(pki)
        status, headers, body = http_get(url, context=ctx, auth=("prometheus", "secret"))
        assert status == 200
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert value(samples(body.decode()), "xenprobe_build_info",
                     version=headers["Server"].split("/")[1],
                     revision=revision.revision()) == 1
        for auth in (("prometheus", "wrong"), ("nobody", "secret"), None):
            status, headers, _ = http_get(url, context=ctx, auth=auth)
            assert status == 401
            assert headers["WWW-Authenticate"] == 'Basic realm="xenprobe"'
        status, _, _ = http_get(url, context=ctx, headers={"Authorization": "Basic !!!"})
        assert status == 401
        # Plain HTTP on the TLS port is told so, and gets no metrics.
        status, _, body = http_get(f"http://127.0.0.1:{serve.port}/metrics")
        assert status == 400 and body == b"Client sent an HTTP request to an HTTPS server.\n"


def test_client_certificates(tmp_path: Path, pki: Path) -> None:
    web = write_web(tmp_path, pki, """
tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  client_allowed_sans: [scraper]
""")
    with Serve("healthy", "--web-config-file", str(web)) as serve:
        url = f"https://localhost:{serve.port}/-/healthy"
        assert http_get(url, context=client_context(pki, "scraper"))[0] == 200
        for cert in (None, "intruder"):
            with pytest.raises(OSError):
                http_get(url, context=client_context(pki, cert))


def test_a_changed_web_config_applies_to_the_next_request(tmp_path: Path, pki: Path
                                                           ) -> None:
    web = write_web(tmp_path, pki, f"basic_auth_users: {{alice: {HASH}}}\n")
    with Serve("healthy", "--web-config-file", str(web)) as serve:
        assert serve.get("/", auth=("alice", "secret"))[0] == 200
        assert serve.get("/", auth=("bob", "secret"))[0] == 401
        web.write_text(f"basic_auth_users: {{bob: {HASH}}}\n")
        assert serve.get("/", auth=("bob", "secret"))[0] == 200
        assert serve.get("/", auth=("alice", "secret"))[0] == 401
        # A broken edit keeps the last good configuration, and says so.
        web.write_text("basic_auth_users: {bob: plaintext}\n# broken\n")
        status, _, body = serve.get("/metrics", auth=("bob", "secret"))
        assert status == 200
        assert value(samples(body.decode()), "xenprobe_web_config_last_reload_successful") == 0
        assert "web_config_reload_failed" in serve.stderr()


def raw_request(port: int, data: bytes, *, half_close: bool = False) -> bytes:
    """Send `data` as is and read until the server closes (Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        if half_close:  # as `printf ... | nc` does once its input ends
            s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got


def test_configured_headers_are_on_every_response(tmp_path: Path, pki: Path) -> None:
    web = write_web(tmp_path, pki, f"""
http_server_config:
  headers: {{X-Content-Type-Options: nosniff, X-Frame-Options: deny}}
basic_auth_users: {{prometheus: {HASH}}}
""")
    with Serve("healthy", "--web-config-file", str(web)) as serve:
        auth = ("prometheus", "secret")
        for path, method, who, code in [("/metrics", "GET", auth, 200),
                                        ("/metrics", "HEAD", auth, 200),
                                        ("/nope", "GET", auth, 404),
                                        ("/metrics", "GET", None, 401),
                                        ("/metrics", "POST", auth, 501)]:
            status, headers, _ = serve.get(path, method=method, auth=who)
            assert status == code
            assert headers["X-Content-Type-Options"] == "nosniff", (path, method, code)
            assert headers["X-Frame-Options"] == "deny", (path, method, code)
        for request, code in [(b"NONSENSE\r\n\r\n", b" 400 "),
                              (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n",
                               b" 431 ")]:
            response = raw_request(serve.port, request)
            head = response.partition(b"\r\n\r\n")[0]
            assert code in head.split(b"\r\n")[0]
            assert b"\r\nX-Content-Type-Options: nosniff" in head
        # HTTP/1.0 from a client that shuts its side after the request: answered, closed.
        response = raw_request(serve.port, b"GET /-/healthy HTTP/1.0\r\n\r\n",
                               half_close=True)
        assert response.startswith(b"HTTP/1.1 401 ")
        assert b"\r\nConnection: close\r\n" in response


def test_gzip_only_where_the_scraper_accepts_it() -> None:
    with Serve("healthy") as serve:
        for accept, gzipped in [("gzip", True), ("gzip;q=0", False), ("gzip; q=0.0", False),
                                ("identity, gzip;q=0.5", True), ("*", True),
                                ("*;q=0", False), ("gzip;q=0, *", False),
                                ("deflate", False), ("", False)]:
            status, headers, body = serve.get("/metrics",
                                              headers={"Accept-Encoding": accept})
            assert status == 200
            assert (headers.get("Content-Encoding") == "gzip") is gzipped, accept
            text = gzip.decompress(body) if gzipped else body
            assert value(samples(text.decode()), "xenprobe_up") is not None


@pytest.mark.parametrize("bad", ["a: " + "[" * 3000 + "]" * 3000 + "\n",
                                 "basic_auth_users: {bob: '$2y$31$" + HASH[7:] + "'}\n"])
def test_a_web_config_the_loader_did_not_expect_keeps_the_last_good_one(
        tmp_path: Path, bad: str) -> None:
    """Changed under a running server (re-read on the next request) and then signalled
    with SIGHUP: no scrape is dropped, no traceback, and both reload gauges say 0."""
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users: {{bob: {HASH}}}\n")
    with Serve("healthy", "--web-config-file", str(web)) as serve:
        auth = ("bob", "secret")
        web.write_text(bad)
        status, _, body = serve.get("/metrics", auth=auth)
        assert status == 200
        assert value(samples(body.decode()),
                     "xenprobe_web_config_last_reload_successful") == 0
        assert serve.get("/metrics")[0] == 401  # the last good config is in force
        serve.signal(signal.SIGHUP)
        wait_for("the reload to fail", lambda: "reload_failed" in serve.stderr()
                 .replace("web_config_reload_failed", ""))
        status, _, body = serve.get("/metrics", auth=auth)
        assert status == 200
        assert value(samples(body.decode()), "xenprobe_config_last_reload_successful") == 0
        assert serve.proc.poll() is None
        assert "Traceback" not in serve.stderr()


@pytest.mark.parametrize(("bad", "problem"), [
    ("a: " + "[" * 3000 + "\n", "(file): nested more than 32 levels deep"),
    ("basic_auth_users: {bob: '$2y$31$" + HASH[7:] + "'}\n",
     "basic_auth_users.bob: bcrypt cost 31 is outside 4..17"),
])
def test_at_start_a_bad_web_config_is_exit_2_naming_the_problem(tmp_path: Path, bad: str,
                                                                 problem: str) -> None:
    web = tmp_path / "web.yml"
    web.write_text(bad)
    (tmp_path / "xenprobe.toml").write_text("")
    p = subprocess.run([sys.executable, "-m", "xenprobe", "serve", "--mock", "healthy",
                        "--config", str(tmp_path / "xenprobe.toml"),
                        "--listen-address", "127.0.0.1:0", "--web.config.file", str(web)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 2, p.stderr
    assert f"web config {web}: {problem}" in p.stderr
    assert "Traceback" not in p.stderr
