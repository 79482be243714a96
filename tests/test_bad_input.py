# SPDX-License-Identifier: GPL-2.0-only
"""Bad input for `xenprobe serve` that test_cli.py covers for `check`: each exits with its
documented code and one clear message, before a port is bound. And files that exist but
cannot be read (a config file, a certificate), as a user who may not read them.

docs/exit-codes-and-streams.md "Bad input" lists every case with its message, exit code and test.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
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
    from xenprobe.cli import command as cli
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


# -- every input path: flags, files, environment, locale, resource limits ---------------
#
# One row per input: the command, what is changed around it, the exit code and the
# phrase stderr must carry. None of them may end in exit 4 or a traceback. Placeholders:
# {tmp} a fresh directory holding {tmp}/fifo.toml and fifo.prom (FIFOs), dir.toml and
# dir.prom (directories), deep.toml (TOML nested 600 deep), big.toml (2 MiB),
# \xe9.toml (a scenario whose name is not UTF-8), count.toml, vanish.toml, every.toml
# (integers past the mock's C types); {long} is a 5000-byte file name.

LONG = "a" * 5000
HUGE = "9" * 400


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    code: int
    phrase: str = ""
    env: dict[str, str] = field(default_factory=dict)
    limits: dict[int, int] = field(default_factory=dict)  # resource -> soft and hard


CASES = [
    # flags of check
    Case("attempts-huge", ["check", "--mock", "--attempts", HUGE], 2,
         "--attempts must be between 1 and 100"),
    Case("attempts-negative", ["check", "--mock", "--attempts", "-1"], 2,
         "--attempts must be between 1 and 100"),
    Case("attempts-text", ["check", "--attempts", "many"], 2, "invalid int value: 'many'"),
    Case("log-level-nonsense", ["check", "--log-level", "LOUD"], 2, "invalid choice"),
    Case("unknown-command", ["probe"], 2, "invalid choice: 'probe'"),
    Case("textfile-empty", ["check", "--mock", "--textfile", ""], 2, "--textfile needs a path"),
    Case("textfile-not-prom", ["check", "--mock", "--textfile", "/dev/full"], 2,
         "reads only *.prom files"),
    Case("textfile-long-name", ["check", "--mock", "--textfile", "{tmp}/{long}.prom"], 2,
         "File name too long"),
    Case("textfile-no-directory", ["check", "--mock", "--textfile", "{tmp}/no/x.prom"], 2,
         "directory {tmp}/no does not exist"),
    Case("textfile-is-a-directory", ["check", "--mock", "--textfile", "{tmp}/dir.prom"], 2,
         "is a directory"),
    Case("textfile-non-utf8-name", ["check", "--mock", "--textfile", "{tmp}/\udce9.prom"], 0),
    # scenario files
    Case("scenario-fifo", ["check", "--mock", "{tmp}/fifo.toml"], 2,
         "cannot read scenario {tmp}/fifo.toml: not a regular file"),
    Case("scenario-device", ["check", "--mock", "/dev/zero"], 2,
         "cannot read scenario /dev/zero: not a regular file"),
    Case("scenario-directory", ["check", "--mock", "{tmp}/dir.toml"], 2, "Is a directory"),
    Case("scenario-long-name", ["check", "--mock", "{tmp}/{long}.toml"], 2,
         "File name too long"),
    Case("scenario-missing-non-utf8", ["check", "--mock", "{tmp}/\udcff.toml"], 2,
         "No such file or directory"),
    Case("scenario-non-utf8-name", ["check", "--mock", "{tmp}/\udce9.toml"], 0),
    Case("scenario-nested", ["check", "--mock", "{tmp}/deep.toml"], 2, "nested too deeply"),
    Case("scenario-huge", ["check", "--mock", "{tmp}/big.toml"], 2,
         "larger than 1048576 bytes"),
    # integers the native mock's C types cannot hold (native/mock/faults.c, scenario.c)
    Case("scenario-count-2-63", ["check", "--mock", "{tmp}/count.toml"], 2,
         "fault[0].count: expected 1 to 0x7fffffffffffffff"),
    Case("scenario-vanish-2-63", ["serve", "--mock", "{tmp}/vanish.toml"], 2,
         "domain[1].vanish_after: expected a number of lookups"),
    Case("scenario-balloon-every-2-64", ["check", "--mock", "{tmp}/every.toml"], 2,
         "domain[2].balloon.every: expected 1 to 0xffffffffffffffff"),
    # flags and files of serve (each stops before binding a port)
    Case("config-fifo", ["serve", "--mock", "--config", "{tmp}/fifo.toml"], 2,
         "cannot read config file {tmp}/fifo.toml: not a regular file"),
    Case("config-device", ["serve", "--mock", "--config", "/dev/full"], 2,
         "not a regular file"),
    Case("config-directory", ["serve", "--mock", "--config", "{tmp}/dir.toml"], 2,
         "is a directory"),
    Case("config-long-name", ["serve", "--mock", "--config", "{tmp}/{long}"], 2,
         "File name too long"),
    Case("config-non-utf8-name", ["serve", "--mock", "--config", "{tmp}/\udcff"], 2,
         "does not exist"),
    Case("config-nested", ["serve", "--mock", "--config", "{tmp}/deep.toml"], 2,
         "nested too deeply"),
    Case("interval-overflow", ["serve", "--mock", "--interval", "1e309"], 2,
         "--interval: must be a finite number"),
    Case("interval-nan", ["serve", "--mock", "--interval", "nan"], 2,
         "--interval: must be a finite number"),
    Case("interval-huge", ["serve", "--mock", "--interval", HUGE], 2,
         "--interval: must be a finite number"),
    Case("interval-negative", ["serve", "--mock", "--interval", "-5"], 2,
         "--interval: must be at least 1"),
    Case("max-domain-series-huge", ["serve", "--mock", "--max-domain-series", HUGE], 2,
         "--max-domain-series: must be between 0 and 100000"),
    Case("port-too-big", ["serve", "--mock", "--listen-address", "127.0.0.1:99999"], 2,
         "the port must be a number from 0 to 65535"),
    # found by tests/test_input_properties.py: digits int() reads but a reader does not
    # expect, and hosts Python's IDNA encoding refuses before any look-up
    Case("port-arabic-indic-digit", ["serve", "--mock", "--listen-address", "127.0.0.1:\u0663"],
         2, "--listen-address: the port must be a number from 0 to 65535, got '\u0663'"),
    Case("port-fullwidth-digit", ["serve", "--mock", "--listen-address", ":\uff11"], 2,
         "--listen-address: the port must be a number from 0 to 65535"),
    Case("port-superscript", ["serve", "--mock", "--listen-address", "127.0.0.1:\u00b2"], 2,
         "--listen-address: the port must be a number from 0 to 65535"),
    Case("host-label-too-long", ["serve", "--mock", "--listen-address", "a" * 64 + ":1"], 2,
         "is not a valid host name: label too long"),
    Case("host-empty-label", ["serve", "--mock", "--listen-address", "x..y:1"], 2,
         "--listen-address: the host 'x..y' is not a valid host name"),
    Case("address-unresolvable", ["serve", "--mock", "--listen-address", "256.1.1.1:9"], 2,
         "cannot resolve '256.1.1.1'"),
    Case("web-config-fifo", ["serve", "--mock", "--web.config.file", "{tmp}/fifo.toml"], 2,
         "--web-config-file: {tmp}/fifo.toml is not a regular file"),
    Case("web-config-device", ["serve", "--mock", "--web.config.file", "/dev/null"], 2,
         "is not a regular file"),
    Case("serve-log-level", ["serve", "--mock", "--log-level", "LOUD!"], 2,
         "--log-level: expected one of debug, info, warning, error"),
    Case("serve-log-format", ["serve", "--mock", "--log-format", "xml"], 2,
         "--log-format: expected one of auto, json, console"),
    # environment variables xenprobe (or its mock) reads
    Case("hang-sweep-outside-test-mode", ["serve", "--mock"], 2, "is a test-only setting",
         env={"XENPROBE_TEST_HANG_SWEEP": "1"}),
    Case("hang-sweep-not-a-number", ["serve", "--mock"], 2, "expected a sweep number",
         env={"XENPROBE_TEST_MODE": "1", "XENPROBE_TEST_HANG_SWEEP": "soon"}),
    Case("mock-log-unwritable", ["check", "--mock"], 0,
         env={"XENPROBE_MOCK_LOG": "/nonexistent/mock.log"}),
    Case("mock-log-full", ["check", "--mock"], 0, env={"XENPROBE_MOCK_LOG": "/dev/full"}),
    Case("libxenctrl-a-device", ["check", "--mock"], 0,
         env={"XENPROBE_LIBXENCTRL": "/dev/zero"}),
    Case("libxenctrl-non-utf8", ["check", "--mock"], 0,
         env={"XENPROBE_LIBXENCTRL": "/\udcff"}),
    Case("journal-stream-garbage", ["check", "--mock"], 0, env={"JOURNAL_STREAM": "x:y"}),
    Case("debug-on-a-usage-error", ["check", "--attempts", "0"], 2, "--attempts must be",
         env={"XENPROBE_DEBUG": "1"}),
    # locales: a Turkish one (dotless i), C, POSIX, and a non-UTF-8 stdout
    Case("locale-tr", ["check", "--mock", "large-memory"], 1,
         env={"LC_ALL": "tr_TR.UTF-8", "LANG": "tr_TR.UTF-8"}),
    Case("locale-c", ["check", "--mock", "large-memory"], 1, env={"LC_ALL": "C"}),
    Case("locale-posix", ["check", "--mock", "large-memory"], 1, env={"LC_ALL": "POSIX"}),
    Case("locale-ascii-non-utf8-name", ["check", "--mock", "{tmp}/\udce9.toml"], 0,
         env={"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}),
    Case("stdout-ascii-non-utf8-name", ["check", "--mock", "{tmp}/\udce9.toml"], 0,
         env={"PYTHONIOENCODING": "ascii"}),
    # resource limits
    Case("few-descriptors", ["check", "--mock", "large-memory", "--textfile",
                             "{tmp}/x.prom"], 1, limits={resource.RLIMIT_NOFILE: 10}),
    Case("no-locked-memory", ["check", "--mock", "large-memory"], 1,
         limits={resource.RLIMIT_MEMLOCK: 0}),
    Case("small-address-space", ["check", "--mock", "large-memory"], 1,
         limits={resource.RLIMIT_AS: 256 << 20}),
    # Python itself starts in about 13 MiB; loading xenprobe needs more than 20.
    Case("address-space-too-small", ["check", "--mock"], 3,
         "out of memory (is the address space limited", limits={resource.RLIMIT_AS: 20 << 20}),
    Case("no-file-growth", ["check", "--mock"], 3,
         "cannot hand the scenario to the mock host: File too large",
         limits={resource.RLIMIT_FSIZE: 0}),
]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    for name in ("fifo.toml", "fifo.prom"):
        os.mkfifo(tmp_path / name)
    for name in ("dir.toml", "dir.prom"):
        (tmp_path / name).mkdir()
    (tmp_path / "deep.toml").write_text("[xen]\nrelease = " + "[" * 600 + "]" * 600 + "\n")
    (tmp_path / "big.toml").write_text("#" * (2 << 20))
    healthy = resources.files("xenprobe.mock.scenarios").joinpath("healthy.toml").read_text()
    (tmp_path / "\udce9.toml").write_text(healthy)
    (tmp_path / "count.toml").write_text(
        healthy + '[[fault]]\nop = "sysctl"\nerrno = "EAGAIN"\ncount = 9223372036854775808\n')
    (tmp_path / "vanish.toml").write_text(
        healthy.replace("id = 1\n", "id = 1\nvanish_after = 9223372036854775808\n", 1))
    (tmp_path / "every.toml").write_text(healthy.replace(
        "id = 2\n", "id = 2\nballoon = {step = 1, every = 18446744073709551616}\n", 1))
    return tmp_path


def _fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{long}", LONG)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_input_path(inputs: Path, case: Case) -> None:
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # RLIMIT_FSIZE: EFBIG, not a kill
        for which, n in case.limits.items():
            resource.setrlimit(which, (n, n))

    env = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LANG", "LANGUAGE")}
    env.update(case.env)
    argv = [_fill(a, inputs) for a in case.argv]
    if argv[0] == "serve":  # never a port another test (or service) holds
        argv += ["--listen-address", f"127.0.0.1:{free_port()}"] if (
            "--listen-address" not in argv) else []
        if "--config" not in argv:
            (inputs / "empty.toml").write_text("")
            argv += ["--config", str(inputs / "empty.toml")]
    p = subprocess.run([sys.executable, "-m", "xenprobe", *argv], env=env,
                       capture_output=True, timeout=DEADLINE, check=False,
                       preexec_fn=limit, stdin=subprocess.DEVNULL)
    err = p.stderr.decode("utf-8", "backslashreplace")
    assert p.returncode == case.code, (p.returncode, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if case.code >= 2:
        assert err.startswith("xenprobe: error: "), err
        assert p.stdout == b""
        assert _fill(case.phrase, inputs) in err, err
    else:
        assert p.stdout  # the report


def test_port_in_use_fails_before_privcmd_is_opened(tmp_path: Path) -> None:
    """A port in use is found before the device is opened: on a host where privcmd would
    be refused too, the error is the port (issue 23)."""
    config = tmp_path / "xenprobe.toml"
    config.write_text("")
    with socket.socket() as held:  # the test's own, so no other process matters
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "xenprobe", "serve", "--mock",
                            scenario_file(tmp_path, linux='device = "eacces"'),
                            "--config", str(config), "--listen-address",
                            f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"xenprobe: error: listen_address 127.0.0.1:{port}: "
                               "cannot listen: Address already in use"), p.stderr
    assert "privcmd" not in p.stderr


@pytest.mark.parametrize(("room", "code", "phrase"), [
    (16 << 20, 3, "xenprobe: error: out of memory (is the address space limited"),
    (1 << 30, 4, "xenprobe: internal error: SystemError: error return without exception set"),
])
def test_a_command_failing_in_c_near_the_limit_is_out_of_memory(room: int, code: int,
                                                                 phrase: str) -> None:
    """The CI run's exit 4: under a 20 MiB RLIMIT_AS a command's C code failed an
    allocation without a MemoryError (SystemError "error return without exception set").
    The same failure in a command whose address space is near its limit exits 3; far from
    it, it is a bug (exit 4). The failure is raised where the command runs, in a child
    given `room` above its own size."""
    child = ("import os, resource, sys\n"
             "from xenprobe.cli import command\n"
             "def fail(*_):\n"
             "    raise SystemError('error return without exception set')\n"
             "command._check = fail\n"
             "size = int(open('/proc/self/statm').read().split()[0]) * os.sysconf('SC_PAGE_SIZE')\n"
             f"resource.setrlimit(resource.RLIMIT_AS, (size + {room}, size + {room}))\n"
             "sys.exit(command.main(['check', '--mock']))\n")
    p = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                       timeout=DEADLINE, check=False)
    assert p.returncode == code, p.stderr
    assert p.stderr.startswith(phrase), p.stderr


@pytest.mark.parametrize(("room", "error", "memory"), [
    (None, "SystemError('error return without exception set')", False),  # no limit
    (1 << 30, "SystemError('error return without exception set')", False),  # far
    (16 << 20, "SystemError('error return without exception set')", True),  # near
    (16 << 20, "SyntaxError(\"expected ':'\")", True),
    (1 << 30, "MemoryError()", True),  # says so itself
])
def test_a_failure_is_the_limit_only_near_it(room: int | None, error: str,
                                             memory: bool) -> None:
    """entry.cannot_load, in a child whose RLIMIT_AS leaves it `room` (None: no limit):
    an exception other than MemoryError is the limit only within entry.ROOM of it."""
    code = ("import os, resource, sys\n"
            "from xenprobe.cli import entry\n"
            "size = int(open('/proc/self/statm').read().split()[0]) * os.sysconf('SC_PAGE_SIZE')\n"
            f"if {room} is not None:\n"
            f"    resource.setrlimit(resource.RLIMIT_AS, (size + {room}, size + {room}))\n"
            f"sys.exit(0 if entry.cannot_load({error}) else 1)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=DEADLINE, check=False)
    assert p.returncode == (0 if memory else 1), p.stderr
