# SPDX-License-Identifier: GPL-2.0-only
"""Consumers at risk: which other processes hold privcmd open, the libxenctrl each maps,
and what that makes of its memory ops (int_path, multicall, unknown, error_only).

No test machine has a real /dev/xen/privcmd, and the mock's device is a memfd in each
process that opens it. So the scanner is checked three ways, each on real processes:

- real processes on the real /proc, with the device path pointed at a real file they
  hold open: a real 32-bit program (built here with gcc -m32, no libc needed), a 64-bit
  one, and 64-bit ones that map a libxenctrl (a stand-in of a given SONAME; the real
  Debian libraries are mapped in tests/realxen/test_consumers.py);
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

from tests.holders import (
    HOLD64,
    HOLD64_WITH_LIB,
    build_hold32,
    build_ioctl32,
    build_stand_in_libxenctrl,
    start,
    start_on_mock,
    stop,
)
from tests.mockhost import env_for, run_check
from xenprobe.exporter.metrics import from_sweep as metrics
from xenprobe.mock.scenario import load
from xenprobe.xen import consumers
from xenprobe.xen.consumers import Consumer, Consumers, Library, MemopPath, judge, scan
from xenprobe.xen.elf import elf_class


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


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("libs")
    return {r: build_stand_in_libxenctrl(d / r, r) for r in ("4.14", "4.15", "4.17")}


def test_elf_class_of_real_programs(hold32: Path) -> None:
    assert elf_class(hold32) == 32
    assert elf_class("/proc/self/exe") == 64
    assert elf_class(Path(sys.executable).resolve()) == 64
    assert elf_class(__file__) is None
    assert elf_class("/nonexistent") is None


def test_real_processes_holding_the_device(holders: tuple[Path, list[subprocess.Popen[str]]],
                                           libs: dict[str, Path]) -> None:
    device, (p32, p64) = holders
    with_lib = {r: start([sys.executable, "-c", HOLD64_WITH_LIB, str(device), str(lib)])
                for r, lib in libs.items()}
    try:
        got = scan([str(device)])
    finally:
        stop(list(with_lib.values()))
    found = {c.pid: c for c in got.found}
    # Nobody else holds a fresh temporary file.
    assert set(found) == {p32.pid, p64.pid} | {p.pid for p in with_lib.values()}
    c32, c64 = found[p32.pid], found[p64.pid]
    assert (c32.bits, c32.name, c32.device, c32.verdict) == (
        32, "hold32", str(device), MemopPath.ERROR_ONLY)
    assert c32.exe.endswith("/hold32")
    assert (c64.bits, c64.libxenctrl, c64.verdict) == (64, None, MemopPath.UNKNOWN)
    assert c64.exe == str(Path(sys.executable).resolve())
    expect = {"4.14": MemopPath.INT_PATH, "4.15": MemopPath.UNKNOWN, "4.17": MemopPath.MULTICALL}
    for release, p in with_lib.items():
        c = found[p.pid]
        assert c.libxenctrl == Library(str(libs[release]), tuple(map(int, release.split("."))))
        assert (c.bits, c.verdict) == (64, expect[release])
    assert got.maps_unreadable == 0  # (other processes on this host may be unreadable)
    # Most at risk first.
    assert got.ordered()[0].pid == with_lib["4.14"].pid
    assert got.by_verdict() == {"int_path": 1, "unknown": 2, "error_only": 1, "multicall": 1}
    # The scanning process is left out when asked, as check and serve ask.
    assert p32.pid not in {c.pid for c in scan([str(device)], exclude={p32.pid}).found}
    # A path nobody holds.
    assert scan([str(device) + ".other"]).found == ()


@pytest.mark.parametrize(("bits", "release", "verdict"), [
    (64, (4, 13), MemopPath.INT_PATH),   # xc_private.c@RELEASE-4.14.6:342: plain xencall2
    (64, (4, 14), MemopPath.INT_PATH),
    (64, (4, 15), MemopPath.UNKNOWN),    # 4.15.0 int path, 4.15.1 multicall: same SONAME
    (64, (4, 16), MemopPath.MULTICALL),  # xc_private.c@RELEASE-4.15.1:340-375
    (64, (4, 20), MemopPath.MULTICALL),
    (64, None, MemopPath.UNKNOWN),
    (None, (4, 17), MemopPath.MULTICALL),  # exe unreadable, library read: judged by it
    (32, (4, 14), MemopPath.ERROR_ONLY),   # no .compat_ioctl: the library never matters
    (32, None, MemopPath.ERROR_ONLY),
])
def test_the_verdict_follows_the_word_size_and_the_library(
        bits: int | None, release: tuple[int, int] | None, verdict: MemopPath) -> None:
    lib = None if release is None else Library("/usr/lib/libxenctrl.so", release)
    assert judge(bits, lib) is verdict
    assert judge(bits, Library("/x", None)) is (
        MemopPath.ERROR_ONLY if bits == 32 else MemopPath.UNKNOWN)


@pytest.mark.parametrize(("name", "version"), [
    ("libxenctrl.so.4.14", (4, 14)), ("libxenctrl.so.4.17.0", (4, 17)),
    ("libxenctrl.so.4.20.1.2", (4, 20)), ("libxenctrl.so", None),
    ("libxenctrl.so.4", None), ("libxenctrl.so.x.y", None), ("libxenstore.so.4.0", None),
])
def test_library_versions_from_names(name: str, version: tuple[int, int] | None) -> None:
    assert consumers.library_version(name) == version


def test_a_32_bit_process_gets_enotty_from_an_ioctl_it_has_no_compat_for(
        tmp_path: Path) -> None:
    """The 32-bit program the real-dom0 test runs on privcmd, here on /dev/null: the
    compat ioctl syscall answers ENOTTY for a file without .compat_ioctl
    (fs/ioctl.c compat_sys_ioctl), which is what privcmd is."""
    prog = build_ioctl32(tmp_path)
    p = subprocess.run([str(prog), "/dev/null"], capture_output=True, text=True,
                       timeout=30, check=False)
    if p.returncode < 0 or "Exec format error" in p.stderr:
        pytest.skip("this kernel does not run 32-bit programs (no IA32 emulation)")
    assert p.stdout == "ioctl32 -25\n"  # -ENOTTY


def test_consumer_metrics_are_bounded() -> None:
    many = tuple(Consumer(100 + i, f"tool{i}", f"/opt/tool{i}", 64, "/dev/xen/privcmd",
                          Library("/usr/lib/libxenctrl.so.4.14.0", (4, 14)))
                 for i in range(metrics.MAX_CONSUMER_SERIES + 5))
    c = Consumers((Consumer(7, "qemu", "/usr/bin/qemu", 64, "/dev/xen/privcmd",
                            Library("/usr/lib/libxenctrl.so.4.17.0", (4, 17))),
                   *many, Consumer(8, "", "", None, "/proc/xen/privcmd", None, False),
                   Consumer(9, "xl32", "/opt/xl32", 32, "/dev/xen/privcmd")), unreadable=2)
    count, info, unreadable, complete = metrics.consumer_families(c)
    assert {s.labels["verdict"]: s.value for s in count.samples} == {
        "int_path": metrics.MAX_CONSUMER_SERIES + 5, "multicall": 1, "unknown": 1,
        "error_only": 1}
    assert len(info.samples) == metrics.MAX_CONSUMER_SERIES
    # The exposed ones first, lowest pid first.
    assert [s.labels["pid"] for s in info.samples][:2] == ["100", "101"]
    assert info.samples[0].labels["libxenctrl"] == "4.14"
    assert info.samples[0].labels["verdict"] == "int_path"
    assert {s.labels["reason"]: s.value for s in unreadable.samples} == {"fds": 2, "maps": 1}
    assert complete.samples[0].value == 0
    assert metrics.consumer_families(Consumers())[3].samples[0].value == 1


# -- the mock host: the device is a memfd the kernel shows by name ----------------------

def mock_holder(pid: int, name: str, exe: str, bits: int, verdict: str,
                lib: dict[str, str | None] | None = None) -> dict[str, object]:
    return {"pid": pid, "name": name, "exe": exe, "bits": bits,
            "device": consumers.devices_for(True)[-1], "libxenctrl": lib, "maps_read": True,
            "verdict": verdict}


def test_check_shows_processes_holding_the_mock_device(tmp_path: Path,
                                                       libs: dict[str, Path]) -> None:
    s = load("healthy")
    env = env_for(s, tmp_path)
    holder = start_on_mock(None, env)
    old = start([sys.executable, "-c", HOLD64_WITH_LIB, "/dev/xen/privcmd",
                 str(libs["4.14"])], env=env)
    try:
        p = run_check(["check", "--json", "--mock", "healthy"], env=env)
        assert p.returncode == 0, p.stderr
        report = json.loads(p.stdout)["consumers"]
        assert consumers.devices_for(True)[-1] in report["devices"]
        python = (Path(sys.executable).name[:15], str(Path(sys.executable).resolve()))
        mine = {c["pid"]: c for c in report["processes"] if c["pid"] in (holder.pid, old.pid)}
        assert mine == {
            holder.pid: mock_holder(holder.pid, *python, 64, "unknown"),
            old.pid: mock_holder(old.pid, *python, 64, "int_path",
                                 {"path": str(libs["4.14"]), "release": "4.14"})}
        assert report["unreadable_processes"]["maps"] == 0
        assert report["complete"] is (report["unreadable_processes"]["fds"] == 0)
        # check itself holds the device too, and is not listed.
        assert all(c["name"] != "xenprobe" for c in report["processes"])
        human = run_check(["check", "--mock", "healthy"], env=env).stdout
        assert "privcmd consumers:" in human
        line = next(x for x in human.splitlines() if x.startswith(f"  {old.pid} "))
        assert line.split()[1:5] == ["64", python[0], "4.14", "int_path"]
        assert "  int_path: memory_op results at or above 2^31 lost" in human
    finally:
        stop([holder, old])


def test_a_32_bit_process_holding_the_mock_device_gets_errors_only(hold32: Path,
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
    assert mine == [mock_holder(holder.pid, "hold32", str(hold32), 32, "error_only")]


# -- a /proc tree from real processes, with the real device names -------------------------

def fake_proc(root: Path, procs: dict[int, tuple[list[str], str | None]]) -> None:
    """/proc for the given real pids: their own stat, status and comm, an exe link to
    their real program, fd links with the given targets, and the given maps (None: no
    maps file, as when it may not be read)."""
    root.mkdir()
    shutil.copy("/proc/stat", root / "stat")  # btime, which psutil reads
    for pid, (targets, maps) in procs.items():
        d = root / str(pid)
        (d / "fd").mkdir(parents=True)
        for name in ("stat", "status", "comm", "cmdline"):
            (d / name).write_bytes(Path(f"/proc/{pid}/{name}").read_bytes())
        (d / "exe").symlink_to(os.readlink(f"/proc/{pid}/exe"))
        for fd, target in enumerate(targets):
            (d / "fd" / str(fd)).symlink_to(target)
        if maps is not None:
            (d / "maps").write_text(maps)


LIB414 = "/usr/lib/x86_64-linux-gnu/libxenctrl.so.4.14.0"
MAPS414 = ("55d0c0000000-55d0c0001000 r--p 00000000 08:01 1234   /usr/bin/xl\n"
           f"7f0000000000-7f0000010000 r-xp 00000000 08:01 4321   {LIB414} (deleted)\n"
           "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]\n")


def test_the_real_device_names_under_a_built_proc(
        holders: tuple[Path, list[subprocess.Popen[str]]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, (p32, p64) = holders
    bystander = start([sys.executable, "-c", HOLD64, "/dev/null"])
    try:
        root = tmp_path / "proc"
        fake_proc(root, {
            p32.pid: (["/dev/null", "socket:[4242]", "/dev/xen/privcmd"], ""),
            p64.pid: (["pipe:[77]", "/proc/xen/privcmd"], MAPS414),
            bystander.pid: (["/dev/null", "/dev/xen/evtchn"], None),
        })
        (root / "99999999").mkdir()  # a process that ended: no fd directory left
        monkeypatch.setattr(psutil, "PROCFS_PATH", str(root))
        got = scan()
    finally:
        bystander.kill()
        bystander.communicate()
    assert [(c.pid, c.name, c.bits, c.device, c.verdict) for c in got.found] == sorted([
        (p32.pid, "hold32", 32, "/dev/xen/privcmd", MemopPath.ERROR_ONLY),
        (p64.pid, Path(sys.executable).name[:15], 64, "/proc/xen/privcmd",
         MemopPath.INT_PATH)])
    # Replaced on disk since it was mapped: the name still says which release it was.
    assert got.found[[c.pid for c in got.found].index(p64.pid)].libxenctrl == Library(
        LIB414, (4, 14))
    assert got.complete and got.unreadable == 0


def test_a_holder_whose_libraries_cannot_be_read_is_unknown_and_counted(
        holders: tuple[Path, list[subprocess.Popen[str]]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, (_, p64) = holders
    root = tmp_path / "proc"
    fake_proc(root, {p64.pid: (["/dev/xen/privcmd"], None)})
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(root))
    got = scan()
    (c,) = got.found
    assert (c.pid, c.maps_read, c.verdict) == (p64.pid, False, MemopPath.UNKNOWN)
    assert got.unreadable_by_reason() == {"fds": 0, "maps": 1}
    assert not got.complete


SCAN = ("import json, sys; from xenprobe.xen.consumers import scan; c = scan([sys.argv[1]]); "
        "print(json.dumps({'found': [x.pid for x in c.found], 'verdicts': "
        "[x.verdict.value for x in c.found], 'unreadable': c.unreadable_by_reason(), "
        "'complete': c.complete}))")


def scan_with_capabilities(device: Path, caps: str) -> dict[str, object]:
    """The scan run as root with only `caps` (setpriv: the bounding set systemd's
    CapabilityBoundingSet= sets), as the shipped units run it."""
    p = subprocess.run(["setpriv", f"--bounding-set=-all,{caps}", "--inh-caps=-all",
                        sys.executable, "-c", SCAN, str(device)], capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    out: dict[str, object] = json.loads(p.stdout)
    return out


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop capabilities")
def test_the_scan_sees_holders_with_the_units_capabilities(
        holders: tuple[Path, list[subprocess.Popen[str]]], libs: dict[str, Path]) -> None:
    """Root with CAP_IPC_LOCK alone (the unit before): the fd links of processes with more
    capabilities fail with EACCES (ptrace_may_access), which the scan once took for
    "closed meanwhile" and reported nothing. Now: counted, and the scan says it is
    incomplete. With CAP_SYS_PTRACE added (the unit now): every holder, with its verdict."""
    device, (p32, p64) = holders
    old = start([sys.executable, "-c", HOLD64_WITH_LIB, str(device), str(libs["4.14"])])
    try:
        blind = scan_with_capabilities(device, "+ipc_lock")
        seeing = scan_with_capabilities(device, "+ipc_lock,+sys_ptrace")
    finally:
        stop([old])
    assert blind["found"] == []
    unreadable = blind["unreadable"]
    assert isinstance(unreadable, dict) and unreadable["fds"] >= 3  # at least ours
    assert blind["complete"] is False
    assert seeing["found"] == sorted([p32.pid, p64.pid, old.pid])
    assert dict(zip(seeing["found"], seeing["verdicts"], strict=True)) == {  # type: ignore[call-overload]
        p32.pid: "error_only", p64.pid: "unknown", old.pid: "int_path"}
    seen = seeing["unreadable"]
    assert isinstance(seen, dict) and seen["fds"] < unreadable["fds"]


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
                                    "unreadable": c.unreadable,
                                    "complete": c.complete}).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert out["found"] == []         # root's processes: their fds are not nobody's
    assert out["unreadable"] >= 2     # at least the two holders
    assert out["complete"] is False


@pytest.mark.parametrize(("options", "ptrace", "hides"), [
    ("rw,nosuid,nodev,noexec,relatime,hidepid=invisible", False, True),
    ("rw,relatime,hidepid=ptraceable", False, True),
    ("rw,relatime,hidepid=2", False, True),
    ("rw,relatime,hidepid=invisible", True, False),  # CAP_SYS_PTRACE passes the check
    ("rw,relatime,hidepid=noaccess", False, False),  # listed; refused, and so counted
    ("rw,nosuid,nodev,noexec,relatime", False, False),
])
def test_a_procfs_that_hides_processes_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               options: str, ptrace: bool,
                                               hides: bool) -> None:
    """As systemd mounts it for ProtectProc= (a procfs instance with hidepid=); the
    mountinfo line's shape is the kernel's (fs/proc_namespace.c show_mountinfo)."""
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        f"25 22 0:23 / {tmp_path} rw,nosuid,nodev,noexec,relatime shared:12 - proc proc "
        f"{options}\n")
    monkeypatch.setattr(consumers, "has_capability", lambda cap: ptrace)
    assert consumers.procfs_hides(str(tmp_path)) is hides


def test_this_process_has_the_capabilities_it_shows() -> None:
    eff = int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("CapEff:")).split()[1], 16)
    assert consumers.has_capability(consumers.CAP_SYS_PTRACE) is bool(eff >> 19 & 1)
