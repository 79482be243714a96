# SPDX-License-Identifier: GPL-2.0-only
"""A real Prometheus (Debian's `prometheus` package; tools/run-all installs it) scrapes
`xenprobe serve --mock large-memory` on loopback, plainly and over TLS with basic auth,
and loads the shipped alert rules; another scrapes every shipped scenario and evaluates
the shipped rules unchanged: exactly the alerts the impact model says fire
(xenprobe/probe/impact.py, docs/alerts.md). promtool lints the exposition and unit-tests the
rules."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
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
from tests.scrapes import NOT_DOM0, int_path_holder, own_host
from xenprobe.mock.scenario import load, shipped

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "contrib" / "prometheus"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: tools/run-all installs Debian's prometheus "
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
    result = setup.eventually("mismatch series", 'xenprobe_mismatch_verdicts{job="xenprobe"} > 0')
    assert labels(result) == LARGE_MEMORY
    for r in result:
        assert r["metric"]["instance"] == f"127.0.0.1:{setup.plain.port}"
        assert r["value"][1] == "1"  # one subject each
    # Healthy quantities and domains have no series; every impact has one.
    assert setup.query('xenprobe_mismatch_verdicts{quantity="xen_version"}') == []
    impacts = {r["metric"]["impact"]: r["value"][1] for r in setup.query(
        'xenprobe_mismatched_readings{job="xenprobe"}')}
    assert impacts == {"harmless": "7", "exposure": "3", "harmful": "0"}
    assert setup.query('xenprobe_domain_mismatch{domid="0"}') == []
    domains = setup.query('xenprobe_domain_mismatch{job="xenprobe"}')
    assert {r["metric"]["domid"] for r in domains} == {"3", "4"}
    assert setup.query('xenprobe_up{job="xenprobe"} == 1')
    assert setup.query('up{job="xenprobe"} == 1')


def test_prometheus_over_tls_with_basic_auth(setup: Setup) -> None:
    result = setup.eventually("mismatch series over TLS",
                              'xenprobe_mismatch_verdicts{job="xenprobe-tls"} > 0')
    assert labels(result) == LARGE_MEMORY
    assert setup.eventually("the TLS target up", 'up{job="xenprobe-tls"} == 1')
    assert setup.eventually("the wrong password refused",
                            'up{job="xenprobe-wrong-password"} == 0')
    assert setup.query('xenprobe_mismatch_verdicts{job="xenprobe-wrong-password"}') == []
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

    def exposure_alerts() -> list[dict[str, Any]] | None:
        return [a for a in setup.api("alerts")["alerts"]
                if a["labels"]["alertname"] == "XenprobeIntPathExposure"
                and a["labels"]["job"] == "xenprobe"] or None

    # One warning for the host's 10 mismatched readings (3 of them exposure).
    (alert,) = wait_for("XenprobeIntPathExposure pending", exposure_alerts)
    assert alert["state"] == "pending"  # `for: 15m` has not passed
    assert alert["labels"]["severity"] == "warning"
    assert not [a for a in setup.api("alerts")["alerts"]
                if a["labels"]["alertname"] in ("XenprobeDown", "XenprobeBug",
                                                "XenprobeConsumersReadWrongValues")]


def test_an_int_path_consumer_alerts_on_real_data(setup: Setup, tmp_path: Path) -> None:
    """A process mapping libxenctrl 4.14 (a stand-in of that SONAME) opens the mock's
    device: large-memory has memory_op values past INT_MAX, so XenprobeConsumerAtRisk
    goes pending once the next sweep has seen it, critical, naming the program."""
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
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["libxenctrl"] == "4.14"
    assert alert["labels"]["exe"] and alert["labels"]["comm"]
    assert alert["annotations"]["summary"] == (
        f"{alert['labels']['comm']} on 127.0.0.1:{setup.plain.port} maps libxenctrl 4.14, "
        "which reads this host's values wrong")


# -- every shipped scenario, the shipped rules unchanged -----------------------------------

# Which alerts the impact model says each shipped scenario fires (pending or firing), one
# per scenario and alert: none for a harmless finding (pv-dom0's DR6, xen-default's and
# pvh-dom0's dom0 maximum_reservation), one warning for a host whose size exposes
# int-path consumers (not one per mismatch), a critical one for a process mapping
# libxenctrl 4.14 there (large-memory has one) and for values every consumer reads wrong
# (compat-clamp: a 32-bit dom0 kernel's clamped max_page). domu is not a control domain:
# serve exits 3, and its target is down.
EXPECTED = {
    "healthy": set(), "balloon": set(), "hotplug-below-ram": set(), "pv-dom0": set(),
    "xen-default": set(),
    "pvh-dom0": {"XenprobeRawLayerAbsent"},
    "large-memory": {"XenprobeIntPathExposure", "XenprobeConsumerAtRisk"},
    "huge-address-space": {"XenprobeIntPathExposure"},
    "compat-clamp": {"XenprobeConsumersReadWrongValues"},
    "int-path": {"XenprobeIntPathExposure"},  # no holder on its host here
    # Guests forging max_pfn: errnos maximum_gpfn cannot return (harmful: HVM save and
    # dump-core read it), and the out-of-range one truncated by the int paths.
    "pv-guest-max-pfn": {"XenprobeForgedAtSource", "XenprobeIntPathExposure"},
    "domu": {"XenprobeTargetDown"},
}


@pytest.fixture(scope="module")
def every(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    prometheus = tool("prometheus")
    d = tmp_path_factory.mktemp("every")
    shutil.copy(SYSTEMD / "xenprobe-alerts.yml", d / "xenprobe-alerts.yml")
    with ExitStack() as stack:
        stack.enter_context(int_path_holder(d, own_host("large-memory")))
        serves = {name: stack.enter_context(Serve(name, "--interval", "5",
                                                  env=own_host(name)))
                  for name in shipped() if name != NOT_DOM0}
        for serve in serves.values():
            serve.after_sweeps(1)
        down = free_port()
        p = run_check(["serve", "--mock", NOT_DOM0, "--listen-address",
                       f"127.0.0.1:{down}"])
        assert p.returncode == 3, p.stderr  # not a control domain: nothing to scrape
        ports = {**{n: s.port for n, s in serves.items()}, NOT_DOM0: down}
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(d / "xenprobe-alerts.yml")],
            "scrape_configs": [{"job_name": "xenprobe", "static_configs": [
                {"targets": [f"127.0.0.1:{port}"], "labels": {"instance": name}}
                for name, port in sorted(ports.items())]}],
        }
        (d / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = stack.enter_context((d / "prometheus.log").open("wb"))
        proc = subprocess.Popen(
            [prometheus, f"--config.file={d / 'prometheus.yml'}",
             f"--storage.tsdb.path={d / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
        stack.enter_context(terminated(proc))
        setup = Setup(f"http://127.0.0.1:{port}", serves["large-memory"],
                      serves["large-memory"])

        def scraped() -> bool:
            if proc.poll() is not None:
                raise AssertionError("prometheus exited: "
                                     + (d / "prometheus.log").read_text())
            try:
                return len(setup.query('count_over_time(up{job="xenprobe"}[1m]) >= 3')) \
                    == len(ports)
            except OSError:
                return False

        wait_for("every scenario scraped 3 times", scraped, every=0.5)
        yield setup


def test_every_shipped_scenario_fires_exactly_what_its_impact_says(every: Setup) -> None:
    assert set(EXPECTED) == set(shipped())
    start = time.time()

    def evaluated_since() -> bool:
        groups = every.api("rules")["groups"]
        return all(g["lastEvaluation"] > time.strftime("%Y-%m-%dT%H:%M:%S",
                                                       time.gmtime(start + 2))
                   for g in groups)

    wait_for("two rule evaluations after every target's third scrape", evaluated_since,
             every=0.5)
    alerts = every.api("alerts")["alerts"]
    got: dict[str, list[str]] = {name: [] for name in EXPECTED}
    for a in alerts:
        got[a["labels"]["instance"]].append(a["labels"]["alertname"])
    assert {n: sorted(v) for n, v in got.items()} == {
        n: sorted(v) for n, v in EXPECTED.items()}  # each once: no duplicate per host
    severity = {a["labels"]["alertname"]: a["labels"]["severity"] for a in alerts}
    assert severity["XenprobeIntPathExposure"] == "warning"
    assert severity["XenprobeConsumerAtRisk"] == "critical"
    assert severity["XenprobeConsumersReadWrongValues"] == "critical"
    assert severity["XenprobeForgedAtSource"] == "critical"


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
