# SPDX-License-Identifier: GPL-2.0-only
"""What the sweep thread publishes and everyone else reads: the last sweep, health, and
the counters that span sweeps (kept here, so a reload never resets them).

One lock guards it all; readers take an immutable Snapshot, so a scrape never waits on
a sweep and never sees half of one.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from xenprobe.exporter.config import Config
from xenprobe.exporter.metrics import from_sweep as metrics
from xenprobe.probe.sweep import Sweep
from xenprobe.xen.consumers import Consumers

FAILURE_REASONS = ("cannot_probe", "refused", "internal")


@dataclass(frozen=True)
class Health:
    ok: bool             # the last sweep attempt succeeded
    stale: bool          # the served data is too old, or a sweep is stuck
    stuck: bool          # a sweep has run longer than sweep_timeout
    running_for: float   # seconds the current sweep has run (0 when idle)
    age: float           # seconds since the last good sweep (or since start)

    @property
    def up(self) -> bool:
        return self.ok and not self.stale


@dataclass(frozen=True)
class Snapshot:
    config: Config
    health: Health
    sweep: Sweep | None
    last_success: float   # wall-clock end of the last good sweep, 0 before any
    last_error: str
    sweeps: int
    failures: dict[str, int]
    mismatches: dict[tuple[str, str, str], int]
    drifts: dict[tuple[str, str], int]
    layer_errors: dict[tuple[str, str], int]
    textfile_errors: int
    config_reload_ok: bool
    config_reload_time: float
    web_config_ok: bool = True
    scenario: str | None = None
    retries: dict[tuple[str, str], int] = field(default_factory=dict)
    consumers: Consumers | None = None
    sweep_retries: dict[tuple[str, str], int] = field(default_factory=dict)  # the last's


@dataclass
class State:
    config: Config
    scenario: str | None = None
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sweep: Sweep | None = None
    _success_mono: float | None = None
    _success_wall: float = 0.0
    _ok: bool = False
    _error: str = ""
    _running_since: float | None = None
    _sweeps: int = 0
    _failures: Counter[str] = field(default_factory=Counter)
    _mismatches: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    _drifts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _layer_errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    _textfile_errors: int = 0
    _reload_ok: bool = True
    _reload_time: float = field(default_factory=time.time)
    _retries: Counter[tuple[str, str]] = field(default_factory=Counter)
    _sweep_retries: dict[tuple[str, str], int] = field(default_factory=dict)
    _consumers: Consumers | None = None
    _in_mismatch: set[metrics.MismatchState] = field(default_factory=set)

    def __post_init__(self) -> None:
        # The label sets an alert reads with increase() at 0 from the first scrape,
        # before any sweep: a counter born at 1 gives increase() nothing to compare, so
        # the first event would never alert (XenprobeHypervisorErrors: layer raw). The
        # other counters' series appear at their first event: zeros for every quantity x
        # layer x verdict were most of a scrape, and no alert reads them.
        for pair in metrics.all_layer_error_labels():
            self._layer_errors[pair] += 0
        for pair in metrics.RETRIES:
            self._retries[pair] += 0

    # -- written by the sweep thread -----------------------------------------------------

    def sweep_began(self) -> None:
        with self._lock:
            self._running_since = time.monotonic()

    def sweep_succeeded(self, sweep: Sweep) -> None:
        with self._lock:
            self._running_since = None
            self._sweep = sweep
            self._success_mono = time.monotonic()
            self._success_wall = sweep.started + sweep.duration
            self._ok, self._error = True, ""
            self._sweeps += 1
            # Events, not states: a subject entering a mismatch state counts once, however
            # many sweeps it stays there (so the rate does not depend on `interval`).
            # Drifts and layer errors are readings, each one an event of its own.
            now = metrics.mismatch_states(sweep)
            self._mismatches.update(metrics.transitions(self._in_mismatch, now))
            self._in_mismatch = now
            self._drifts.update(metrics.drift_counts(sweep))
            self._layer_errors.update(metrics.layer_errors(sweep))

    def sweep_failed(self, reason: str, message: str) -> None:
        with self._lock:
            self._running_since = None
            self._ok, self._error = False, message
            self._sweeps += 1
            self._failures[reason] += 1

    def retried(self, counts: Counter[tuple[str, str]]) -> None:
        """Requests the transport or the host issued again during the last sweep, by
        (call, reason)."""
        with self._lock:
            self._retries.update(counts)
            self._sweep_retries = dict(counts)

    def consumers_seen(self, consumers: Consumers) -> None:
        with self._lock:
            self._consumers = consumers

    def textfile_failed(self) -> None:
        with self._lock:
            self._textfile_errors += 1

    # -- written by the main thread ------------------------------------------------------

    def reloaded(self, config: Config | None) -> None:
        """A reload finished: with the new config, or None when it was refused."""
        with self._lock:
            self._reload_ok = config is not None
            if config is not None:
                self.config = config
                self._reload_time = time.time()

    # -- read by anyone ------------------------------------------------------------------

    def health(self, now: float | None = None) -> Health:
        with self._lock:
            return self._health(time.monotonic() if now is None else now)

    def _health(self, now: float) -> Health:
        running = now - self._running_since if self._running_since is not None else 0.0
        stuck = running > self.config.sweep_timeout
        since = self._success_mono if self._success_mono is not None else self.started
        age = now - since
        stale = stuck or age > self.config.stale_seconds
        return Health(self._ok, stale, stuck, running, age)

    def snapshot(self, web_config_ok: bool = True) -> Snapshot:
        with self._lock:
            return Snapshot(
                config=self.config, health=self._health(time.monotonic()),
                sweep=self._sweep, last_success=self._success_wall,
                last_error=self._error, sweeps=self._sweeps,
                failures={r: self._failures[r] for r in FAILURE_REASONS},
                mismatches=dict(self._mismatches), drifts=dict(self._drifts),
                layer_errors=dict(self._layer_errors),
                textfile_errors=self._textfile_errors,
                config_reload_ok=self._reload_ok, config_reload_time=self._reload_time,
                web_config_ok=web_config_ok, scenario=self.scenario,
                retries=dict(self._retries), consumers=self._consumers,
                sweep_retries=dict(self._sweep_retries))
