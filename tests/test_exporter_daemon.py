# SPDX-License-Identifier: GPL-2.0-only
"""`xenprobe serve` as systemd runs it: a real subprocess on the mock host, a real
notify socket. READY/STATUS/WATCHDOG/RELOADING/STOPPING, SIGHUP and SIGTERM, the
watchdog on a hung hypercall, and configuration errors that start nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest

from tests.exporter_util import (
    DEADLINE,
    NotifySocket,
    Serve,
    free_port,
    http_get,
    port_is_free,
    samples,
    series,
    short_tmp,
    value,
    wait_for,
)
from tests.mockhost import read_log


def hang_scenario(d: Path) -> Path:
    """The healthy host, but XENMEM_current_reservation never returns."""
    path = d / "hang.toml"
    healthy = resources.files("xenprobe.mock.scenarios").joinpath("healthy.toml")
    path.write_text(healthy.read_text()
                    + '\n[hypervisor]\nhang = [{op = "memory_op", subop = 3}]\n')
    return path


def test_serves_the_last_sweep(tmp_path: Path) -> None:
    with Serve("large-memory") as serve:
        m = serve.after_sweeps(1)
        assert value(m, "xenprobe_up") == 1 and value(m, "xenprobe_stale") == 0
        assert value(m, "xenprobe_mock_info", scenario="large-memory") == 1
        assert value(m, "xenprobe_mismatch_verdicts", quantity="maximum_ram_page", layer="syscall",
                     verdict="sign_flipped") == 1
        assert value(m, "xenprobe_domain_mismatch", quantity="current_reservation",
                     layer="ioctl", verdict="sign_flipped", domid="3") == 1
        assert not [k for k, v in series(m, "xenprobe_mismatch_verdicts").items()
                    if ("quantity", "xen_version") in k and v]
        status, _, body = serve.get("/-/healthy")
        assert (status, body) == (200, b"Healthy\n")
        assert "every layer agrees" not in serve.notify.messages[0]["STATUS"]


def test_scrapes_issue_no_hypercalls(tmp_path: Path) -> None:
    log = tmp_path / "mock.log"
    env = dict(os.environ, XENPROBE_MOCK_LOG=str(log))
    with Serve("large-memory", "--interval", "3600", env=env) as serve:
        serve.after_sweeps(1)
        before = len(read_log(log))
        assert before > 0  # the mock logs every hypercall of the sweep
        for path in ("/metrics", "/", "/-/healthy", "/metrics"):
            assert serve.get(path)[0] == 200
        assert len(read_log(log)) == before


def test_watchdog_pings_while_sweeps_run() -> None:
    with Serve("healthy", "--interval", "1", watchdog_usec=400_000) as serve:
        for _ in range(3):
            serve.notify.expect("WATCHDOG=1", lambda m: m.get("WATCHDOG") == "1")
        assert serve.after_sweeps(2)


def test_a_hung_hypercall_stops_the_watchdog_and_shows_as_stale(tmp_path: Path) -> None:
    scenario = hang_scenario(tmp_path)
    with Serve(str(scenario), "--interval", "1", "--sweep-timeout", "1",
               watchdog_usec=400_000) as serve:
        serve.notify.expect("a first WATCHDOG=1", lambda m: m.get("WATCHDOG") == "1")
        serve.notify.expect("STATUS saying the sweep is stuck",
                            lambda m: "stuck" in m.get("STATUS", ""))
        # Ten watchdog periods without a ping: systemd would have restarted it.
        later = serve.notify.drain(4.0)
        assert not [m for m in later if m.get("WATCHDOG") == "1"], later
        m = serve.metrics()
        assert value(m, "xenprobe_stale") == 1 and value(m, "xenprobe_up") == 0
        assert (value(m, "xenprobe_sweep_running_seconds") or 0) > 1
        assert value(m, "xenprobe_sweeps_total") == 0
        status, _, body = serve.get("/-/healthy")
        assert status == 503 and b"stuck" in body
        # SIGTERM still ends it, though a thread is blocked in the hypercall.
        serve.signal(signal.SIGTERM)
        assert serve.wait() == 0
        assert '"sweep_stuck"' in serve.stderr()


def reload(serve: Serve) -> dict[str, str]:
    serve.signal(signal.SIGHUP)
    serve.notify.expect("RELOADING=1", lambda m: m.get("RELOADING") == "1")
    return serve.notify.expect("READY=1 after the reload", lambda m: m.get("READY") == "1")


def test_sighup_reloads_and_keeps_the_counters(tmp_path: Path) -> None:
    config = tmp_path / "xenprobe.toml"
    config.write_text("interval = 1\n")
    with Serve("large-memory", config=config) as serve:
        before = serve.after_sweeps(3)
        counted = value(before, "xenprobe_mismatch_onsets_total", quantity="maximum_ram_page",
                        layer="ioctl", verdict="sign_flipped")
        # One subject entered the state once: a lasting mismatch is one event.
        assert counted == 1
        config.write_text("interval = 3600\nmax_domain_series = 1\n")
        reload(serve)
        after = serve.metrics()
        assert value(after, "xenprobe_sweep_interval_seconds") == 3600
        assert value(after, "xenprobe_config_last_reload_successful") == 1
        assert (value(after, "xenprobe_sweeps_total") or 0) >= (
            value(before, "xenprobe_sweeps_total") or 0)
        assert (value(after, "xenprobe_mismatch_onsets_total", quantity="maximum_ram_page",
                      layer="ioctl", verdict="sign_flipped") or 0) >= counted
        assert len(series(after, "xenprobe_domain_mismatch")) == 1
        assert (value(after, "xenprobe_domain_mismatch_series_dropped") or 0) > 0


def test_a_bad_reload_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "xenprobe.toml"
    config.write_text("interval = 2\n")
    with Serve("healthy", config=config) as serve:
        serve.after_sweeps(1)
        config.write_text("interval = 0\n")
        reload(serve)
        m = serve.metrics()
        assert value(m, "xenprobe_config_last_reload_successful") == 0
        assert value(m, "xenprobe_sweep_interval_seconds") == 2
        assert "interval: must be at least 1" in serve.stderr()
        config.write_text("interval = 3\n")
        reload(serve)
        m = serve.metrics()
        assert value(m, "xenprobe_config_last_reload_successful") == 1
        assert value(m, "xenprobe_sweep_interval_seconds") == 3


def test_a_reload_can_move_the_listener(tmp_path: Path) -> None:
    config = tmp_path / "xenprobe.toml"
    config.write_text('listen_address = "127.0.0.1:0"\n')
    with Serve("healthy", config=config, listen=None) as serve:
        old = serve.port
        assert serve.get("/")[0] == 200
        new = free_port()
        config.write_text(f'listen_address = "127.0.0.1:{new}"\n')
        ready = reload(serve)
        assert f"serving 127.0.0.1:{new}" in ready["STATUS"]
        serve.port = new
        assert serve.get("/")[0] == 200
        with pytest.raises(urllib.error.URLError):
            http_get(f"http://127.0.0.1:{old}/")


def test_a_reload_can_move_the_metrics(tmp_path: Path) -> None:
    config = tmp_path / "xenprobe.toml"
    config.write_text("")
    with Serve("healthy", config=config) as serve:
        serve.after_sweeps(1)
        config.write_text('telemetry_path = "/probe"\n')
        reload(serve)
        assert serve.get("/probe")[0] == 200
        assert serve.get("/metrics")[0] == 404


def test_sigterm_stops_cleanly() -> None:
    serve = Serve("healthy").start()
    try:
        serve.after_sweeps(1)
        serve.signal(signal.SIGTERM)
        serve.notify.expect("STOPPING=1", lambda m: m.get("STOPPING") == "1")
        assert serve.wait() == 0
        assert port_is_free(serve.port)
        assert "Traceback" not in serve.stderr()
        events = [json.loads(line)["event"] for line in serve.stderr().splitlines()]
        assert events[-1] == "stopping"
    finally:
        serve.close()


def test_sigint_stops_cleanly_too() -> None:
    with Serve("healthy") as serve:
        serve.signal(signal.SIGINT)
        assert serve.wait() == 0


# -- nothing half-started --------------------------------------------------------------

def start_failing(tmp_path: Path, *args: str, config: str = "") -> tuple[int, str, int]:
    port = free_port()
    path = tmp_path / "xenprobe.toml"
    path.write_text(config)
    p = subprocess.run([sys.executable, "-m", "xenprobe", "serve", "--mock", "healthy",
                        "--config", str(path), "--listen-address", f"127.0.0.1:{port}",
                        *args], capture_output=True, text=True, timeout=DEADLINE,
                       check=False)
    assert "Traceback" not in p.stderr
    return p.returncode, p.stderr, port


@pytest.mark.parametrize(("args", "config", "message"), [
    ((), "max_domain_series = -1\n", "max_domain_series: must be between 0 and 100000"),
    (("--attempts", "0"), "", "--attempts: must be between 1 and 100"),
    (("--web-config-file", "web.yml"), "", "--web-config-file: no such file"),
])
def test_a_bad_config_starts_nothing(tmp_path: Path, args: tuple[str, ...], config: str,
                                     message: str) -> None:
    code, err, port = start_failing(tmp_path, *args, config=config)
    assert code == 2
    assert message in err
    assert port_is_free(port)


def test_a_bad_web_config_starts_nothing(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {prometheus: hunter2}\n")
    code, err, port = start_failing(tmp_path, "--web.config.file", str(web))
    assert code == 2
    assert f"web config {web}: basic_auth_users.prometheus: expected a bcrypt hash" in err
    assert port_is_free(port)


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with Serve("healthy") as serve:
        path = tmp_path / "xenprobe.toml"
        path.write_text("")
        p = subprocess.run([sys.executable, "-m", "xenprobe", "serve", "--mock", "healthy",
                            "--config", str(path), "--listen-address",
                            f"127.0.0.1:{serve.port}"], capture_output=True, text=True,
                           timeout=DEADLINE, check=False)
        assert p.returncode == 2
        assert re.search(r"listen_address 127\.0\.0\.1:\d+: cannot listen: Address "
                         r"already in use", p.stderr)
        assert serve.get("/")[0] == 200  # the first one is undisturbed


def test_not_a_control_domain_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "xenprobe.toml"
    path.write_text("")
    port = free_port()
    p = subprocess.run([sys.executable, "-m", "xenprobe", "serve", "--mock", "domu",
                        "--config", str(path), "--listen-address", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert p.returncode == 3
    assert "xenprobe: error:" in p.stderr and "Traceback" not in p.stderr
    assert port_is_free(port)


def test_status_follows_the_sweeps() -> None:
    with Serve("large-memory", "--interval", "1") as serve:
        serve.after_sweeps(1)
        m = serve.notify.expect("a sweep STATUS",
                                lambda m: "mismatches" in m.get("STATUS", ""))
        assert re.match(r"sweep \d+: 10 mismatches \(aliased_errno 2, sign_flipped 8\) in "
                        r"15 probes, 3 domains; serving 127\.0\.0\.1:\d+$", m["STATUS"])


# -- a daemon that survives its own config (issue 12 item 3) ----------------------------

DEEP_TOML = "interval = " + "[" * 500 + "]" * 500 + "\n"
DEEP_YAML = "basic_auth_users: " + "[" * 5000 + "]" * 5000 + "\n"


def _set_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _set_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _restore(path: Path) -> None:
    if path.is_dir():
        path.rmdir()
    elif path.exists():
        path.unlink()


# (what the file becomes, the reason the log line gives)
BAD_CONFIGS: list[tuple[str, Callable[[Path], None], str]] = [
    ("nested 500 deep", lambda p: p.write_text(DEEP_TOML), "nested too deeply"),
    ("a huge int", lambda p: p.write_text("interval = 1" + "0" * 400 + "\n"),
     "interval: must be at most 86400, got a number of 401 digits"),
    ("more digits than int takes", lambda p: p.write_text("attempts = " + "9" * 5000),
     "not valid TOML: Exceeds the limit"),
    ("a table for a value", lambda p: p.write_text("interval = {a = 1}\n"),
     "interval: expected a value, got a table"),
    ("a list for a value", lambda p: p.write_text("interval = [1]\n"),
     "interval: expected a number of seconds, got [1]"),
    ("not UTF-8", lambda p: p.write_bytes(b"interval = 3 # \xff\n"), "not UTF-8"),
    ("a directory", _set_dir, "is a directory"),
    ("a FIFO", _set_fifo, "not a regular file"),
    ("too big", lambda p: p.write_text("#" * (2 << 20)), "larger than 1048576 bytes"),
]


def test_no_config_a_reload_meets_kills_the_daemon(tmp_path: Path) -> None:
    config = tmp_path / "xenprobe.toml"
    config.write_text("interval = 2\n")
    with Serve("healthy", config=config) as serve:
        serve.after_sweeps(1)
        for what, make_bad, reason in BAD_CONFIGS:
            make_bad(config)
            reload(serve)
            m = serve.metrics()
            assert value(m, "xenprobe_config_last_reload_successful") == 0, what
            assert value(m, "xenprobe_sweep_interval_seconds") == 2, what
            failed = [json.loads(line) for line in serve.stderr().splitlines()
                      if '"reload_failed"' in line]
            assert reason in failed[-1]["error"], (what, failed[-1])
            _restore(config)
            config.write_text("interval = 2\n")
            reload(serve)
            assert value(serve.metrics(), "xenprobe_config_last_reload_successful") == 1
        assert "Traceback" not in serve.stderr()
        assert serve.proc.poll() is None


def test_no_web_config_a_reload_meets_kills_the_daemon(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("{}\n")
    config = tmp_path / "xenprobe.toml"
    config.write_text(f'web_config_file = "{web}"\n')
    with Serve("healthy", config=config) as serve:
        serve.after_sweeps(1)
        for what, make_bad, reason in [
                ("nested 5000 deep", lambda p: p.write_text(DEEP_YAML),
                 "nested more than 32 levels deep"),
                ("a FIFO", _set_fifo, "is not a regular file"),
                ("a directory", _set_dir, "is not a regular file")]:
            make_bad(web)
            # A scrape first: the watcher re-reads a changed file on its own; it must
            # answer with the config in force and say the reload failed.
            m = serve.metrics()
            assert value(m, "xenprobe_web_config_last_reload_successful") == 0, what
            reload(serve)
            m = serve.metrics()
            assert value(m, "xenprobe_config_last_reload_successful") == 0, what
            failed = [json.loads(line) for line in serve.stderr().splitlines()
                      if '"reload_failed"' in line]
            assert reason in failed[-1]["error"], (what, failed[-1])
            _restore(web)
            web.write_text("{}\n")
            reload(serve)
            m = serve.metrics()
            assert value(m, "xenprobe_config_last_reload_successful") == 1
        assert "Traceback" not in serve.stderr()
        assert serve.proc.poll() is None


@pytest.mark.parametrize(("what", "make_bad", "reason"), BAD_CONFIGS,
                         ids=[b[0] for b in BAD_CONFIGS])
def test_the_same_config_at_start_up_is_exit_2(tmp_path: Path, what: str,
                                               make_bad: Callable[[Path], None],
                                               reason: str) -> None:
    config = tmp_path / "xenprobe.toml"
    config.write_text("")
    make_bad(config)
    port = free_port()
    p = subprocess.run([sys.executable, "-m", "xenprobe", "serve", "--mock", "healthy",
                        "--config", str(config), "--listen-address", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith((f"xenprobe: error: config file {config}",
                                f"xenprobe: error: cannot read config file {config}"))
    assert reason in p.stderr
    assert "Traceback" not in p.stderr
    assert port_is_free(port)


def test_a_deep_web_config_at_start_up_is_exit_2(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(DEEP_YAML)
    code, err, port = start_failing(tmp_path, "--web.config.file", str(web))
    assert code == 2, err
    assert f"web config {web}" in err and "nested more than 32 levels deep" in err
    assert port_is_free(port)


# -- streams: serve logs to stderr; a closed or full one must not stop it ----------------

@pytest.mark.parametrize("how", ["stderr-full", "stderr-closed", "both-closed"])
def test_serve_with_a_broken_stderr(tmp_path: Path, how: str) -> None:
    d = short_tmp()
    notify = NotifySocket(d)
    config = d / "xenprobe.toml"
    config.write_text("interval = 1\n")
    close = {"stderr-full": [], "stderr-closed": [2], "both-closed": [1, 2]}[how]

    def closed() -> None:
        for fd in close:
            os.close(fd)

    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path))
    with open("/dev/full", "wb") as full:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xenprobe", "serve", "--mock", "large-memory",
             "--config", str(config), "--listen-address", "127.0.0.1:0",
             "--log-level", "debug"],  # as much logging as there can be
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=full,
            preexec_fn=closed)  # noqa: PLW1509 (this test starts no threads)
    try:
        ready = notify.expect("READY=1", lambda m: m.get("READY") == "1")
        found = re.search(r"serving \S+:(\d+)", ready["STATUS"])
        assert found, ready
        url = f"http://127.0.0.1:{found.group(1)}/metrics"
        def swept() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            m = samples(http_get(url)[2].decode())
            return m if (value(m, "xenprobe_sweeps_total") or 0) >= 1 else None

        m = wait_for("a sweep", swept)
        assert value(m, "xenprobe_up") == 1
        config.write_text("interval = " + "[" * 500 + "]" * 500 + "\n")  # logs an error
        proc.send_signal(signal.SIGHUP)
        notify.expect("READY=1 after the reload", lambda m: m.get("READY") == "1"
                      and m.get("STATUS", "").startswith("sweep"))
        status, _, body = http_get(url)
        assert status == 200
        assert b"xenprobe_config_last_reload_successful 0.0" in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        shutil.rmtree(d, ignore_errors=True)
