# SPDX-License-Identifier: GPL-2.0-only
"""Who made a watched call: from the trace line's task id to its process (thread-group
id, exe), the libxenctrl it maps and that library's memory-op path
(xenprobe/xen/consumers.py, xenprobe/xen/memop_path.py). Read from /proc when the call is
reported. A cached entry is used while the task's start time (/proc/PID/stat field 22)
is the same, and, once the task has exited, for a call that recorded the name /proc
gave it: a short-lived caller read late is still the process its first call named
(the tally had split it into the process and an "[exited]" one). A task that exited
before any of its calls was read is reported with its name and empty fields, never
with another process's details."""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from xenprobe.xen import consumers, memop_path
from xenprobe.xen.elf import elf_class

MAX_CACHED = 4096


@dataclass(frozen=True)
class Process:
    tgid: int | None       # None: the task exited before the watch read its call
    exe: str
    libxenctrl: consumers.Library | None
    memop_path: str        # consumers.MemopPath value: int_path, multicall, unknown, ...

    def as_json(self) -> dict[str, object]:
        lib = self.libxenctrl
        return {"tgid": self.tgid, "exe": self.exe,
                "libxenctrl": None if lib is None else {"path": lib.path,
                                                        "release": lib.release},
                "memop_path": self.memop_path}


GONE = Process(None, "", None, consumers.MemopPath.UNKNOWN.value)


class Attribution:
    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        # task id -> (start time, comm, process), as /proc gave them
        self._cache: OrderedDict[int, tuple[str, str, Process]] = OrderedDict()

    def of(self, pid: int, comm: str) -> Process:
        """The process of task `pid`, whose call recorded the name `comm`."""
        stat = self._stat(pid)
        hit = self._cache.get(pid)
        if stat is None:
            return hit[2] if hit is not None and hit[1] == comm else GONE
        if hit is not None and hit[:2] == stat:
            return hit[2]
        found = self._read(pid)
        self._cache[pid] = (*stat, found)
        if len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        return found

    def _stat(self, pid: int) -> tuple[str, str] | None:
        """(start time, comm) from /proc/PID/stat; None once the task has exited."""
        try:
            with open(f"{self.proc}/{pid}/stat", encoding="utf-8",
                      errors="replace") as f:
                stat = f.read()
        except OSError:
            return None
        # comm (field 2) is in parentheses and may hold anything: split after it.
        head, _, tail = stat.rpartition(")")
        rest = tail.split()
        return (rest[19], head.partition("(")[2]) if len(rest) > 19 else None

    def _read(self, pid: int) -> Process:
        d = f"{self.proc}/{pid}"
        tgid = None
        try:
            with open(f"{d}/status", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("Tgid:"):
                        tgid = int(line.split()[1])
                        break
        except (OSError, ValueError):
            pass
        try:
            exe = os.readlink(f"{d}/exe")
        except OSError:
            exe = ""
        try:
            lib = consumers.mapped_libxenctrl(d)
        except OSError:
            lib = None
        verdict = consumers.judge(elf_class(f"{d}/exe"), lib)
        if (verdict is consumers.MemopPath.UNKNOWN and lib is not None
                and lib.version == (4, 15)):
            # 4.15: the file tells 4.15.0 (int path) from 4.15.1 (multicall).
            path = memop_path.of_file(Path(f"{d}/root{lib.path}"), lib.version)
            if path is not None:
                verdict = (consumers.MemopPath.MULTICALL if path == "multicall"
                           else consumers.MemopPath.INT_PATH)
        return Process(tgid, exe, lib, verdict.value)
