# SPDX-License-Identifier: GPL-2.0-only
"""Textfile output for node_exporter: atomic replacement, permissions, no leftovers,
no timestamps; `check --textfile` and `serve` with a textfile, with the daemon's
findings (consumers at risk included) and the check's own retries."""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import signal
import stat
import threading
from pathlib import Path

import pytest

from tests.exporter_util import Serve, samples, series, value, wait_for
from tests.holders import build_hold32, start_on_mock, stop
from tests.mockhost import env_for, fault, run_check, variant
from xenprobe.exporter.metrics import textfile
from xenprobe.mock.scenario import load
from xenprobe.xen.transport import RETRIES


def test_write_replaces_the_file_readably(tmp_path: Path) -> None:
    target = tmp_path / "xenprobe.prom"
    old = os.umask(0o077)  # as under the unit's UMask=0077
    try:
        textfile.write(target, "a 1\n")
        textfile.write(target, "a 2\n")
    finally:
        os.umask(old)
    assert target.read_text() == "a 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # node_exporter must read it
    assert os.listdir(tmp_path) == ["xenprobe.prom"]


def test_readers_never_see_half_a_file(tmp_path: Path) -> None:
    target = tmp_path / "xenprobe.prom"
    versions = ["".join(f"x{v}_{i} {i}\n" for i in range(4000)) + "# end\n"
                for v in range(2)]
    textfile.write(target, versions[0])
    done = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        while not done.is_set():
            seen.append(target.read_text())

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(200):
            textfile.write(target, versions[i % 2])
    finally:
        done.set()
        t.join()
    assert seen
    assert all(s in versions for s in seen)


def test_temporary_names_are_invisible_to_the_collector(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    names: list[str] = []
    real = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        names.append(os.path.basename(src))
        assert os.path.dirname(src) == os.path.dirname(dst)  # same filesystem
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    textfile.write(tmp_path / "xenprobe.prom", "a 1\n")
    assert names and not fnmatch.fnmatch(names[0], "*.prom")


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_leaves_the_old_file_and_no_debris(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    target = tmp_path / "xenprobe.prom"
    textfile.write(target, "old 1\n")

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(OSError):
        textfile.write(target, "new 1\n")
    assert target.read_text() == "old 1\n"
    assert os.listdir(tmp_path) == ["xenprobe.prom"]


# -- a writer killed at any point leaves nothing half-written (issue 12 item 3) --------

def _killed_in(target: Path, step: str) -> int:
    """textfile.write(target) in a child SIGKILLed while it is inside os.`step`; the
    child's pid."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: announce the step, then wait to be killed
        try:
            os.close(r)

            def stuck(*args: object, **kw: object) -> None:
                os.write(w, b"x")
                while True:
                    signal.pause()

            setattr(os, step, stuck)
            textfile.write(target, "new 1\n" * 1000)
        finally:
            os._exit(1)
    os.close(w)
    try:
        assert os.read(r, 1) == b"x"
    finally:
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return pid


def test_killed_while_writing_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "xenprobe.prom"
    textfile.write(target, "old 1\n")
    _killed_in(target, "fsync")  # the data is written, not yet flushed or named
    assert os.listdir(tmp_path) == ["xenprobe.prom"]
    assert target.read_text() == "old 1\n"


def test_the_next_write_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    target = tmp_path / "xenprobe.prom"
    textfile.write(target, "old 1\n")
    pid = _killed_in(target, "replace")  # named, not yet renamed: the one window
    left = [n for n in os.listdir(tmp_path) if n != "xenprobe.prom"]
    assert len(left) == 1 and left[0].startswith(f".xenprobe.prom.{pid}.")
    assert (tmp_path / left[0]).read_text() == "new 1\n" * 1000  # whole, never half
    textfile.write(target, "newer 1\n")
    assert os.listdir(tmp_path) == ["xenprobe.prom"]
    assert target.read_text() == "newer 1\n"


def test_a_live_writers_temporary_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "xenprobe.prom"
    theirs = textfile.temporary_name(target, pid=1)  # init: alive for sure
    theirs.write_text("partial")
    other = tmp_path / ".other.prom.999999999.0123abcd.tmp"  # not this file's
    other.write_text("x")
    textfile.write(target, "a 1\n")
    assert sorted(os.listdir(tmp_path)) == sorted(["xenprobe.prom", theirs.name, other.name])


def test_the_file_has_no_name_until_it_is_whole(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    linked: list[str] = []
    real = os.link

    def spy(src: str, dst: str, **kw: int) -> None:
        linked.append(src)
        assert os.path.getsize(src) == len("a 1\n")  # written before it is named
        real(src, dst, **kw)

    monkeypatch.setattr(os, "link", spy)
    textfile.write(tmp_path / "xenprobe.prom", "a 1\n")
    assert len(linked) == 1 and linked[0].startswith("/proc/self/fd/")


def test_without_o_tmpfile_the_named_fallback_is_as_clean(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    real = os.open

    def no_tmpfile(path: object, flags: int, *args: int, **kw: int) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", no_tmpfile)
    target = tmp_path / "xenprobe.prom"
    textfile.write(target, "a 1\n")
    assert target.read_text() == "a 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["xenprobe.prom"]


# -- through the command line ------------------------------------------------------------

def test_check_textfile_on_the_mock(tmp_path: Path) -> None:
    target = tmp_path / "xenprobe.prom"
    p = run_check(["check", "--mock", "large-memory", "--textfile", str(target)])
    assert p.returncode == 1, p.stderr  # a mismatch was found
    assert "sign_flipped" in p.stdout  # the report still goes to stdout
    text = target.read_text()
    m = samples(text)
    assert value(m, "xenprobe_up") == 1
    assert value(m, "xenprobe_mock_info", scenario="large-memory") == 1
    assert value(m, "xenprobe_mismatch_verdicts", quantity="maximum_ram_page", layer="ioctl",
                 verdict="sign_flipped") == 1
    assert value(m, "xenprobe_domain_mismatch", quantity="maximum_gpfn", layer="ioctl",
                 verdict="aliased_errno", domid="4") == 1
    assert series(m, "xenprobe_mismatch_verdicts")
    # No timestamps (node_exporter refuses them): every sample is "name{...} value".
    for line in text.splitlines():
        if not line.startswith("#"):
            assert len(line.rsplit("} ", 1)[-1].split()) == (1 if "}" in line else 2)
    assert os.listdir(tmp_path) == ["xenprobe.prom"]


def test_check_textfile_records_a_failure(tmp_path: Path) -> None:
    target = tmp_path / "xenprobe.prom"
    target.write_text("stale 1\n")
    p = run_check(["check", "--mock", "domu", "--textfile", str(target)])
    assert p.returncode == 3, p.stderr
    assert "xenprobe: error:" in p.stderr and "Traceback" not in p.stderr
    text = target.read_text()
    m = samples(text)
    assert value(m, "xenprobe_up") == 0
    assert series(m, "xenprobe_mismatch_verdicts") == {}
    # Who holds privcmd does not depend on the sweep; nothing was retried.
    assert set(dict(labels)["verdict"] for labels in series(m, "xenprobe_privcmd_consumers")) \
        == {"int_path", "multicall", "unknown", "error_only"}
    assert "# TYPE xenprobe_sweep_retries gauge" in text
    assert series(m, "xenprobe_sweep_retries") == {}


@pytest.fixture(scope="module")
def hold32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_hold32(tmp_path_factory.mktemp("hold32"))


def test_check_textfile_counts_this_checks_retries(tmp_path: Path) -> None:
    # Two EINTRs on the ioctl path: retried, so the check still succeeds.
    path, env = variant(tmp_path, "retrying", "large-memory", fault(
        layer="driver", op="memory_op", subop=3, errno="EINTR", count=2, via="ioctl"))
    target = tmp_path / "xenprobe.prom"
    p = run_check(["check", "--json", "--mock", str(path), "--textfile", str(target)],
                  env=env)
    assert p.returncode == 1, p.stderr
    text = target.read_text()
    m = samples(text)
    assert value(m, "xenprobe_mock_info", scenario="retrying") == 1
    # As the check's JSON report counts them; the same run's findings are all there.
    assert json.loads(p.stdout)["retries"] == {"ioctl": {"EINTR": 2}}
    assert series(m, "xenprobe_sweep_retries") == {(("call", "ioctl"), ("reason", "EINTR")): 2}
    assert value(m, "xenprobe_mismatch_verdicts", quantity="maximum_ram_page", layer="ioctl",
                 verdict="sign_flipped") == 1
    assert "_total" not in text  # no counters in a file each run rewrites


def test_check_textfile_names_the_consumers(hold32: Path, tmp_path: Path) -> None:
    env = env_for(load("large-memory"), tmp_path)
    holders = [start_on_mock(hold32, env), start_on_mock(None, env)]
    target = tmp_path / "xenprobe.prom"
    try:
        p = run_check(["check", "--json", "--mock", "large-memory", "--textfile",
                       str(target)], env=env)
    finally:
        stop(holders)
    assert p.returncode == 1, p.stderr
    report = json.loads(p.stdout)["consumers"]
    m = samples(target.read_text())
    # Both holders are named, with their verdicts. Other tests may hold the mock's
    # device meanwhile, so the counts are compared with the report's.
    p32, p64 = holders
    named = {dict(labels)["pid"]: dict(labels)
             for labels in series(m, "xenprobe_privcmd_consumer_info")}
    assert named[str(p32.pid)] == {"pid": str(p32.pid), "comm": "hold32", "exe": str(hold32),
                                   "libxenctrl": "", "verdict": "error_only"}
    assert named[str(p64.pid)]["verdict"] == "unknown"
    found = report["processes"]
    for verdict in ("int_path", "multicall", "unknown", "error_only"):
        assert value(m, "xenprobe_privcmd_consumers", verdict=verdict) == sum(
            1 for c in found if c["verdict"] == verdict)
    for reason in ("fds", "maps"):
        assert value(m, "xenprobe_privcmd_consumers_unreadable_processes", reason=reason) \
            == report["unreadable_processes"][reason]
    assert value(m, "xenprobe_privcmd_consumers_scan_complete") == int(report["complete"])


def test_a_check_that_gives_up_after_retrying_says_how_often(tmp_path: Path) -> None:
    path, env = variant(tmp_path, "eintr", "large-memory",
                        fault(layer="driver", op="any", errno="EINTR", count=-1))
    target = tmp_path / "xenprobe.prom"
    p = run_check(["check", "--mock", str(path), "--textfile", str(target)], env=env)
    assert p.returncode == 3, p.stderr
    assert f"after {RETRIES} retries" in p.stderr
    m = samples(target.read_text())
    assert value(m, "xenprobe_up") == 0
    # The first request, xen_version through ioctl(), was issued RETRIES more times.
    assert series(m, "xenprobe_sweep_retries") == {
        (("call", "ioctl"), ("reason", "EINTR")): RETRIES}


def test_serve_writes_the_textfile_after_each_sweep(tmp_path: Path) -> None:
    target = tmp_path / "xenprobe.prom"
    with Serve("healthy", "--textfile", str(target), "--interval", "1") as serve:
        serve.after_sweeps(2)
        m = wait_for("the textfile",
                     lambda: samples(target.read_text()) if target.exists() else None)
        assert value(m, "xenprobe_up") == 1
        assert value(m, "xenprobe_xen_info", version="4.17.7", release="4.17",
                     sysctl_interface="21", domctl_interface="21") == 1
        assert value(serve.metrics(), "xenprobe_textfile_write_errors_total") == 0
        assert value(m, "xenprobe_privcmd_consumers", verdict="int_path") is not None
        assert "# TYPE xenprobe_sweep_retries gauge" in target.read_text()
