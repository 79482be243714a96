# SPDX-License-Identifier: GPL-2.0-only
"""The benchmark's measuring processes, run on the mock host (LD_PRELOAD) by __main__.

    python -m tests.bench.child xenprobe   xenprobe's sweeps, in this process
    python -m tests.bench.child peer PYTHON_DIR   xen.lowlevel.xc, Xen's own bindings

Each reads one command per line on stdin and answers "SECONDS CHECK" on stdout, so the
driver can interleave them with the floor sweep by sweep. The first line out is
"ready" and a note (what the process could not set up, or "-").

xenprobe commands:
    full    Sweeper.sweep() with every layer (syscall, ioctl, libxc)
    kernel  Sweeper.sweep() with the syscall and ioctl layers only
    info    what the peer reads: every domain's getdomaininfo record (getdomaininfolist
            in chunks, decoded to tot_pages/max_pages) and sysctl physinfo
peer command:
    peer    xc.physinfo() and xc.domain_getinfo() over every domain, in calls of 1024
            (libxenctrl 4.17 issues one domctl getdomaininfo per domain)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def _xenprobe() -> tuple[dict[str, Callable[[], int]], str]:
    from xenprobe.layers.protocol import ladder
    from xenprobe.probe.sweep import Sweeper
    from xenprobe.xen.host import Host
    from xenprobe.xen.transport import Privcmd

    dev = Privcmd()
    host = Host(dev)
    layers = ladder(dev, host.identity)
    note = "; ".join(f"{layer.name}: {n}" for layer in layers
                     if (n := getattr(layer, "note", "")))
    full = Sweeper(host, layers)
    kernel = Sweeper(host, [layer for layer in layers if layer.name != "libxc"])

    def sweep(sweeper: Sweeper) -> int:
        return len(sweeper.sweep().mismatches)

    def info() -> int:
        pages = host.domain_pages()
        host.physinfo()
        return len(pages)

    return {"full": lambda: sweep(full), "kernel": lambda: sweep(kernel),
            "info": info}, note or "-"


def _peer(python_dir: str) -> tuple[dict[str, Callable[[], int]], str]:
    sys.path.insert(0, python_dir)
    import xen.lowlevel.xc  # type: ignore[import-not-found]

    xc = xen.lowlevel.xc.xc()

    def peer() -> int:
        xc.physinfo()
        domains: list[dict[str, int]] = []
        first = 0
        while True:
            chunk = xc.domain_getinfo(first, 1024)
            domains += chunk
            if len(chunk) < 1024:
                break
            first = chunk[-1]["domid"] + 1
        # The same information xenprobe's references hold: pages per domain.
        return sum(d["mem_kb"] + d["maxmem_kb"] for d in domains) // 4 % 1000003

    return {"peer": peer}, "-"


def main(argv: list[str]) -> int:
    from xenprobe.support.logs import configure

    configure("warning")
    commands, note = _xenprobe() if argv[0] == "xenprobe" else _peer(argv[1])
    print("ready", note, flush=True)
    for line in sys.stdin:
        name = line.strip()
        if name == "quit":
            break
        t0 = time.perf_counter()
        check = commands[name]()
        print(f"{time.perf_counter() - t0:.9f} {check}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
