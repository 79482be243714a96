# SPDX-License-Identifier: GPL-2.0-only
"""Arming and disarming the watch's probes, as a good citizen of the kernel's tracing.

Ownership is proved, never assumed: the watch holds an flock on run/xenprobe/
watch.lock for as long as it runs (the kernel drops it when the process dies, even
by SIGKILL), and before it creates anything it writes run/xenprobe/watch.state
naming what it will create. A start that gets the lock and finds a state file knows
its writer is dead, and removes exactly what the file names. Events of the group or
an instance of that name that no state file claims are not the watch's to remove:
the start refuses (exit 3) and says so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from xenprobe.support.errors import CannotProbe
from xenprobe.watch import module_file, probe_point, probes
from xenprobe.watch.paths import Paths
from xenprobe.watch.tracefs import Instance, Tracefs, TracefsError

log = structlog.get_logger("xenprobe.watch")

CLOCK = "global"  # one clock for all CPUs (trace_clock: "local" is per CPU)
STATE_FORMAT = 1
# Who owns what the state file names: a running `xenprobe watch` (it holds the lock),
# or the xenprobe service (its ExecStartPre armed, its ExecStopPost disarms; the
# sandboxed daemon only reads).
INTERACTIVE = "interactive"
SERVICE = "service"


class CannotWatch(CannotProbe):
    """The watch cannot run here; the message says why, in one line."""


def preflight(paths: Paths) -> Tracefs:
    """The host's tracefs if the watch may arm probes there, else CannotWatch."""
    if not paths.prefixed and os.geteuid() != 0:
        raise CannotWatch("the watch needs root (it writes to tracefs)")
    lockdown = _read(paths.lockdown)
    if lockdown is not None and "[confidentiality]" in lockdown:
        # security/lockdown: LOCKDOWN_KPROBES and LOCKDOWN_TRACEFS are confidentiality
        # reasons; integrity mode allows both.
        raise CannotWatch("kernel lockdown (confidentiality) forbids kprobes and tracefs")
    enabled = _read(paths.kprobes_enabled)
    if enabled is not None and enabled.strip() == "0":
        raise CannotWatch(f"kprobes are disabled ({paths.kprobes_enabled} is 0)")
    for root in paths.tracefs_candidates():
        if (root / "kprobe_events").exists():
            if not (root / "instances").is_dir():
                raise CannotWatch(f"{root} has no instances/ (a kernel before 3.19?)")
            return Tracefs(root)
        if (root / "trace").exists():
            raise CannotWatch(f"this kernel has no kprobe events ({root}/kprobe_events "
                              "missing: CONFIG_KPROBE_EVENTS)")
    raise CannotWatch(f"tracefs is not mounted at {paths.tracefs_candidates()[0]} "
                      f"(mount -t tracefs nodev {paths.tracefs_candidates()[0]})")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def locate(paths: Paths) -> tuple[Path, probe_point.ProbePoints]:
    try:
        return module_file.probe_points(paths)
    except (module_file.CannotLocate, probe_point.NotCertain) as e:
        raise CannotWatch(f"the probe point cannot be found with certainty: {e}") from None


@dataclass
class Armed:
    tracefs: Tracefs
    instance: Instance
    pipe: int
    events: tuple[str, ...]


def _arm(tracefs: Tracefs, points: probe_point.ProbePoints, buffer_kb: int,
         created: list[str]) -> Instance:
    """Creates the instance and the events (their names appended to `created` as they
    are defined) and enables them in the instance."""
    instance = tracefs.make_instance(probes.INSTANCE)
    instance.set_clock(CLOCK)
    instance.set_buffer_kb(buffer_kb)
    defs = probes.definitions(points)
    for d in defs:
        tracefs.define(d.text)
        created.append(d.name)
    for d in defs:
        instance.enable(probes.GROUP, d.name)
    return instance


def arm_for_service(paths: Paths, tracefs: Tracefs, points: probe_point.ProbePoints,
                    buffer_kb: int) -> None:
    """The service's ExecStartPre (outside its sandbox): arm and leave armed for the
    sandboxed daemon to read; the state file says the service owns them."""
    lock = _claim(paths)
    try:
        _clean_leftovers(paths, tracefs, service_start=True)
        _write_state(paths, [d.name for d in probes.definitions(points)], SERVICE)
        created: list[str] = []
        try:
            _arm(tracefs, points, buffer_kb, created)
        except TracefsError as e:
            _disarm(paths, tracefs, created, True)
            raise CannotWatch(f"cannot arm the probes: {e}") from None
    finally:
        os.close(lock)


def disarm_service(paths: Paths, tracefs: Tracefs | None) -> bool:
    """The service's ExecStopPost: remove what its state file names. False when there
    was nothing of the service's to remove."""
    lock = _claim(paths)
    try:
        state = _state(paths)
        if state.get("mode") != SERVICE:
            return False
        recorded = state.get("events")
        named = [e for e in recorded if isinstance(e, str)] \
            if isinstance(recorded, list) else []
        if tracefs is None:  # tracefs gone: nothing left in it to remove
            with contextlib.suppress(FileNotFoundError):
                (paths.run_dir / "watch.state").unlink()
            return True
        listed = probes.listed_events(tracefs.listing())
        _disarm(paths, tracefs, [n for n in named if n in listed], True)
        return True
    finally:
        os.close(lock)


@contextlib.contextmanager
def attached(paths: Paths, tracefs: Tracefs) -> Iterator[Armed]:
    """The service's probes, armed by its ExecStartPre, read by the sandboxed daemon:
    only trace_pipe is opened, nothing is created or removed here."""
    state = _state(paths)
    if state.get("mode") != SERVICE or not tracefs.has_instance(probes.INSTANCE):
        raise CannotWatch("no probes armed for the service (its ExecStartPre `xenprobe "
                          "watch --arm-for-service` did not run or failed)")
    instance = Instance(tracefs.instance_path(probes.INSTANCE))
    try:
        pipe = instance.open_pipe()
    except TracefsError as e:
        raise CannotWatch(str(e)) from None
    try:
        recorded = state.get("events")
        yield Armed(tracefs, instance, pipe,
                    tuple(e for e in recorded if isinstance(e, str))
                    if isinstance(recorded, list) else ())
    finally:
        os.close(pipe)


def service_armed(paths: Paths) -> bool:
    return _state(paths).get("mode") == SERVICE


@contextlib.contextmanager
def armed(paths: Paths, tracefs: Tracefs, points: probe_point.ProbePoints,
          buffer_kb: int) -> Iterator[Armed]:
    """The probes armed in the watch's own instance while the block runs; everything
    created is removed when it ends, however it ends."""
    lock = _claim(paths)
    try:
        _clean_leftovers(paths, tracefs)
        defs = probes.definitions(points)
        _write_state(paths, [d.name for d in defs])
        created: list[str] = []
        instance: Instance | None = None
        pipe = -1
        try:
            made = tracefs.has_instance(probes.INSTANCE)
            try:
                instance = _arm(tracefs, points, buffer_kb, created)
            finally:
                made = made or tracefs.has_instance(probes.INSTANCE)
            pipe = instance.open_pipe()
            yield Armed(tracefs, instance, pipe, tuple(created))
        except TracefsError as e:
            raise CannotWatch(f"cannot arm the probes: {e}") from None
        finally:
            if pipe >= 0:
                os.close(pipe)
            _disarm(paths, tracefs, created, made)
    finally:
        os.close(lock)


def _disarm(paths: Paths, tracefs: Tracefs, events: list[str], made_instance: bool
            ) -> None:
    """Instance first (that disables its events), then the definitions; the state file
    goes last, and only when everything is gone, so a failed removal is retried by the
    next start."""
    failures = []
    if made_instance:
        try:
            tracefs.remove_instance(probes.INSTANCE)
        except TracefsError as e:
            failures.append(str(e))
    for name in events:
        try:
            tracefs.undefine(f"-:{probes.GROUP}/{name}")
        except TracefsError as e:
            failures.append(str(e))
    if failures:
        for f in failures:
            log.warning("watch_cleanup_failed", error=f)
        return
    with contextlib.suppress(FileNotFoundError):
        (paths.run_dir / "watch.state").unlink()


def _claim(paths: Paths) -> int:
    try:
        paths.run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(paths.run_dir / "watch.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
    except OSError as e:
        raise CannotWatch(f"cannot create {paths.run_dir / 'watch.lock'}: {e.strerror}"
                          ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            holder = _state(paths).get("pid", "?")
            raise CannotWatch(f"another xenprobe watch (pid {holder}) holds the group "
                              f"{probes.GROUP}") from None
        raise CannotWatch(f"cannot lock {paths.run_dir / 'watch.lock'}: {e.strerror}"
                          ) from None
    return fd


def _state(paths: Paths) -> dict[str, object]:
    try:
        data = json.loads((paths.run_dir / "watch.state").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(paths: Paths, events: list[str], mode: str = INTERACTIVE) -> None:
    state = {"format": STATE_FORMAT, "pid": os.getpid(), "group": probes.GROUP,
             "instance": probes.INSTANCE, "events": events, "mode": mode}
    tmp = paths.run_dir / "watch.state.tmp"
    try:
        tmp.write_text(json.dumps(state) + "\n")
        tmp.replace(paths.run_dir / "watch.state")
    except OSError as e:
        raise CannotWatch(f"cannot write {paths.run_dir / 'watch.state'}: {e.strerror}"
                          ) from None


def _clean_leftovers(paths: Paths, tracefs: Tracefs, *, service_start: bool = False
                     ) -> None:
    """Remove what a dead watch's state file names (or, when the service starts, what
    its last run left); refuse when the group or the instance exists and nothing
    proves it is a dead watch's."""
    state = _state(paths)
    if state.get("mode") == SERVICE and not service_start:
        raise CannotWatch("the xenprobe service has the probes armed (serve --watch): "
                          "its metrics have the calls; or stop it first")
    try:
        listed = probes.listed_events(tracefs.listing())
    except TracefsError as e:
        raise CannotWatch(str(e)) from None
    if state:
        recorded = state.get("events")
        named = [e for e in recorded if isinstance(e, str)] \
            if isinstance(recorded, list) else []
        log.warning("watch_leftovers_removed", pid=state.get("pid"),
                    events=[e for e in named if e in listed],
                    instance=tracefs.has_instance(probes.INSTANCE))
        try:
            tracefs.remove_instance(probes.INSTANCE)
            for name in named:
                if name in listed:
                    tracefs.undefine(f"-:{probes.GROUP}/{name}")
        except TracefsError as e:
            raise CannotWatch(f"cannot remove a dead watch's leftovers: {e}") from None
        listed = probes.listed_events(tracefs.listing())
    if listed:
        raise CannotWatch(f"kprobe events {', '.join(f'{probes.GROUP}/{n}' for n in listed)}"
                          " exist and no watch state file claims them: not removed")
    if tracefs.has_instance(probes.INSTANCE):
        raise CannotWatch(f"the instance {tracefs.instance_path(probes.INSTANCE)} exists "
                          "and no watch state file claims it: not removed")
