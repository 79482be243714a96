# SPDX-License-Identifier: GPL-2.0-only
"""`serve --watch` on the mock host: other processes' damaged calls on /metrics, the
daemon's own sweeps not counted, everything disarmed when it stops."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests import watchhost
from tests.exporter_util import Serve, series, value, wait_for
from tests.test_watch_mock import INTACT, TRUNCATED


def test_serve_watch_exports_damaged_calls(tmp_path: Path) -> None:
    host = watchhost.make(tmp_path)
    with Serve("healthy", "--watch", env=host.env) as s:
        wait_for("the watch armed",
                 lambda: value(s.metrics(), "xenprobe_watch_armed") == 1 or None)
        s.after_sweeps(1)
        host.consumer(TRUNCATED, *INTACT, name="guestpfn")

        def damaged() -> dict[tuple[tuple[str, str], ...], float] | None:
            found = series(s.metrics(), "xenprobe_watch_damaged_calls_total")
            return found or None
        found = wait_for("a damaged call on /metrics", damaged)
        assert found == {(("op", "memory_op"), ("process", "guestpfn"),
                          ("subop", "maximum_gpfn"), ("verdict", "truncated")): 1.0}
        m = s.metrics()
        # Only the consumer's calls: the daemon's own sweeps (also on the mock privcmd,
        # also traced) are in the sweep metrics, not here.
        assert value(m, "xenprobe_watch_calls_total", op="memory_op") == 2
        assert value(m, "xenprobe_watch_calls_total", op="xen_version") == 1
        assert value(m, "xenprobe_watch_calls_total", op="sysctl") == 0
        assert value(m, "xenprobe_watch_lost_events_total") == 0
        assert host.instances() == ["xenprobe_watch"]
        s.signal(signal.SIGTERM)
        assert s.wait() == 0
    assert host.kprobe_events() == [] and host.instances() == []


def test_serve_watch_exports_forged_and_out_of_range(tmp_path: Path) -> None:
    """No kernel log here (as inside xenprobe.service): the release comes from the
    daemon's own sweep's xen_version call, which the watch sees but does not count."""
    host = watchhost.make(tmp_path, watchhost.FORGED_DOMAINS)
    with Serve("healthy", "--watch", env=host.env) as s:
        wait_for("the watch armed",
                 lambda: value(s.metrics(), "xenprobe_watch_armed") == 1 or None)
        s.after_sweeps(1)
        host.consumer("12,14,8", "12,14,9", "12,14,7", "12,14,99", name="dumpcore")

        def damaged() -> dict[tuple[tuple[str, str], ...], float] | None:
            found = series(s.metrics(), "xenprobe_watch_damaged_calls_total")
            return found if len(found) >= 3 else None
        found = wait_for("the consumer's calls on /metrics", damaged)
        # -22 forged; 0x8000000000000000 out of range and truncated; -3 and the missing
        # domain's ESRCH are errors maximum_gpfn can return: not counted.
        key = (("op", "memory_op"), ("process", "dumpcore"), ("subop", "maximum_gpfn"))
        assert found == {(*key, ("verdict", v)): 1.0
                         for v in ("forged_errno", "out_of_range", "truncated")}
        assert value(s.metrics(), "xenprobe_watch_calls_total", op="memory_op") == 4
        s.signal(signal.SIGTERM)
        assert s.wait() == 0


def test_serve_watch_that_cannot_arm_keeps_serving(tmp_path: Path) -> None:
    host = watchhost.make(tmp_path)
    (host.tracefs / "kprobe_events").unlink()
    with Serve("healthy", "--watch", env=host.env) as s:
        m = s.after_sweeps(1)
        assert value(m, "xenprobe_watch_armed") == 0
        assert value(m, "xenprobe_up") == 1
        assert "no kprobe events" in s.stderr()


def _helper(host: watchhost.WatchHost, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xenprobe", "watch", *args],
                          env=host.env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_the_units_helpers_arm_for_the_sandboxed_daemon(tmp_path: Path) -> None:
    """xenprobe.service: ExecStartPre=+ arms (outside the sandbox), the daemon only
    reads trace_pipe, ExecStopPost=+ disarms; others' events are never touched."""
    host = watchhost.make(tmp_path)
    with open(host.tracefs / "kprobe_events", "a") as f:
        f.write("p:kprobes/someone_else xen_privcmd:privcmd_ioctl\n")
    off = tmp_path / "off.toml"
    off.write_text("watch = false\n")
    on = tmp_path / "on.toml"
    on.write_text("watch = true\n")
    # Without the key the helper does nothing.
    p = _helper(host, "--arm-for-service", "--config", str(off))
    assert p.returncode == 0 and host.instances() == [], p.stderr
    p = _helper(host, "--arm-for-service", "--config", str(on))
    assert p.returncode == 0, p.stderr
    assert host.instances() == ["xenprobe_watch"]
    assert "xenprobe_watch/result" in host.kprobe_events()
    # An interactive watch does not take the service's probes over, nor remove them.
    p = _helper(host, "--json")
    assert p.returncode == 3 and "xenprobe service has the probes armed" in p.stderr
    assert host.instances() == ["xenprobe_watch"]
    with Serve("healthy", "--config", str(on), env=host.env) as s:
        wait_for("the watch attached",
                 lambda: value(s.metrics(), "xenprobe_watch_armed") == 1 or None)
        host.consumer(TRUNCATED, name="toolstack")
        wait_for("the damaged call on /metrics", lambda: series(
            s.metrics(), "xenprobe_watch_damaged_calls_total") or None)
        s.signal(signal.SIGTERM)
        assert s.wait() == 0
    # The daemon created and removed nothing: that is the helpers' job.
    assert host.instances() == ["xenprobe_watch"]
    p = _helper(host, "--disarm-for-service")
    assert p.returncode == 0, p.stderr
    assert host.instances() == [] and host.kprobe_events() == ["kprobes/someone_else"]
    # Disarming again (ExecStopPost after a failed start) is harmless.
    assert _helper(host, "--disarm-for-service").returncode == 0
