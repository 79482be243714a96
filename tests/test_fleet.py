# SPDX-License-Identifier: GPL-2.0-only
"""A fleet behind one real Prometheus: several `xenprobe serve --mock` exporters on
loopback (a healthy host, a 12 TiB one where a process maps libxenctrl 4.14, a ballooning
one, one whose hypervisor denies a memory op with EPERM, as an XSM policy would, one whose
PV guests forge errnos through their own max_pfn, and one stopped), scraped every second,
with
the shipped alert rules and the recording rules (contrib/prometheus/xenprobe-recording.yml)
evaluated every second.

The alert rules are loaded from a test copy in which every `for:` is 1s: the shipped 10 and
15 minutes would make the test wait that long, and what is tested is which hosts each
rule picks, which `for:` does not change.

Then the Grafana dashboard (contrib/grafana/xenprobe.json): every panel's queries, with the
template variables substituted, are evaluated against the same Prometheus through its
HTTP API; a query error fails, and so does a panel that returns nothing where the fleet
says there is data.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.exporter_util import Serve, free_port, http_get, terminated, wait_for
from tests.mockhost import env_for, fault, variant
from tests.scrapes import int_path_holder, own_host
from xenprobe.mock.scenario import parse

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "contrib" / "prometheus"
DASHBOARD = ROOT / "contrib" / "grafana" / "xenprobe.json"

# instance label -> what that host is. "stopped" was started and stopped: nobody answers.
HOSTS = ("dom0-healthy", "dom0-large-memory", "dom0-balloon", "dom0-xsm-denied",
         "dom0-forged-errno", "dom0-stopped")

# large-memory's mismatches (tests/test_prometheus.py has the reasons).
LARGE_MEMORY = {
    (q, layer, "sign_flipped") for q in ("maximum_ram_page", "current_reservation",
                                         "maximum_reservation", "maximum_gpfn")
    for layer in ("syscall", "ioctl")
} | {("maximum_gpfn", layer, "aliased_errno") for layer in ("syscall", "ioctl")}

# Which hosts each shipped alert must fire for, and for no other.
FIRES_FOR = {
    "XenprobeIntPathExposure": {"dom0-large-memory"},
    "XenprobeConsumerAtRisk": {"dom0-large-memory"},
    "XenprobeConsumersReadWrongValues": set(),
    "XenprobeHypervisorErrors": {"dom0-xsm-denied"},
    # Guests forging ESRCH and EINVAL: not Xen's errors (no XenprobeHypervisorErrors).
    "XenprobeForgedAtSource": {"dom0-forged-errno"},
    "XenprobeTargetDown": {"dom0-stopped"},
    "XenprobeRawLayerAbsent": set(),
    "XenprobeConsumerScanBlind": set(),
    "XenprobeDown": set(),
    "XenprobeBug": set(),
    "XenprobeTextfileStale": set(),
    "XenprobeDomainSeriesDropped": set(),
    "XenprobeWatchDamagedValue": set(),  # no serve --watch here, and never on the mock
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: tools/run-all installs Debian's prometheus "
                    "package, which has it")
    return path


@dataclass
class Fleet:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, _, body = http_get(f"{self.url}/api/v1/query?"
                                   + urllib.parse.urlencode({"query": expr}))
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", (expr, data)
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def scalar(self, expr: str) -> float:
        (one,) = self.query(expr)
        return float(one["value"][1])

    def alerts(self) -> list[dict[str, Any]]:
        status, _, body = http_get(f"{self.url}/api/v1/alerts")
        assert status == 200
        alerts: list[dict[str, Any]] = json.loads(body)["data"]["alerts"]
        return alerts


def short_for(rules: Path, target: Path) -> None:
    doc = yaml.safe_load(rules.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    target.write_text(yaml.safe_dump(doc))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    prometheus = tool("prometheus")
    d = tmp_path_factory.mktemp("fleet")
    short_for(SYSTEMD / "xenprobe-alerts.yml", d / "alerts.yml")
    shutil.copy(SYSTEMD / "xenprobe-recording.yml", d / "recording.yml")
    denied, env = variant(d, "xsm-denied", "healthy", fault(
        layer="hypervisor", op="memory_op", subop=4, errno="EPERM", count=-1))
    # pv-guest-max-pfn with forged errnos only (its out-of-range guest made healthy),
    # so that this host has no mismatch of its own.
    text = resources.files("xenprobe.mock.scenarios").joinpath("pv-guest-max-pfn.toml") \
        .read_text().replace("max_pfn = 0x8000000000000001", "max_pfn = 262144")
    forged = d / "forged-errno.toml"
    forged.write_text(text)
    forged_env = env_for(parse(text, str(forged), "forged-errno"), d)
    forged_env.pop("XENPROBE_LIBXENCTRL", None)
    stopped = Serve("healthy", "--interval", "1").start()
    stopped_port = stopped.port
    stopped.close()  # its port stays unanswered: the down host
    # The 12 TiB host on a mock host of its own, with a process there mapping
    # libxenctrl 4.14 (the others share the session's and see each other as holders).
    holder = int_path_holder(d, own_host("large-memory"))
    holder.__enter__()
    serves = [Serve("healthy", "--interval", "1"),
              Serve("large-memory", "--interval", "1", env=own_host("large-memory")),
              Serve("balloon", "--interval", "1"),
              Serve(str(denied), "--interval", "1", env=env),
              Serve(str(forged), "--interval", "1", env=forged_env)]
    try:
        for s in serves:
            s.start()
        ports = [s.port for s in serves] + [stopped_port]
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(d / "alerts.yml"), str(d / "recording.yml")],
            "scrape_configs": [{"job_name": "xenprobe", "static_configs": [
                {"targets": [f"127.0.0.1:{port}"], "labels": {"instance": name}}
                for name, port in zip(HOSTS, ports, strict=True)]}],
        }
        (d / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log_path = d / "prometheus.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [prometheus, f"--config.file={d / 'prometheus.yml'}",
                 f"--storage.tsdb.path={d / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
            with terminated(proc):
                url = f"http://127.0.0.1:{port}"

                def ready() -> bool:
                    if proc.poll() is not None:
                        raise AssertionError("prometheus exited: " + log_path.read_text())
                    try:
                        return http_get(f"{url}/-/ready")[0] == 200
                    except OSError:
                        return False

                wait_for("prometheus to be ready", ready, every=0.2)
                fleet = Fleet(url)
                # Every target scraped a few times (rate() and increase() need two
                # samples, and the alerts' 1s `for` an evaluation after pending).
                wait_for("every host scraped 3 times", lambda: len(fleet.query(
                    'count_over_time(up{job="xenprobe"}[1m]) >= 3')) == len(HOSTS),
                    every=0.5)
                yield fleet
    finally:
        for s in serves:
            s.close()
        holder.__exit__(None, None, None)


# -- alerts -------------------------------------------------------------------------------

def test_each_alert_fires_for_exactly_its_hosts(fleet: Fleet) -> None:
    def settled() -> list[dict[str, Any]] | None:
        firing = [a for a in fleet.alerts() if a["state"] == "firing"]
        fired = {a["labels"]["alertname"] for a in firing}
        return firing if fired >= {n for n, hosts in FIRES_FOR.items() if hosts} else None

    firing = wait_for("every expected alert firing", settled, every=0.5)
    for name, hosts in FIRES_FOR.items():
        got = {a["labels"]["instance"] for a in firing if a["labels"]["alertname"] == name}
        assert got == hosts, name
    # Nothing else is even pending.
    assert {a["labels"]["alertname"] for a in fleet.alerts()} <= set(FIRES_FOR)
    expected_hosts = {h for hs in FIRES_FOR.values() for h in hs}
    stray = [a["labels"] for a in fleet.alerts()
             if a["labels"]["instance"] not in expected_hosts]
    assert not stray, stray


def test_impact_alerts_fire_once_per_host_and_name_the_process(fleet: Fleet) -> None:
    def settled() -> list[dict[str, Any]] | None:
        found = [a for a in fleet.alerts() if a["state"] == "firing" and a["labels"][
            "alertname"] in ("XenprobeIntPathExposure", "XenprobeConsumerAtRisk")]
        return found if len(found) >= 2 else None

    alerts = wait_for("the impact alerts firing", settled, every=0.5)
    # One warning for the host, not one per mismatch (large-memory has 10), and one
    # critical for the program that maps the int-path libxenctrl.
    (exposure,) = [a for a in alerts if a["labels"]["alertname"] == "XenprobeIntPathExposure"]
    assert exposure["labels"]["severity"] == "warning"
    assert exposure["labels"]["instance"] == "dom0-large-memory"
    (consumer,) = [a for a in alerts if a["labels"]["alertname"] == "XenprobeConsumerAtRisk"]
    assert consumer["labels"]["severity"] == "critical"
    assert consumer["labels"]["libxenctrl"] == "4.14"
    assert consumer["labels"]["comm"] and consumer["labels"]["exe"]
    assert consumer["annotations"]["summary"].startswith(consumer["labels"]["comm"] + " on ")
    (errors,) = [a for a in fleet.alerts()
                 if a["labels"]["alertname"] == "XenprobeHypervisorErrors"
                 and a["labels"]["layer"] == "raw"]
    assert errors["labels"]["errno"] == "EPERM"
    assert "dom0-xsm-denied" in errors["annotations"]["summary"]


# -- roll-ups -----------------------------------------------------------------------------

def by(result: list[dict[str, Any]], *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(k, "") for k in keys): float(r["value"][1])
            for r in result}


def test_the_roll_ups_add_up(fleet: Fleet) -> None:
    wait_for("the recording rules evaluated",
             lambda: fleet.query("xenprobe:hosts_with_mismatch:count") or None)
    # Recomputed here from each host's own series, the way an operator would check.
    per_host = by(fleet.query("xenprobe_mismatch_verdicts > 0"), "instance", "quantity", "layer",
                  "verdict")
    hosts_by_pair: dict[tuple[str, str], set[str]] = {}
    for (host, q, layer, _), _n in per_host.items():
        hosts_by_pair.setdefault((q, layer), set()).add(host)
    rolled = by(fleet.query("quantity_layer:xenprobe_hosts_with_mismatch:count"),
                "quantity", "layer")
    assert {k: v for k, v in rolled.items() if v} == {
        k: float(len(v)) for k, v in hosts_by_pair.items()}
    # Every quantity and layer the hosts are probed for has a roll-up, 0 where no host is
    # in mismatch.
    probed = {(r["metric"]["quantity"], r["metric"]["layer"])
              for r in fleet.query("xenprobe_mismatch_verdicts")}
    assert set(rolled) == probed
    assert {k for k, v in rolled.items() if v} == {(q, layer) for q, layer, _ in LARGE_MEMORY}

    subjects = by(fleet.query("quantity_layer_verdict:xenprobe_mismatch_verdicts:sum > 0"),
                  "quantity", "layer", "verdict")
    summed: dict[tuple[str, str, str], float] = {}
    for (_, q, layer, v), n in per_host.items():
        summed[(q, layer, v)] = summed.get((q, layer, v), 0) + n
    assert subjects == summed

    assert fleet.scalar("xenprobe:hosts_with_mismatch:count") == 1
    assert fleet.scalar("xenprobe:hosts:count") == len(HOSTS)
    assert fleet.scalar("xenprobe:hosts_down:count") == 1
    assert fleet.scalar("xenprobe:hosts_without_fresh_data:count") == 0
    assert fleet.scalar("xenprobe:hosts_with_int_path_consumers_at_risk:count") == 1
    impacts = by(fleet.query("impact:xenprobe_hosts_with_mismatched_readings:count"),
                 "impact")
    assert impacts == {("exposure",): 1, ("harmless",): 1}  # large-memory's alone
    at_risk = by(fleet.query("quantity_risk:xenprobe_hosts_at_risk:count > 0"),
                 "quantity", "risk")
    raw = by(fleet.query("xenprobe_probes_at_risk > 0"), "instance", "quantity", "risk")
    assert at_risk == {(q, r): float(sum(1 for (_, q2, r2) in raw if (q2, r2) == (q, r)))
                       for (_, q, r) in raw}
    assert at_risk[("maximum_ram_page", "int32")] == 1  # the 12 TiB host alone


# -- the dashboard ------------------------------------------------------------------------

# Panels that must be empty for a host, because the scenario has none of it there: data
# would be a false alarm. Every other host panel must have data for every host that
# answers scrapes, and every fleet panel must have data.
EMPTY_FOR = {
    "Mismatches by quantity, layer and verdict": {"dom0-healthy", "dom0-balloon",
                                                  "dom0-xsm-denied", "dom0-forged-errno"},
    "Domains in mismatch": {"dom0-healthy", "dom0-balloon", "dom0-xsm-denied",
                            "dom0-forged-errno"},
    "Probes at risk": {"dom0-healthy", "dom0-balloon", "dom0-xsm-denied",
                         "dom0-forged-errno"},
    # The libxenctrl 4.14 holder is on the 12 TiB host alone.
    "Consumers on the int path": {"dom0-healthy", "dom0-balloon", "dom0-xsm-denied",
                                  "dom0-forged-errno"},
    "Drift": {"dom0-healthy", "dom0-large-memory", "dom0-xsm-denied", "dom0-forged-errno"},
    # large-memory: glibc reads dom4's 0xFFFFFFFE as -1/ENOENT, a failed reading. A
    # forged error is no layer's error (forged-errnos.md).
    "Layer errors": {"dom0-healthy", "dom0-balloon", "dom0-forged-errno"},
}
# Data or not, both are right: a mismatch present before an exporter's first scrape is
# counted by its first sweep, so whether Prometheus sees the increase depends on which
# came first (README "Metrics").
EITHER = {"Mismatch onsets, per hour"}


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        found += [p, *p.get("panels", [])]
    return [p for p in found if p["type"] != "row"]


def grafana_regex_escape(value: str) -> str:
    """What Grafana's Prometheus data source puts in a =~ matcher for one selected value
    (prometheusRegularEscape: a regex metacharacter gets a backslash, itself escaped for
    the PromQL string)."""
    return re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", value.replace("\\", "\\\\"))


def substitute(expr: str, instance: str) -> str:
    # As Grafana would for one selected host, and $__rate_interval as at least four
    # scrape intervals.
    return (expr.replace("$instance", grafana_regex_escape(instance))
            .replace("$__rate_interval", "10s"))


def test_the_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "instance"]
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in panels()]
    assert len(titles) == len(set(titles))
    assert set(EMPTY_FOR) | EITHER <= set(titles)
    for p in panels():
        assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
        assert p["datasource"]["uid"] == "${datasource}"


def test_the_instance_variable_lists_every_answering_host(fleet: Fleet) -> None:
    dash = json.loads(DASHBOARD.read_text())
    (var,) = [v for v in dash["templating"]["list"] if v["name"] == "instance"]
    m = re.fullmatch(r"label_values\((\w+), (\w+)\)", var["query"]["query"])
    assert m and m.group(2) == "instance"
    listed = {r["metric"]["instance"] for r in fleet.query(m.group(1))}
    assert listed == set(HOSTS) - {"dom0-stopped"}


def test_every_panel_query_evaluates_and_has_the_data_it_should(fleet: Fleet) -> None:
    wait_for("the recording rules evaluated",
             lambda: fleet.query("xenprobe:hosts_with_mismatch:count") or None)
    answering = [h for h in HOSTS if h != "dom0-stopped"]
    empty: list[str] = []
    for p in panels():
        title = p["title"]
        host_panel = any("$instance" in t["expr"] for t in p["targets"])
        for host in answering if host_panel else ["(fleet)"]:
            rows = sum(len(fleet.query(substitute(t["expr"], host)))  # errors fail here
                       for t in p["targets"])
            if title in EITHER:
                continue
            if host in EMPTY_FOR.get(title, set()):
                assert rows == 0, f"{title} has data for {host}, which has none of it"
            elif rows == 0:
                empty.append(f"{title} [{host}]")
    assert not empty, f"panels with no data where the fleet has some: {empty}"
    # The panels that carry the fleet's findings show them.
    assert fleet.query(substitute(
        'sum by (quantity, layer, verdict) (xenprobe_mismatch_verdicts{instance=~"$instance"}) > 0',
        "dom0-large-memory"))
    down = fleet.query('up{job="xenprobe"} == 0')
    assert [r["metric"]["instance"] for r in down] == ["dom0-stopped"]


# -- federation ---------------------------------------------------------------------------

def test_the_federation_config_in_the_docs_brings_the_roll_ups(fleet: Fleet) -> None:
    """docs/fleet.md's match[] selectors, asked of this Prometheus's /federate: the
    roll-ups and the per-host series the dashboard and alerts need come back."""
    docs = (ROOT / "docs" / "fleet.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", docs, re.S)]
    (job,) = [j for b in blocks for j in b.get("scrape_configs", [])
              if j.get("metrics_path") == "/federate"]
    assert job["honor_labels"] is True
    wait_for("the recording rules evaluated",
             lambda: fleet.query("xenprobe:hosts_with_mismatch:count") or None)
    query = urllib.parse.urlencode([("match[]", m) for m in job["params"]["match[]"]])
    status, _, body = http_get(f"{fleet.url}/federate?{query}")
    assert status == 200
    names = {line.split("{")[0].split(" ")[0] for line in body.decode().splitlines()
             if line and not line.startswith("#")}
    recorded = {r["record"] for g in yaml.safe_load(
        (SYSTEMD / "xenprobe-recording.yml").read_text())["groups"] for r in g["rules"]}
    assert recorded <= names
    assert {"up", "xenprobe_up", "xenprobe_mismatch_verdicts", "xenprobe_probes_at_risk"} <= names
