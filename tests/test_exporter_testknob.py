# SPDX-License-Identifier: GPL-2.0-only
"""XENPROBE_TEST_HANG_SWEEP: the test-only knob that makes a sweep block, so that the
systemd watchdog can be tested on a real hypervisor (tests/realxen/test_service.py).
Off by default, and refused (exit 2, nothing started) outside XENPROBE_TEST_MODE=1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.exporter_util import DEADLINE, Serve, free_port, port_is_free, value
from xenprobe.exporter.daemon import hang_sweep
from xenprobe.support.errors import ConfigError


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XENPROBE_TEST_")}
    env.update(extra)
    return env


@pytest.mark.parametrize("mode", [None, "0", "yes", ""])
def test_refused_outside_test_mode(tmp_path: Path, mode: str | None) -> None:
    extra = {"XENPROBE_TEST_HANG_SWEEP": "1"}
    if mode is not None:
        extra["XENPROBE_TEST_MODE"] = mode
    config = tmp_path / "xenprobe.toml"
    config.write_text("")
    port = free_port()
    p = subprocess.run([sys.executable, "-m", "xenprobe", "serve", "--mock", "healthy",
                        "--config", str(config), "--listen-address", f"127.0.0.1:{port}"],
                       env=serve_env(**extra), capture_output=True, text=True,
                       timeout=DEADLINE, check=False)
    assert p.returncode == 2, p.stderr
    assert ("xenprobe: error: XENPROBE_TEST_HANG_SWEEP is a test-only setting (it makes a "
            "sweep hang to test the systemd watchdog) and is refused unless "
            "XENPROBE_TEST_MODE=1 is set too") in p.stderr
    assert "Traceback" not in p.stderr
    assert port_is_free(port)


def test_off_by_default_and_validated() -> None:
    assert hang_sweep({}) is None
    assert hang_sweep({"XENPROBE_TEST_MODE": "1"}) is None
    assert hang_sweep({"XENPROBE_TEST_MODE": "1", "XENPROBE_TEST_HANG_SWEEP": "3"}) == 3
    for bad in ("0", "-1", "x", "1.5"):
        with pytest.raises(ConfigError, match="expected a sweep number"):
            hang_sweep({"XENPROBE_TEST_MODE": "1", "XENPROBE_TEST_HANG_SWEEP": bad})


def test_in_test_mode_the_nth_sweep_blocks_and_the_watchdog_pings_stop() -> None:
    env = serve_env(XENPROBE_TEST_MODE="1", XENPROBE_TEST_HANG_SWEEP="2")
    with Serve("healthy", "--interval", "1", "--sweep-timeout", "1", env=env,
               watchdog_usec=400_000) as serve:
        serve.notify.expect("a first WATCHDOG=1", lambda m: m.get("WATCHDOG") == "1")
        serve.notify.expect("STATUS saying the sweep is stuck",
                            lambda m: "stuck" in m.get("STATUS", ""))
        later = serve.notify.drain(3.0)
        assert not [m for m in later if m.get("WATCHDOG") == "1"], later
        m = serve.metrics()
        assert value(m, "xenprobe_sweeps_total") == 1  # the first sweep ran; the second hangs
        assert value(m, "xenprobe_stale") == 1
        serve.signal(signal.SIGTERM)
        assert serve.wait() == 0
        err = serve.stderr()
        assert '"test_hang_sweep"' in err and '"sweep_stuck"' in err
