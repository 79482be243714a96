# SPDX-License-Identifier: GPL-2.0-only
"""RSS over many sweeps, run on the mock host by __main__: the daemon's own per-sweep
code, in a loop without the wait between sweeps.

`xenprobe serve` will not sweep more often than once a second (its --interval floor),
so a thousand sweeps would take a quarter of an hour. This loop builds what
Daemon.run builds (the device, State, the registry with the process, platform and
daemon collectors) and calls SweepLoop._once(), the sweep thread's body, back to back;
every 10th sweep it renders /metrics as a scrape would. It prints
"SWEEP RSS_KIB" after sweeps 1, 10, 100, 1000, ... and the last.

    python -m tests.bench.leak SWEEPS
"""

from __future__ import annotations

import sys
from pathlib import Path

SCRAPE_EVERY = 10


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str]) -> int:
    from prometheus_client import PlatformCollector, ProcessCollector, generate_latest
    from prometheus_client.registry import CollectorRegistry

    from xenprobe.exporter.config import Config
    from xenprobe.exporter.daemon import SweepLoop
    from xenprobe.exporter.metrics.collector import DaemonCollector
    from xenprobe.exporter.state import State
    from xenprobe.probe.session import Session
    from xenprobe.support.logs import configure

    configure("warning")
    sweeps = int(argv[0])
    state = State(Config(), "bench")
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(DaemonCollector(state.snapshot))
    loop = SweepLoop(state, Session.open())
    marks = {1, sweeps}
    mark = 10
    while mark <= sweeps:
        marks.add(mark)
        mark *= 10
    for i in range(1, sweeps + 1):
        loop._once()
        if i % SCRAPE_EVERY == 0:
            generate_latest(registry)
        if i in marks:
            print(i, rss_kib(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
