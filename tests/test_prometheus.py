# SPDX-License-Identifier: GPL-2.0-only
"""A real Prometheus (Debian's `prometheus` package; tests/run-all installs it) scrapes
`xenprobe serve --mock large-memory` on loopback, plainly and over TLS with basic auth,
and loads the shipped alert rules. promtool lints the exposition and unit-tests the
rules."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from tests.exporter_util import (
    Serve,
    free_port,
    http_get,
    make_ca,
    make_cert,
    terminated,
    wait_for,
)
from tests.holders import (
    HOLD64_WITH_LIB,
    build_hold32,
    build_stand_in_libxenctrl,
    start,
    start_on_mock,
    stop,
)
from tests.mockhost import env_for, fault, run_check, variant
from xenprobe.scenario import load

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: tests/run-all installs Debian's prometheus "
                    "package, which has it")
    return path


# Every mismatch large-memory has: 12 TiB puts frame numbers past 2^31 (sign flips in
# both the syscall's long and the ioctl's int on this pvops driver) and dom4's highest
# frame 0xFFFFFFFE reads as -ENOENT.
LARGE_MEMORY = {
    (q, layer, "sign_flipped") for q in ("maximum_ram_page", "current_reservation",
                                         "maximum_reservation", "maximum_gpfn")
    for layer in ("syscall", "ioctl")
} | {("maximum_gpfn", layer, "aliased_errno") for layer in ("syscall", "ioctl")}


@dataclass
class Setup:
    url: str
    plain: Serve
    secure: Serve

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, _, body = http_get(f"{self.url}/api/v1/query?"
                                   + urllib.parse.urlencode({"query": expr}))
        assert status == 200, body
        data = json.loads(body)
        assert data["status"] == "success", data
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def api(self, path: str) -> Any:
        status, _, body = http_get(f"{self.url}/api/v1/{path}")
        assert status == 200, body
        return json.loads(body)["data"]

    def eventually(self, what: str, expr: str) -> list[dict[str, Any]]:
        return wait_for(what, lambda: self.query(expr) or None, every=0.25)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    prometheus = tool("prometheus")
    d = tmp_path_factory.mktemp("prometheus")
    ca = make_ca(d)
    make_cert(d, "server", ca, "DNS:localhost,IP:127.0.0.1")
    hashed = bcrypt.hashpw(b"scrape-secret", bcrypt.gensalt(4)).decode()
    (d / "web.yml").write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "server.pem", "key_file": "server.key"},
        "basic_auth_users": {"prometheus": hashed}}))
    shutil.copy(SYSTEMD / "xenprobe-alerts.yml", d / "xenprobe-alerts.yml")
    with Serve("large-memory", "--interval", "1") as plain, \
         Serve("large-memory", "--interval", "1", "--web.config.file",
               str(d / "web.yml")) as secure:
        tls = {"ca_file": str(d / "ca.pem"), "server_name": "localhost"}
        target = [{"targets": [f"127.0.0.1:{secure.port}"]}]
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(d / "xenprobe-alerts.yml")],
            "scrape_configs": [
                {"job_name": "xenprobe",
                 "static_configs": [{"targets": [f"127.0.0.1:{plain.port}"]}]},
                {"job_name": "xenprobe-tls", "scheme": "https", "tls_config": tls,
                 "basic_auth": {"username": "prometheus", "password": "scrape-secret"},
                 "static_configs": target},
                {"job_name": "xenprobe-wrong-password", "scheme": "https",
                 "tls_config": tls,
                 "basic_auth": {"username": "prometheus", "password": "guess"},
                 "static_configs": target},
            ],
        }
        (d / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = (d / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [prometheus, f"--config.file={d / 'prometheus.yml'}",
             f"--storage.tsdb.path={d / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
        with terminated(proc):
            url = f"http://127.0.0.1:{port}"

            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError("prometheus exited: "
                                         + (d / "prometheus.log").read_text())
                try:
                    return http_get(f"{url}/-/ready")[0] == 200
                except OSError:
                    return False

            wait_for("prometheus to be ready", ready, every=0.2)
            yield Setup(url, plain, secure)
        log.close()


def labels(result: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(r["metric"]["quantity"], r["metric"]["layer"], r["metric"]["verdict"])
            for r in result}


def test_prometheus_stores_the_mismatches(setup: Setup) -> None:
    result = setup.eventually("mismatch series", 'xenprobe_mismatch{job="xenprobe"} > 0')
    assert labels(result) == LARGE_MEMORY
    for r in result:
        assert r["metric"]["instance"] == f"127.0.0.1:{setup.plain.port}"
        assert r["value"][1] == "1"  # one subject each
    # Healthy quantities are at 0, from the first scrape; healthy domains have no series.
    assert setup.query('xenprobe_mismatch{quantity="xen_version"} > 0') == []
    assert len(setup.query('xenprobe_mismatch{job="xenprobe",quantity="xen_version"}')) \
        == 4 * 7
    assert setup.query('xenprobe_domain_mismatch{domid="0"}') == []
    domains = setup.query('xenprobe_domain_mismatch{job="xenprobe"}')
    assert {r["metric"]["domid"] for r in domains} == {"3", "4"}
    assert setup.query('xenprobe_up{job="xenprobe"} == 1')
    assert setup.query('up{job="xenprobe"} == 1')


def test_prometheus_over_tls_with_basic_auth(setup: Setup) -> None:
    result = setup.eventually("mismatch series over TLS",
                              'xenprobe_mismatch{job="xenprobe-tls"} > 0')
    assert labels(result) == LARGE_MEMORY
    assert setup.eventually("the TLS target up", 'up{job="xenprobe-tls"} == 1')
    assert setup.eventually("the wrong password refused",
                            'up{job="xenprobe-wrong-password"} == 0')
    assert setup.query('xenprobe_mismatch{job="xenprobe-wrong-password"}') == []
    targets = setup.api("targets")["activeTargets"]
    wrong = [t for t in targets if t["labels"]["job"] == "xenprobe-wrong-password"]
    assert wrong and wrong[0]["health"] == "down"
    assert "401" in wrong[0]["lastError"]
    # The exporter itself refuses the wrong password.
    url = f"https://127.0.0.1:{setup.secure.port}/metrics"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False  # a test certificate; what is tested here is the 401
    ctx.verify_mode = ssl.CERT_NONE
    assert http_get(url, context=ctx, auth=("prometheus", "guess"))[0] == 401
    assert http_get(url, context=ctx, auth=("prometheus", "scrape-secret"))[0] == 200


def test_the_alert_rules_load_and_match_real_data(setup: Setup) -> None:
    def evaluated() -> dict[str, Any] | None:
        # A rule's health is "unknown" until its group's first evaluation.
        groups = setup.api("rules")["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        return rules if all(r["health"] != "unknown" for r in rules.values()) else None

    rules = wait_for("every alert rule evaluated once", evaluated)
    shipped = [r["alert"] for g in yaml.safe_load((SYSTEMD / "xenprobe-alerts.yml").read_text())
               ["groups"] for r in g["rules"]]
    assert sorted(rules) == sorted(shipped) and all(r["health"] == "ok"
                                                    for r in rules.values()), {
        n: (r["health"], r.get("lastError")) for n, r in rules.items()}

    def mismatch_alerts() -> list[dict[str, Any]] | None:
        alerts = [a for a in setup.api("alerts")["alerts"]
                  if a["labels"]["alertname"] == "XenprobeMismatch"
                  and a["labels"]["job"] == "xenprobe"]
        return alerts if len(alerts) == len(LARGE_MEMORY) else None

    alerts = wait_for("XenprobeMismatch pending for every mismatch", mismatch_alerts)
    assert {a["state"] for a in alerts} == {"pending"}  # `for: 15m` has not passed
    assert not [a for a in setup.api("alerts")["alerts"]
                if a["labels"]["alertname"] in ("XenprobeDown", "XenprobeBug")]

    def guest_set_alerts() -> list[dict[str, Any]] | None:
        # large-memory: dom3's own 10 TiB and dom4's gpfn 0xFFFFFFFE, misread by the
        # ioctl and syscall layers (tests/test_guest_set.py).
        return [a for a in setup.api("alerts")["alerts"]
                if a["labels"]["alertname"] == "XenprobeGuestSetValueMisread"
                and a["labels"]["job"] == "xenprobe"] or None

    guest = wait_for("XenprobeGuestSetValueMisread pending", guest_set_alerts)
    assert {a["state"] for a in guest} == {"pending"}  # `for: 5m` has not passed
    assert {(a["labels"]["quantity"], a["labels"]["verdict"]) for a in guest} == {
        ("current_reservation", "sign_flipped"), ("maximum_gpfn", "sign_flipped"),
        ("maximum_gpfn", "aliased_errno")}


def test_an_int_path_consumer_alerts_on_real_data(setup: Setup, tmp_path: Path) -> None:
    """A process mapping libxenctrl 4.14 (a stand-in of that SONAME) opens the mock's
    device: large-memory has memory_op values past INT_MAX, so XenprobeConsumerAtRisk
    goes pending once the next sweep has seen it."""
    lib = build_stand_in_libxenctrl(tmp_path / "lib", "4.14")
    holder = start([sys.executable, "-c", HOLD64_WITH_LIB, "/dev/xen/privcmd", str(lib)],
                   env=env_for(load("large-memory"), tmp_path))

    def pending() -> list[dict[str, Any]] | None:
        return [a for a in setup.api("alerts")["alerts"]
                if a["labels"]["alertname"] == "XenprobeConsumerAtRisk"
                and a["labels"]["job"] == "xenprobe"] or None

    try:
        (alert,) = wait_for("XenprobeConsumerAtRisk pending", pending)
    finally:
        stop([holder])
    assert alert["state"] == "pending"  # `for: 15m` has not passed
    assert alert["annotations"]["summary"] == (
        f"Processes on 127.0.0.1:{setup.plain.port} read memory_op results through "
        "libxenctrl's int path")


def promtool(*args: str, stdin: bytes | None = None, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([tool("promtool"), *args], input=stdin, capture_output=True,
                          timeout=120, check=False, cwd=cwd)


def test_promtool_finds_nothing_to_lint_in_the_exposition(setup: Setup) -> None:
    setup.plain.after_sweeps(1)
    status, _, body = setup.plain.get()
    assert status == 200
    p = promtool("check", "metrics", stdin=body)
    assert p.returncode == 0 and p.stdout + p.stderr == b"", p.stdout + p.stderr


def test_promtool_finds_nothing_to_lint_in_the_textfile(tmp_path: Path) -> None:
    target = tmp_path / "xenprobe.prom"
    assert run_check(["check", "--mock", "large-memory", "--textfile",
                      str(target)]).returncode == 1
    p = promtool("check", "metrics", stdin=target.read_bytes())
    assert p.returncode == 0 and p.stdout + p.stderr == b"", p.stdout + p.stderr


def test_promtool_finds_nothing_to_lint_in_consumers_and_retries(tmp_path: Path) -> None:
    """The same, with every family that is empty above filled: a 32-bit process holding
    the device, and requests retried."""
    hold32 = build_hold32(tmp_path)
    path, env = variant(tmp_path, "retrying", "large-memory", fault(
        layer="driver", op="memory_op", subop=3, errno="EINTR", count=2, via="ioctl"))
    holders = [start_on_mock(hold32, env), start_on_mock(None, env)]
    target = tmp_path / "xenprobe.prom"
    try:
        assert run_check(["check", "--mock", str(path), "--textfile", str(target)],
                         env=env).returncode == 1
    finally:
        stop(holders)
    text = target.read_text()
    assert "xenprobe_privcmd_consumer_info{" in text and "xenprobe_sweep_retries{" in text
    p = promtool("check", "metrics", stdin=text.encode())
    assert p.returncode == 0 and p.stdout + p.stderr == b"", p.stdout + p.stderr


def test_promtool_checks_and_tests_the_rules() -> None:
    p = promtool("check", "rules", "xenprobe-alerts.yml", cwd=SYSTEMD)
    assert p.returncode == 0, p.stdout + p.stderr
    p = promtool("test", "rules", "xenprobe-alerts.test.yml", cwd=SYSTEMD)
    assert p.returncode == 0, p.stdout + p.stderr
    assert b"SUCCESS" in p.stdout


def test_promtool_checks_and_tests_the_recording_rules() -> None:
    p = promtool("check", "rules", "xenprobe-recording.yml", cwd=SYSTEMD)
    assert p.returncode == 0, p.stdout + p.stderr
    p = promtool("test", "rules", "xenprobe-recording.test.yml", cwd=SYSTEMD)
    assert p.returncode == 0, p.stdout + p.stderr
    assert b"SUCCESS" in p.stdout
