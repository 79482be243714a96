# SPDX-License-Identifier: GPL-2.0-only
"""The watch judges another program's raw result at the source, as `check` does its own
(issue 24): a forged errno where it knows the release's errno sets, an out-of-range
value for any call with Xen's convention, never a real error; and the release comes
from the kernel's boot banner or a watched xen_version call, never a hypercall."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import watchhost
from tests.report_schema import validate_watch
from tests.test_watch_events import AFTER, ENTRY, entry_args, line
from tests.test_watch_mock import INTACT, started, stop
from tests.watchhost import read_until
from xenprobe.probe.classify import Verdict
from xenprobe.watch.attribution import GONE
from xenprobe.watch.judge import judge
from xenprobe.watch.pairing import Call, Pairer
from xenprobe.watch.tally import Tally
from xenprobe.watch.trace_line import TraceEvent, parse
from xenprobe.watch.xen_release import (
    KnownRelease,
    at_start,
    from_kernel_log,
    read_kernel_log,
)

U64 = 1 << 64
GPFN = (12, 14)  # memory_op XENMEM_maximum_gpfn
GPFN_417 = frozenset({errno.EFAULT, errno.ESRCH, errno.EPERM, errno.EACCES})


@pytest.mark.parametrize(("raw", "delivered", "verdict", "at_source"), [
    (U64 - 22, -22, Verdict.PASSED_FORGED, Verdict.FORGED_ERRNO),   # no EINVAL path
    (U64 - 3, -3, Verdict.MATCH, None),                             # ESRCH: can be real
    (U64 - 1, -1, Verdict.MATCH, None),                             # EPERM: XSM
    (1 << 63, 0, Verdict.TRUNCATED, Verdict.OUT_OF_RANGE),          # then truncated too
    (U64 - 4096, -4096, Verdict.MATCH, Verdict.OUT_OF_RANGE),       # just past the errnos
    (0x100000004, 4, Verdict.TRUNCATED, None),                      # large, not negative
])
def test_judge_at_source(raw: int, delivered: int, verdict: Verdict,
                         at_source: Verdict | None) -> None:
    _, given, v, found = judge(raw, convention=True, can_return=GPFN_417)
    assert (given, v, found) == (delivered, verdict, at_source)


def test_unknown_release_forges_nothing_and_unknown_calls_are_not_judged() -> None:
    # The release not known: an errno is never called forged; out of range still is.
    assert judge(U64 - 22, convention=True, can_return=None)[3] is None
    assert judge(1 << 63, convention=True, can_return=None)[3] is Verdict.OUT_OF_RANGE
    # A call without Xen's convention (get_debugreg of DR0 may be a kernel address).
    assert judge(0xFFFF888000000000, convention=False)[3] is None


def _ev(event: str, args: str, pid: int = 10) -> TraceEvent:
    ev = parse(line("prog", pid, 0, 1.0, event, ENTRY if event == "call" else AFTER, args))
    assert ev is not None
    return ev


def _call(pairer: Pairer, op: int, a0: int, rax: int, dom: int = 1) -> Call:
    assert pairer.feed(_ev("call", entry_args(op, a0, dom=dom))) is None
    call = pairer.feed(_ev("result", f" rax={rax % U64:#x}"))
    assert call is not None
    return call


def test_pairer_uses_the_release_errno_sets() -> None:
    known = KnownRelease((4, 17), "kernel_log")
    p = Pairer(known.can_return)
    forged = _call(p, *GPFN, U64 - 22)
    assert (forged.raw_verdict, forged.verdict) == (Verdict.FORGED_ERRNO,
                                                    Verdict.PASSED_FORGED)
    assert forged.findings == (Verdict.FORGED_ERRNO,) and forged.damaged
    real = _call(p, *GPFN, U64 - 3, dom=99)  # a missing domain's ESRCH
    assert real.raw_verdict is None and not real.damaged
    far = _call(p, *GPFN, 1 << 63)
    assert far.findings == (Verdict.OUT_OF_RANGE, Verdict.TRUNCATED)
    # memory_op with continuation bits is another request (xen/abi/errnos.py): its
    # start_extent -EINVAL is real, so it is not judged.
    cont = _call(p, 12, 14 | (1 << 6), U64 - 22)
    assert cont.raw_verdict is None and not cont.damaged
    # The same -22 where the release is not known: not forged.
    assert _call(Pairer(), *GPFN, U64 - 22).raw_verdict is None
    # A command inside a struct (platform_op): read from memory Xen copies later.
    assert _call(p, 7, 0, U64 - 22).raw_verdict is None


def test_tally_counts_a_call_once_and_each_finding() -> None:
    p = Pairer(KnownRelease((4, 17), "kernel_log").can_return)
    t = Tally()
    for rax in (U64 - 22, 1 << 63, 5):
        t.add(_call(p, *GPFN, rax), GONE)
    assert t.calls == 3 and t.damaged_total == 2
    assert dict(t.damaged) == {"forged_errno": 1, "out_of_range": 1, "truncated": 1}
    [row] = t.processes_json()
    assert row["damaged"] == 2


KMSG = ("6,0,0,-;Linux version 6.1.0-57-amd64\n"
        "6,1,0,-;Booting paravirtualized kernel on Xen\n"
        "6,2,0,-;Xen version: 4.17.7 (preserve-AD)\n"
        " SUBSYSTEM=xen\n")


def test_release_from_the_kernels_banner_only() -> None:
    assert from_kernel_log(KMSG) == (4, 17)
    # A process writing to /dev/kmsg gets LOG_USER (facility 1: prefix 14 at level 6).
    assert from_kernel_log("14,3,0,-;Xen version: 4.20.0\n") is None
    assert from_kernel_log(KMSG + "14,3,0,-;Xen version: 4.20.0\n") == (4, 17)
    assert from_kernel_log("6,0,0,-;Linux version 6.1.0\n") is None
    assert from_kernel_log("6,9,0,-;Xen version 4.20.\n") == (4, 20)  # a PVH dom0's
    assert from_kernel_log("") is None


def test_release_from_a_xen_version_call() -> None:
    k = KnownRelease()
    assert k.can_return(*GPFN) is None
    k.learn(17, 1, 0x40011)            # XENVER_extraversion: not the version
    k.learn(12, 14, 0x40011)
    assert k.release is None
    k.learn(17, 0, (4 << 16) | 20)
    assert k.as_json() == {"release": "4.20", "from": "xen_version_call"}
    assert k.can_return(*GPFN) == GPFN_417


def test_reads_a_kernel_log_file_and_a_missing_one(tmp_path: Path) -> None:
    log = tmp_path / "kmsg"
    log.write_text(KMSG)
    assert read_kernel_log(str(log)) == KMSG
    assert at_start(str(log)).as_json() == {"release": "4.17", "from": "kernel_log"}
    assert at_start(str(tmp_path / "none")).release is None
    if os.geteuid() != 0:
        log.chmod(0)
        assert read_kernel_log(str(log)) == ""


# -- on the mock host: another process's calls, through the mock kernel's tracing ----------

FORGED_ESRCH = "12,14,7"    # -3: ESRCH, which maximum_gpfn can return: not flagged
FORGED_EINVAL = "12,14,8"   # -22: EINVAL, which it never returns: forged_errno
OUT_OF_RANGE = "12,14,9"    # 0x8000000000000000: out_of_range, then truncated to 0
MISSING = "12,14,99"        # a real ESRCH: no such domain
VERSION = "17,0,0"          # XENVER_version: 0x40011 on the mock's 4.17


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[str]]]:
    """Watches a test started: killed if a failed assertion left them running."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=30)


def calls_then_stop(p: subprocess.Popen[str], n: int) -> tuple[list[dict[str, Any]], str]:
    """The watch's JSON lines once `n` call lines have come (not a fixed wait: on a
    loaded machine the watch may read them late), then the rest after SIGTERM."""
    seen: list[dict[str, Any]] = []
    while sum(x["event"] == "call" for x in seen) < n:
        seen += read_until(p, "call")
    lines, err = stop(p)
    for x in seen:
        validate_watch(x)
    return seen + lines, err


def test_mock_flags_a_forged_errno_and_an_out_of_range_value(
        tmp_path: Path, reap: list[subprocess.Popen[str]]) -> None:
    host = watchhost.make(tmp_path, watchhost.FORGED_DOMAINS, kmsg=watchhost.KMSG_417)
    p = started(host)
    reap.append(p)
    got = host.consumer(FORGED_ESRCH, FORGED_EINVAL, OUT_OF_RANGE, MISSING, *INTACT,
                        name="dumpcore")
    # What the consumer itself received: two errors it takes for the hypervisor's, and 0
    # (errno is left as it was after a success).
    assert [got[0], got[1], got[2][0], got[3]] == [
        [-1, errno.ESRCH], [-1, errno.EINVAL], 0, [-1, errno.ESRCH]]
    lines, err = calls_then_stop(p, 2)
    assert p.returncode == 1, err
    calls = [x for x in lines if x["event"] == "call"]
    summary = lines[-1]
    assert [(c["domid"], c["raw"], c["delivered"], c["verdict"], c["raw_verdict"])
            for c in calls] == [
        (8, -22, -22, "passed_forged", "forged_errno"),
        (9, -(1 << 63), 0, "truncated", "out_of_range")]
    assert all(c["comm"] == "dumpcore" for c in calls)
    assert summary["damaged"] == 2
    assert summary["damaged_by_verdict"] == {"forged_errno": 1, "out_of_range": 1,
                                             "truncated": 1}
    assert summary["xen_release"] == {"release": "4.17", "from": "kernel_log"}


def test_mock_terminal_view_names_both(tmp_path: Path,
                                       reap: list[subprocess.Popen[str]]) -> None:
    host = watchhost.make(tmp_path, watchhost.FORGED_DOMAINS, kmsg=watchhost.KMSG_417)
    p = host.watch()
    reap.append(p)
    assert p.stdout is not None
    assert "armed" in p.stdout.readline()
    assert "Xen 4.17 (the kernel log)" in p.stdout.readline()
    host.consumer(FORGED_EINVAL, OUT_OF_RANGE, name="dumpcore")
    shown: list[str] = []
    while len([x for x in shown if "maximum_gpfn" in x]) < 2:
        line = p.stdout.readline()
        assert line, shown
        shown.append(line)
    p.send_signal(signal.SIGTERM)
    rest, err = p.communicate(timeout=30)
    out = "".join(shown) + rest
    assert p.returncode == 1, err
    calls = [x for x in out.splitlines() if "maximum_gpfn" in x]
    assert len(calls) == 2, out
    assert calls[0].endswith("FORGED_ERRNO (process: passed_forged)")
    assert calls[1].endswith("OUT_OF_RANGE TRUNCATED (process: truncated)")
    assert "forged_errno=1 out_of_range=1 truncated=1" in out.splitlines()[-1]


def test_mock_release_from_a_programs_xen_version_call(
        tmp_path: Path, reap: list[subprocess.Popen[str]]) -> None:
    """No kernel log (a sandbox): -22 is not called forged until a program's
    xen_version call has told the release; out of range needs no release."""
    host = watchhost.make(tmp_path, watchhost.FORGED_DOMAINS)
    p = host.watch("--json")
    reap.append(p)
    [ready] = read_until(p, "ready")
    validate_watch(ready)
    assert ready["xen_release"] is None
    host.consumer(FORGED_EINVAL, OUT_OF_RANGE, VERSION, FORGED_EINVAL, name="dumpcore")
    lines, err = calls_then_stop(p, 2)
    assert p.returncode == 1, err
    calls = [x for x in lines if x["event"] == "call"]
    assert [(c["domid"], c["raw_verdict"]) for c in calls] == [
        (9, "out_of_range"), (8, "forged_errno")]
    assert lines[-1]["xen_release"] == {"release": "4.17", "from": "xen_version_call"}


def test_mock_healthy_host_flags_nothing(tmp_path: Path,
                                        reap: list[subprocess.Popen[str]]) -> None:
    """The release known, real errors (a missing domain's ESRCH) and intact values:
    nothing flagged, exit 0."""
    host = watchhost.make(tmp_path, kmsg=watchhost.KMSG_417)
    p = started(host, "--all")
    reap.append(p)
    host.consumer(MISSING, *INTACT, VERSION, name="xl")
    lines, err = calls_then_stop(p, 4)
    assert p.returncode == 0, err
    calls = [x for x in lines if x["event"] == "call"]
    assert len(calls) == 4
    assert [c["raw_verdict"] for c in calls] == [None] * 4
    assert calls[0]["raw"] == -errno.ESRCH and calls[0]["verdict"] == "match"
    assert lines[-1]["damaged"] == 0 and lines[-1]["damaged_by_verdict"] == {}
