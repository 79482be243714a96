"""Consumers at risk: which other processes hold privcmd open, and which are 32-bit.

No test machine has a real /dev/xen/privcmd, and the mock's device is a memfd in each
process that opens it. So the scanner is checked three ways, each on real processes:

- real processes on the real /proc, with the device path pointed at a real file they
  hold open: a real 32-bit program (built here with gcc -m32, no libc needed) and a
  64-bit one;
- real processes holding the mock's device (the memfd link the kernel shows), through
  `xenprobe check` on the mock host;
- a /proc tree built in a temporary directory from real processes' own files (stat,
  status, the exe link's target), whose fd links name /dev/xen/privcmd and
  /proc/xen/privcmd, read through psutil.PROCFS_PATH: the real device names, which no
  process here can hold.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.holders import HOLD64, build_hold32, start, start_on_mock, stop
from tests.mockhost import env_for, run_check
from xenprobe import consumers
from xenprobe.consumers import Consumer, Consumers, scan
from xenprobe.elf import elf_class
from xenprobe.exporter import metrics
from xenprobe.scenario import load


@pytest.fixture(scope="module")
def hold32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_hold32(tmp_path_factory.mktemp("hold32"))


@pytest.fixture
def holders(hold32: Path, tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[str]]]]:
    device = tmp_path / "privcmd"
    device.write_text("")
    try:
        procs = [start([str(hold32), str(device)])]
    except OSError as e:  # ENOEXEC from exec itself
        pytest.skip(f"cannot run a 32-bit program here: {e}")
    procs.append(start([sys.executable, "-c", HOLD64, str(device)]))
    try:
        yield device, procs
    finally:
        stop(procs)


def test_elf_class_of_real_programs(hold32: Path) -> None:
    assert elf_class(hold32) == 32
    assert elf_class("/proc/self/exe") == 64
    assert elf_class(Path(sys.executable).resolve()) == 64
    assert elf_class(__file__) is None
    assert elf_class("/nonexistent") is None


def test_real_processes_holding_the_device(holders: tuple[Path, list[subprocess.Popen[str]]]
                                           ) -> None:
    device, (p32, p64) = holders
    found = {c.pid: c for c in scan([str(device)]).found}
    assert set(found) == {p32.pid, p64.pid}  # nobody else holds a fresh temporary file
    c32, c64 = found[p32.pid], found[p64.pid]
    assert (c32.bits, c32.compat, c32.name, c32.device) == (32, True, "hold32", str(device))
    assert c32.exe.endswith("/hold32")
    assert (c64.bits, c64.compat) == (64, False)
    assert c64.exe == str(Path(sys.executable).resolve())
    # The scanning process is left out when asked, as check and serve ask.
    assert p32.pid not in {c.pid for c in scan([str(device)], exclude={p32.pid}).found}
    # A path nobody holds.
    assert scan([str(device) + ".other"]).found == ()


def test_consumer_metrics_are_bounded() -> None:
    many = tuple(Consumer(100 + i, f"tool{i}", f"/opt/tool{i}", 32, "/dev/xen/privcmd")
                 for i in range(metrics.MAX_COMPAT_SERIES + 5))
    c = Consumers((*many, Consumer(7, "qemu", "/usr/bin/qemu", 64, "/dev/xen/privcmd"),
                   Consumer(8, "", "", None, "/proc/xen/privcmd")), unreadable=2)
    count, info, unreadable = metrics.consumer_families(c)
    assert {s.labels["bits"]: s.value for s in count.samples} == {
        "32": metrics.MAX_COMPAT_SERIES + 5, "64": 1, "unknown": 1}
    assert len(info.samples) == metrics.MAX_COMPAT_SERIES
    assert [s.labels["pid"] for s in info.samples][:2] == ["100", "101"]
    assert unreadable.samples[0].value == 2


# -- the mock host: the device is a memfd the kernel shows by name ----------------------

def test_check_shows_processes_holding_the_mock_device(tmp_path: Path) -> None:
    s = load("healthy")
    env = env_for(s, tmp_path)
    holder = start_on_mock(None, env)
    try:
        p = run_check(["check", "--json", "--mock", "healthy"], env=env)
        assert p.returncode == 0, p.stderr
        report = json.loads(p.stdout)["consumers"]
        assert consumers.MOCK_DEVICE in report["devices"]
        mine = [c for c in report["processes"] if c["pid"] == holder.pid]
        assert mine == [{"pid": holder.pid, "name": Path(sys.executable).name[:15],
                         "exe": str(Path(sys.executable).resolve()), "bits": 64,
                         "compat": False, "device": consumers.MOCK_DEVICE}]
        # check itself holds the device too, and is not listed.
        assert all(c["name"] != "xenprobe" for c in report["processes"])
        human = run_check(["check", "--mock", "healthy"], env=env).stdout
        assert "privcmd consumers:" in human
        assert f"\n  {holder.pid}" in human
    finally:
        stop([holder])


def test_a_32_bit_process_holding_the_mock_device_is_compat(hold32: Path,
                                                            tmp_path: Path) -> None:
    env = env_for(load("healthy"), tmp_path)
    holder = start_on_mock(hold32, env)
    try:
        p = run_check(["check", "--json", "--mock", "healthy"], env=env)
    finally:
        stop([holder])
    assert p.returncode == 0, p.stderr
    mine = [c for c in json.loads(p.stdout)["consumers"]["processes"]
            if c["pid"] == holder.pid]
    assert mine == [{"pid": holder.pid, "name": "hold32", "exe": str(hold32),
                     "bits": 32, "compat": True, "device": consumers.MOCK_DEVICE}]


# -- a /proc tree from real processes, with the real device names -------------------------

def fake_proc(root: Path, procs: dict[int, list[str]]) -> None:
    """/proc for the given real pids: their own stat, status and comm, an exe link to
    their real program, and fd links with the given targets."""
    root.mkdir()
    shutil.copy("/proc/stat", root / "stat")  # btime, which psutil reads
    for pid, targets in procs.items():
        d = root / str(pid)
        (d / "fd").mkdir(parents=True)
        for name in ("stat", "status", "comm", "cmdline"):
            (d / name).write_bytes(Path(f"/proc/{pid}/{name}").read_bytes())
        (d / "exe").symlink_to(os.readlink(f"/proc/{pid}/exe"))
        for fd, target in enumerate(targets):
            (d / "fd" / str(fd)).symlink_to(target)


def test_the_real_device_names_under_a_built_proc(
        holders: tuple[Path, list[subprocess.Popen[str]]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, (p32, p64) = holders
    bystander = start([sys.executable, "-c", HOLD64, "/dev/null"])
    try:
        root = tmp_path / "proc"
        fake_proc(root, {
            p32.pid: ["/dev/null", "socket:[4242]", "/dev/xen/privcmd"],
            p64.pid: ["pipe:[77]", "/proc/xen/privcmd"],
            bystander.pid: ["/dev/null", "/dev/xen/evtchn"],
        })
        (root / "99999999").mkdir()  # a process that ended: no fd directory left
        monkeypatch.setattr(psutil, "PROCFS_PATH", str(root))
        got = scan()
    finally:
        bystander.kill()
        bystander.communicate()
    assert [(c.pid, c.name, c.bits, c.compat, c.device) for c in got.found] == sorted([
        (p32.pid, "hold32", 32, True, "/dev/xen/privcmd"),
        (p64.pid, Path(sys.executable).name[:15], 64, False, "/proc/xen/privcmd")])
    assert got.by_bits() == {"32": 1, "64": 1, "unknown": 0}
    assert got.unreadable == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_processes_it_may_not_inspect_are_counted(
        holders: tuple[Path, list[subprocess.Popen[str]]]) -> None:
    """Scanned by a forked child that became `nobody` (the interpreter under /root is
    not nobody's to execute, so the child does not exec)."""
    device, _ = holders
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, scan, report, and leave without cleanup
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            c = scan([str(device)])
            os.write(w, json.dumps({"found": [x.pid for x in c.found],
                                    "unreadable": c.unreadable}).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert out["found"] == []         # root's processes: their fds are not nobody's
    assert out["unreadable"] >= 2     # at least the two holders
