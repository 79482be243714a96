# SPDX-License-Identifier: GPL-2.0-only
"""`serve --watch` on the mock host: other processes' damaged calls on /metrics, the
daemon's own sweeps not counted, everything disarmed when it stops."""

from __future__ import annotations

import signal
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


def test_serve_watch_that_cannot_arm_keeps_serving(tmp_path: Path) -> None:
    host = watchhost.make(tmp_path)
    (host.tracefs / "kprobe_events").unlink()
    with Serve("healthy", "--watch", env=host.env) as s:
        m = s.after_sweeps(1)
        assert value(m, "xenprobe_watch_armed") == 0
        assert value(m, "xenprobe_up") == 1
        assert "no kprobe events" in s.stderr()
