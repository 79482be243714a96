# SPDX-License-Identifier: GPL-2.0-only
"""The watch's reader throughput on the mock host (issue 22 item 5: "no event lost at
100,000 calls a second while the watch reads").

One C process (privcmd_loop.c) issues XENMEM_maximum_gpfn through the mock's privcmd,
which writes the kernel's two trace lines a call into the watch's instance
(native/mock/tracing.c), paced at each rate asked for (0: as fast as the mock goes),
while `xenprobe watch --json` reads, pairs and judges. After the load stops the watch
gets DRAIN_S to catch up, then SIGTERM; its summary says how many calls it judged,
how many events were lost (the mock's buffer, a FIFO, was full) and how many it left
unread at the stop. The mock's buffer is its trace_pipe FIFO (a pipe: 64 KiB, some 400
lines), far smaller than the kernel's per-CPU ring buffer, so a short stall of the
reader costs events here sooner than on a host. Nothing is asserted; figures are
printed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests import watchhost

LOOP_C = Path(__file__).with_name("privcmd_loop.c")
INTACT_DOMID = 6    # watchhost.WATCH_SCENARIO: maximum_gpfn 0x10ffff, fits an int
DAMAGED_DOMID = 3   # 0x100000004: narrowed to 4, one JSON line a call
DRAIN_S = 2.0
READY_S = 60.0


@dataclass
class WatchRun:
    rate: int           # asked for; 0: unpaced
    domid: int
    calls: int          # issued by the load
    seconds: float      # the load's duration
    judged: int         # calls the watch paired and judged
    lost: int           # events the buffer could not take
    unread: int         # events still in the buffer at the stop
    error: str = ""

    @property
    def issued_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def clean(self) -> bool:
        return not self.error and self.lost == 0 and self.unread == 0 \
            and self.judged >= self.calls


def _build(tmp: Path) -> Path:
    out = tmp / "privcmd_loop"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", str(out), str(LOOP_C)],
                   check=True)
    return out


def _wait_ready(path: Path, proc: subprocess.Popen[str]) -> bool:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if '"ready"' in path.read_text():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def one(host: watchhost.WatchHost, loop: Path, rate: int, domid: int, seconds: float,
        tmp: Path) -> WatchRun:
    out = tmp / f"watch-{rate}-{domid}.jsonl"
    with out.open("w") as sink:
        watch = host.watch("--json", stdout=sink)
        try:
            if not _wait_ready(out, watch):
                return WatchRun(rate, domid, 0, 0, 0, 0, 0, "the watch never got ready: "
                                + (watch.stderr.read()[-300:] if watch.stderr and
                                   watch.poll() is not None else ""))
            load = subprocess.run([str(loop), str(seconds), str(rate), str(domid)],
                                  env=host.consumer_env, capture_output=True, text=True,
                                  check=False)
            time.sleep(DRAIN_S)
        finally:
            watch.send_signal(signal.SIGTERM)
            try:
                watch.wait(60)
            except subprocess.TimeoutExpired:
                watch.kill()
                watch.wait()
    if load.returncode != 0:
        return WatchRun(rate, domid, 0, 0, 0, 0, 0, f"load failed: {load.stderr[-300:]}")
    got = json.loads(load.stdout)
    lines = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    summary = next((x for x in lines if x.get("event") == "summary"), None)
    if summary is None:
        return WatchRun(rate, domid, got["calls"], got["seconds"], 0, 0, 0,
                        "no summary from the watch")
    return WatchRun(rate, domid, got["calls"], got["seconds"], int(summary["calls"]),
                    int(summary["lost"]), int(summary["unread"]))


def measure(tmp: Path, rates: list[int], seconds: float) -> list[WatchRun]:
    tmp.mkdir(parents=True, exist_ok=True)
    loop = _build(tmp)
    host = watchhost.make(tmp / "watchhost")
    runs = [one(host, loop, rate, INTACT_DOMID, seconds, tmp) for rate in rates]
    runs.append(one(host, loop, 0, DAMAGED_DOMID, seconds, tmp))
    return runs


def table(runs: list[WatchRun]) -> str:
    lines = ["| load (calls/s asked) | calls | each call | issued (calls/s) | judged "
             "| lost events | unread at stop | clean |",
             "|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in runs:
        if r.error:
            lines.append(f"| {r.rate or 'unpaced':,} | failed: {r.error} ||||||")
            continue
        kind = "damaged (printed)" if r.domid == DAMAGED_DOMID else "intact"
        lines.append(f"| {r.rate or 'unpaced'} | {r.calls:,} | {kind} "
                     f"| {r.issued_per_s:,.0f} | {r.judged:,} | {r.lost:,} | {r.unread:,} "
                     f"| {'yes' if r.clean else 'no'} |")
    best = max((r.issued_per_s for r in runs if r.clean and r.domid == INTACT_DOMID),
               default=0.0)
    top = max((r.issued_per_s for r in runs if not r.error), default=0.0)
    lines += ["", f"watch reader, mock host: judged every call with no event lost up to "
              f"{best:,.0f} calls/s ({2 * best:,.0f} events/s) of the rates tried; the "
              f"mock's privcmd emitted at most {top:,.0f} calls/s"
              + ("" if top >= 100_000 else " (below the issue's 100,000: the mock "
                 "cannot emit that fast here)")]
    return "\n".join(lines)
