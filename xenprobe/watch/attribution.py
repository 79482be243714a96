# SPDX-License-Identifier: GPL-2.0-only
"""Who made a watched call: from the trace line's task id to its process (thread-group
id, exe), the libxenctrl it maps and that library's memory-op path
(xenprobe/xen/consumers.py, xenprobe/xen/memop_path.py). Read from /proc when the call is
reported; a process that has exited meanwhile is reported with what the trace line
says (its name) and empty fields, never with another process's details: a cached entry is
used only while the task's start time (/proc/PID/stat field 22) is the same."""

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
        self._cache: OrderedDict[int, tuple[str, Process]] = OrderedDict()

    def of(self, pid: int) -> Process:
        start = self._start_time(pid)
        if start is None:
            return GONE
        hit = self._cache.get(pid)
        if hit is not None and hit[0] == start:
            return hit[1]
        found = self._read(pid)
        self._cache[pid] = (start, found)
        if len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        return found

    def _start_time(self, pid: int) -> str | None:
        try:
            with open(f"{self.proc}/{pid}/stat", encoding="utf-8",
                      errors="replace") as f:
                stat = f.read()
        except OSError:
            return None
        # comm (field 2) is in parentheses and may hold anything: split after it.
        _, _, tail = stat.rpartition(")")
        rest = tail.split()
        return rest[19] if len(rest) > 19 else None

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
