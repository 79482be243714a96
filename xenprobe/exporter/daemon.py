# SPDX-License-Identifier: GPL-2.0-only
"""`xenprobe serve`: the sweep thread, the HTTP thread, and the main thread that owns
signals and talks to systemd.

- The sweep thread probes every `interval` seconds and publishes into State; it is the
  only thread that issues hypercalls.
- The main thread sends READY=1 once the device is open and the port is bound, then
  WATCHDOG=1 only while no sweep has been running longer than `sweep_timeout`: a sweep
  stuck in a hypercall stops the pings, and systemd restarts the service instead of
  letting it serve stale data forever. /metrics says so meanwhile (xenprobe_stale 1).
- SIGHUP re-reads the config file (flags still win) and applies it whole or not at all;
  counters live in State and survive. SIGTERM and SIGINT stop cleanly.

Test only: XENPROBE_TEST_HANG_SWEEP=N makes the Nth sweep of the process block (as a
sweep stuck in a hypercall would), so that the systemd watchdog can be tested on a real
hypervisor, where no mock can hang a hypercall. It is refused (exit 2) unless
XENPROBE_TEST_MODE=1 is set as well.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import stat
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import structlog
from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.registry import CollectorRegistry

from xenprobe import __version__
from xenprobe.exporter import config as configuration
from xenprobe.exporter.config import Config
from xenprobe.exporter.http.server import App, Server
from xenprobe.exporter.metrics import collector_groups as collectors
from xenprobe.exporter.metrics import textfile
from xenprobe.exporter.metrics.collector import DaemonCollector, ExporterMetrics, one_shot_registry
from xenprobe.exporter.notify import Notifier
from xenprobe.exporter.state import Health, State
from xenprobe.exporter.watching import WatchLoop
from xenprobe.exporter.web import config as webconfig
from xenprobe.exporter.web.watcher import Watcher
from xenprobe.probe.session import Session
from xenprobe.probe.sweep import Sweep
from xenprobe.support import logs
from xenprobe.support.errors import ConfigError, Refused, XenprobeError
from xenprobe.xen import consumers

log = structlog.get_logger("xenprobe.exporter")

STOP_WAIT = 5.0  # seconds SIGTERM waits for a sweep in progress to finish

TEST_MODE_ENV = "XENPROBE_TEST_MODE"
HANG_SWEEP_ENV = "XENPROBE_TEST_HANG_SWEEP"


def hang_sweep(env: Mapping[str, str]) -> int | None:
    """The sweep the test-only knob makes block, or None; ConfigError outside test mode."""
    raw = env.get(HANG_SWEEP_ENV, "")
    if not raw:
        return None
    if env.get(TEST_MODE_ENV) != "1":
        raise ConfigError(f"{HANG_SWEEP_ENV} is a test-only setting (it makes a sweep hang "
                          f"to test the systemd watchdog) and is refused unless "
                          f"{TEST_MODE_ENV}=1 is set too",
                          f"remove {HANG_SWEEP_ENV} from the environment")
    try:
        n = int(raw, 10)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{HANG_SWEEP_ENV}: expected a sweep number (1 or more), got {raw!r}")
    return n


def configure_logging(config: Config) -> None:
    fmt = config.log_format
    logs.configure(config.log_level, json=None if fmt == "auto" else fmt == "json")


class SweepLoop:
    """Sweeps every `interval` seconds (start to start) until stopped."""

    def __init__(self, state: State, device: Session | None) -> None:
        self.state = state
        self.device = device
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._last: object = None  # the last sweep's findings, or its failure message
        self._thread = threading.Thread(target=self._run, name="xenprobe-sweep",
                                        daemon=True)  # may be stuck in a hypercall

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Ask the loop to end; whether it did within `timeout` seconds."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        last: float | None = None
        try:
            while not self._stop.is_set():
                if last is not None:
                    # Recomputed after every wake-up: a reload may change the interval.
                    delay = last + self.state.config.interval - time.monotonic()
                    if delay > 0:
                        self._wake.wait(delay)
                        self._wake.clear()
                        continue
                last = time.monotonic()
                self._once()
        finally:
            if self.device is not None:
                self.device.close()
                self.device = None

    def _once(self) -> None:
        config = self.state.config
        self.state.sweep_began()
        try:
            if self.device is None:
                self.device = Session.open()
            sweep = self.device.sweep(config.attempts)
        except Exception as e:
            self._retried()
            self._failed(e)
            return
        self._retried()
        self.state.sweep_succeeded(sweep)
        found = sorted((r.probe.label, r.probe.quantity.value, layer, v.value)
                       for r in sweep.mismatches for layer, v in r.mismatches.items())
        # Log at info only when the findings change: a steady state is in the metrics,
        # not in a journal line every interval.
        emit = log.info if found != self._last else log.debug
        self._last = found
        emit("sweep", probes=len(sweep.results), domains=sweep.domains,
             mismatches=len(found), seconds=round(sweep.duration, 4))
        self._textfile(config, sweep)

    def _retried(self) -> None:
        """Hand the sweep's retries to the counters, and look at who else holds privcmd
        open (in this thread, so a scrape never walks /proc)."""
        # No device: none retried this time (and the last sweep's count is not this one's).
        self.state.retried(self.device.take_retries() if self.device is not None
                           else Counter())
        try:
            found = consumers.scan_host(self.state.scenario is not None,
                                        exclude={os.getpid()})
        except Exception:  # never let the look-around end the sweep thread
            log.exception("consumer_scan_failed")
            return
        self.state.consumers_seen(found)

    def _failed(self, e: Exception) -> None:
        if isinstance(e, Refused):
            reason, message = "refused", e.message
        elif isinstance(e, XenprobeError):
            reason, message = "cannot_probe", e.message
        else:
            reason, message = "internal", f"{type(e).__name__}: {e}"
        if reason == "internal":
            log.exception("sweep_failed", reason=reason)
        elif self._last != message:  # the same failure again: once is enough
            log.error("sweep_failed", reason=reason, error=message)
        self._last = message
        self.state.sweep_failed(reason, message)
        # Open afresh next time: the device or the hypervisor may have changed.
        if self.device is not None:
            with contextlib.suppress(Exception):
                self.device.close()
            self.device = None
        self._textfile(self.state.config, None)

    def _textfile(self, config: Config, sweep: Sweep | None) -> None:
        if config.textfile is None:
            return
        s = self.state.snapshot()
        registry = one_shot_registry(sweep, config.max_domain_series, self.state.scenario,
                                     left_out=collectors.left_out(
                                         config.disabled_collectors),
                                     consumers=s.consumers, retries=s.sweep_retries)
        try:
            textfile.write_registry(config.textfile, registry)
        except OSError as e:
            self.state.textfile_failed()
            log.error("textfile_write_failed", path=str(config.textfile),
                      error=e.strerror)


class HangingSweepLoop(SweepLoop):
    """Test only (see hang_sweep): the loop whose `hang_at`-th sweep blocks until the
    daemon stops, as a sweep stuck in a hypercall would."""

    def __init__(self, state: State, device: Session | None, hang_at: int) -> None:
        super().__init__(state, device)
        self.hang_at = hang_at
        self._count = 0

    def _once(self) -> None:
        self._count += 1
        if self._count != self.hang_at:
            super()._once()
            return
        self.state.sweep_began()
        log.warning("test_hang_sweep", sweep=self._count,
                    note=f"{HANG_SWEEP_ENV}: this sweep blocks until the daemon stops")
        self._stop.wait()


def unexpected(e: BaseException) -> str:
    """A one-line reason for an exception nobody anticipated (no traceback: it is
    about the input, and the journal is read by an operator)."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, MemoryError):
        return "too large to load"
    text = " ".join(str(e).split())
    text = text if len(text) <= 200 else text[:200] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class SafeWatcher(Watcher):
    """Watcher, but a re-read that fails in a way the loader did not expect is
    a failed reload like any other: the scrape is still answered with the config in
    force, one log line says why, and last_ok turns 0. A file replaced by a FIFO or a
    device is not opened at all: reading it would block every scrape."""

    _refused: Path | None = None  # the special file last refused (logged once)

    def current(self) -> webconfig.WebConfig:
        special = self._special_file()
        if special is not None:
            self.last_ok = False
            if special != self._refused:
                log.error("web_config_reload_failed",
                          error=f"{special} is not a regular file",
                          keeping="the previous web configuration")
            self._refused = special
            return self.config
        self._refused = None
        try:
            return super().current()
        except Exception as e:
            self.last_ok = False
            log.error("web_config_reload_failed", error=unexpected(e),
                      keeping="the previous web configuration")
            return self.config

    def _special_file(self) -> Path | None:
        if self.path is None:
            return None
        for f in {self.path, *self.config.files}:
            try:
                mode = os.stat(f).st_mode
            except OSError:
                continue  # gone or unreadable: the loader says so
            if not stat.S_ISREG(mode):
                return f
        return None


class Daemon:
    def __init__(self, path: Path, *, explicit: bool, overrides: Mapping[str, str],
                 scenario: str | None = None, notifier: Notifier | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.path, self.explicit, self.overrides = path, explicit, dict(overrides)
        self.scenario = scenario
        self.hang_at = hang_sweep(os.environ if env is None else env)
        self.notifier = notifier or Notifier()
        self._stop_requested = False
        self._reload_requested = False

    def _load(self) -> tuple[Config, webconfig.WebConfig]:
        """Both configurations, or ConfigError whatever went wrong: at start-up that is
        exit 2 naming the file, on SIGHUP a refused reload (never a dead daemon)."""
        config = configuration.load(self.path, explicit=self.explicit,
                                    overrides=self.overrides)
        web_path = config.web_config_file
        if web_path is None:
            return config, webconfig.WebConfig()
        try:
            if not stat.S_ISREG(os.stat(web_path).st_mode):  # a FIFO would block
                raise ConfigError(f"web config {web_path} is not a regular file")
            return config, webconfig.parse(web_path)
        except ConfigError:
            raise
        except OSError as e:
            raise ConfigError(f"cannot read web config {web_path}: {e.strerror}") from None
        except Exception as e:  # what the loader did not expect: still the file's fault
            raise ConfigError(f"web config {web_path}: cannot be loaded: "
                              f"{unexpected(e)}") from None

    def run(self) -> int:
        # Everything that can be wrong with the configuration is found here, before
        # the device is opened or a port bound.
        config, web = self._load()
        configure_logging(config)
        if web.users and web.tls is None:
            log.warning("basic_auth_without_tls",
                        note="passwords cross the network in clear text")
        state = State(config, self.scenario)
        watcher = SafeWatcher(None)
        watcher.replace(config.web_config_file, web)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ExporterMetrics(
            lambda: state.config.disable_exporter_metrics,
            (ProcessCollector(registry=None), PlatformCollector(registry=None))))
        # The watch is read at start only: a reload does not arm or disarm it.
        self.watch = WatchLoop(config.max_domain_series) if config.watch else None
        registry.register(DaemonCollector(lambda: state.snapshot(watcher.last_ok),
                                          self.watch.snapshot if self.watch else None))
        # The port before the device: a port in use (a setting) fails first, and no
        # hypercall is issued by a daemon that could not have served it.
        server = Server(config.listen_address, App(registry, watcher, state.health,
                                                   config.telemetry_path))
        try:
            device = Session.open()  # CannotProbe: not dom0, no device, not root
        except BaseException:
            server.stop()
            raise
        self.state, self.watcher, self.server = state, watcher, server
        self.loop = (SweepLoop(state, device) if self.hang_at is None
                     else HangingSweepLoop(state, device, self.hang_at))
        with _Signals(self) as signals:
            self.loop.start()
            if self.watch is not None:
                # The release the daemon detected with its own XENVER_version: the
                # errno sets the watch judges other programs' errors by.
                ident = device.host.identity
                self.watch.start((ident.major, ident.minor))
            server.start()
            log.info("serving", address=server.address, version=__version__,
                     interval=config.interval, mock_scenario=self.scenario)
            if self.hang_at is not None:
                log.warning("test_mode", setting=HANG_SWEEP_ENV, sweep=self.hang_at)
            status = self._status(state.health())
            self.notifier.ready(status)
            self._main(signals, status)
        return self._shutdown()

    # -- main thread ---------------------------------------------------------------------

    def _main(self, signals: _Signals, last_status: str) -> None:
        watchdog = self.notifier.watchdog_seconds
        tick = min(1.0, watchdog / 4) if watchdog else 1.0
        last_ping = 0.0
        stuck_reported = False
        while True:
            signals.wait(tick)
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
            if self._stop_requested:
                return
            health = self.state.health()
            healthy = not health.stuck and self.server.alive() and self.loop.alive()
            now = time.monotonic()
            if watchdog and healthy and now - last_ping >= watchdog / 4:
                self.notifier.watchdog()
                last_ping = now
            if health.stuck and not stuck_reported:
                log.error("sweep_stuck", seconds=round(health.running_for, 1),
                          watchdog="pings stopped" if watchdog else "not armed")
            stuck_reported = health.stuck
            status = self._status(health)
            if status != last_status:
                self.notifier.status(status)
                last_status = status

    def _status(self, health: Health) -> str:
        s = self.state.snapshot()
        where = f"serving {self.server.address}"
        if health.stuck:
            return (f"sweep stuck for {self.state.config.sweep_timeout:g}+ s (in a "
                    f"hypercall?); watchdog pings stopped; {where}")
        if s.sweeps == 0:
            return f"first sweep in progress; {where}"
        if not health.ok:
            return f"sweep {s.sweeps} failed: {s.last_error}; {where}"
        sweep = s.sweep
        assert sweep is not None
        found: dict[str, int] = {}
        for r in sweep.mismatches:
            for v in r.mismatches.values():
                found[v.value] = found.get(v.value, 0) + 1
        what = ", ".join(f"{v} {n}" for v, n in sorted(found.items()))
        result = (f"{sum(found.values())} mismatches ({what})" if found
                  else "every layer agrees")
        stale = " (stale)" if health.stale else ""
        return (f"sweep {s.sweeps}{stale}: {result} in {len(sweep.results)} probes, "
                f"{sweep.domains} domains; {where}")

    def _reload(self) -> None:
        self.notifier.reloading()
        log.info("reloading", path=str(self.path))
        try:
            config, web = self._load()
            if config.listen_address != self.server.listen:
                self.server.replace(config.listen_address)
        except Exception as e:  # whatever the cause, the daemon keeps running as it was
            why = e.message if isinstance(e, ConfigError) else unexpected(e)
            log.error("reload_failed", error=why, keeping="the running configuration")
            self.state.reloaded(None)
        else:
            self.watcher.replace(config.web_config_file, web)
            self.server.app.telemetry_path = config.telemetry_path
            self.state.reloaded(config)
            configure_logging(config)
            self.loop.wake()
            log.info("reloaded", address=self.server.address, interval=config.interval)
        self.notifier.ready(self._status(self.state.health()))

    def _shutdown(self) -> int:
        self.notifier.stopping()
        log.info("stopping")
        self.server.stop()
        # A sweep takes milliseconds: wait for one in progress, unless it is stuck.
        wait = 0.0 if self.state.health().stuck else STOP_WAIT
        if not self.loop.stop(wait):
            # Only a hung hypercall keeps it; the thread is a daemon and dies with us.
            log.warning("sweep_thread_stuck", note="exiting without it")
        if self.watch is not None and not self.watch.stop(STOP_WAIT):
            log.warning("watch_thread_stuck", note="its probes stay until the next start")
        self.notifier.close()
        return 0

    # -- called from the signal handlers: set flags only, no locks --------------------

    def request_stop(self) -> None:
        self._stop_requested = True

    def request_reload(self) -> None:
        self._reload_requested = True


class _Signals:
    """SIGHUP, SIGTERM and SIGINT as flags plus a wake-up of the main loop.

    The handlers take no lock (a handler runs in the main thread, possibly while it
    holds one); the wake-up goes through signal.set_wakeup_fd and a socket pair.
    """

    HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._old_fd = -1
        self._old: dict[int, object] = {}

    def __enter__(self) -> _Signals:
        self._old_fd = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        for sig in self.HANDLED:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._old_fd)
        self._r.close()
        self._w.close()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.daemon.request_reload()
        else:
            self.daemon.request_stop()

    def wait(self, timeout: float) -> None:
        select.select([self._r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while self._r.recv(512):
                pass
