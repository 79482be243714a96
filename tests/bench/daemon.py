# SPDX-License-Identifier: GPL-2.0-only
"""`xenprobe serve` on the mock host: resident memory, CPU time per sweep, /metrics.

Two runs per host size, as a production daemon sees it:

- idle: --interval 3600, so after the first sweep the daemon only serves. Then the
  scrape latency is timed (sequential GET /metrics on loopback, a fresh connection
  each, as Prometheus' first scrape; the body as prometheus_client renders it), and
  RSS read after the first sweep and after the scrapes.
- busy: --interval 1 (the shortest the daemon accepts), so it sweeps back to back
  when a sweep takes a second or more. CPU time per sweep is the process's
  utime + stime (/proc/PID/stat) between two sweeps' log lines, divided by the sweeps
  between them; nothing scrapes meanwhile. RSS is read at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class DaemonFigures:
    domains: int
    before: bool = False                 # measured on the --before tree
    rss_first_mib: float = 0.0           # after the first sweep (idle run)
    rss_scraped_mib: float = 0.0         # after the scrapes (idle run)
    rss_busy_mib: float = 0.0            # at the end of the busy run
    cpu_per_sweep_ms: float = 0.0        # busy run
    sweep_ms: float = 0.0                # the sweeps' own duration (log), busy run
    sweeps: int = 0                      # in the busy run's window
    scrape_ms: list[float] = field(default_factory=list)
    scrape_bytes: int = 0
    error: str = ""

    @property
    def scrape_median_ms(self) -> float:
        return statistics.median(self.scrape_ms) if self.scrape_ms else 0.0

    @property
    def scrape_p90_ms(self) -> float:
        if len(self.scrape_ms) < 2:
            return self.scrape_median_ms
        return statistics.quantiles(self.scrape_ms, n=10)[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


class _Serve:
    """One `xenprobe serve` process and the sweeps its log reports."""

    def __init__(self, scenario: Path, env: dict[str, str], interval: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xenprobe", "serve", "--mock", str(scenario),
             "--listen-address", f"127.0.0.1:{self.port}", "--interval", interval,
             "--log-level", "debug", "--log-format", "json"],
            env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        self.sweeps: list[tuple[float, float]] = []  # (cpu seconds at the line, duration)
        self.failures: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                # The daemon's own line per sweep (the sweeper's debug line has no
                # "domains").
                if event.get("event") == "sweep" and "domains" in event:
                    try:
                        cpu = _cpu_seconds(self.proc.pid)
                    except OSError:
                        cpu = 0.0
                    self.sweeps.append((cpu, float(event.get("seconds", 0.0))))
                elif event.get("level") in ("error", "critical"):
                    self.failures.append(line.strip())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_sweeps(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.sweeps) < count:
                left = deadline - time.monotonic()
                if self.proc.poll() is not None:
                    raise RuntimeError(f"xenprobe serve exited ({self.proc.returncode}): "
                                       + "; ".join(self.failures[-3:]))
                if left <= 0:
                    raise RuntimeError(f"xenprobe serve: {len(self.sweeps)} of {count} "
                                       f"sweeps after {timeout:.0f} s")
                self._cond.wait(min(left, 1.0))

    def scrape(self) -> tuple[float, int]:
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                    timeout=60) as r:
            body = r.read()
        return (time.perf_counter() - t0) * 1000, len(body)

    def rss_mib(self) -> float:
        return _status_kib(self.proc.pid, "VmRSS") / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


def measure(domains: int, scenario: Path, env: dict[str, str], scrapes: int = 20,
            busy_sweeps: int = 10, before: bool = False) -> DaemonFigures:
    out = DaemonFigures(domains, before)
    timeout = 120 + domains / 50
    idle = _Serve(scenario, env, "3600")
    try:
        idle.wait_sweeps(1, timeout)
        time.sleep(0.2)  # the sweep thread publishes, then goes to sleep
        out.rss_first_mib = idle.rss_mib()
        idle.scrape()  # the first render pays for imports and caches
        for _ in range(scrapes):
            ms, size = idle.scrape()
            out.scrape_ms.append(ms)
            out.scrape_bytes = size
        out.rss_scraped_mib = idle.rss_mib()
    except (RuntimeError, OSError) as e:
        out.error = str(e)
        return out
    finally:
        idle.stop()
    busy = _Serve(scenario, env, "1")
    try:
        # The first sweep builds the plan and loads libxc: count from the second.
        busy.wait_sweeps(2 + busy_sweeps, timeout + busy_sweeps * (2 + domains / 2000))
        (cpu0, _), (cpu1, _) = busy.sweeps[1], busy.sweeps[1 + busy_sweeps]
        out.sweeps = busy_sweeps
        out.cpu_per_sweep_ms = (cpu1 - cpu0) / busy_sweeps * 1000
        out.sweep_ms = statistics.median(d for _, d in busy.sweeps[2:2 + busy_sweeps]) * 1000
        out.rss_busy_mib = busy.rss_mib()
    except (RuntimeError, OSError) as e:
        out.error = str(e)
    finally:
        busy.stop()
    return out
