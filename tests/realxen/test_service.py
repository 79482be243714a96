# SPDX-License-Identifier: GPL-2.0-only
"""xenprobe.service for real: systemd as PID 1 in a real Xen 4.17 / 4.20 dom0.

One systemd boot per release (systemd_boot.py) runs service_runner.py, which installs
the Debian package as an operator does, then exercises the service as systemd and
Prometheus do, and writes what it saw into the share.  The tests here assert on that
evidence; a failure prints the dom0 journal's tail.

What runs where:

- The .deb is built on the host from this checkout (tools/build-deb, the session's
  ``debian_packages`` fixture) and put in the share.
- In the dom0, one by one: ``dpkg -i`` of the production package (its maintainer
  scripts enable and start xenprobe.service from the packaged unit, as on any Debian
  machine), ``systemctl status``; then ``systemctl enable --now
  xenprobe-check.timer`` (PACKAGE_LINES, TIMER_LINES).  Its Debian dependencies
  (python3-cffi-backend, -prometheus-client, -structlog, -psutil, -bcrypt, -yaml) are
  the host's installed packages, which the dom0 sees through its read-only 9p root:
  tools/run-all installs them, so ``dpkg -i`` finds them satisfied, where an operator's
  ``apt install ./xenprobe_*.deb`` would fetch them.  dpkg's database and everything
  the package writes land in the dom0's tmpfs overlay.
- Test-only additions in the dom0: the host image's policy-rc.d is removed (it is a
  container image's, which forbids maintainer scripts to start services; a dom0 has
  none), and so is man-db's auto-update flag (its trigger re-indexes every manual page
  of the host, over 9p under TCG: more than 15 minutes); before anything is installed,
  three paused domains
  (mkdomains.py, raw hypercalls; session.EXTRA_DOMAINS), two of them allowed more than
  2^31 pages, so that the agent has real mismatches to export and the alert rules real
  series to go pending on; ``TimeoutStartSec=600s`` drop-ins for both services
  (the emulated CPU is slow; see TCG_DROPIN), a transient Prometheus unit (Debian's
  /usr/bin/prometheus, loopback, tmpfs storage, the project's alert rules loaded), the
  config edit for the reload, node_exporter's textfile directory, and the watchdog
  drop-in (XENPROBE_TEST_MODE=1 XENPROBE_TEST_HANG_SWEEP=2).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.debpkg import DebianPackages
from xenprobe.support.logs import PRIORITY

from .assets import PRIVCMD_MODULE, Assets
from .boot import LOCKUP_ARGS, Dom0Run
from .compare import int_path_verdict
from .session import EXTRA_DOMAINS
from .systemd_boot import SHARE_IN_DOM0, fresh_share, run_systemd_dom0
from .watch_boot import DEBUGREGS, WATCH_DOMAINS, build_callers, maximum_gpfn

pytestmark = pytest.mark.realxen

# The systemd boots: the releases the unit is installed on. 4.14 (bullseye) is booted by
# the session tier (test_xenprobe.py) only: the service's behaviour does not depend on
# the release, and a third systemd boot would add about ten minutes to CI.
RELEASES = ("4.17", "4.20")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
README = REPO / "README.md"
SYSTEMD = REPO / "contrib" / "systemd"
RUNNER = HERE / "service_runner.py"
MKDOMAINS = HERE / "mkdomains.py"
READER = HERE / "reader.py"
SERVE_PROBE = HERE / "serve_probe.py"

# What an operator runs, in the share's dist/ (which holds the .deb). README's Install
# section gives `apt install ./xenprobe_VERSION_amd64.deb`, which also fetches the
# dependencies; the dom0 has no network, and has them already (see the docstring).
PACKAGE_LINES = ["dpkg -i ./xenprobe_*_amd64.deb",
                 "systemctl status xenprobe --no-pager"]
TIMER_LINES = ["systemctl enable --now xenprobe-check.timer"]
PACKAGED_UNIT = "lib/systemd/system/xenprobe.service"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
EXPECTED_VERSION = {"4.17": "4.17.", "4.20": "4.20."}
CAP_IPC_LOCK = 14
CAP_SYS_PTRACE = 19  # the consumer scan (docs/consumers.md)
# QEMU is killed after this long; the runner in dom0 gives up a little earlier, so
# that the journal is still saved.  Seen: 18-20 minutes per boot (both side by side) on a
# two-core host loaded by other work; most of it is systemd's daemon-reloads and cold
# Python starts under TCG.
# The watch phase (serve --watch, then a `xenprobe watch` session) adds about 5 minutes.
BOOT_TIMEOUT_S = 2400
RUNNER_DEADLINE_S = 2100
DOM0_MEM_MIB = 1024
# One vCPU, as every watch boot has (session.SESSION_SMP). On two, arming and disarming
# kprobes on privcmd_ioctl while another vCPU enters it crashes or hangs this kernel
# under QEMU TCG: CI once lost this boot to a soft lockup of a xenprobe task on vCPU 1
# with vCPU 0's timers dead, and tests/realxen/stress_arming.py reproduces a crash or
# that hang within 53 to 70 rounds (docs/watch.md, "Known limits"). The service's
# behaviour under test does not depend on the vCPU count.
SERVICE_SMP = 1

# The one accommodation of the emulated machine: TCG runs the dom0 one to two orders of
# magnitude slower than the hardware the units' start timeouts are meant for (a cold
# `xenprobe serve` took 50-70 s to READY=1 on a loaded two-core host).
TCG_DROPIN = """\
# Test only (tests/realxen/test_service.py): the dom0 runs on an emulated CPU (TCG).
[Service]
TimeoutStartSec=600s
# ExecStopPost's cold Python start (watch --disarm-for-service) counts against it too.
TimeoutStopSec=120s
"""
TCG_DROPINS = ("etc/systemd/system/xenprobe.service.d/tcg.conf",
               "etc/systemd/system/xenprobe-check.service.d/tcg.conf")

HANG_DROPIN = """\
# Test only (tests/realxen/test_service.py): the second sweep blocks, as one stuck in a
# hypercall would; a short watchdog and sweep_timeout make systemd notice in seconds.
[Service]
Environment=XENPROBE_TEST_MODE=1 XENPROBE_TEST_HANG_SWEEP=2
WatchdogSec=20s
ExecStart=
ExecStart=/usr/bin/xenprobe serve --sweep-timeout 3
"""

PROMETHEUS_YML = """\
global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 2s
rule_files:
  - /usr/share/xenprobe/xenprobe-alerts.yml
scrape_configs:
  - job_name: xenprobe
    static_configs:
      - targets: ["127.0.0.1:9723"]
"""

TARGET_UNIT = """\
[Unit]
Description=xenprobe service test (tests/realxen/test_service.py)
Requires=basic.target
After=basic.target
Wants=xenprobe-test-runner.service
AllowIsolate=yes
"""

RUNNER_UNIT = f"""\
[Unit]
Description=xenprobe service test runner
After=basic.target

[Service]
Type=exec
ExecStart=/bin/sh {SHARE_IN_DOM0}/runner.sh
StandardOutput=journal+console
StandardError=journal+console
"""

RUNNER_SH = f"""\
#!/bin/sh
# Runs service_runner.py, keeps the dom0's journal in the share, powers off.
S={SHARE_IN_DOM0}
# The host image is a container's: its policy-rc.d (exit 101) forbids maintainer
# scripts to start services. A dom0 has none (see the module docstring).
rm -f /usr/sbin/policy-rc.d
# man-db's trigger re-indexes every manual page of the host's root: over 9p under TCG
# that took more than 15 minutes. Without this flag file the trigger skips the index
# (man-db's own switch, debconf man-db/auto-update); the package installs as before.
rm -f /var/lib/man-db/auto-update
R=$S/results
timeout -k 10 {RUNNER_DEADLINE_S + 60} /usr/bin/python3 -B $S/service_runner.py \\
    $S/plan.json $R >$R/runner.out 2>$R/runner.err
rc=$?
journalctl -b --no-pager -o short-monotonic >$R/journal.txt 2>&1
journalctl -u xenprobe.service -o json --no-pager >$R/journal-xenprobe.json 2>&1
echo "$rc" >$S/exit_status
sync
systemctl poweroff --no-block || poweroff -f
"""


# --------------------------------------------------------------------------- README


def service_section() -> str:
    text = README.read_text()
    m = re.search(r"^## Run as a service\n(.*?)^## ", text, re.S | re.M)
    assert m, "README.md has no '## Run as a service' section"
    return m.group(1)


def operator_lines() -> tuple[list[str], list[str]]:
    """(the package's install lines, the textfile timer's)."""
    return PACKAGE_LINES, TIMER_LINES


# ------------------------------------------------------------------ the boot and results


@dataclass
class ServiceRun:
    release: str
    run: Dom0Run
    share: Path
    ev: dict[str, Any]

    def text(self, name: str) -> str:
        try:
            return (self.share / "results" / name).read_text(errors="replace")
        except OSError:
            return ""

    def journal(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text("journal-xenprobe.json").splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def report(self, n: int = 80) -> str:
        parts = [f"Xen {self.release} systemd dom0: exit_status={self.run.exit_status}, "
                 f"{self.run.duration_s:.0f} s, timed_out={self.run.timed_out}, "
                 f"workdir={self.run.workdir}"]
        if self.ev.get("errors"):
            parts.append("--- runner errors ---\n" + "\n".join(
                f"{k}: {v}" for k, v in self.ev["errors"].items()))
        out = self.text("runner.out")
        if out.strip() and self.run.exit_status is None:  # where a hung dom0 stopped
            parts.append("--- runner progress (tail) ---\n" + "\n".join(
                out.splitlines()[-15:]))
        err = self.text("runner.err")
        if err.strip():
            parts.append("--- runner stderr (tail) ---\n" + "\n".join(
                err.splitlines()[-30:]))
        journal = self.text("journal.txt")
        if journal.strip():
            parts.append("--- dom0 journal (tail) ---\n" + "\n".join(
                journal.splitlines()[-n:]))
        else:
            parts.append(self.run.report(n))
        return "\n".join(parts)

    def check(self, cond: object, what: str) -> None:
        if not cond:
            raise AssertionError(f"Xen {self.release}: {what}\n{self.report()}")


# The consumers of the watch phase (watch_boot.py's): raw IOCTL_PRIVCMD_HYPERCALLs and
# Debian's real libxenctrl 4.14 (int path) reading maximum_gpfn of domains whose values
# need more than 31 bits, DR6 (narrowed to -61456), and a program whose calls are intact.
CALLERS = f"{SHARE_IN_DOM0}/callers"
WATCH_CONSUMERS = {
    "privcmd_caller": {"argv": [f"{CALLERS}/privcmd_caller", "gpfn"], "domids": True},
    "debugreg": {"argv": [f"{CALLERS}/privcmd_caller", "debugreg",
                          *map(str, DEBUGREGS)], "domids": False},
    "xc414_caller": {"argv": ["env", f"LD_LIBRARY_PATH={SHARE_IN_DOM0}/xenlibs414",
                              f"{CALLERS}/xc414_caller"], "domids": True},
    "intact_caller": {"argv": [f"{CALLERS}/intact_caller", "version", "3"],
                      "domids": False},
}
DAMAGED_COMMS = ("privcmd_caller", "xc414_caller")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def prepare_share(workdir: Path, release: str, debs: DebianPackages,
                  assets: Assets) -> Path:
    share = fresh_share(workdir)
    service, textfile = operator_lines()
    with tarfile.open(share / "rootfs.tar", "w") as tar:
        for name in TCG_DROPINS:
            _add(tar, name, TCG_DROPIN.encode())
        # The dom0 kernel's xen-privcmd module file where its Debian package puts it,
        # and the modules.dep line that names it (the watch finds the file as modprobe
        # does): the dom0's root is the host's, which has no tree for this kernel.
        module = PRIVCMD_MODULE + "".join(assets.privcmd_module.suffixes[1:])
        moddir = f"lib/modules/{assets.kernel_release}"
        _add(tar, f"{moddir}/{module}", assets.privcmd_module.read_bytes())
        _add(tar, f"{moddir}/modules.dep", f"{module}:\n".encode())
    libs = build_callers(share / "callers")
    shutil.copytree(libs["4.14"], share / "xenlibs414", symlinks=True)
    (share / "dist").mkdir()
    shutil.copy2(debs.production, share / "dist" / debs.production.name)
    (share / "units" / "xenprobe-test.target").write_text(TARGET_UNIT)
    (share / "units" / "xenprobe-test-runner.service").write_text(RUNNER_UNIT)
    (share / "runner.sh").write_text(RUNNER_SH)
    shutil.copy2(RUNNER, share / "service_runner.py")
    # mkdomains.py imports reader.py, and service_runner.py serve_probe.py, from their
    # directory.
    for tool in (MKDOMAINS, READER, SERVE_PROBE):
        shutil.copy2(tool, share / tool.name)
    mkdomains = ["/usr/bin/python3", "-B", f"{SHARE_IN_DOM0}/{MKDOMAINS.name}",
                 "--backend", "privcmd", "--release", release,
                 *(a for cur, mx, _pfn in EXTRA_DOMAINS for a in ("--domain", f"{cur}:{mx}"))]
    plan = {"release": release, "dist": f"{SHARE_IN_DOM0}/dist", "mkdomains": mkdomains,
            "service_block": service, "textfile_block": textfile,
            "textfile_dir": TEXTFILE_DIR, "prometheus_yml": PROMETHEUS_YML,
            "hang_dropin": HANG_DROPIN, "deadline_s": RUNNER_DEADLINE_S,
            "watch": {"mkdomains": [
                *mkdomains[:7],
                *(a for cur, mx, pfn in WATCH_DOMAINS for a in (
                    "--domain", f"{cur}:{mx}" + (f":{pfn:#x}" if pfn is not None else "")))],
                "consumers": WATCH_CONSUMERS, "damaged_comms": DAMAGED_COMMS}}
    (share / "plan.json").write_text(json.dumps(plan, indent=1))
    return share


def boot_one(release: str, assets: Assets, root: Path, debs: DebianPackages) -> ServiceRun:
    workdir = root / f"xen{release.replace('.', '')}-service"
    workdir.mkdir(parents=True, exist_ok=True)
    share = prepare_share(workdir, release, debs, assets)
    run = run_systemd_dom0(release, share, unit="xenprobe-test.target",
                           timeout=BOOT_TIMEOUT_S, workdir=workdir,
                           dom0_mem_mib=DOM0_MEM_MIB, assets=assets,
                           kernel_args=LOCKUP_ARGS, smp=SERVICE_SMP)
    try:
        ev = json.loads((share / "results" / "evidence.json").read_text())
    except (OSError, ValueError):
        ev = {}
    return ServiceRun(release, run, share, ev)


@pytest.fixture(scope="session")
def service_runs(realxen_assets: Assets, tmp_path_factory: pytest.TempPathFactory,
                 request: pytest.FixtureRequest, debian_packages: DebianPackages
                 ) -> dict[str, ServiceRun | BaseException]:
    """Both releases' systemd boots, side by side (one QEMU per host core)."""
    root = tmp_path_factory.mktemp("service")
    out: dict[str, ServiceRun | BaseException] = {}

    def one(release: str) -> None:
        try:
            out[release] = boot_one(release, realxen_assets, root, debian_packages)
        except BaseException as e:  # re-raised in the tests of that release
            out[release] = e

    threads = [threading.Thread(target=one, args=(r,), name=f"xen{r}-service")
               for r in RELEASES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    for r, s in sorted(out.items()):
        if isinstance(s, ServiceRun) and tr is not None:
            phases = ", ".join(f"{k} {v['seconds']:.0f}s"
                               for k, v in s.ev.get("phases", {}).items())
            tr.write_line(f"Xen {r} systemd boot: {s.run.duration_s:.0f} s in QEMU; runner "
                          f"started at dom0 uptime {s.ev.get('uptime_at_start', '?')} s; "
                          f"{phases}")
            for line in watch_figures(s):
                tr.write_line(line)
    return out


@pytest.fixture(params=RELEASES, ids=[f"xen{r}" for r in RELEASES])
def svc(request: pytest.FixtureRequest,
        service_runs: dict[str, ServiceRun | BaseException]) -> ServiceRun:
    s = service_runs[request.param]
    if isinstance(s, BaseException):
        raise s
    s.check(s.run.exit_status is not None and s.ev, "the runner never finished in the dom0")
    return s


# ------------------------------------------------------------------------ helpers


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def prom_result(ev: dict[str, Any], q: str) -> list[dict[str, Any]]:
    r = ev["queries"][q]
    assert r["status"] == "success", r
    result: list[dict[str, Any]] = r["data"]["result"]
    return result


def daemon_lines(journal: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(journal entry, parsed MESSAGE) for every line the xenprobe process wrote."""
    out = []
    for e in journal:
        if e.get("_SYSTEMD_UNIT") == "xenprobe.service" and e.get("_COMM") != "systemd" \
                and e.get("SYSLOG_IDENTIFIER") == "xenprobe":
            msg = e["MESSAGE"]
            if isinstance(msg, list):  # journald's byte-array form of non-UTF-8 text
                msg = bytes(msg).decode(errors="replace")
            # The unit's ExecStartPre/ExecStopPost helpers (`watch --arm-for-service`,
            # `--disarm-for-service`) are xenprobe too, and speak the CLI's one-line form.
            if "-for-service" in str(e.get("_CMDLINE", "")) \
                    or msg.startswith("xenprobe: watch "):
                continue
            out.append((e, json.loads(msg)))
    return out


def systemd_lines(journal: list[dict[str, Any]]) -> list[str]:
    return [e["MESSAGE"] for e in journal
            if e.get("_PID") == "1" and isinstance(e.get("MESSAGE"), str)]


# -------------------------------------------------------------------------- tests


def _packaged(deb: Path, path: str) -> str:
    """One file of a .deb, as dpkg would install it."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile(f"./{path}")
        assert member is not None, path
        return member.read().decode()


def test_installed_from_the_package_and_ready_through_notify(
        svc: ServiceRun, debian_packages: DebianPackages) -> None:
    ev = svc.ev
    for step in ev.get("install", []):
        svc.check(step["rc"] == 0, f"install line failed: {step}")
    svc.check(len(ev.get("install", [])) == len(svc_plan(svc)["service_block"]),
              "not every install line ran")
    # dpkg installed it (the maintainer scripts ran), /usr/bin/xenprobe is the command,
    # and the service runs from the packaged unit and config, unchanged.
    pkg = ev["package"]
    svc.check(pkg["status"]["out"].startswith("install ok installed "), pkg)
    svc.check(pkg["which"]["out"].strip() == "/usr/bin/xenprobe", pkg)
    svc.check(ev["show"].get("FragmentPath") == f"/{PACKAGED_UNIT}",
              ev["show"].get("FragmentPath"))
    unit = _packaged(debian_packages.production, PACKAGED_UNIT)
    svc.check("ExecStart=/usr/bin/xenprobe serve" in unit, unit)
    svc.check(svc.text("installed-xenprobe.service") == unit, "the unit installed differs")
    svc.check(svc.text("installed-xenprobe.toml")
              == _packaged(debian_packages.production, "etc/xenprobe/xenprobe.toml")
              == (SYSTEMD / "xenprobe.toml").read_text(), "the config installed differs")
    show = ev["show"]
    svc.check(show.get("Type") == "notify" and show.get("NotifyAccess") == "main", show)
    svc.check((show.get("ActiveState"), show.get("SubState")) == ("active", "running"),
              show)
    svc.check(show.get("UnitFileState") == "enabled", show.get("UnitFileState"))
    svc.check(show.get("DropInPaths", "") == f"/{TCG_DROPINS[0]}",
              f"drop-ins: {show.get('DropInPaths')}")
    # dpkg's postinst (deb-systemd-invoke start) returned only once READY=1 came
    # (Type=notify), and status said so.
    after = ev["after_install"]
    svc.check((after["ActiveState"], after["SubState"]) == ("active", "running"), after)
    # The STATUS line the daemon sends, as `systemctl show` and `systemctl status` see it
    # (a later sweep may have replaced it in between).
    status = r"sweep \d+: .* in \d+ probes, \d+ domains; serving \S+:9723"
    status_text = ev["status_wait"]["StatusText"]
    svc.check(re.fullmatch(status, status_text), status_text)
    out = ev["status"]["out"]
    svc.check("Active: active (running)" in out, out)
    svc.check(re.search(rf'^\s+Status: "{status}"$', out, re.M), out)


def svc_plan(svc: ServiceRun) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads((svc.share / "plan.json").read_text())
    return plan


def test_the_hardening_stays_on_and_the_hypercalls_work(svc: ServiceRun) -> None:
    ev = svc.ev
    show = ev["show"]
    expect = {
        "NoNewPrivileges": "yes", "DevicePolicy": "closed", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateMounts": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "ProtectClock": "yes",
        "ProtectHostname": "yes", "ProtectProc": "invisible", "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes", "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes", "RemoveIPC": "yes", "PrivateIPC": "yes",
        "CapabilityBoundingSet": "cap_ipc_lock cap_sys_ptrace", "SystemCallArchitectures": "native",
        "UMask": "0077", "KeyringMode": "private",
    }
    for k, v in expect.items():
        svc.check(show.get(k) == v, f"{k}={show.get(k)!r}, want {v!r}")
    svc.check("/dev/xen/privcmd rw" in show.get("DeviceAllow", ""), show.get("DeviceAllow"))
    # In force on the running process, not only in the unit.
    st = dict(line.split(":\t", 1) for line in ev["proc_status"].splitlines()
              if ":\t" in line)
    svc.check(st["NoNewPrivs"].strip() == "1", st["NoNewPrivs"])
    svc.check(st["Seccomp"].strip() == "2", st["Seccomp"])  # a filter is installed
    for cap in ("CapEff", "CapPrm", "CapBnd"):
        svc.check(int(st[cap], 16) == 1 << CAP_IPC_LOCK | 1 << CAP_SYS_PTRACE,
                  f"{cap} {st[cap]}")
    svc.check("/dev/xen/privcmd" in ev["proc_fds"].values(),
              f"privcmd not open: {ev['proc_fds']}")
    m = re.search(r"Overall exposure level for xenprobe.service: (\d+\.\d)",
                  ev["security"]["out"])
    svc.check(m and float(m.group(1)) <= 2.1, ev["security"]["out"][-2000:])
    # The hypercalls work under all of it: the agent's own view.
    metrics = metric_samples(svc.text("metrics-at-query.txt"))
    svc.check(metrics.get(("xenprobe_up", frozenset())) == 1.0, "xenprobe_up != 1")
    info = [dict(labels) for (n, labels) in metrics if n == "xenprobe_xen_info"]
    svc.check(len(info) == 1 and info[0]["version"].startswith(
        EXPECTED_VERSION[svc.release]), info)


def test_prometheus_scrapes_the_agents_series(svc: ServiceRun) -> None:
    ev = svc.ev
    svc.check(ev.get("prometheus_up"), "Prometheus never saw xenprobe_up 1")
    targets = ev["targets"]["data"]["activeTargets"]
    svc.check([(t["labels"]["job"], t["health"]) for t in targets] == [("xenprobe", "up")],
              targets)
    info = prom_result(ev, "xenprobe_xen_info")
    svc.check(len(info) == 1 and info[0]["metric"]["version"].startswith(
        EXPECTED_VERSION[svc.release]), info)
    svc.check(prom_result(ev, "xenprobe_up")[0]["value"][1] == "1", "xenprobe_up")
    # Everything the agent exports is in Prometheus, with the same labels and (for the
    # findings, which do not move on an idle host) the same values.
    agent = metric_samples(svc.text("metrics-at-query.txt"))
    prom: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for r in prom_result(ev, '{__name__=~"xenprobe_.*",job="xenprobe"}'):
        labels = {k: v for k, v in r["metric"].items()
                  if k not in ("__name__", "job", "instance")}
        prom[(r["metric"]["__name__"], frozenset(labels.items()))] = float(r["value"][1])
    agent_x = {k: v for k, v in agent.items() if k[0].startswith("xenprobe_")}
    # Holders of privcmd come and go between a scrape and this snapshot (the timer's
    # check, the test's own holder): their series may be newer than the last scrape.
    volatile = {"xenprobe_sweep_running_seconds", "xenprobe_privcmd_consumer_info",
                "xenprobe_privcmd_consumers"}
    missing = {k for k in agent_x if k not in prom and k[0] not in volatile}
    svc.check(not missing, f"in the agent's /metrics but not in Prometheus: {missing}")
    stable = ("xenprobe_mismatch_verdicts", "xenprobe_domain_mismatch", "xenprobe_probes_at_risk",
              "xenprobe_raw_bit_length", "xenprobe_probes", "xenprobe_domains",
              "xenprobe_xen_info", "xenprobe_up")
    for k, v in agent_x.items():
        if k[0] in stable:
            svc.check(prom.get(k) == v, f"{k}: agent {v}, Prometheus {prom.get(k)}")
    mismatches = {k: v for k, v in agent_x.items() if k[0] == "xenprobe_mismatch_verdicts"}
    prom_mismatches = {k: v for k, v in prom.items() if k[0] == "xenprobe_mismatch_verdicts"}
    svc.check(mismatches == prom_mismatches, f"{mismatches} != {prom_mismatches}")
    # The real mismatches: the domains made before the service started, allowed
    # 2^31 + 12345 and 2^32 - 1 pages, are in Prometheus by domain, layer and verdict.
    made = ev.get("domains") or {}
    svc.check(made.get("run", {}).get("rc") == 0 and (made.get("out") or {}).get("domains"),
              f"mkdomains: {made}")
    big = [d for d in made["out"]["domains"] if d["max_pages"] > (1 << 31) - 1]
    svc.check(len(big) == 2, made["out"])
    for d in big:
        want = int_path_verdict(d["max_pages"])
        for layer in ("ioctl", "syscall"):
            key = ("xenprobe_domain_mismatch", frozenset({
                ("quantity", "maximum_reservation"), ("layer", layer), ("verdict", want),
                ("domid", str(d["domid"]))}))
            svc.check(prom.get(key) == 1.0, f"{key} not in Prometheus: {sorted(prom)}")
            total = ("xenprobe_mismatch_verdicts", frozenset({
                ("quantity", "maximum_reservation"), ("layer", layer), ("verdict", want)}))
            svc.check((prom.get(total) or 0) >= 1, f"{total}: {prom.get(total)}")
    # ...and they are harmless (no tool issues maximum_reservation: xenprobe/probe/impact.py):
    # counted by impact, and no impact alert, pending or firing.
    svc.check(bool((ev.get("harmless") or {}).get("data", {}).get("result")),
              ev.get("harmless"))
    alerts = (ev.get("alerts") or {}).get("data", {}).get("alerts", [])
    svc.check(not [a for a in alerts if a["labels"]["alertname"] in (
        "XenprobeIntPathExposure", "XenprobeConsumersReadWrongValues",
        "XenprobeConsumerAtRisk")], alerts)
    # The project's alert rules load and evaluate against the real series.
    groups = ev["rules"]["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    svc.check(len(rules) >= 7 and all(r["health"] == "ok" for r in rules),
              [(r["name"], r["health"], r.get("lastError")) for r in rules])


def documented_events() -> dict[str, set[str]]:
    """README's **Logs:** bullet: event -> its documented keys."""
    m = re.search(r"^- \*\*Logs:\*\*(.*?)(?=^- |^\S)", service_section(), re.S | re.M)
    assert m, "no **Logs:** bullet in README's 'Run as a service'"
    text = " ".join(m.group(1).split())
    text = text[text.index("event's own keys:"):text.index("The journal's priority")]
    out: dict[str, set[str]] = {}
    for name, inner in re.findall(r"`(\w+)`(?: \(([^)]*)\))?", text):
        out[name] = set(re.findall(r"`(\w+)`", inner or ""))
    return out


# Events this run must produce (the others, such as sweep_failed, need a failure).
SEEN_EVENTS = ("serving", "sweep", "reloading", "reloaded", "sweep_stuck", "stopping")


def test_structured_logs_are_in_the_journal(svc: ServiceRun) -> None:
    journal = svc.journal()
    lines = daemon_lines(journal)
    svc.check(lines, "no xenprobe lines in `journalctl -u xenprobe -o json`")
    seen: dict[str, dict[str, Any]] = {}
    for entry, msg in lines:
        svc.check({"event", "level", "timestamp"} <= msg.keys(), msg)
        svc.check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", msg["timestamp"]),
                  msg["timestamp"])
        svc.check(msg["level"] in ("debug", "info", "warning", "error"), msg)
        svc.check(entry["_SYSTEMD_UNIT"] == "xenprobe.service", entry)
        seen.setdefault(msg["event"], msg)
    documented = documented_events()
    for event in SEEN_EVENTS:
        svc.check(event in documented, f"README documents no {event!r} event: {documented}")
        svc.check(event in seen, f"no {event!r} line in the journal: {sorted(seen)}")
    for event, msg in seen.items():
        if event in documented:
            svc.check(documented[event] <= msg.keys(), f"{event}: {msg}")
    # README: the journal's priority is the line's level (`journalctl -p` works).
    wrong = [(e.get("PRIORITY"), m["level"], m["event"]) for e, m in lines
             if e.get("PRIORITY") != str(PRIORITY[m["level"]])]
    svc.check(not wrong, f"PRIORITY differs from the level: {wrong[:5]}")
    svc.check(any(int(e["PRIORITY"]) <= PRIORITY["error"] for e, _ in lines),
              "no line at priority error or above (sweep_stuck is one)")
    svc.check(seen["sweep"]["mismatches"] >= 0 and seen["sweep"]["probes"] > 0, seen["sweep"])


def test_reload_rereads_the_config_and_keeps_the_counters(svc: ServiceRun) -> None:
    r = svc.ev["reload"]
    svc.check(r["config_changed"], "the config edit changed nothing")
    svc.check(r["systemctl_reload"]["rc"] == 0, r["systemctl_reload"])
    before, after = r["before"], r["after"]
    svc.check(before["MainPID"] == after["MainPID"] != "0", (before, after))
    svc.check(after["NRestarts"] == before["NRestarts"], (before, after))
    svc.check((after["ActiveState"], after["SubState"]) == ("active", "running"), after)
    # interval 30 -> 2: three more sweeps within a minute only if the reload applied.
    svc.check(r["seconds_to_3_sweeps"] is not None and r["seconds_to_3_sweeps"] < 60, r)
    counts = [c for _, c in r["samples"] if c is not None]
    svc.check(counts and counts[0] >= r["sweeps_before"] and counts == sorted(counts),
              f"sweeps_total went back: {r['sweeps_before']} then {counts}")
    resets = r["resets"]["data"]["result"]
    svc.check(resets and all(x["value"][1] == "0" for x in resets), resets)
    changes = r["start_time_changes"]["data"]["result"]
    svc.check(changes and all(x["value"][1] == "0" for x in changes), changes)
    for x in r["mismatch_resets"]["data"]["result"]:
        svc.check(x["value"][1] == "0", x)
    events = [m for _, m in daemon_lines(svc.journal())]
    reloaded = [m for m in events if m["event"] == "reloaded"]
    svc.check(reloaded and reloaded[0]["interval"] == 2.0, reloaded)


def test_stop_is_clean_and_within_its_timeout(svc: ServiceRun) -> None:
    s = svc.ev["stop"]
    svc.check(s["systemctl_stop"]["rc"] == 0, s)
    # Within TimeoutStopSec: past it, systemd kills the process (ExecMainCode 2, killed)
    # and the Result is "timeout".
    after = s["after"]
    svc.check((after["ActiveState"], after["Result"]) == ("inactive", "success"), after)
    svc.check((after["ExecMainCode"], after["ExecMainStatus"]) == ("1", "0"), after)
    pid = s["pid"]
    events = [m["event"] for e, m in daemon_lines(svc.journal()) if e["_PID"] == pid]
    svc.check(events and events[-1] == "stopping", events)


def test_the_watchdog_restarts_a_hung_sweep(svc: ServiceRun) -> None:
    w = svc.ev["watchdog"]
    svc.check(w["start"]["rc"] == 0, w["start"])
    svc.check("hang.conf" in w["first"]["DropInPaths"], w["first"])
    svc.check(w["first"]["WatchdogUSec"] == "20s", w["first"])
    svc.check(w["restarted"], f"no restart: {w['timeline']}")
    svc.check(any(t.get("Result") == "watchdog" for t in w["timeline"]), w["timeline"])
    first = w["first"]["MainPID"]
    journal = svc.journal()
    mine = [m for e, m in daemon_lines(journal) if e["_PID"] == first]
    events = [m["event"] for m in mine]
    svc.check({"test_mode", "test_hang_sweep", "sweep_stuck"} <= set(events), events)
    said = systemd_lines(journal)
    svc.check(any(re.search(r"Watchdog timeout \(limit 20s\)!", s) for s in said), said)
    svc.check(any("Failed with result 'watchdog'" in s for s in said), said)
    svc.check(any(re.search(r"Scheduled restart job, restart counter is at 1", s)
                  for s in said), said)


def test_the_timer_writes_a_valid_textfile(svc: ServiceRun) -> None:
    ev = svc.ev
    for step in ev.get("timer_install", []):
        svc.check(step["rc"] == 0, f"timer line failed: {step}")
    run = ev["check_run"]
    svc.check(run, f"the timer never ran the check: {ev.get('list_timers')}")
    # 0: every layer agrees; 1: a mismatch was found (SuccessExitStatus=1).
    svc.check(run["Result"] == "success" and run["ExecMainStatus"] in ("0", "1"), run)
    svc.check(ev["timer_show"]["LastTriggerUSecMonotonic"] not in ("", "0"),
              ev["timer_show"])
    text = svc.text("xenprobe.prom")
    svc.check(ev.get("textfile_mode") == "0o644", ev.get("textfile_mode"))
    samples = metric_samples(text)  # raises on anything that is not exposition text
    svc.check(samples.get(("xenprobe_up", frozenset())) == 1.0, text[:2000])
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60, check=False)
    svc.check(p.returncode == 0, f"promtool check metrics: {p.stdout}{p.stderr}")


def test_outside_the_control_domain_the_service_is_skipped_not_restarted(
    svc: ServiceRun,
) -> None:
    # README: "elsewhere (a domU) the unit is skipped, not failed and restarted".
    d = svc.ev["domu"]
    svc.check(d["bind"]["rc"] == 0 and d["capabilities"] == "", d)
    svc.check(d["start"]["rc"] == 0, d["start"])  # a skipped start is not an error
    for when in ("after_start", "later"):
        s = d[when]
        svc.check((s["ActiveState"], s["Result"], s["MainPID"])
                  == ("inactive", "exec-condition", "0"), (when, s))
    svc.check(d["later"]["NRestarts"] == d["after_start"]["NRestarts"], d)
    svc.check(d["umount"]["rc"] == 0, d["umount"])


def test_the_service_reports_a_process_holding_privcmd(svc: ServiceRun) -> None:
    """Another root process holds the real privcmd (a transient unit, as qemu or xenstored
    would): under the unit's sandbox (CAP_SYS_PTRACE for the scan, ProtectProc=invisible)
    the service's metrics name it, with nothing left unread."""
    pid = svc.ev.get("holder_pid")
    svc.check(pid, f"the holder never held privcmd: {svc.ev.get('holder_start')}")
    m = metric_samples(svc.text("metrics-at-query.txt"))
    info = {dict(labels)["pid"]: dict(labels) for (n, labels) in m
            if n == "xenprobe_privcmd_consumer_info"}
    svc.check(pid in info, f"holder {pid} not in {info}")
    svc.check(info[pid]["comm"].startswith("python3") and info[pid]["libxenctrl"] == ""
              and info[pid]["verdict"] == "unknown", info[pid])
    svc.check(m.get(("xenprobe_privcmd_consumers_scan_complete", frozenset())) == 1.0,
              "the scan could not look everywhere")
    for reason in ("fds", "maps"):
        key = ("xenprobe_privcmd_consumers_unreadable_processes",
               frozenset({("reason", reason)}))
        svc.check(m.get(key) == 0.0, f"{reason}: {m.get(key)}")


# ------------------------------------------------------------------ serve --watch


def watch_figures(s: ServiceRun) -> list[str]:
    """The watch phase's figures for the terminal: memory beside serve's, and the
    terminal session as the operator saw it (the artefact watch-session.txt)."""
    w = s.ev.get("watch")
    if not w:
        return [f"Xen {s.release}: no watch phase"]
    st = dict(line.split(":\t", 1) for line in s.ev.get("proc_status", "").splitlines()
              if ":\t" in line)

    def mem(d: dict[str, str]) -> str:
        return f"VmRSS {d.get('VmRSS', '?').strip()}, VmHWM {d.get('VmHWM', '?').strip()}"
    session = s.share / "results" / "watch-session.txt"
    return [
        f"Xen {s.release} ({w.get('hypervisor', '?')}, dom0 kernel {w.get('uname', '?')}) "
        f"memory: serve {mem(st)}; serve --watch {mem(w.get('serve_memory', {}))}; "
        f"xenprobe watch {mem(w.get('watch_memory', {}))}",
        f"Xen {s.release}: `{' '.join(w.get('session_argv', []))}` exited "
        f"{w.get('session_rc')}; its output ({session}):",
        *("  | " + line for line in s.text("watch-session.txt").splitlines()),
    ]


def expected_damage(svc: ServiceRun) -> dict[tuple[str, str, str, str], int]:
    """The damaged calls each consumer makes: maximum_gpfn of every domain made for the
    watch phase, once per consumer, and DR6, as xenprobe.watch.judge classifies them."""
    from xenprobe.watch.judge import judge

    out: dict[tuple[str, str, str, str], int] = {}
    w = svc.ev["watch"]
    for d in w["domains"]:
        pfn = d.get("max_pfn")
        raw, given, verdict, _ = judge(maximum_gpfn(pfn))
        if raw != given:
            for comm in DAMAGED_COMMS:
                key = ("memory_op", "maximum_gpfn", verdict.value, comm)
                out[key] = out.get(key, 0) + 1
    for reg in DEBUGREGS:
        raw, given, verdict, _ = judge(0xFFFF0FF0 if reg == 6 else 0x400)
        if raw != given:
            key = ("get_debugreg", "", verdict.value, "privcmd_caller")
            out[key] = out.get(key, 0) + 1
    return out


def test_serve_watch_exports_the_damaged_calls_of_real_consumers(svc: ServiceRun) -> None:
    """The conffile's watch key on, under the packaged unit's sandbox: the probes armed
    by its ExecStartPre, the damaged values real programs receive in /metrics, by op,
    subop, verdict and process name; nothing left in tracefs after `systemctl stop`."""
    w = svc.ev.get("watch")
    svc.check(w, "no watch phase")
    svc.check(w["mkdomains"]["rc"] == 0, w["mkdomains"])
    svc.check(w["config_changed"], "the config has no `watch =` line to turn on")
    svc.check(w["start"]["rc"] == 0, w["start"])
    svc.check(w["armed"], f"xenprobe_watch_armed never 1: {w.get('journal')}")
    for name, r in w["consumers"].items():
        svc.check(r["rc"] == 0, f"{name}: {r}")
    svc.check(w["damaged_seen"], f"the damaged calls never reached /metrics: "
              f"{svc.text('metrics-watch.txt')[-3000:]}")
    m = metric_samples(svc.text("metrics-watch.txt"))
    svc.check(m.get(("xenprobe_watch_armed", frozenset())) == 1.0, "armed != 1")
    got = {(dict(lb)["op"], dict(lb)["subop"], dict(lb)["verdict"], dict(lb)["process"]): v
           for (n, lb), v in m.items() if n == "xenprobe_watch_damaged_calls_total"}
    want = expected_damage(svc)
    svc.check(want and {k: float(v) for k, v in want.items()} == got,
              f"damaged calls: want {want}, got {got}")
    calls = m.get(("xenprobe_watch_calls_total", frozenset({("op", "memory_op")}))) or 0
    svc.check(calls >= 2 * len(w["domains"]), f"memory_op calls {calls}")
    svc.check(m.get(("xenprobe_watch_lost_events_total", frozenset())) == 0.0, "lost events")
    # Armed by the service's ExecStartPre: the watch's group and instance were there...
    armed = w["tracefs_armed"]
    svc.check("xenprobe_watch" in armed.get("instances", []), armed)
    svc.check("xenprobe_watch/" in armed.get("kprobe_events", ""), armed)
    # ... and after `systemctl stop` (ExecStopPost) tracefs is as before.
    svc.check(w["stop"]["rc"] == 0 and w["after_stop"]["Result"] == "success", w["stop"])
    svc.check(w["tracefs_after_stop"] == w["tracefs_before"],
              f"before {w['tracefs_before']}, after stop {w['tracefs_after_stop']}")


def test_prometheus_fires_the_watch_alert_naming_the_process(svc: ServiceRun) -> None:
    w = svc.ev.get("watch") or {}
    alerts = (w.get("alerts") or {}).get("data", {}).get("alerts", [])
    firing = {a["labels"]["process"] for a in alerts
              if a["labels"]["alertname"] == "XenprobeWatchDamagedValue"
              and a["state"] == "firing"}
    svc.check(firing == set(DAMAGED_COMMS),
              f"firing for {firing}: {w.get('alerts_last') or alerts}")
    for a in alerts:
        if a["labels"]["alertname"] == "XenprobeWatchDamagedValue":
            svc.check(a["labels"]["process"] in a["annotations"]["summary"], a)


def test_a_watch_session_in_the_terminal_sees_the_damaged_calls(svc: ServiceRun) -> None:
    """`xenprobe watch` (the terminal view) as an operator runs it, Ctrl-C to stop: a
    line per damaged call naming the process, the final tally, exit 1, and tracefs as
    before."""
    w = svc.ev.get("watch") or {}
    svc.check(w.get("session_ready"), f"the session never armed: "
              f"{svc.text('watch-session.err')}")
    for name, r in w["session_consumers"].items():
        svc.check(r["rc"] == 0, f"{name}: {r}")
    svc.check(w["session_rc"] == 1, f"exit {w['session_rc']}: {svc.text('watch-session.err')}")
    lines = svc.text("watch-session.txt").splitlines()
    svc.check(lines and lines[0].startswith("xenprobe watch: armed HYPERCALL at "
                                            "privcmd_ioctl+"), lines[:1])
    want = expected_damage(svc)
    for (op, subop, verdict, comm), n in want.items():
        name = f"{op}/{subop}" if subop else op
        seen = [x for x in lines if re.search(rf"\s{comm}\s+\d+ {name}\b.*\s"
                                              rf"{verdict.upper()}$", x)]
        svc.check(len(seen) == n, f"{comm} {name} {verdict}: {len(seen)} lines, want {n}")
    svc.check(not [x for x in lines if "intact_caller" in x], "intact_caller reported")
    svc.check(lines[-1].endswith("(final)") and " lost 0" in lines[-1], lines[-1:])
    svc.check(w["tracefs_after"] == w["tracefs_before"],
              f"before {w['tracefs_before']}, after {w['tracefs_after']}")


# docs/watch.md's "A real session": an excerpt of watch-session.txt from this test.  What
# differs from one run to the next (the kernel's clock, pids, domain ids, the tally's
# wall-clock time) is replaced before the comparison; the rest must be real.
WATCH_DOC = REPO / "docs" / "watch.md"
_VARYING = (
    (re.compile(r"^\s*\d+\.\d{6}\s+(\S+)\s+\d+ "), r"TIME \1 PID "),
    (re.compile(r" dom \d+:"), " dom D:"),
    (re.compile(r"^-- \d\d:\d\d:\d\d "), "-- HH:MM:SS "),
    (re.compile(r"\[\d+\]"), "[PID]"),
)


def normalized(line: str) -> str:
    for pattern, repl in _VARYING:
        line = pattern.sub(repl, line)
    return line.rstrip()


README = REPO / "README.md"
README_WATCH = "## Watching processes: `xenprobe watch`"


def documented_session(doc: Path = WATCH_DOC, heading: str = "## A real session"
                       ) -> tuple[str, list[str]]:
    """(the command line, the output lines) of a doc's real watch session."""
    text = doc.read_text()
    section = text[text.index(f"\n{heading}\n"):]
    section = section[:section.index("\n## ", 1)]
    block = re.search(r"```console\n(.*?)```", section, re.S)
    assert block, f"{doc.name}'s {heading!r} has no console block"
    lines = block.group(1).splitlines()
    assert lines[0].startswith("# ") and lines[1].startswith("$ "), lines[:2]
    return lines[1][2:], [x for x in lines[2:] if x != "^C"]


@pytest.mark.parametrize("doc", ["docs/watch.md", "README.md"])
def test_the_docs_show_a_real_watch_session(svc: ServiceRun, doc: str) -> None:
    """docs/watch.md's and README's lines are this run's session, line for line, where a
    ``...`` line stands for lines left out, once the varying fields are masked."""
    w = svc.ev.get("watch") or {}
    command, shown = (documented_session() if doc == "docs/watch.md"
                      else documented_session(README, README_WATCH))
    svc.check(command == " ".join(w.get("session_argv", []))
              .removeprefix("/usr/bin/"), command)
    real = [normalized(x) for x in svc.text("watch-session.txt").splitlines()]
    runs: list[list[str]] = [[]]
    for line in shown:
        if line.strip() == "...":
            runs.append([])
        else:
            runs[-1].append(normalized(line))
    at = 0
    for run in (r for r in runs if r):
        found = next((i for i in range(at, len(real) - len(run) + 1)
                      if real[i:i + len(run)] == run), None)
        svc.check(found is not None and (at > 0 or runs[0] != run or found == 0),
                  "docs/watch.md shows lines not in this order in the real session:\n"
                  + "\n".join(run) + "\n--- real ---\n" + "\n".join(real))
        at = (found or 0) + len(run)
