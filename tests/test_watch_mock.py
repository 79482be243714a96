# SPDX-License-Identifier: GPL-2.0-only
"""`xenprobe watch` on the mock host: other processes' damaged calls seen through the
mock kernel's tracing (native/mock/tracing.c), attributed to them, and a good citizen's
cleanup of tracefs (SIGTERM, kill -9 then restart, others' events untouched)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests import watchhost
from tests.report_schema import validate_watch
from tests.watchhost import WatchHost, read_until
from xenprobe.watch import arming
from xenprobe.watch.paths import Paths
from xenprobe.watch.probes import INSTANCE

# (op, a0, domid) of a consumer's IOCTL_PRIVCMD_HYPERCALL calls (tests/watchhost.py's
# scenario): memory_op maximum_gpfn of domains 3-6, xen_version, get_debugreg DR6.
TRUNCATED = "12,14,3"       # 0x100000004 -> 4
SIGN_FLIPPED = "12,14,4"    # 0x80000000 -> -2^31
ALIASED = "12,14,5"         # 0xfffffffe -> -1 / ENOENT
INTACT = ("12,14,6", "17,0,0")  # 0x10ffff; XENVER_version
DR6 = "9,6,0"               # 0xffff0ff0 -> -61456


@pytest.fixture
def host(tmp_path: Path) -> WatchHost:
    return watchhost.make(tmp_path)


@pytest.fixture(params=["carried", "paired"])
def either(request: pytest.FixtureRequest, tmp_path: Path) -> WatchHost:
    """Both designs: result probes that carry the request (a module whose code shows
    privcmd's copies, as Debian's do), and results paired with an entry probe."""
    return watchhost.make(tmp_path, carried=request.param == "carried")


def stop(p: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[list[dict[str, Any]], str]:
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    for line in lines:
        validate_watch(line)
    return lines, err


def started(host: WatchHost, *args: str) -> subprocess.Popen[str]:
    p = host.watch("--json", *args)
    ready = read_until(p, "ready")
    assert len(ready) == 1
    validate_watch(ready[0])
    assert ready[0]["probes"] == {"hypercall": f"privcmd_ioctl+{watchhost.HYPERCALL_AT:#x}",
                                  "dm_op": f"privcmd_ioctl+{watchhost.DM_OP_AT:#x}",
                                  "entry": None if host.carried else "privcmd_ioctl"}
    return p


def test_sees_another_process_damaged_values(either: WatchHost) -> None:
    host = either
    p = started(host)
    got = host.consumer(TRUNCATED, SIGN_FLIPPED, ALIASED, *INTACT, DR6, name="guestpfn")
    # What the consumer itself received: the damaged values.
    assert got[0][0] == 4 and got[1][0] == -(1 << 31) and got[2] == [-1, 2]
    time.sleep(0.5)
    lines, err = stop(p)
    assert p.returncode == 1, err
    assert [x["event"] for x in lines] == ["call"] * 4 + ["summary"]
    calls, summary = lines[:4], lines[4]
    assert [(c["domid"], c["raw"], c["delivered"], c["verdict"]) for c in calls] == [
        (3, 0x100000004, 4, "truncated"),
        (4, 0x80000000, -(1 << 31), "sign_flipped"),
        (5, 0xFFFFFFFE, -2, "aliased_errno"),
        (None, 0xFFFF0FF0, -61456, "sign_flipped")]
    for c in calls:
        assert c["comm"] == "guestpfn" and c["pid"] == c["tid"] != os.getpid()
        assert c["exe"] == os.path.realpath(sys.executable)
    assert [(c["op"], c["op_name"], c["subop"], c["subop_name"]) for c in calls[:3]] == \
        [(12, "memory_op", 14, "maximum_gpfn")] * 3
    assert (calls[3]["op_name"], calls[3]["subop"]) == ("get_debugreg", None)
    assert summary["calls"] == 6 and summary["damaged"] == 4
    assert summary["damaged_by_verdict"] == {"aliased_errno": 1, "sign_flipped": 2,
                                             "truncated": 1}
    assert [(r["comm"], r["damaged"]) for r in summary["damaged_by_process"]] == [
        ("guestpfn", 4)]
    assert summary["lost"] == 0 and summary["exit_code"] == 1


def test_intact_calls_are_clean(host: WatchHost) -> None:
    p = started(host)
    host.consumer(*INTACT, *INTACT, name="healthy")
    time.sleep(0.5)
    lines, err = stop(p)
    assert p.returncode == 0, err
    assert [x["event"] for x in lines] == ["summary"]
    assert lines[0]["calls"] == 4 and lines[0]["damaged"] == 0


def test_all_shows_every_call_and_dm_op(either: WatchHost) -> None:
    host = either
    p = started(host, "--all")
    host.consumer(*INTACT, name="everything")
    dm = subprocess.run([sys.executable, "-c", DM_OP_CALL], env=host.consumer_env,
                        capture_output=True, text=True, timeout=60, check=False)
    assert dm.returncode == 0, dm.stderr
    time.sleep(0.5)
    lines, _ = stop(p)
    calls = [x for x in lines if x["event"] == "call"]
    assert [(c["op_name"], c["verdict"]) for c in calls] == [
        ("memory_op", "match"), ("xen_version", "match"), ("dm_op", "match")]
    assert calls[2]["ioctl"] == "dm_op" and calls[2]["domid"] == 7
    assert p.returncode == 0


# IOCTL_PRIVCMD_DM_OP for domain 7 with one 8-byte buffer (the mock hypervisor does not
# emulate dm_op: -ENOSYS, which passes intact).
DM_OP_CALL = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/dev/xen/privcmd", os.O_RDWR)
buf = (ctypes.c_uint8 * 8)()
bufs = (ctypes.c_uint64 * 2)(ctypes.addressof(buf), 8)
class DmOp(ctypes.Structure):
    _fields_ = [("dom", ctypes.c_uint16), ("num", ctypes.c_uint16), ("ubufs", ctypes.c_uint64)]
req = DmOp(7, 1, ctypes.addressof(bufs))
print(libc.ioctl(fd, 0x105005, ctypes.byref(req)), ctypes.get_errno())
"""


def others(host: WatchHost) -> None:
    """Another user's kprobe event and instance, which the watch must never touch."""
    with open(host.tracefs / "kprobe_events", "a") as f:
        f.write("p:kprobes/someone_else xen_privcmd:privcmd_ioctl\n")
    os.mkdir(host.tracefs / "instances" / "someone")


def test_sigterm_removes_everything_and_only_its_own(either: WatchHost) -> None:
    host = either
    others(host)
    before = (host.kprobe_events(), host.instances())
    p = started(host)
    assert set(host.kprobe_events()) == {
        "kprobes/someone_else", "xenprobe_watch/result", "xenprobe_watch/dm_result",
        *(() if host.carried else ("xenprobe_watch/call",))}
    assert host.instances() == ["someone", "xenprobe_watch"]
    _, err = stop(p)
    assert p.returncode == 0, err
    assert (host.kprobe_events(), host.instances()) == before
    assert not (host.root / "run/xenprobe/watch.state").exists()


def test_sigint_and_duration_stop_it_cleanly(host: WatchHost) -> None:
    p = started(host)
    _, err = stop(p, signal.SIGINT)
    assert p.returncode == 0, err
    p = host.watch("--json", "--duration", "0.5")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert [json.loads(x)["event"] for x in out.splitlines()] == ["ready", "summary"]
    assert host.kprobe_events() == [] and host.instances() == []


def test_kill9_leftovers_removed_by_the_next_start(host: WatchHost) -> None:
    others(host)
    p = started(host)
    p.kill()
    p.communicate(timeout=30)
    # SIGKILL: nothing could clean up.
    assert "xenprobe_watch/result" in host.kprobe_events()
    assert "xenprobe_watch" in host.instances()
    assert json.loads((host.root / "run/xenprobe/watch.state").read_text())["pid"] == p.pid
    p2 = started(host)  # the lock is free: its holder is dead; the state names the rest
    host.consumer(TRUNCATED, name="afterkill")
    time.sleep(0.5)
    lines, err = stop(p2)
    assert p2.returncode == 1, err
    assert [c["comm"] for c in lines if c["event"] == "call"] == ["afterkill"]
    assert host.kprobe_events() == ["kprobes/someone_else"]
    assert host.instances() == ["someone"]


def test_another_watch_holds_the_group(host: WatchHost) -> None:
    p = started(host)
    second = host.watch("--json")
    out, err = second.communicate(timeout=30)
    assert second.returncode == 3
    assert err.count("\n") == 1 and "another xenprobe watch" in err and str(p.pid) in err
    assert json.loads(out)["event"] == "error"
    # The second one removed nothing of the first's.
    assert "xenprobe_watch/result" in host.kprobe_events()
    stop(p)


def test_unclaimed_events_of_the_group_are_not_removed(host: WatchHost) -> None:
    with open(host.tracefs / "kprobe_events", "a") as f:
        f.write("p:xenprobe_watch/call xen_privcmd:privcmd_ioctl\n")
    p = host.watch()
    _, err = p.communicate(timeout=30)
    assert p.returncode == 3 and "no watch state file claims them" in err
    assert host.kprobe_events() == ["xenprobe_watch/call"]


@pytest.mark.parametrize("setup, words", [
    (lambda h: (h.tracefs / "kprobe_events").unlink(), "no kprobe events"),
    (lambda h: [f.unlink() for f in (h.tracefs / "kprobe_events", h.tracefs / "trace")],
     "tracefs is not mounted"),
    (lambda h: (h.root / "sys/kernel/security").mkdir(parents=True) or (
        h.root / "sys/kernel/security/lockdown").write_text(
            "none integrity [confidentiality]\n"), "lockdown"),
    (lambda h: (h.root / "sys/kernel/debug/kprobes").mkdir(parents=True) or (
        h.root / "sys/kernel/debug/kprobes/enabled").write_text("0\n"), "kprobes are disabled"),
    (lambda h: (h.root / "sys/module/xen_privcmd/notes/.note.gnu.build-id").write_bytes(
        (h.root / "sys/module/xen_privcmd/notes/.note.gnu.build-id").read_bytes()[:-1]
        + b"\0"), "is not the loaded module"),
    (lambda h: h.module.write_bytes(b"\x7fELF garbage"), "cannot be found with certainty"),
])
def test_cannot_watch_says_why_in_one_line(host: WatchHost, setup: Any, words: str) -> None:
    setup(host)
    p = host.watch("--json")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 3, err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err
    line = json.loads(out)
    validate_watch(line)
    assert line["event"] == "error" and words in line["message"]
    assert host.kprobe_events() == [] and host.instances() == []


def test_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # On the machine's own paths (no XENPROBE_WATCH_ROOT): root is checked first.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(arming.CannotWatch, match="needs root"):
        arming.preflight(Paths(Path("/")))


def test_bad_usage_is_exit_2(host: WatchHost) -> None:
    for args in (["--duration", "-1"], ["--buffer-kb", "1"], ["--duration", "x"]):
        p = host.watch(*args)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 2 and "Traceback" not in err


def test_overruns_are_counted_not_hidden(either: WatchHost) -> None:
    host = either
    p = started(host)
    p.send_signal(signal.SIGSTOP)  # the reader falls behind: the buffer fills
    try:
        host.consumer(*[INTACT[1]] * 2000, name="burst")
    finally:
        p.send_signal(signal.SIGCONT)
    time.sleep(1.5)
    lines, err = stop(p)
    summary = lines[-1]
    assert summary["event"] == "summary", err
    # One event a call, or two when paired; every one is either read or counted lost.
    read = summary["calls"] * host.events_per_call + summary["unpaired"]["no_entry"] + \
        summary["unpaired"]["no_result"] + summary["unread"]
    assert summary["lost"] > 0
    assert read + summary["lost"] == 2000 * host.events_per_call
    assert overruns(host) == 0  # the instance (and its counters) are gone


def test_terminal_view(host: WatchHost) -> None:
    p = host.watch()
    assert p.stdout is not None
    assert f"armed HYPERCALL at privcmd_ioctl+{watchhost.HYPERCALL_AT:#x}" in p.stdout.readline()
    host.consumer(TRUNCATED, INTACT[1], name="viewer")
    time.sleep(1.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1, err
    damaged = [x for x in out.splitlines() if "TRUNCATED" in x]
    assert len(damaged) == 1 and "viewer" in damaged[0] and "maximum_gpfn dom 3" in damaged[0]
    assert "raw 0x100000004 (4294967300) -> 4" in damaged[0]
    assert out.splitlines()[-1].startswith("-- ") and "damaged 1 (truncated=1)" in out


# Threads of one process, each reading one domain's maximum_gpfn over and over.
THREADS = r"""
import ctypes, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/dev/xen/privcmd", os.O_RDWR)
def reader(dom, n):
    domid = ctypes.c_uint16(dom)
    hc = (ctypes.c_uint64 * 6)(12, 14, ctypes.addressof(domid), 0, 0, 0)
    for _ in range(n):
        libc.ioctl(fd, 0x305000, hc)
doms = [int(d) for d in sys.argv[2:]]
ts = [threading.Thread(target=reader, args=(d, int(sys.argv[1]))) for d in doms]
for t in ts: t.start()
for t in ts: t.join()
"""

EXPECTED_RAW = {3: 0x100000004, 4: 0x80000000, 5: 0xFFFFFFFE, 6: 0x10FFFF}


def test_pairing_holds_across_threads_and_processes(either: WatchHost) -> None:
    host = either
    p = started(host, "--all")
    script = host.root / "threads.py"
    script.write_text(THREADS)
    procs = [subprocess.Popen([sys.executable, str(script), "150", "3", "4", "5", "6"],
                              env=host.consumer_env) for _ in range(3)]
    for c in procs:
        assert c.wait(timeout=120) == 0
    time.sleep(1.5)
    lines, err = stop(p)
    calls = [x for x in lines if x["event"] == "call"]
    summary = lines[-1]
    # Every call reported is paired with its own result: the domain its thread read
    # and that domain's value, never another thread's or process's.
    by_tid: dict[int, set[int]] = {}
    for c in calls:
        assert c["raw"] == EXPECTED_RAW[c["domid"]], c
        by_tid.setdefault(c["tid"], set()).add(c["domid"])
    assert all(len(d) == 1 for d in by_tid.values())
    # The process, when it was still there to ask (else null: never a guess).
    assert {c["pid"] for c in calls} <= {c.pid for c in procs} | {None}
    # What was not read was counted lost: one event a call, or two when paired.
    total = 3 * 4 * 150
    read = host.events_per_call * summary["calls"] + summary["unpaired"]["no_entry"] + \
        summary["unpaired"]["no_result"] + summary["unread"]
    assert read + summary["lost"] == host.events_per_call * total, (summary, err)
    assert summary["unpaired"]["other_kind"] == 0 and summary["unpaired"]["unparsed"] == 0
    print(f"{total} calls from 12 threads in 3 processes: {summary['calls']} paired, "
          f"{summary['lost']} events lost")


# A process that calls without end: maximum_gpfn of domain 3 (damaged), as fast as it can.
FLOOD = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/dev/xen/privcmd", os.O_RDWR)
domid = ctypes.c_uint16(3)
hc = (ctypes.c_uint64 * 6)(12, 14, ctypes.addressof(domid), 0, 0, 0)
print(flush=True)
while True:
    libc.ioctl(fd, 0x305000, hc)
"""


def overruns(host: WatchHost) -> int:
    """The overrun lines of the watch's instance's per_cpu/cpuN/stats, summed (what the
    mock's privcmd counts when the FIFO is full: native/mock/tracing.c)."""
    total = 0
    for stats in (host.tracefs / "instances" / INSTANCE / "per_cpu").glob("cpu*/stats"):
        for line in stats.read_text().splitlines():
            if line.startswith("overrun: "):
                total += int(line.split()[1])
    return total


def slow_reader(p: subprocess.Popen[str], within: float) -> list[dict[str, Any]]:
    """The watch's output read as a slow consumer reads it (the real-Xen boot folds it
    with awk under TCG: a few hundred lines a second), until end-of-file or `within`
    seconds."""
    assert p.stdout is not None
    os.set_blocking(p.stdout.fileno(), False)
    until = time.monotonic() + within
    out = ""
    while time.monotonic() < until:
        try:
            chunk = os.read(p.stdout.fileno(), 4096)
        except BlockingIOError:
            chunk = None
        if chunk == b"":
            break
        if chunk:
            out += chunk.decode()
        time.sleep(0.01)
    else:
        raise AssertionError(f"the watch had not exited {within} s after SIGTERM")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_stops_promptly_under_a_flood_and_counts_what_it_left(host: WatchHost) -> None:
    """The real-Xen boot's defect: with events arriving faster than the watch's output
    is consumed, SIGTERM must still stop it within a bounded time, disarmed, with a
    summary that counts what it did not judge (failed before the fix: the read loop
    read until the buffer was empty, which a flood never lets it be)."""
    before = (host.kprobe_events(), host.instances())
    p = started(host)
    script = host.root / "flood.py"
    script.write_text(FLOOD)
    floods = [subprocess.Popen([sys.executable, str(script)], env=host.consumer_env,
                               stdout=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for f in floods:
            assert f.stdout is not None and f.stdout.readline() == "\n"
        # Stopped only once the flood has outrun the reader (the watch blocked on its
        # unread stdout): the instance's own counters show an overrun. How soon that
        # happens is the machine's business, not the test's.
        until = time.monotonic() + 60
        while overruns(host) == 0:
            assert time.monotonic() < until, "the flood never overran the buffer"
            time.sleep(0.2)
        time.sleep(0.5)
        sent = time.monotonic()
        p.send_signal(signal.SIGTERM)
        lines = slow_reader(p, 60)
        took = time.monotonic() - sent
        assert p.wait(timeout=30) == 1
    finally:
        for f in floods:
            f.kill()
            f.wait()
        if p.poll() is None:
            p.kill()
            p.wait()
    for line in lines:
        validate_watch(line)
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["damaged"] > 0
    # Judged, counted unread, or counted lost: nothing vanishes without a number. The
    # flood outruns the reader, so the kernel's buffer overflowed.
    assert summary["lost"] > 0 and summary["unread"] >= 0
    assert (host.kprobe_events(), host.instances()) == before
    print(f"stopped {took:.2f} s after SIGTERM: {summary['calls']} calls judged, "
          f"{summary['unread']} events left unread, {summary['lost']} lost")


def test_overrun_counters_are_never_seen_half_written(host: WatchHost) -> None:
    """The kernel formats per_cpu/cpuN/stats at each read (kernel/trace/trace.c
    tracing_stats_read), so a reader never finds it empty. The mock's counting must keep
    that: while floods overrun a stopped reader's buffer, every read of every CPU's stats
    shows its overrun line, and the count never goes down (failed before the fix: the
    mock truncated the file, then wrote it, and a read in between found nothing, which
    made the watch's final count of lost events 0 in CI)."""
    p = started(host)
    p.send_signal(signal.SIGSTOP)  # the reader falls behind: the buffer fills
    script = host.root / "flood.py"
    script.write_text(FLOOD)
    floods = [subprocess.Popen([sys.executable, str(script)], env=host.consumer_env,
                               stdout=subprocess.PIPE, text=True) for _ in range(3)]
    seen: dict[Path, int] = {}
    reads = 0
    try:
        for f in floods:
            assert f.stdout is not None and f.stdout.readline() == "\n"
        stats = sorted((host.tracefs / "instances" / INSTANCE / "per_cpu").glob("cpu*/stats"))
        assert stats
        until = time.monotonic() + 3
        while time.monotonic() < until:
            for path in stats:
                text = path.read_text()
                counts = [int(x.split()[1]) for x in text.splitlines()
                          if x.startswith("overrun: ")]
                assert len(counts) == 1, f"{path} read as {text!r}"
                assert counts[0] >= seen.get(path, 0), f"{path}'s overrun went down"
                seen[path] = counts[0]
                reads += 1
    finally:
        for f in floods:
            f.kill()
            f.wait()
        p.send_signal(signal.SIGCONT)
    stop(p)
    assert sum(seen.values()) > 0, "the floods never overran the buffer"
    print(f"{reads} reads of the stats, {sum(seen.values())} overruns counted")


def test_entry_probe_after_endbr64(host: WatchHost) -> None:
    """A module built with IBT (trixie's 6.12) opens privcmd_ioctl with ENDBR64: the
    kernel puts the entry probe 4 bytes in and prints +0x4 (native/mock/tracing.c cites
    arch_adjust_kprobe_addr); the watch pairs the same calls, and a raw reader of the
    instance sees the entry line at +0x4."""
    text = host.consumer_env["XENPROBE_MOCK_PRIVCMD_TEXT"] + " endbr=1"
    host.consumer_env["XENPROBE_MOCK_PRIVCMD_TEXT"] = text
    p = started(host, "--all")
    host.consumer(TRUNCATED, INTACT[1], name="ibt")
    time.sleep(0.5)
    lines, err = stop(p)
    assert p.returncode == 1, err
    assert [(c["op_name"], c["verdict"]) for c in lines if c["event"] == "call"] == [
        ("memory_op", "truncated"), ("xen_version", "match")]
    assert lines[-1]["unpaired"] == {"no_result": 0, "no_entry": 0, "other_kind": 0,
                                     "unparsed": 0}
    # The line itself, read from an instance of our own.
    inst = host.tracefs / "instances" / "ibt"
    maker = subprocess.Popen(
        [sys.executable, "-c", "import os, sys, time; os.mkdir(sys.argv[1]); "
         "open(sys.argv[1] + '/set_event', 'w').write('xpt:entry\\n'); print(flush=True); "
         "time.sleep(60)", str(inst)], env=host.consumer_env, stdout=subprocess.PIPE,
        text=True)
    try:
        with open(host.tracefs / "kprobe_events", "a") as f:
            f.write("p:xpt/entry xen_privcmd:privcmd_ioctl cmd=%si:x32\n")
        assert maker.stdout is not None and maker.stdout.readline() == "\n"
        fifo = os.open(inst / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        host.consumer(INTACT[1], name="ibt")
        got = os.read(fifo, 1 << 16).decode().splitlines()
        os.close(fifo)
    finally:
        maker.kill()
        maker.wait()
    assert len(got) == 1 and f"entry: (privcmd_ioctl+0x4/{watchhost.FUNCTION_SIZE:#x} " \
        "[xen_privcmd]) cmd=0x305000" in got[0], got
