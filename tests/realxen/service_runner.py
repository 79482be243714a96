# SPDX-License-Identifier: GPL-2.0-only
"""Runs inside the systemd dom0 (test_service.py): xenprobe.service as an operator has it.

Started by xenprobe-test-runner.service with Debian's /usr/bin/python3 (standard library
only), as root, after basic.target.  It installs the Debian package as an operator
does, then exercises the service the way systemd and Prometheus do, and writes what it
saw into the share's results/ directory; the host asserts on it.  It asserts nothing
itself: it waits (each wait bounded) and records, so that one boot yields every finding
at once.

    python3 service_runner.py PLAN.json RESULTS_DIR

PLAN.json (written by the host): "release", "dist" (the directory the install commands
run in, holding the .deb), "service_block" and "textfile_block" (the operator's lines,
run one by one with /bin/sh), "textfile_dir", "prometheus_yml", "hang_dropin",
"deadline_s", "watch" (the watch phase's domains and consumers).
Results: evidence.json (one object, a key per phase) plus raw files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

# serve_probe.py sits beside this script in the share (test_service.prepare_share).
try:
    from .serve_probe import sample
except ImportError:
    from serve_probe import sample  # type: ignore[no-redef]

UNIT = "xenprobe.service"
CHECK = "xenprobe-check.service"
TIMER = "xenprobe-check.timer"
PROM_UNIT = "xenprobe-test-prometheus.service"
HOLDER_UNIT = "xenprobe-test-holder.service"
METRICS = "http://127.0.0.1:9723/metrics"
PROM = "http://127.0.0.1:9090"
DROPIN = Path("/etc/systemd/system/xenprobe.service.d/hang.conf")
CONFIG = Path("/etc/xenprobe/xenprobe.toml")
PROM_DIR = Path("/run/xenprobe-test")
TRACEFS = Path("/sys/kernel/tracing")
# The watch's own instance and its result probe's switch (xenprobe/watch/probes.py):
# enabled once `xenprobe watch` is armed.
WATCH_ENABLE = TRACEFS / "instances/xenprobe_watch/events/xenprobe_watch/result/enable"
WATCH_ALERT = "XenprobeWatchDamagedValue"

T0 = time.monotonic()


def now() -> float:
    return round(time.monotonic() - T0, 2)


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def run(cmd: str | list[str], timeout: float = 120, cwd: str | None = None,
        *, poll: bool = False) -> dict[str, Any]:
    # Each command but the polls is logged as it starts: should the dom0 hang, the
    # share's runner.out names what was running.
    if not poll:
        log(f"run {cmd if isinstance(cmd, str) else ' '.join(cmd)}")
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True,
                           timeout=timeout, cwd=cwd, check=False)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc = None
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else ""
        err = f"timed out after {timeout} s"
    return {"cmd": cmd, "rc": rc, "out": out, "err": err,
            "seconds": round(time.monotonic() - t, 2), "at": now()}


def show(unit: str, *props: str) -> dict[str, str]:
    args = ["systemctl", "show", unit]
    for p in props:
        args += ["-p", p]
    r = run(args, timeout=60, poll=True)
    out: dict[str, str] = {}
    for line in r["out"].splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k] = v
    return out


def wait(what: str, probe: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """probe() until it returns something true; None after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        try:
            got = probe()
        except Exception:  # a server not up yet, a file not there yet
            got = None
        if got:
            log(f"waited for {what}")
            return got
        if time.monotonic() > end:
            log(f"gave up waiting for {what} after {timeout} s")
            return None
        time.sleep(every)


def get(url: str, timeout: float = 15) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def query(q: str) -> dict[str, Any]:
    return json.loads(get(f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": q})))


def tracefs_state() -> dict[str, Any]:
    """What the kernel's tracing holds: every kprobe event and every instance."""
    try:
        events = (TRACEFS / "kprobe_events").read_text()
        instances = sorted(p.name for p in (TRACEFS / "instances").iterdir())
    except OSError as e:
        return {"error": f"{e.filename}: {e.strerror}"}
    return {"kprobe_events": events, "instances": instances}


def memory(pid: str | int) -> dict[str, str]:
    """VmRSS and VmHWM of a process, as /proc/PID/status gives them."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError as e:
        return {"error": str(e.strerror)}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())
            if k in ("Name", "VmRSS", "VmHWM")}


def hypervisor_version() -> str:
    """Xen's version as the dom0 kernel shows it (drivers/xen/sys-hypervisor.c)."""
    v = Path("/sys/hypervisor/version")
    try:
        return "{}.{}{}".format(*((v / k).read_text().strip()
                                  for k in ("major", "minor", "extra")))
    except OSError as e:
        return f"? ({e.strerror})"


def log(msg: str) -> None:
    print(f"[{now():7.2f}] {msg}", flush=True)


class Runner:
    def __init__(self, plan: dict[str, Any], results: Path) -> None:
        self.plan = plan
        self.res = results
        self.ev: dict[str, Any] = {"release": plan["release"], "errors": {},
                                   "uptime_at_start": uptime(), "phases": {}}
        self.deadline = T0 + float(plan["deadline_s"])

    def left(self, want: float) -> float:
        return max(1.0, min(want, self.deadline - time.monotonic()))

    def save(self) -> None:
        tmp = self.res / "evidence.json.tmp"
        tmp.write_text(json.dumps(self.ev, indent=1, default=str))
        tmp.replace(self.res / "evidence.json")

    def write(self, name: str, text: str) -> None:
        (self.res / name).write_text(text)

    def phase(self, name: str, fn: Callable[[], None]) -> None:
        log(f"phase {name}")
        t = time.monotonic()
        try:
            fn()
        except Exception:
            self.ev["errors"][name] = traceback.format_exc()
            log(f"phase {name} failed:\n{traceback.format_exc()}")
        self.ev["phases"][name] = {"seconds": round(time.monotonic() - t, 2),
                                   "uptime": uptime()}
        self.save()

    # -- phases --------------------------------------------------------------------------

    def lines(self, key: str, each: float = 240) -> list[dict[str, Any]]:
        """The operator's lines, one by one in the dist directory, stopping at a failure."""
        done = []
        for line in self.plan[key]:
            r = run(["/bin/sh", "-c", line], timeout=self.left(each), cwd=self.plan["dist"])
            done.append(r)
            log(f"$ {line}\n  -> rc {r['rc']} in {r['seconds']} s")
            if r["rc"] != 0:
                break
        return done

    def domains(self) -> None:
        # Before the service starts: paused domains whose limits the layers get wrong, so
        # that the agent has real mismatches to export (mkdomains.py, raw hypercalls).
        out = self.res / "domains.json"
        r = run([*self.plan["mkdomains"], "-o", str(out)], timeout=self.left(300))
        self.ev["domains"] = {"run": r, "out": json.loads(out.read_text())
                              if out.exists() else None}

    def holder(self) -> None:
        # Another root process holding privcmd open, as qemu or xenstored would, started
        # before the service so that its first sweep's consumer scan can see it.
        self.ev["holder_start"] = run([
            "systemd-run", f"--unit={HOLDER_UNIT}", "--description=privcmd holder (test)",
            "/usr/bin/python3", "-c", "import os, time; "
            "fd = os.open('/dev/xen/privcmd', os.O_RDWR); time.sleep(3600)"])

        def holding() -> str | None:
            pid = show(HOLDER_UNIT, "MainPID").get("MainPID", "0")
            fds = Path(f"/proc/{pid}/fd")
            try:
                held = pid != "0" and any(os.readlink(f) == "/dev/xen/privcmd"
                                          for f in fds.iterdir())
            except OSError:
                return None
            return pid if held else None
        self.ev["holder_pid"] = wait("the holder opens privcmd", holding, self.left(120))

    def install(self) -> None:
        # dpkg -i: byte-compiling, daemon-reloads and a cold start to READY=1, all under
        # TCG (test_service.TCG_DROPIN gives the start itself 600 s).
        self.ev["install"] = self.lines("service_block", each=900)
        self.ev["package"] = {
            "status": run(["dpkg-query", "-W", "-f=${Status} ${Version}", "xenprobe"]),
            "which": run(["/bin/sh", "-c", "command -v xenprobe"]),
        }
        self.ev["after_install"] = show(UNIT, "ActiveState", "SubState", "StatusText",
                                        "MainPID", "Type", "UnitFileState")

    def install_timer(self) -> None:
        # node_exporter's package makes its textfile directory; this dom0 has no
        # node_exporter, and the check unit runs only where the directory exists.
        Path(self.plan["textfile_dir"]).mkdir(parents=True, exist_ok=True)
        self.ev["timer_install"] = self.lines("textfile_block")
        self.ev["timer_install_uptime"] = uptime()
        self.ev["timer_after_install"] = show(TIMER, "ActiveState", "NextElapseUSecMonotonic",
                                              "UnitFileState")

    def start_prometheus(self) -> None:
        PROM_DIR.mkdir(parents=True, exist_ok=True)
        (PROM_DIR / "prometheus.yml").write_text(self.plan["prometheus_yml"])
        self.ev["prometheus_start"] = run([
            "systemd-run", f"--unit={PROM_UNIT}", "--description=Prometheus (xenprobe test)",
            "/usr/bin/prometheus", f"--config.file={PROM_DIR}/prometheus.yml",
            f"--storage.tsdb.path={PROM_DIR}/data", "--web.listen-address=127.0.0.1:9090",
            "--storage.tsdb.retention.time=1h"])

    def running(self) -> None:
        def swept() -> dict[str, str] | None:
            s = show(UNIT, "StatusText", "ActiveState", "SubState", "MainPID")
            ok = (re.match(r"sweep \d+", s.get("StatusText", ""))
                  and (s.get("ActiveState"), s.get("SubState")) == ("active", "running"))
            return s if ok else None
        self.ev["status_wait"] = wait("a finished sweep in STATUS", swept, self.left(600))
        self.ev["status"] = run(["systemctl", "status", UNIT, "--no-pager", "-l"])
        self.ev["show"] = show(UNIT)
        pid = self.ev["show"].get("MainPID", "0")
        self.ev["main_pid"] = pid
        proc = Path(f"/proc/{pid}")
        self.ev["proc_status"] = (proc / "status").read_text()
        fds = {}
        for fd in sorted((proc / "fd").iterdir(), key=lambda p: int(p.name)):
            try:
                fds[fd.name] = os.readlink(fd)
            except OSError as e:
                fds[fd.name] = f"? {e.strerror}"
        self.ev["proc_fds"] = fds
        self.ev["proc_mountinfo"] = (proc / "mountinfo").read_text()
        self.ev["security"] = run(["systemd-analyze", "security", UNIT, "--no-pager"],
                                  timeout=self.left(180))
        self.ev["cat"] = run(["systemctl", "cat", UNIT, "--no-pager"])
        # The unit as systemd loaded it: the package's (FragmentPath says where it is).
        self.write("installed-xenprobe.service",
                   Path(self.ev["show"].get("FragmentPath") or "/dev/null").read_text())
        self.write("installed-xenprobe.toml", CONFIG.read_text())

    def prometheus(self) -> None:
        self.ev["prometheus_ready"] = wait(
            "Prometheus ready", lambda: get(f"{PROM}/-/ready"), self.left(240))

        def up() -> dict[str, Any] | None:
            q = query("xenprobe_up")
            r = q["data"]["result"]
            return q if r and r[0]["value"][1] == "1" else None
        self.ev["prometheus_up"] = wait("xenprobe_up 1 in Prometheus", up, self.left(120))
        queries = ["xenprobe_up", "up{job=\"xenprobe\"}", "xenprobe_xen_info",
                   "xenprobe_build_info", "xenprobe_domains", "xenprobe_probes",
                   "xenprobe_mismatch_verdicts", "xenprobe_domain_mismatch",
                   "xenprobe_probes_at_risk",
                   "xenprobe_raw_bit_length", "xenprobe_layer_errors_total",
                   "xenprobe_sweeps_total", "xenprobe_stale",
                   '{__name__=~"xenprobe_.*",job="xenprobe"}']
        self.ev["queries"] = {q: query(q) for q in queries}
        # The agent's own view of the same moment, for comparison on the host.
        self.write("metrics-at-query.txt", get(METRICS))
        self.ev["targets"] = json.loads(get(f"{PROM}/api/v1/targets"))
        self.ev["rules"] = json.loads(get(f"{PROM}/api/v1/rules"))

        def harmless_seen() -> dict[str, Any] | None:
            q = query('xenprobe_mismatched_readings{impact="harmless"} > 0')
            return q if q["data"]["result"] else None
        # The domains' maximum_reservation past INT_MAX is a harmless finding (no tool
        # issues that memory op: xenprobe/probe/impact.py): in the metrics, never an alert.
        # The rules are evaluated every 2 s; give them a few rounds, then record them.
        self.ev["harmless"] = wait("harmless readings in Prometheus", harmless_seen,
                                   self.left(60))
        time.sleep(6)
        self.ev["alerts"] = json.loads(get(f"{PROM}/api/v1/alerts"))

    def reload(self) -> None:
        before_text = get(METRICS)
        self.write("metrics-before-reload.txt", before_text)
        before = show(UNIT, "MainPID", "NRestarts", "ExecMainStartTimestampMonotonic")
        sweeps = sample(before_text, "xenprobe_sweeps_total") or 0
        text = CONFIG.read_text()
        edited = re.sub(r"(?m)^interval = .*$", "interval = 2", text)
        CONFIG.write_text(edited)
        t = time.monotonic()
        r = run(["systemctl", "reload", UNIT])
        series = []

        def faster() -> bool:
            m = get(METRICS)
            series.append((round(time.monotonic() - t, 2),
                           sample(m, "xenprobe_sweeps_total")))
            return (sample(m, "xenprobe_sweeps_total") or 0) >= sweeps + 3
        reached = wait("3 sweeps at the reloaded interval", faster, self.left(60), 0.5)
        after_text = get(METRICS)
        self.write("metrics-after-reload.txt", after_text)
        after = show(UNIT, "MainPID", "NRestarts", "ExecMainStartTimestampMonotonic",
                     "ActiveState", "SubState")
        time.sleep(5)  # two more scrapes, so that Prometheus has seen the new samples
        self.ev["reload"] = {
            "config_changed": edited != text, "systemctl_reload": r,
            "seconds_to_3_sweeps": round(time.monotonic() - t, 2) if reached else None,
            "sweeps_before": sweeps, "samples": series, "before": before, "after": after,
            "resets": query("resets(xenprobe_sweeps_total[15m])"),
            "mismatch_resets": query("resets(xenprobe_mismatch_onsets_total[15m])"),
            "start_time_changes": query('changes(process_start_time_seconds'
                                        '{job="xenprobe"}[15m])'),
            "sweeps_range": query("xenprobe_sweeps_total[2m]"),
        }

    def timer(self) -> None:
        prom = Path(self.plan["textfile_dir"]) / "xenprobe.prom"

        def fired() -> dict[str, str] | None:
            s = show(CHECK, "ExecMainExitTimestampMonotonic", "ExecMainStatus", "Result",
                     "ActiveState")
            done = s.get("ExecMainExitTimestampMonotonic", "0") != "0" and prom.exists()
            failed = s.get("Result", "success") != "success"
            return s if done or failed else None
        self.ev["check_run"] = wait("xenprobe-check.service run by its timer", fired,
                                    self.left(200), 2.0)
        self.ev["timer_show"] = show(TIMER, "LastTriggerUSecMonotonic",
                                     "NextElapseUSecMonotonic", "ActiveState", "Result")
        self.ev["list_timers"] = run(["systemctl", "list-timers", "--all", "--no-pager",
                                      TIMER])
        self.ev["check_journal"] = run(["journalctl", "-u", CHECK, "--no-pager", "-o",
                                        "short-monotonic"])
        if prom.exists():
            self.write("xenprobe.prom", prom.read_text())
            st = prom.stat()
            self.ev["textfile_mode"] = oct(st.st_mode & 0o777)

    def stop(self) -> None:
        pid = show(UNIT, "MainPID").get("MainPID")
        r = run(["systemctl", "stop", UNIT], timeout=self.left(120))
        self.ev["stop"] = {"pid": pid, "systemctl_stop": r,
                           "after": show(UNIT, "ActiveState", "SubState", "Result",
                                         "ExecMainCode", "ExecMainStatus", "MainPID")}

    def watchdog(self) -> None:
        DROPIN.parent.mkdir(parents=True, exist_ok=True)
        DROPIN.write_text(self.plan["hang_dropin"])
        ev: dict[str, Any] = {"daemon_reload": run(["systemctl", "daemon-reload"])}
        ev["cat"] = run(["systemctl", "cat", UNIT, "--no-pager"])
        ev["start"] = run(["systemctl", "start", UNIT], timeout=self.left(180))
        first = show(UNIT, "MainPID", "NRestarts", "WatchdogUSec", "Environment",
                     "DropInPaths")
        ev["first"] = first
        timeline: list[dict[str, Any]] = []

        def restarted() -> dict[str, str] | None:
            s = show(UNIT, "MainPID", "NRestarts", "ActiveState", "SubState", "Result",
                     "StatusText")
            s["at"] = str(now())
            if not timeline or {k: v for k, v in timeline[-1].items() if k != "at"} != \
                    {k: v for k, v in s.items() if k != "at"}:
                timeline.append(s)
            ok = (int(s.get("NRestarts", "0") or 0) >= 1 and s.get("ActiveState") == "active"
                  and s.get("MainPID") not in ("0", first.get("MainPID")))
            return s if ok else None
        ev["restarted"] = wait("a watchdog restart", restarted, self.left(400), 2.0)
        ev["timeline"] = timeline
        ev["status"] = run(["systemctl", "status", UNIT, "--no-pager", "-l"])
        self.ev["watchdog"] = ev
        run(["systemctl", "stop", UNIT], timeout=self.left(60))

    def domu(self) -> None:
        # What a domU shows: xenfs mounted, but no control_d in its capabilities.  An
        # empty file bound over the real one; the unit's condition must skip the
        # service, which then stays down (no restart every RestartSec).
        fake = Path("/run/xenprobe-test-capabilities")
        fake.write_text("")
        caps = "/proc/xen/capabilities"
        ev: dict[str, Any] = {"bind": run(["mount", "--bind", str(fake), caps])}
        try:
            ev["capabilities"] = Path(caps).read_text()
            ev["before"] = show(UNIT, "NRestarts", "ActiveState")
            ev["start"] = run(["systemctl", "start", UNIT], timeout=self.left(120))
            ev["after_start"] = show(UNIT, "ActiveState", "SubState", "Result",
                                     "ConditionResult", "NRestarts", "MainPID")
            time.sleep(15)  # past RestartSec=10s: a failed start would have restarted
            ev["later"] = show(UNIT, "ActiveState", "SubState", "Result", "NRestarts",
                               "MainPID")
        finally:
            ev["umount"] = run(["umount", caps])
        self.ev["domu"] = ev

    def watch(self) -> None:
        # serve --watch as an operator turns it on (the conffile's watch key), while
        # programs that receive damaged values run; then a `xenprobe watch` session in
        # the terminal view while they run again. The service is stopped here (the
        # domu phase), and Prometheus still scrapes.
        w = self.plan["watch"]
        ev: dict[str, Any] = {"tracefs_before": tracefs_state()}
        self.ev["watch"] = ev
        out = self.res / "watch-domains.json"
        ev["mkdomains"] = run([*w["mkdomains"], "-o", str(out)], timeout=self.left(300))
        domains = json.loads(out.read_text())["domains"]
        ev["domains"] = domains
        domids = [str(d["domid"]) for d in domains]
        # The watchdog phase's hang drop-in would stop every second sweep: gone, so
        # that the service runs as packaged.
        DROPIN.unlink(missing_ok=True)
        ev["daemon_reload"] = run(["systemctl", "daemon-reload"], timeout=self.left(180))
        text = CONFIG.read_text()
        edited = re.sub(r"(?m)^watch = .*$", "watch = true", text)
        CONFIG.write_text(edited)
        ev["config_changed"] = edited != text
        ev["start"] = run(["systemctl", "start", UNIT], timeout=self.left(700))
        ev["show"] = show(UNIT, "ActiveState", "SubState", "MainPID", "StatusText")
        pid = ev["show"].get("MainPID", "0")

        def armed() -> str | None:
            m = get(METRICS)
            return m if sample(m, "xenprobe_watch_armed") == 1 else None
        ev["armed"] = bool(wait("xenprobe_watch_armed 1", armed, self.left(300)))
        ev["tracefs_armed"] = tracefs_state()
        ev["serve_memory_armed"] = memory(pid)
        ev["consumers"] = self.consumers(w, domids)

        def damaged() -> str | None:
            m = get(METRICS)
            seen = {name for name in w["damaged_comms"]
                    if f'process="{name}"' in m}
            return m if seen == set(w["damaged_comms"]) else None
        ev["damaged_seen"] = bool(wait("the consumers' damaged calls in /metrics",
                                       damaged, self.left(300), 2.0))
        self.write("metrics-watch.txt", get(METRICS))
        ev["serve_memory"] = memory(pid)

        def firing() -> dict[str, Any] | None:
            alerts = json.loads(get(f"{PROM}/api/v1/alerts"))
            mine = {a["labels"].get("process") for a in alerts["data"]["alerts"]
                    if a["labels"].get("alertname") == WATCH_ALERT and a["state"] == "firing"}
            return alerts if mine >= set(w["damaged_comms"]) else None
        ev["alerts"] = wait(f"{WATCH_ALERT} firing", firing, self.left(420), 2.0)
        if ev["alerts"] is None:
            ev["alerts_last"] = json.loads(get(f"{PROM}/api/v1/alerts"))
            ev["rules_last"] = json.loads(get(f"{PROM}/api/v1/rules"))
        ev["stop"] = run(["systemctl", "stop", UNIT], timeout=self.left(120))
        ev["after_stop"] = show(UNIT, "ActiveState", "Result", "ExecMainStatus")
        ev["tracefs_after_stop"] = tracefs_state()
        ev["journal"] = run(["journalctl", "-u", UNIT, "--no-pager", "-o", "cat", "-n", "40"])
        self.terminal(w, domids, ev)
        ev["tracefs_after"] = tracefs_state()

    def consumers(self, w: dict[str, Any], domids: list[str]) -> dict[str, Any]:
        got = {}
        for name, c in w["consumers"].items():
            got[name] = run([*c["argv"], *(domids if c["domids"] else [])],
                            timeout=self.left(300))
        return got

    def terminal(self, w: dict[str, Any], domids: list[str], ev: dict[str, Any]) -> None:
        # The terminal view (not --json) as an operator runs it, its output kept whole.
        argv = ["/usr/bin/xenprobe", "watch"]
        ev["session_argv"] = argv
        ev["uname"] = os.uname().release
        ev["hypervisor"] = hypervisor_version()
        with open(self.res / "watch-session.txt", "wb") as so, \
                open(self.res / "watch-session.err", "wb") as se:
            p = subprocess.Popen(argv, stdout=so, stderr=se)
            ev["session_ready"] = bool(wait(
                "the watch session armed",
                lambda: p.poll() is None and WATCH_ENABLE.read_text().strip() == "1",
                self.left(300), 0.5))
            ev["session_consumers"] = self.consumers(w, domids)
            time.sleep(5)  # the watch reads the last events
            ev["watch_memory"] = memory(p.pid)
            p.send_signal(signal.SIGINT)  # Ctrl-C, as its first line says
            try:
                ev["session_rc"] = p.wait(timeout=self.left(120))
            except subprocess.TimeoutExpired:
                p.kill()
                ev["session_rc"] = "killed"


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    results = Path(sys.argv[2])
    r = Runner(plan, results)
    r.phase("domains", r.domains)
    r.phase("holder", r.holder)
    r.phase("install", r.install)
    r.phase("install_timer", r.install_timer)
    r.phase("start_prometheus", r.start_prometheus)
    r.phase("running", r.running)
    r.phase("prometheus", r.prometheus)
    r.phase("reload", r.reload)
    r.phase("timer", r.timer)
    r.phase("stop", r.stop)
    r.phase("watchdog", r.watchdog)
    r.phase("domu", r.domu)
    r.phase("watch", r.watch)
    r.ev["seconds"] = now()
    r.save()
    run(["systemctl", "stop", PROM_UNIT, HOLDER_UNIT])
    # runner.sh then saves the journal (journal.txt, journal-xenprobe.json).
    return 1 if r.ev["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
