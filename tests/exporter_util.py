# SPDX-License-Identifier: GPL-2.0-only
"""Helpers for the exporter tests: a real `xenprobe serve --mock` subprocess, the
systemd notify socket it talks to, scrapes, and throw-away TLS certificates.

Waits are bounded polls for a state, never assertions on how long something took.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

DEADLINE = 60.0  # seconds any wait may take before the test fails


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = DEADLINE,
             every: float = 0.05) -> T:
    """Poll until `probe` returns something other than None/False."""
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(every)


def short_tmp() -> Path:
    """A short directory: AF_UNIX socket paths are limited to 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="xp-"))


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket at a path."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.messages: list[dict[str, str]] = []

    def _read(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.messages.append(fields)
        return fields

    def expect(self, what: str, match: Callable[[dict[str, str]], bool],
               timeout: float = DEADLINE) -> dict[str, str]:
        """The next message that matches (earlier ones are kept in .messages)."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            m = self._read(left)
            if m is not None and match(m):
                return m
        raise AssertionError(f"no {what} from xenprobe on the notify socket; got "
                             f"{self.messages[-5:]}")

    def drain(self, seconds: float) -> list[dict[str, str]]:
        """Every message for `seconds` (to show that something does NOT arrive)."""
        got = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            m = self._read(left)
            if m is not None:
                got.append(m)
        return got

    def close(self) -> None:
        self.sock.close()


def http_get(url: str, *, context: ssl.SSLContext | None = None,
             auth: tuple[str, str] | None = None, headers: dict[str, str] | None = None,
             method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text -> {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float | None:
    return parsed.get((name, tuple(sorted(labels.items()))))


def series(parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str
           ) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in parsed.items() if n == name}


class Serve:
    """`xenprobe serve --mock SCENARIO` in a subprocess, notifying a socket we own.

    The port is chosen by the kernel (listen on :0) and read back from the STATUS of
    the READY=1 message, so tests never race each other for a port.
    """

    def __init__(self, scenario: str, *args: str, config: Path | None = None,
                 env: dict[str, str] | None = None, watchdog_usec: int | None = None,
                 listen: str | None = "127.0.0.1:0") -> None:
        self.dir = short_tmp()
        self.notify = NotifySocket(self.dir)
        self.config = config or self.dir / "xenprobe.toml"
        if config is None:
            self.config.write_text("")
        self.stderr_path = self.dir / "stderr"
        environment = dict(os.environ if env is None else env)
        environment["NOTIFY_SOCKET"] = str(self.notify.path)
        if watchdog_usec is not None:
            environment["WATCHDOG_USEC"] = str(watchdog_usec)
        argv = [sys.executable, "-m", "xenprobe", "serve", "--mock", scenario,
                "--config", str(self.config), "--log-format", "json", *args]
        if listen is not None:  # None: from the config file
            argv += ["--listen-address", listen]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, env=environment, stdout=subprocess.DEVNULL,
                                         stderr=err)
        self.port = 0

    def start(self) -> Serve:
        end = time.monotonic() + DEADLINE
        ready = None
        while ready is None:
            if self.proc.poll() is not None:
                raise AssertionError(f"xenprobe serve exited {self.proc.returncode}: "
                                     f"{self.stderr()}")
            if time.monotonic() > end:
                raise AssertionError(f"no READY=1 from xenprobe serve: {self.stderr()}")
            m = self.notify._read(0.5)
            if m is not None and m.get("READY") == "1":
                ready = m
        found = re.search(r"serving \S+:(\d+)", ready.get("STATUS", ""))
        assert found, ready
        self.port = int(found.group(1))
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def get(self, path: str = "/metrics", **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return http_get(self.url + path, **kw)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, _, body = self.get()
        assert status == 200, body
        return samples(body.decode())

    def after_sweeps(self, n: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Metrics once at least `n` sweeps have finished."""
        def probe() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            m = self.metrics()
            return m if (value(m, "xenprobe_sweeps_total") or 0) >= n else None
        return wait_for(f"{n} sweeps", probe)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = DEADLINE) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Serve:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def port_is_free(port: int) -> bool:
    """Nobody listens on it (connections of ours left in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- TLS material ------------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True,
                   timeout=60)


def make_ca(d: Path, name: str = "ca") -> tuple[Path, Path]:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=xenprobe test {name}", cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


def make_cert(d: Path, name: str, ca: tuple[Path, Path], san: str, *,
              client: bool = False) -> tuple[Path, Path]:
    """A leaf certificate signed by `ca`, e.g. san="DNS:localhost,IP:127.0.0.1"."""
    usage = "clientAuth" if client else "serverAuth"
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
             "-out", f"{name}.pem", cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


@contextlib.contextmanager
def terminated(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
