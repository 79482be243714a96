# SPDX-License-Identifier: GPL-2.0-only
"""prometheus_client Collectors: the daemon's (the last sweep plus what spans sweeps)
and the one-shot one behind `check --textfile`. Neither issues a hypercall: they only
read what a sweep already produced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import psutil
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from xenprobe.exporter.metrics import collector_groups as collectors
from xenprobe.exporter.metrics import from_sweep as metrics
from xenprobe.exporter.metrics.families import gauge
from xenprobe.exporter.metrics.from_sweep import counter
from xenprobe.exporter.state import Snapshot
from xenprobe.exporter.watching import WatchCounts, known_ops
from xenprobe.probe.sweep import Sweep
from xenprobe.xen.consumers import Consumers

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
        yield from (metrics.without(m, collectors.left_out(s.config.disabled_collectors))
                    for m in _counters(s))
        yield from _config(s)
        if self._watch is not None:
            yield from _watch(self._watch())
        yield from self._agent()

    def _findings_of(self, s: Snapshot) -> list[Metric]:
        """findings_families of the snapshot, built once per sweep. prometheus_client
        only reads a family when it renders it, so concurrent scrapes may share one."""
        left_out = collectors.left_out(s.config.disabled_collectors)
        key = (s.sweep, s.config.max_domain_series, s.consumers, left_out)
        cached = self._findings
        if cached is not None and all(a is b or a == b
                                      for a, b in zip(cached[0], key, strict=True)):
            return cached[1]
        families = metrics.findings_families(s.sweep, s.config.max_domain_series,
                                             s.consumers, left_out)
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
        yield gauge("agent_threads", threads)
        locked = _locked_bytes()
        if locked is not None:
            yield gauge("agent_locked_memory_bytes", locked)


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
    yield gauge("up", int(h.up))
    yield gauge("stale", int(h.stale))
    yield gauge("sweep_running_seconds", round(h.running_for, 3))
    yield gauge("last_successful_sweep_timestamp_seconds", s.last_success)
    yield gauge("sweep_interval_seconds", s.config.interval)


def _counters(s: Snapshot) -> Iterator[Metric]:
    yield counter("xenprobe_sweeps_total", [((), s.sweeps)])
    yield counter("xenprobe_sweep_failures_total",
                  [((r,), n) for r, n in s.failures.items()])
    # A mismatch that lasts counts once, whatever the interval; the first sweep counts
    # every mismatch it finds; a reload never resets them.
    yield counter("xenprobe_mismatch_onsets_total", s.mismatches.items())
    yield counter("xenprobe_drifted_readings_total", s.drifts.items())
    yield counter("xenprobe_layer_errors_total", s.layer_errors.items())
    yield counter("xenprobe_textfile_write_errors_total", [((), s.textfile_errors)])
    yield metrics.retries_total(s.retries)


def _watch(w: WatchCounts) -> Iterator[Metric]:
    yield gauge("watch_armed", int(w.armed))
    yield counter("xenprobe_watch_calls_total",
                  [((op,), w.calls.get(op, 0)) for op in known_ops()])
    yield counter("xenprobe_watch_damaged_calls_total", w.damaged.items())
    yield gauge("watch_series_dropped", w.dropped)
    yield counter("xenprobe_watch_lost_events_total", [((), w.lost)])


def _config(s: Snapshot) -> Iterator[Metric]:
    yield gauge("config_last_reload_successful", int(s.config_reload_ok))
    yield gauge("config_last_reload_success_timestamp_seconds", s.config_reload_time)
    yield gauge("web_config_last_reload_successful", int(s.web_config_ok))


class ExporterMetrics(Collector):
    """prometheus_client's process_* and python_info, unless `disabled()` says not
    (--web.disable-exporter-metrics; read at each scrape, so a reload applies it)."""

    def __init__(self, disabled: Callable[[], bool], collectors: Iterable[Collector]
                 ) -> None:
        self._disabled = disabled
        self._collectors = tuple(collectors)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if not self._disabled():
            for c in self._collectors:
                yield from c.collect()


class OneShotCollector(Collector):
    """One sweep (or a failure to sweep), for node_exporter's textfile collector: the
    daemon's findings families, but no counters and no process metrics, which mean
    nothing in a file rewritten each run (retries are that sweep's count, a gauge)."""

    def __init__(self, sweep: Sweep | None, max_domain_series: int,
                 scenario: str | None = None, *, consumers: Consumers | None = None,
                 retries: Mapping[tuple[str, str], int] | None = None,
                 left_out: frozenset[str] = frozenset()) -> None:
        self.sweep = sweep
        self.left_out = left_out
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
        yield gauge("up", int(self.sweep is not None))
        if self.sweep is not None:
            yield gauge("last_successful_sweep_timestamp_seconds",
                        self.sweep.started + self.sweep.duration)
        yield from metrics.findings_families(self.sweep, self.max_domain_series,
                                             self.consumers, self.left_out)
        if self.retries is not None:
            yield metrics.sweep_retries(self.retries)


def one_shot_registry(sweep: Sweep | None, max_domain_series: int,
                      scenario: str | None = None, *, consumers: Consumers | None = None,
                      retries: Mapping[tuple[str, str], int] | None = None,
                      left_out: frozenset[str] = frozenset()) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OneShotCollector(sweep, max_domain_series, scenario,
                                       consumers=consumers, retries=retries,
                                       left_out=left_out))
    return registry
