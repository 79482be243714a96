# SPDX-License-Identifier: GPL-2.0-only
"""The running tally of a watch: calls seen, damaged calls by verdict and by process,
events lost. State with one owner (the session); pure otherwise.

A damaged call is one with a finding (pairing.Call.findings): wrong at the source
(forged_errno, out_of_range), or misread on its way to the process (a mismatch). A call
with both (0x8000000000000000: out_of_range, then truncated) is one damaged call,
counted under each of its verdicts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from xenprobe.watch.attribution import Process
from xenprobe.watch.pairing import Call

MAX_PROCESSES = 1000  # distinct processes kept in the tally; the rest are counted apart


@dataclass
class Tally:
    calls: int = 0
    damaged_calls: int = 0
    by_op: Counter[str] = field(default_factory=Counter)
    damaged: Counter[str] = field(default_factory=Counter)             # by verdict
    # (pid, comm): pid None for processes that exited before their calls were read.
    by_process: dict[tuple[int | None, str], Counter[str]] = field(default_factory=dict)
    exe: dict[tuple[int | None, str], str] = field(default_factory=dict)
    damaged_by_process: Counter[tuple[int | None, str]] = field(default_factory=Counter)
    other_processes: Counter[str] = field(default_factory=Counter)     # past the bound
    lost: int = 0

    def add(self, call: Call, process: Process | None) -> None:
        """`process`: who made a damaged call (None only for an intact one)."""
        self.calls += 1
        self.by_op[call.op_name or str(call.op)] += 1
        if not call.damaged or process is None:
            return
        self.damaged_calls += 1
        found = Counter(v.value for v in call.findings)
        self.damaged.update(found)
        key = (process.tgid, call.comm)
        if key not in self.by_process and len(self.by_process) >= MAX_PROCESSES:
            self.other_processes[call.findings[0].value] += 1
            return
        self.by_process.setdefault(key, Counter()).update(found)
        self.damaged_by_process[key] += 1
        self.exe.setdefault(key, process.exe)

    @property
    def damaged_total(self) -> int:
        return self.damaged_calls

    def processes_json(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = [
            {"pid": pid, "comm": comm, "exe": self.exe.get((pid, comm), ""),
             "damaged": self.damaged_by_process[(pid, comm)], "verdicts": dict(sorted(v.items()))}
            for (pid, comm), v in self.by_process.items()]
        return sorted(rows, key=lambda r: (-int(str(r["damaged"])), str(r["comm"]),
                                           -1 if r["pid"] is None else int(str(r["pid"]))))
