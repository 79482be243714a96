# SPDX-License-Identifier: GPL-2.0-only
"""Start-up figures: wall time of `xenprobe --version` and of a whole `xenprobe check
--mock healthy` (the re-exec onto the mock host included), beside the interpreter's own
start (`python -c pass`) measured in the same run. Mostly imports: the figure to watch
when a module grows an import it uses only on another path."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "xenprobe --version": [sys.executable, "-m", "xenprobe", "--version"],
    "xenprobe check --mock healthy": [sys.executable, "-m", "xenprobe", "check", "--mock",
                                      "healthy"],
}


@dataclass
class StartupFigures:
    command: str
    median_ms: float
    over_python_ms: float


def _once(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
    elapsed = time.perf_counter() - t0
    if p.returncode not in (0, 1):  # check: 1 where the mock host has a mismatch
        raise RuntimeError(f"{argv}: exit {p.returncode}: {p.stderr[-500:]!r}")
    return elapsed * 1000


def measure(rounds: int, env: dict[str, str]) -> list[StartupFigures]:
    # Rotating order, as for the sweeps: the machine's noise falls on every command alike.
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, argv in COMMANDS.items():
            times[name].append(_once(argv, env))
    base = statistics.median(times["python -c pass"])
    return [StartupFigures(name, statistics.median(t), statistics.median(t) - base)
            for name, t in times.items()]


def table(figures: list[StartupFigures]) -> list[str]:
    lines = ["| start-up | median (ms) | over `python -c pass` (ms) |", "|---|---:|---:|"]
    lines += [f"| {f.command} | {f.median_ms:.0f} | {f.over_python_ms:.0f} |"
              for f in figures]
    return lines
