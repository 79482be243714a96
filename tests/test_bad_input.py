"""Bad input for `xenprobe serve` that test_cli.py covers for `check`: each exits with its
documented code and one clear message, before a port is bound. And files that exist but
cannot be read (a config file, a certificate), as a user who may not read them.

README "Bad input" lists every case with its message, exit code and test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.exporter_util import DEADLINE, free_port, make_ca, make_cert, port_is_free
from tests.test_cli import BASE


def serve(tmp: Path, scenario: str, *args: str) -> tuple[int, str, int]:
    """`xenprobe serve --mock SCENARIO` that is expected to stop at once."""
    config = tmp / "xenprobe.toml"
    config.write_text("")
    port = free_port()
    p = subprocess.run([sys.executable, "-m", "xenprobe", "serve", "--mock", scenario,
                        "--config", str(config), "--listen-address", f"127.0.0.1:{port}",
                        *args], capture_output=True, text=True, timeout=DEADLINE,
                       check=False)
    assert "Traceback" not in p.stderr
    return p.returncode, p.stderr, port


def scenario_file(tmp: Path, xen: str = "", linux: str = "") -> str:
    path = tmp / "s.toml"
    path.write_text(BASE.format(xen=xen, linux=linux))
    return str(path)


@pytest.mark.parametrize(("knobs", "phrases"), [
    ({"linux": 'device = "eacces"'}, ["permission denied opening /dev/xen/privcmd",
                                      "needs root"]),
    ({"xen": 'reports_version = "4.9"'}, ["Xen 4.9", "not in xenprobe's ABI tables"]),
    ({"xen": "sysctl_interface = 0x99"}, ["refused every sysctl interface version",
                                          "wrong interface version"]),
    ({"xen": "domctl_interface = 0x42"}, ["refused every domctl interface version"]),
])
def test_serve_cannot_probe(tmp_path: Path, knobs: dict[str, str], phrases: list[str]
                            ) -> None:
    code, err, port = serve(tmp_path, scenario_file(tmp_path, **knobs))
    assert code == 3, err
    assert err.startswith("xenprobe: error: ")
    for phrase in phrases:
        assert phrase in err, err
    assert port_is_free(port)


def test_serve_invalid_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[xen]\nrelease = "4.17"\n[host]\nmemory = "lots"\n')
    code, err, port = serve(tmp_path, str(path))
    assert code == 2
    assert "host.memory: expected a size like '16 GiB'" in err
    assert port_is_free(port)


# -- files that exist but are not the reader's to read ----------------------------------

NOBODY = 65534


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory anyone may enter (pytest's own tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="xenprobe-bad-input-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main_as(user: int, argv: list[str]) -> tuple[int, str]:
    """cli.main(argv) in a forked child that became `user` (the interpreter lives under
    /root, which such a user may not execute, so the child does not exec)."""
    from xenprobe import cli
    from xenprobe.exporter import daemon  # noqa: F401  (its stdlib imports, likewise)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(r)
            sys.stderr = os.fdopen(w, "w")  # pytest's capture is not fd 2
            os.setgroups([])
            os.setresgid(user, user, user)
            os.setresuid(user, user, user)
            code = cli.main(argv)
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")


@needs_root
def test_unreadable_config_file(shared_dir: Path) -> None:
    config = shared_dir / "xenprobe.toml"
    config.write_text("interval = 30\n")
    config.chmod(0o600)
    code, err = main_as(NOBODY, ["serve", "--config", str(config)])
    assert code == 2, err
    assert err.startswith(f"xenprobe: error: cannot read config file {config}: "
                          "Permission denied")


@needs_root
def test_unreadable_certificate(shared_dir: Path) -> None:
    ca = make_ca(shared_dir)
    cert, _ = make_cert(shared_dir, "server", ca, "IP:127.0.0.1")
    for f in shared_dir.iterdir():
        f.chmod(0o644)
    cert.chmod(0o600)
    web = shared_dir / "web.yml"
    web.write_text("tls_server_config: {cert_file: server.pem, key_file: server.key}\n")
    web.chmod(0o644)
    config = shared_dir / "xenprobe.toml"
    config.write_text(f'listen_address = "127.0.0.1:{free_port()}"\n')
    config.chmod(0o644)
    code, err = main_as(NOBODY, ["serve", "--config", str(config), "--web.config.file",
                                 str(web)])
    assert code == 2, err
    assert f"web config {web}: tls_server_config: cannot load cert_file {cert}" in err
    assert "Permission denied" in err
