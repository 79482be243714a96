# SPDX-License-Identifier: GPL-2.0-only
"""prometheus_client Collectors: the daemon's (the last sweep plus what spans sweeps)
and the one-shot one behind `check --textfile`. Neither issues a hypercall: they only
read what a sweep already produced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import psutil
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from xenprobe.consumers import Consumers
from xenprobe.exporter import metrics
from xenprobe.exporter.metrics import counter, gauge
from xenprobe.exporter.state import Snapshot
from xenprobe.exporter.watching import WatchCounts, known_ops
from xenprobe.sweep import Sweep

PROC_STATUS = Path("/proc/self/status")


class DaemonCollector(Collector):
    """Serves a Snapshot of the daemon's State."""

    def __init__(self, snapshot: Callable[[], Snapshot],
                 watch: Callable[[], WatchCounts] | None = None) -> None:
        self._snapshot = snapshot
        self._watch = watch
        self._process = psutil.Process()
        # The findings families of the last sweep served, and what they were built from:
        # they change only with a new sweep, while scrapes come as often as Prometheus
        # likes, and building them walks the sweep's mismatches (thousands on a big host).
        self._findings: tuple[tuple[object, ...], list[Metric]] | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # keeps CollectorRegistry.register() from calling collect()

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        yield metrics.build_info()
        if s.scenario is not None:
            yield metrics.mock_info(s.scenario)
        yield from self._findings_of(s)
        yield from _health(s)
        yield from _counters(s)
        yield from _config(s)
        if self._watch is not None:
            yield from _watch(self._watch())
        yield from self._agent()

    def _findings_of(self, s: Snapshot) -> list[Metric]:
        """findings_families of the snapshot, built once per sweep. prometheus_client
        only reads a family when it renders it, so concurrent scrapes may share one."""
        key = (s.sweep, s.config.max_domain_series, s.consumers)
        cached = self._findings
        if cached is not None and all(a is b for a, b in zip(cached[0], key, strict=True)):
            return cached[1]
        families = metrics.findings_families(s.sweep, s.config.max_domain_series,
                                             s.consumers)
        self._findings = (key, families)
        return families

    def _agent(self) -> Iterator[Metric]:
        # prometheus_client's ProcessCollector already exports CPU, memory and file
        # descriptors (process_*). These two add what it lacks: threads (a growing
        # count means stuck scrapes or sweeps) and locked memory (hypercall buffers are
        # mlocked, and mlock failures make sweeps fail).
        try:
            threads = self._process.num_threads()
        except psutil.Error:
            return
        yield gauge("agent_threads", "Threads of the xenprobe process.", threads)
        locked = _locked_bytes()
        if locked is not None:
            yield gauge("agent_locked_memory_bytes",
                        "Memory the xenprobe process has locked (hypercall buffers).",
                        locked)


def _locked_bytes() -> int | None:
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("VmLck:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _health(s: Snapshot) -> Iterator[Metric]:
    h = s.health
    yield gauge("up", "1 when the last sweep succeeded and its data is fresh, 0 when "
                "xenprobe cannot read the hypervisor.", int(h.up))
    yield gauge("stale", "1 when the served values are old (the last good sweep is older "
                "than stale_after intervals, or a sweep is stuck past sweep_timeout).",
                int(h.stale))
    yield gauge("sweep_running_seconds", "How long the sweep in progress has been "
                "running, 0 between sweeps.", round(h.running_for, 3))
    yield gauge("last_successful_sweep_timestamp_seconds", "Unix time the last "
                "successful sweep finished, 0 before the first.", s.last_success)
    yield gauge("sweep_interval_seconds", "Configured seconds between sweeps.",
                s.config.interval)


def _counters(s: Snapshot) -> Iterator[Metric]:
    yield counter("sweeps", "Sweeps finished, successful or not.", [], [((), s.sweeps)])
    yield counter("sweep_failures", "Sweeps that failed, by reason (cannot_probe, or "
                  "refused and internal, which are bugs).", ["reason"],
                  [((r,), n) for r, n in s.failures.items()])
    yield counter("mismatches", "Subjects that entered this mismatch, once each time "
                  "one does, however long it lasts.",
                  ["quantity", "layer", "verdict"], s.mismatches.items())
    yield counter("drifts", "Readings whose value moved while it was read, summed over "
                  "sweeps.", ["quantity", "layer"], s.drifts.items())
    yield counter("layer_errors", "Readings a layer returned as an error, by errno, "
                  "summed over sweeps (the missing-domain probe's ESRCH left out).",
                  ["layer", "errno"], s.layer_errors.items())
    yield counter("textfile_write_errors", "Failed writes of the textfile.", [],
                  [((), s.textfile_errors)])
    yield metrics.retries_total(s.retries)


def _watch(w: WatchCounts) -> Iterator[Metric]:
    yield gauge("watch_armed", "1 while serve --watch has its kprobes armed (0: not "
                "armed, see the log's watch_failed line).", int(w.armed))
    yield counter("watch_calls", "Privcmd hypercalls of other processes the watch saw, "
                  "by op (xenprobe's own are in the sweep metrics).", ["op"],
                  [((op,), w.calls.get(op, 0)) for op in known_ops()])
    yield counter("watch_damaged_calls", "Privcmd hypercalls whose result reached the "
                  "calling process damaged, by op, subop, verdict and process name "
                  "(comm); at most max_domain_series series, the rest under "
                  "subop/process \"_other\".", ["op", "subop", "verdict", "process"],
                  w.damaged.items())
    yield gauge("watch_series_dropped", "Damaged calls counted under _other because "
                "the series cap was reached.", w.dropped)
    yield counter("watch_lost_events", "Trace events the kernel lost before the watch "
                  "read them (per-CPU overruns): calls that may have gone unjudged.",
                  [], [((), w.lost)])


def _config(s: Snapshot) -> Iterator[Metric]:
    yield gauge("config_last_reload_successful", "1 when the last configuration load "
                "(start or SIGHUP) succeeded.", int(s.config_reload_ok))
    yield gauge("config_last_reload_success_timestamp_seconds", "Unix time of the last "
                "successful configuration load.", s.config_reload_time)
    yield gauge("web_config_last_reload_successful", "1 when the web configuration "
                "file last parsed, as re-read on each change.", int(s.web_config_ok))


class OneShotCollector(Collector):
    """One sweep (or a failure to sweep), for node_exporter's textfile collector: the
    daemon's findings families, but no counters and no process metrics, which mean
    nothing in a file rewritten each run (retries are that sweep's count, a gauge)."""

    def __init__(self, sweep: Sweep | None, max_domain_series: int,
                 scenario: str | None = None, *, consumers: Consumers | None = None,
                 retries: Mapping[tuple[str, str], int] | None = None) -> None:
        self.sweep = sweep
        self.max_domain_series = max_domain_series
        self.scenario = scenario
        self.consumers = consumers
        self.retries = retries

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield metrics.build_info()
        if self.scenario is not None:
            yield metrics.mock_info(self.scenario)
        yield GaugeMetricFamily("xenprobe_up", "1 when the sweep succeeded, 0 when "
                                "xenprobe could not read the hypervisor.",
                                value=int(self.sweep is not None))
        if self.sweep is not None:
            yield gauge("last_successful_sweep_timestamp_seconds", "Unix time the sweep "
                        "finished.",
                        self.sweep.started + self.sweep.duration)
        yield from metrics.findings_families(self.sweep, self.max_domain_series,
                                             self.consumers)
        if self.retries is not None:
            yield metrics.sweep_retries(self.retries)


def one_shot_registry(sweep: Sweep | None, max_domain_series: int,
                      scenario: str | None = None, *, consumers: Consumers | None = None,
                      retries: Mapping[tuple[str, str], int] | None = None
                      ) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OneShotCollector(sweep, max_domain_series, scenario,
                                       consumers=consumers, retries=retries))
    return registry
