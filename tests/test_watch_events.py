# SPDX-License-Identifier: GPL-2.0-only
"""The watch's pure parts: the trace_pipe line parser, the judge, pairing and the
reading of a kprobe_events listing."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from xenprobe.probe.classify import Verdict
from xenprobe.watch import probe_point, probes
from xenprobe.watch.attribution import GONE, Attribution
from xenprobe.watch.judge import judge
from xenprobe.watch.pairing import Pairer
from xenprobe.watch.session import Session
from xenprobe.watch.trace_line import TraceEvent, lost, parse


def line(comm: str, pid: int, cpu: int, ts: float, event: str, where: str, args: str,
         *, flags: str | None = "....", tgid: int | None = None) -> str:
    """A line as trace_print_context() + print_kprobe_event() print it."""
    head = f"{comm:>16}-{pid:<7} "
    if tgid is not None:
        head += f"({tgid:7d}) "
    head += f"[{cpu:03d}] "
    if flags is not None:
        head += flags
    secs, usec = int(ts), round((ts - int(ts)) * 1e6)
    return f"{head} {secs:5d}.{usec:06d}: {event}: ({where}){args}\n"


ENTRY = "privcmd_ioctl+0x0/0xbe0 [xen_privcmd]"
AFTER = "privcmd_ioctl+0x24e/0xbe0 [xen_privcmd]"


def entry_args(op: int, a0: int = 0, a1: int = 0, sub: int = 0, dom: int = 0,
               ddom: int = 0, cmd: int = probes.IOCTL_PRIVCMD_HYPERCALL) -> str:
    return (f" cmd={cmd:#x} op={op:#x} a0={a0:#x} a1={a1:#x} sub={sub} dom={dom} "
            f"ddom={ddom}")


def test_parses_the_kernels_line() -> None:
    ev = parse(line("guest-pfn 1-2", 1234, 1, 123.000456, "result", AFTER,
                    " rax=0x100000004", flags="d..1."))
    assert ev is not None
    assert (ev.comm, ev.pid, ev.cpu, ev.event) == ("guest-pfn 1-2", 1234, 1, "result")
    assert ev.time == pytest.approx(123.000456)
    assert ev.fields == {"rax": 0x100000004}
    assert ev.where == AFTER


def test_parses_with_tgid_and_without_irq_info() -> None:
    ev = parse(line("xl", 77, 0, 5.5, "call", ENTRY, entry_args(12, 14, 0x7ff0),
                    flags=None, tgid=70))
    assert ev is not None and ev.pid == 77 and ev.fields["a0"] == 14


def test_rejects_what_is_not_a_kprobe_line() -> None:
    assert parse("") is None
    assert parse("# tracer: nop\n") is None
    assert parse(line("x", 1, 0, 1.0, "e", ENTRY, " s=(fault)")) is None
    assert lost("CPU:1 [LOST 42 EVENTS]\n") == 42
    assert lost("CPU:1 [LOST x EVENTS]") == 0


@pytest.mark.parametrize(("raw", "delivered", "verdict"), [
    (0x100000004, 4, Verdict.TRUNCATED),            # maximum_gpfn of a big PV domain
    (0x80000000, -0x80000000, Verdict.SIGN_FLIPPED),
    (0xFFFF0FF0, -61456, Verdict.SIGN_FLIPPED),     # DR6's reset value
    (0xFFFFFFFE, -2, Verdict.ALIASED_ERRNO),        # reads as -1/ENOENT
    ((1 << 64) - 14, -14, Verdict.MATCH),           # -EFAULT passes intact
    (5, 5, Verdict.MATCH),
    (0x7FFFFFFF, 0x7FFFFFFF, Verdict.MATCH),
])
def test_judge(raw: int, delivered: int, verdict: Verdict) -> None:
    signed, given, v, at_source = judge(raw)
    assert given == delivered and v == verdict and at_source is None
    assert signed == (raw - (1 << 64) if raw >= 1 << 63 else raw)


def _ev(comm: str, pid: int, event: str, args: str, cpu: int = 0, ts: float = 1.0
        ) -> TraceEvent:
    ev = parse(line(comm, pid, cpu, ts, event, AFTER if event != "call" else ENTRY, args))
    assert ev is not None
    return ev


def test_pairs_per_task_never_across() -> None:
    p = Pairer()
    assert p.feed(_ev("a", 10, "call", entry_args(12, 14, 0, dom=3))) is None
    assert p.feed(_ev("b", 11, "call", entry_args(9, 6), cpu=1)) is None
    b = p.feed(_ev("b", 11, "result", " rax=0xffff0ff0", cpu=1))
    a = p.feed(_ev("a", 10, "result", " rax=0x100000004"))
    assert b is not None and a is not None
    assert (a.pid, a.op, a.op_name, a.subop, a.subop_name, a.domid) == (
        10, 12, "memory_op", 14, "maximum_gpfn", 3)
    assert (a.raw, a.delivered, a.verdict) == (0x100000004, 4, Verdict.TRUNCATED)
    assert (b.pid, b.op_name, b.subop, b.domid, b.verdict) == (
        11, "get_debugreg", None, None, Verdict.SIGN_FLIPPED)
    # A result with no entry of its own task is never paired with another's.
    assert p.feed(_ev("a", 10, "call", entry_args(17, 0))) is None
    assert p.feed(_ev("c", 12, "result", " rax=0x5")) is None
    assert p.orphans == 1


def test_counts_entries_without_result_and_other_ioctls() -> None:
    p = Pairer()
    p.feed(_ev("a", 10, "call", entry_args(12, 3)))
    p.feed(_ev("a", 10, "call", entry_args(12, 3)))
    assert p.unanswered == 1
    # IOCTL_PRIVCMD_MMAPBATCH_V2 and friends issue no hypercall of their own here.
    p.feed(_ev("a", 11, "call", entry_args(0, cmd=0x205004)))
    assert p.feed(_ev("a", 11, "result", " rax=0x0")) is None
    assert p.orphans == 1


def test_dm_op_names_its_domain() -> None:
    p = Pairer()
    p.feed(_ev("qemu", 20, "call", entry_args(0x10007, cmd=probes.IOCTL_PRIVCMD_DM_OP)))
    c = p.feed(_ev("qemu", 20, "dm_result", " rax=0x0"))
    assert c is not None and (c.ioctl, c.op_name, c.domid, c.verdict) == (
        "dm_op", "dm_op", 7, Verdict.MATCH)
    # A DM_OP entry is not paired with a HYPERCALL result.
    p.feed(_ev("qemu", 20, "call", entry_args(0x10007, cmd=probes.IOCTL_PRIVCMD_DM_OP)))
    assert p.feed(_ev("qemu", 20, "result", " rax=0x0")) is None
    assert p.mismatched == 1



def test_a_result_that_carries_its_request_needs_no_entry() -> None:
    """One probe a call (probes.carried()): the result event holds the request read
    from privcmd's own copy, and is a call by itself."""
    p = Pairer()
    a = p.feed(_ev("a", 10, "result", " rax=0x100000004" + entry_args(12, 14, 0, dom=3)
                   .replace(" cmd=0x305000", "")))
    q = p.feed(_ev("qemu", 20, "dm_result", " rax=0xffffffffffffffea dom=7"))
    assert a is not None and q is not None
    assert (a.pid, a.op_name, a.subop_name, a.domid, a.verdict) == (
        10, "memory_op", "maximum_gpfn", 3, Verdict.TRUNCATED)
    assert (q.ioctl, q.op_name, q.domid, q.raw, q.verdict) == (
        "dm_op", "dm_op", 7, -22, Verdict.MATCH)
    assert (p.orphans, p.mismatched) == (0, 0)


def test_definitions_arm_no_entry_probe_where_the_results_carry_the_request() -> None:
    carried = probe_point.ProbePoints(0xBE0, 0x24E, 0xB12, None, "static_call", 0x80, 0x60)
    defs = {d.name: d.text for d in probes.definitions(carried)}
    assert sorted(defs) == ["dm_result", "result"]
    assert defs["result"].endswith(
        "+0x24e rax=%ax:x64 op=+0x80(%sp):x64 a0=+0x88(%sp):x64 a1=+0x90(%sp):x64 "
        "sub=+u0(+0x88(%sp)):u32 dom=+u0(+0x90(%sp)):u16 ddom=+u8(+0x88(%sp)):u16 "
        "comm=$comm")
    assert defs["dm_result"].endswith("+0xb12 rax=%ax:x64 dom=+0x60(%sp):u16 comm=$comm")
    # Either slot unknown: the entry probe, and results that carry only %rax.
    for points in (replace(carried, request=None), replace(carried, dm_domain=None)):
        defs = {d.name: d.text for d in probes.definitions(points)}
        assert sorted(defs) == ["call", "dm_result", "result"]
        assert defs["result"].endswith(f"+0x24e {probes.RESULT_ARGS}")
    # No DM_OP site: the request's slot is enough.
    assert [d.name for d in probes.definitions(replace(carried, dm_op=None,
                                                       dm_domain=None))] == ["result"]

def test_domctl_and_efault() -> None:
    p = Pairer()
    p.feed(_ev("xl", 5, "call", entry_args(36, 0x7000, sub=5, ddom=9)))
    c = p.feed(_ev("xl", 5, "result", " rax=0x0"))
    assert c is not None and (c.op_name, c.subop_name, c.domid) == (
        "domctl", "getdomaininfo", 9)
    # -EFAULT: the struct could not be read, so neither could the watch's fetch.
    p.feed(_ev("xl", 5, "call", entry_args(36, 0x7000, sub=5, ddom=9)))
    c = p.feed(_ev("xl", 5, "result", " rax=0xfffffffffffffff2"))
    assert c is not None and (c.subop, c.domid, c.raw) == (None, None, -14)


def test_listed_events() -> None:
    listing = ("p:kprobes/other privcmd_ioctl\n"
               "p:xenprobe_watch/call xen_privcmd:privcmd_ioctl cmd=%si:x32\n"
               "p:xenprobe_watch/result xen_privcmd:privcmd_ioctl+0x24e rax=%ax:x64\n"
               "-:xenprobe_watch/call\n")
    assert probes.listed_events(listing) == ["result"]
    assert probes.listed_events(listing, "kprobes") == ["other"]


def test_entries_left_waiting_are_counted_at_the_end() -> None:
    p = Pairer()
    p.feed(_ev("a", 10, "call", entry_args(12, 3)))
    p.feed(_ev("b", 11, "call", entry_args(12, 3)))
    p.finish()
    assert p.unanswered == 2


def test_lost_notes_and_overrun_counters_are_the_same_events() -> None:
    """Seen on real Xen 4.17 (6.1): a 1,000,000-call burst reported 3,586,752 events
    lost of 2,200,000 made, twice the real loss, because the per-CPU overrun counter
    and trace_pipe's "[LOST N EVENTS]" notes were added (failed before: 160)."""
    instance = SimpleNamespace(lost=lambda: 100, path="inst")
    session = Session(SimpleNamespace(instance=instance, pipe=-1),  # type: ignore[arg-type]
                      SimpleNamespace(call=None, tick=None),  # type: ignore[arg-type]
                      everything=False)
    session._line("CPU:0 [LOST 60 EVENTS]")
    session._update_lost()
    assert session.tally.lost == 100



def test_the_lost_count_never_goes_down() -> None:
    """The count is exported as a counter (xenprobe_watch_lost_events_total): a read of
    the per-CPU stats that finds less than before (a CPU's file unreadable for a
    moment) must not make it fall, which Prometheus would take for a restart (failed
    before: 0 after 100)."""
    counts = iter([100, 0, 40])
    instance = SimpleNamespace(lost=lambda: next(counts), path="inst")
    session = Session(SimpleNamespace(instance=instance, pipe=-1),  # type: ignore[arg-type]
                      SimpleNamespace(call=None, tick=None),  # type: ignore[arg-type]
                      everything=False)
    seen = []
    for _ in range(3):
        session._update_lost()
        seen.append(session.tally.lost)
    assert seen == [100, 100, 100]

class _CountingAttribution:
    def __init__(self) -> None:
        self.asked: list[int] = []

    def of(self, pid: int, comm: str) -> object:
        self.asked.append(pid)
        return SimpleNamespace(tgid=pid, exe="/usr/bin/x")


def test_only_calls_shown_or_tallied_by_process_are_attributed() -> None:
    """Reading /proc/PID/stat for every call was some 70% of the reader's work on the
    mock host (cProfile: Attribution.of 1.32 s of 1.92 s for 5,000 calls); an intact
    call is only counted, so it needs no process (failed before: [10, 11])."""
    shown: list[object] = []
    attribution = _CountingAttribution()
    session = Session(SimpleNamespace(instance=None, pipe=-1),  # type: ignore[arg-type]
                      SimpleNamespace(call=lambda c, p, t: shown.append(p),  # type: ignore[arg-type]
                                      tick=None),
                      everything=False, attribution=attribution)  # type: ignore[arg-type]
    session._line(line("intact", 10, 0, 1.0, "call", ENTRY, entry_args(12, 14, dom=6)))
    session._line(line("intact", 10, 0, 1.1, "result", AFTER, " rax=0x10ffff"))
    session._line(line("damaged", 11, 0, 1.2, "call", ENTRY, entry_args(12, 14, dom=3)))
    session._line(line("damaged", 11, 0, 1.3, "result", AFTER, " rax=0x100000004"))
    assert attribution.asked == [11] and len(shown) == 1
    assert session.tally.calls == 2 and session.tally.damaged_total == 1
    assert [r["pid"] for r in session.tally.processes_json()] == [11]


def test_a_caller_the_kernel_prints_as_unknown_is_named_by_its_event_and_xenprobe_not_shown(
        ) -> None:
    """Seen on Xen 4.17 and 4.20's service boots: the kernel printed "<...>" for a caller
    gone from its table of recent tasks by the time the line was read, and the caller
    had exited, so its damaged call was shown under "<...>" (the CI run's missing
    xc414_caller line). The result event's own `comm="..."` (the task's name at the
    call) names it. The timer's `xenprobe check`, whose probes read damaged values on
    purpose, is counted and not shown."""
    shown: list[str] = []
    session = Session(SimpleNamespace(instance=None, pipe=-1),  # type: ignore[arg-type]
                      SimpleNamespace(call=lambda c, p, t: shown.append(c.comm),  # type: ignore[arg-type]
                                      tick=None),
                      everything=False,
                      attribution=SimpleNamespace(of=lambda pid, comm: GONE))  # type: ignore[arg-type]
    for pid, comm in ((20, "xc414_caller"), (21, "xenprobe")):
        session._line(line("<...>", pid, 0, 1.0, "call", ENTRY, entry_args(12, 14, dom=3)))
        session._line(line("<...>", pid, 0, 1.1, "result", AFTER,
                           f' rax=0x100000004 comm="{comm}"'))
    assert shown == ["xc414_caller"]
    assert session.tally.calls == 2 and session.tally.damaged_total == 1


@pytest.mark.parametrize("name", ["xc414_caller", "a b", 'x comm="y', 'q"', "<...>", ""])
def test_the_comm_argument_is_the_name_whatever_it_holds(name: str) -> None:
    """A task may name itself anything of up to 15 bytes (prctl PR_SET_NAME); the kernel
    prints it between quotes as it is, last on the line."""
    ev = parse(line("<...>", 7, 1, 2.5, "result", AFTER, f' rax=0x5 comm="{name}"'))
    assert ev is not None and ev.comm == name and ev.fields == {"rax": 5}


def _fake_task(proc: Path, pid: int, comm: str, start: int) -> None:
    d = proc / str(pid)
    d.mkdir(parents=True)
    # /proc/PID/stat: pid (comm) state, then fields 4..; field 22 is the start time.
    (d / "stat").write_text(f"{pid} ({comm}) S " + " ".join(["0"] * 18) + f" {start} 0\n")
    (d / "status").write_text(f"Name:\t{comm}\nTgid:\t{pid}\n")
    (d / "maps").write_text("")
    (d / "exe").symlink_to(f"/usr/bin/{comm}")


def test_a_caller_that_exits_between_its_calls_stays_one_process(tmp_path: Path) -> None:
    """Seen on the service boots: xc414_caller's first damaged call was read while it
    lived, its next two after it exited, and the tally showed it twice
    (`xc414_caller[exited] 2, xc414_caller[416] 1`). Its calls recorded the name /proc
    gave it, so they stay its own; a call recording another name is not given its
    details."""
    proc = tmp_path / "proc"
    _fake_task(proc, 416, "xc414_caller", 9000)
    attribution = Attribution(str(proc))
    session = Session(SimpleNamespace(instance=None, pipe=-1),  # type: ignore[arg-type]
                      SimpleNamespace(call=lambda c, p, t: None, tick=None),  # type: ignore[arg-type]
                      everything=False, attribution=attribution)
    for n, dom in enumerate((6, 7, 8)):
        session._line(line("<...>", 416, 0, 1.0 + n, "call", ENTRY, entry_args(12, 14, dom=dom)))
        session._line(line("<...>", 416, 0, 1.1 + n, "result", AFTER,
                           ' rax=0x100000004 comm="xc414_caller"'))
        if n == 0:
            shutil.rmtree(proc / "416")  # it exits after its first call was read
    rows = session.tally.processes_json()
    assert [(r["pid"], r["comm"], r["damaged"]) for r in rows] == [(416, "xc414_caller", 3)]
    assert attribution.of(416, "xc414_caller").exe == "/usr/bin/xc414_caller"
    assert attribution.of(416, "other").tgid is None
