# SPDX-License-Identifier: GPL-2.0-only
"""Soak: `xenprobe serve` on the mock host, with faults injected and a guest ballooning,
scraped on loopback by parallel scrapers for a bounded time. Every scrape must be
answered (200, valid exposition), and the daemon's memory and thread count must stay
flat. It prints its figures.

XENPROBE_SOAK_SECONDS sets the duration (default 20; the slow tier runs it for several
minutes, README "Soak"), XENPROBE_SOAK_SCRAPERS the parallel scrapers (default 8).
Nothing is timed: latencies are printed, not asserted; the leak check compares the
daemon with itself, with generous margins.
"""

from __future__ import annotations

import http.client
import os
import signal
import statistics
import threading
import time
from importlib import resources
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.exporter_util import Serve, series, value, wait_for
from xenprobe.exporter.http import server

SECONDS = float(os.environ.get("XENPROBE_SOAK_SECONDS", "20"))
SCRAPERS = int(os.environ.get("XENPROBE_SOAK_SCRAPERS", "8"))
RSS_SLACK = 16 << 20  # bytes the daemon may grow by after warm-up, or 25%, the larger

FAULTS = """
# A latency on every physinfo; EAGAIN from the driver on every ioctl-path
# maximum_reservation (retried, then the ioctl layer's error); the hypervisor's EINTR on
# the first current_reservation reads, garbage physinfo answers early on, and a domain
# that vanishes part way through.
[[fault]]
kind = "delay"
op = "sysctl"
subop = 3
delay_ms = 1
count = -1

[[fault]]
layer = "driver"
op = "memory_op"
subop = 4
errno = "EAGAIN"
via = "ioctl"
count = -1

[[fault]]
op = "memory_op"
subop = 3
errno = "EINTR"
count = 40

[[fault]]
kind = "garbage"
op = "sysctl"
subop = 3
count = 12
"""


def soak_scenario(d: Path, vanish_after: int) -> Path:
    text = resources.files("xenprobe.mock.scenarios").joinpath("balloon.toml").read_text()
    text = text.replace("id = 12\n", f"id = 12\nvanish_after = {vanish_after}\n")
    path = d / "soak.toml"
    path.write_text(text + FAULTS)
    return path


class Scraper(threading.Thread):
    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.latencies: list[float] = []
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/metrics")
                r = conn.getresponse()
                body = r.read().decode()
                conn.close()
            except OSError as e:
                self.failures.append(f"{type(e).__name__}: {e}")
                continue
            self.latencies.append(time.perf_counter() - t)
            if r.status != 200:
                self.failures.append(f"HTTP {r.status}")
                continue
            try:
                names = {f.name for f in text_string_to_metric_families(body)}
            except ValueError as e:
                self.failures.append(f"invalid exposition: {e}")
                continue
            if "xenprobe_up" not in names:
                self.failures.append("no xenprobe_up in the scrape")


def idle_threads(proc: psutil.Process, want: int | None = None) -> int:
    """The daemon's thread count once no request is being answered. Connections have no
    threads of their own; the request workers (server.WORKERS) start as requests come and
    stay, so the count may grow by that many and no more."""
    def settled() -> int | None:
        n = proc.num_threads()
        return n if want is None or n <= want else None
    return wait_for("the daemon's threads to settle", settled)


def test_soak(tmp_path: Path) -> None:
    # The vanishing domain goes part way through: a sweep looks it up a dozen times.
    interval = 1
    scenario = soak_scenario(tmp_path, vanish_after=int(SECONDS / interval * 12 / 2))
    with Serve(str(scenario), "--interval", str(interval), "--sweep-timeout", "30") as serve:
        serve.after_sweeps(2)
        proc = psutil.Process(serve.proc.pid)
        threads_start = idle_threads(proc)
        stop = threading.Event()
        scrapers = [Scraper(serve.port, stop) for _ in range(SCRAPERS)]
        started = time.monotonic()
        for s in scrapers:
            s.start()
        time.sleep(max(3.0, SECONDS * 0.2))  # warm-up: caches, first connections
        rss_start = proc.memory_info().rss
        sweeps_start = value(serve.metrics(), "xenprobe_sweeps_total") or 0
        time.sleep(max(0.0, SECONDS - (time.monotonic() - started)))
        stop.set()
        for s in scrapers:
            s.join(60)
        elapsed = time.monotonic() - started
        rss_end = proc.memory_info().rss
        threads_end = idle_threads(proc, threads_start + server.WORKERS)
        final = serve.metrics()
        assert serve.proc.poll() is None, serve.stderr()
        # Nobody read the notify socket all along (its queue holds 10 datagrams): the
        # daemon dropped what did not fit, and still stops cleanly.
        serve.signal(signal.SIGTERM)
        assert serve.wait() == 0, serve.stderr()

    latencies = sorted(x for s in scrapers for x in s.latencies)
    failures = [f for s in scrapers for f in s.failures]
    sweeps = (value(final, "xenprobe_sweeps_total") or 0)
    retries = sum(series(final, "xenprobe_retries_total").values())
    errors = sum(series(final, "xenprobe_layer_errors_total").values())
    failed = sum(series(final, "xenprobe_sweep_failures_total").values())
    drifts = sum(series(final, "xenprobe_drifted_readings_total").values())
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0
    print(f"\nsoak: {elapsed:.1f} s, {SCRAPERS} scrapers, {len(latencies)} scrapes answered, "
          f"{len(failures)} failed; latency p50 {statistics.median(latencies) * 1000:.1f} ms "
          f"p99 {p99 * 1000:.1f} ms; {sweeps:.0f} sweeps ({sweeps - sweeps_start:.0f} "
          f"while measured, {failed:.0f} failed), {retries:.0f} retries, {errors:.0f} layer "
          f"errors, {drifts:.0f} drifts; "
          f"RSS {rss_start / 2**20:.1f} -> {rss_end / 2**20:.1f} MiB; "
          f"threads {threads_start} -> {threads_end}")

    assert not failures, failures[:10]
    assert latencies, "no scrape was answered"
    assert rss_end <= rss_start + max(RSS_SLACK, rss_start // 4), (rss_start, rss_end)
    assert threads_end <= threads_start + server.WORKERS
    # The faults were met and handled: retried, counted, and never a mismatch.
    assert sweeps > sweeps_start
    assert retries > 0 and errors > 0
    assert value(final, "xenprobe_up") == 1
    assert not [k for k, v in series(final, "xenprobe_mismatch_verdicts").items() if v]
    assert not [k for k, v in series(final, "xenprobe_mismatch_onsets_total").items() if v]
