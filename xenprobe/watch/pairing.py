# SPDX-License-Identifier: GPL-2.0-only
"""A call from its events: the result event alone where it carries the request
(probes.carried(): read from privcmd's own copy on the stack), else the result paired
with its task's entry event.

For pairing, a task (the trace line's pid is the thread id) has at most one ioctl in flight, and
its events reach trace_pipe in the order of the instance's global trace clock, so a
result event belongs to the same task's last entry event. Events are never paired
across tasks. An entry that never gets a result (a request privcmd refused before the
hypercall: -EFAULT copying it in, an op >= 128) is replaced by the task's next one
and counted; a result without an entry (the watch armed between the two) is counted,
never judged. Stateful, with its state here; no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from xenprobe.probe.classify import Verdict
from xenprobe.watch import probes
from xenprobe.watch.judge import judge
from xenprobe.watch.trace_line import TraceEvent
from xenprobe.xen.abi import errnos
from xenprobe.xen.abi import watch_names as names

MAX_PENDING = 65536  # tasks with an entry and no result yet (bounded memory)

# (op, subop as issued) -> the errnos it can return on this host, or None: not known.
ErrnoSets = Callable[[int, int], frozenset[int] | None]


def _unknown(op: int, subop: int) -> frozenset[int] | None:
    return None


@dataclass(frozen=True)
class Call:
    time: float
    pid: int
    comm: str
    cpu: int
    ioctl: str            # "hypercall" or "dm_op"
    op: int
    subop: int | None
    domid: int | None
    raw: int              # signed 64-bit
    delivered: int
    verdict: Verdict      # what the process received, against the raw result
    raw_verdict: Verdict | None = None  # the raw result by itself: forged_errno, out_of_range

    @property
    def op_name(self) -> str | None:
        return names.OPS.get(self.op)

    @property
    def subop_name(self) -> str | None:
        if self.subop is None:
            return None
        if self.op == names.MEMORY_OP:
            return names.MEMORY_SUBOPS.get(self.subop)
        if self.op == names.XEN_VERSION:
            return names.XEN_VERSION_SUBOPS.get(self.subop)
        return names.CMD_IN_STRUCT.get(self.op, {}).get(self.subop)

    @property
    def findings(self) -> tuple[Verdict, ...]:
        """What is wrong with this call: the raw result at the source, then what the
        process received (a mismatch); empty for a clean call. passed_forged is not
        counted apart: it is the forged_errno's other side."""
        found = () if self.raw_verdict is None else (self.raw_verdict,)
        return found + ((self.verdict,) if self.verdict.is_mismatch else ())

    @property
    def damaged(self) -> bool:
        return bool(self.findings)


class Pairer:
    def __init__(self, errno_sets: ErrnoSets = _unknown) -> None:
        self.errno_sets = errno_sets
        self._pending: OrderedDict[int, TraceEvent] = OrderedDict()
        self.unanswered = 0    # entries replaced before a result came
        self.orphans = 0       # results without an entry
        self.mismatched = 0    # a result of the other kind than the entry's ioctl

    def finish(self) -> None:
        """The watch stops: entries still waiting for a result never get one (lost, or
        the call was in flight); count them."""
        self.unanswered += len(self._pending)
        self._pending.clear()

    def feed(self, ev: TraceEvent) -> Call | None:
        if ev.event == probes.CALL:
            cmd = ev.fields.get("cmd")
            if cmd not in (probes.IOCTL_PRIVCMD_HYPERCALL, probes.IOCTL_PRIVCMD_DM_OP):
                return None  # another privcmd ioctl (mmap, restrict...): no hypercall here
            if self._pending.pop(ev.pid, None) is not None:
                self.unanswered += 1
            self._pending[ev.pid] = ev
            if len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
                self.unanswered += 1
            return None
        if ev.event not in (probes.RESULT, probes.DM_RESULT):
            return None
        if ev.event == probes.RESULT and "op" in ev.fields:
            return _call(probes.IOCTL_PRIVCMD_HYPERCALL, ev.fields, ev, self.errno_sets)
        if ev.event == probes.DM_RESULT and "dom" in ev.fields:
            return _call(probes.IOCTL_PRIVCMD_DM_OP, ev.fields, ev, self.errno_sets)
        entry = self._pending.pop(ev.pid, None)
        if entry is None:
            self.orphans += 1
            return None
        wanted = (probes.IOCTL_PRIVCMD_HYPERCALL if ev.event == probes.RESULT
                  else probes.IOCTL_PRIVCMD_DM_OP)
        if entry.fields.get("cmd") != wanted:
            self.mismatched += 1
            return None
        request = entry.fields
        if wanted == probes.IOCTL_PRIVCMD_DM_OP:
            # struct privcmd_dm_op: domid_t dom in the low 16 bits of the first word.
            request = {"dom": entry.fields.get("op", 0) & 0xFFFF}
        return _call(wanted, request, ev, self.errno_sets)


# Hypercalls of xen/abi/errnos.py whose subop is the first argument (memory_op's whole
# word, continuation bits too: errnos.py counts those as another request).
_SUBOP_IN_A0 = frozenset(op for op, _ in errnos.PAIRS) - {names.PLATFORM_OP, names.SYSCTL}


def _judged_pair(f: dict[str, int]) -> tuple[int, int] | None:
    """The (op, subop) as Xen received it, when xen/abi/errnos.py knows it: only where the
    subop is a hypercall argument, which privcmd copies from the request the probes
    read. A command inside a struct (sysctl, platform_op) is read from memory Xen
    copies later, which the caller may rewrite in between: not judged at the source."""
    op = f.get("op", 0)
    pair = (op, f.get("a0", 0))
    return pair if op in _SUBOP_IN_A0 and pair in errnos.PAIRS else None


def _call(cmd: int, f: dict[str, int], result: TraceEvent, errno_sets: ErrnoSets
          ) -> Call:
    """The call from its request's fields (`f`: CALL_ARGS' names; `dom` for DM_OP)
    and its result event."""
    rax = result.fields.get("rax", 0)
    if cmd == probes.IOCTL_PRIVCMD_DM_OP:
        raw, given, verdict, at_source = judge(rax)
        return Call(result.time, result.pid, result.comm, result.cpu, "dm_op",
                    names.DM_OP, None, f.get("dom"), raw, given, verdict, at_source)
    op = f.get("op", 0)
    pair = _judged_pair(f)
    raw, given, verdict, at_source = judge(
        rax, convention=pair is not None,
        can_return=None if pair is None else errno_sets(*pair))
    failed_copy = raw == -14  # -EFAULT: the memory the domain id was read from is bad
    subop: int | None = None
    domid: int | None = None
    if op == names.MEMORY_OP:
        subop = f.get("a0", 0) & names.MEMOP_CMD_MASK
        if subop in names.MEMORY_SUBOPS_WITH_DOMID and not failed_copy:
            domid = f.get("dom")
    elif op == names.XEN_VERSION:
        subop = f.get("a0")
    elif op in names.CMD_IN_STRUCT and not failed_copy:
        subop = f.get("sub")
        if op == names.DOMCTL:
            domid = f.get("ddom")
    return Call(result.time, result.pid, result.comm, result.cpu, "hypercall", op,
                subop, domid, raw, given, verdict, at_source)
