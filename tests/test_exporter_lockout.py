# SPDX-License-Identifier: GPL-2.0-only
"""Nobody can lock a scraper out of `xenprobe serve` without credentials: hundreds of
idle connections and of clients dripping a header line every 2 s (plain and TLS) leave
a legitimate scrape answered, a request head must arrive complete within a bounded
time, and an open keep-alive connection is judged by the web config in force when each
request arrives.

All on loopback; every wait is a bounded poll, never a stopwatch assertion.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import resource
import shutil
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from prometheus_client.registry import CollectorRegistry

from tests.exporter_util import Serve, make_ca, make_cert, samples, value, wait_for
from xenprobe.exporter.config import Listen
from xenprobe.exporter.http import server
from xenprobe.exporter.state import Health
from xenprobe.exporter.web.watcher import Watcher
from xenprobe.support import revision

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()
OTHER = bcrypt.hashpw(b"changed", bcrypt.gensalt(4)).decode()
IDLE = 200   # connections that send nothing at all
SLOW = 100   # clients that send a header line every DRIP seconds and never finish
DRIP = 2.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    make_cert(d, "server", ca, "DNS:localhost,IP:127.0.0.1")
    return d


@pytest.fixture(autouse=True)
def enough_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * (IDLE + SLOW) + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def tls_client(pki: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki / "ca.pem"))


class Attack:
    """IDLE silent connections and SLOW dripping ones against 127.0.0.1:port."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None) -> None:
        self.port, self.context = port, context
        self.socks: list[socket.socket] = []
        self.slow: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True)

    def _connect(self, *, handshake: bool) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        if self.context is not None and handshake:
            s = self.context.wrap_socket(s, server_hostname="localhost")
        return s

    def __enter__(self) -> Attack:
        for _ in range(IDLE):
            self.socks.append(self._connect(handshake=False))
        for _ in range(SLOW):
            s = self._connect(handshake=True)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            self.slow.append(s)
        self.thread.start()
        return self

    def _drip(self) -> None:
        n = 0
        while not self.stop.wait(DRIP):
            n += 1
            for s in self.slow:
                with contextlib.suppress(OSError):
                    s.sendall(f"X-Drip-{n}: {'a' * 10}\r\n".encode())

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        for s in self.socks + self.slow:
            s.close()


def scrape(port: int, context: ssl.SSLContext | None = None,
           auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    else:
        conn = http.client.HTTPSConnection("localhost", port, timeout=30, context=context)
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        conn.request("GET", "/metrics", headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_idle_and_slow_clients_do_not_lock_out_a_plain_scrape() -> None:
    with Serve("healthy") as serve:
        serve.after_sweeps(1)
        with Attack(serve.port):
            for _ in range(3):  # spread over more than one drip
                status, body = scrape(serve.port)
                assert status == 200
                assert value(samples(body.decode()), "xenprobe_up") == 1
                threading.Event().wait(DRIP / 2)


def test_idle_and_slow_clients_do_not_lock_out_a_tls_scrape(tmp_path: Path, pki: Path
                                                            ) -> None:
    for f in ("server.pem", "server.key"):
        shutil.copy(pki / f, tmp_path / f)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config: {cert_file: server.pem, key_file: server.key}\n"
                   f"basic_auth_users: {{prometheus: {HASH}}}\n")
    with Serve("healthy", "--web-config-file", str(web)) as serve:
        context = tls_client(pki)
        with Attack(serve.port, context):
            for _ in range(3):
                status, body = scrape(serve.port, context, ("prometheus", "secret"))
                assert status == 200
                assert value(samples(body.decode()), "xenprobe_build_info",
                             version=__import__("xenprobe").__version__,
                             revision=revision.revision()) == 1
                threading.Event().wait(DRIP / 2)


# -- the deadline on a request head, in process with a short deadline ------------------

@contextlib.contextmanager
def in_process(monkeypatch: pytest.MonkeyPatch, web: Path | None = None
               ) -> Iterator[server.Server]:
    monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.5)
    health = Health(ok=True, stale=False, stuck=False, running_for=0.0, age=0.0)
    app = server.App(CollectorRegistry(), Watcher(web), lambda: health)
    srv = server.Server(Listen("127.0.0.1", 0), app)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def closed_by_server(s: socket.socket) -> bool:
    """True once the server has closed `s` (EOF or reset), else False."""
    s.settimeout(0.05)
    try:
        return s.recv(4096) == b""
    except TimeoutError:
        return False
    except ssl.SSLError:
        return True
    except ConnectionError:
        return True


def test_a_request_head_must_arrive_complete_in_bounded_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with in_process(monkeypatch) as srv:
        idle = socket.create_connection(("127.0.0.1", srv.port))
        slow = socket.create_connection(("127.0.0.1", srv.port))
        slow.sendall(b"GET / HTTP/1.1\r\n")
        stop = threading.Event()

        def drip() -> None:
            while not stop.wait(0.1):  # far more often than the deadline
                with contextlib.suppress(OSError):
                    slow.sendall(b"X: y\r\n")
        t = threading.Thread(target=drip, daemon=True)
        t.start()
        try:
            wait_for("the idle connection to be closed", lambda: closed_by_server(idle))
            wait_for("the dripping client to be closed", lambda: closed_by_server(slow))
        finally:
            stop.set()
            t.join()
            idle.close()
            slow.close()
        assert scrape(srv.port)[0] == 200


def test_a_tls_handshake_counts_against_the_deadline(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Path) -> None:
    for f in ("server.pem", "server.key"):
        shutil.copy(pki / f, tmp_path / f)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config: {cert_file: server.pem, key_file: server.key}\n")
    with in_process(monkeypatch, web) as srv:
        hello_only = socket.create_connection(("127.0.0.1", srv.port))
        hello_only.sendall(b"\x16\x03\x01")  # the start of a ClientHello, never finished
        silent = tls_client(pki).wrap_socket(
            socket.create_connection(("127.0.0.1", srv.port)), server_hostname="localhost")
        try:
            wait_for("the half handshake to be closed",
                     lambda: closed_by_server(hello_only))
            wait_for("the silent TLS client to be closed", lambda: closed_by_server(silent))
        finally:
            hello_only.close()
            silent.close()
        assert scrape(srv.port, tls_client(pki))[0] == 200


# -- an open keep-alive connection follows the web config -------------------------------

def get(conn: http.client.HTTPConnection, auth: tuple[str, str] | None = None) -> int:
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode()
    conn.request("GET", "/", headers=headers)
    r = conn.getresponse()
    r.read()
    return r.status


def test_a_keep_alive_connection_is_judged_by_the_config_in_force(tmp_path: Path
                                                                  ) -> None:
    web = tmp_path / "web.yml"
    web.write_text("")
    with Serve("healthy", "--web-config-file", str(web)) as serve:
        conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=30)
        try:
            assert get(conn) == 200
            sock = conn.sock
            web.write_text(f"basic_auth_users: {{alice: {HASH}, bob: {HASH}}}\n")  # auth on
            assert get(conn) == 401
            assert get(conn, ("alice", "secret")) == 200
            web.write_text(f"basic_auth_users: {{bob: {HASH}}}\n# alice removed\n")
            assert get(conn, ("alice", "secret")) == 401
            assert get(conn, ("bob", "secret")) == 200
            web.write_text(f"basic_auth_users: {{bob: {OTHER}}}\n# password changed\n")
            assert get(conn, ("bob", "secret")) == 401
            assert get(conn, ("bob", "changed")) == 200
            assert conn.sock is sock  # all of it on the one connection
        finally:
            conn.close()


def test_a_tls_keep_alive_connection_follows_users_and_closes_on_a_new_tls_setting(
        tmp_path: Path, pki: Path) -> None:
    for f in ("server.pem", "server.key"):
        shutil.copy(pki / f, tmp_path / f)
    web = tmp_path / "web.yml"
    tls = "tls_server_config: {cert_file: server.pem, key_file: server.key}\n"
    web.write_text(tls + f"basic_auth_users: {{alice: {HASH}}}\n")
    with Serve("healthy", "--web-config-file", str(web)) as serve:
        conn = http.client.HTTPSConnection("localhost", serve.port, timeout=30,
                                           context=tls_client(pki))
        try:
            assert get(conn, ("alice", "secret")) == 200
            sock = conn.sock
            web.write_text(tls + f"basic_auth_users: {{bob: {HASH}}}\n# alice removed\n")
            assert get(conn, ("alice", "secret")) == 401
            assert get(conn, ("bob", "secret")) == 200
            assert conn.sock is sock  # users changed, TLS did not: the same connection
            # A new TLS setting (here a CA for client certificates, which this client
            # has none for) is not applied to the old connection: it is closed.
            shutil.copy(pki / "ca.pem", tmp_path / "ca.pem")
            web.write_text("tls_server_config: {cert_file: server.pem, key_file: "
                           "server.key, client_auth_type: RequireAndVerifyClientCert, "
                           f"client_ca_file: ca.pem}}\nbasic_auth_users: {{bob: {HASH}}}\n")
            with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
                get(conn, ("bob", "secret"))
        finally:
            conn.close()
        with pytest.raises(OSError):  # and a new one must now show a certificate
            scrape(serve.port, tls_client(pki), ("bob", "secret"))
