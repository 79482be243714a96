# SPDX-License-Identifier: GPL-2.0-only
"""Start-up figures: wall and CPU time (user + sys) of `xenprobe --version` and of a
whole `xenprobe check --mock healthy` (the re-exec onto the mock host included), beside
the interpreter's own start (`python -c pass`) measured in the same run. Mostly
imports: the figure to watch when a module grows an import it uses only on another path.

With a tree to compare against (__main__'s --before), each xenprobe command also runs
on that tree's code (PYTHONPATH), in the same rotation."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "xenprobe --version": [sys.executable, "-m", "xenprobe", "--version"],
    "xenprobe check --mock healthy": [sys.executable, "-m", "xenprobe", "check", "--mock",
                                      "healthy"],
}
BEFORE = ", before"  # appended to a command's name when it runs on the --before tree


@dataclass
class StartupFigures:
    command: str
    median_ms: float
    over_python_ms: float
    cpu_ms: float = 0.0           # user + sys of the process and its re-exec, median
    cpu_over_python_ms: float = 0.0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _once(argv: list[str], env: dict[str, str], cwd: Path | None) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run (the CPU of the waited-for child, from the
    rusage of every child this process reaped: the runs are one at a time)."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=120,
                       check=False)
    elapsed = time.perf_counter() - t0
    if p.returncode not in (0, 1):  # check: 1 where the mock host has a mismatch
        raise RuntimeError(f"{argv}: exit {p.returncode}: {p.stderr[-500:]!r}")
    return elapsed * 1000, (_children_cpu() - cpu0) * 1000


def _commands(env: dict[str, str], before: Path | None
              ) -> dict[str, tuple[list[str], dict[str, str], Path | None]]:
    out: dict[str, tuple[list[str], dict[str, str], Path | None]] = {
        name: (argv, env, None) for name, argv in COMMANDS.items()}
    if before is not None:
        # In TREE: `python -m` puts the current directory first on the path, so the first
        # process and the one re-executed onto the mock host (-P) load the same tree.
        old = tree_env(env, before)
        out |= {name + BEFORE: (argv, old, before) for name, argv in COMMANDS.items()
                if name != "python -c pass"}
    return out


def measure(rounds: int, env: dict[str, str], before: Path | None = None
            ) -> list[StartupFigures]:
    # Rotating order, as for the sweeps: the machine's noise falls on every command alike.
    commands = _commands(env, before)
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, (argv, run_env, cwd) in commands.items():
            w, c = _once(argv, run_env, cwd)
            wall[name].append(w)
            cpu[name].append(c)
    base, base_cpu = (statistics.median(wall["python -c pass"]),
                      statistics.median(cpu["python -c pass"]))
    return [StartupFigures(name, statistics.median(wall[name]),
                           statistics.median(wall[name]) - base,
                           statistics.median(cpu[name]),
                           statistics.median(cpu[name]) - base_cpu)
            for name in commands]


def table(figures: list[StartupFigures]) -> list[str]:
    lines = ["| start-up | median (ms) | over `python -c pass` (ms) | CPU (ms) "
             "| CPU over `python -c pass` (ms) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {f.command} | {f.median_ms:.0f} | {f.over_python_ms:.0f} "
              f"| {f.cpu_ms:.0f} | {f.cpu_over_python_ms:.0f} |" for f in figures]
    return lines


def tree_env(env: dict[str, str], before: Path) -> dict[str, str]:
    """The environment that runs `python -m xenprobe` on the --before tree's code: its
    directory first on the path (the re-exec onto the mock host keeps PYTHONPATH)."""
    return {**env, "PYTHONPATH": os.pathsep.join([str(before), *filter(None, [
        env.get("PYTHONPATH", "")])])}
