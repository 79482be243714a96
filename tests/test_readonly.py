"""The read-only proof: every request off the allow-list is refused in native code
before it reaches the device, checked against the mock device's own request log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.mockhost import env_for, read_log, run_check
from xenprobe.scenario import load, shipped

ALLOWED = {(12, 2), (12, 3), (12, 4), (12, 14), (35, 3), (35, 6), (36, 5),
           *((17, n) for n in range(15))}

# Runs on the mock host: tries every forbidden request through every transport path.
FORBIDDEN = r"""
import json, struct
from xenprobe.errors import Refused
from xenprobe.transport import Buffer, Privcmd, args5
ALLOWED = {(12, 2), (12, 3), (12, 4), (12, 14), *((17, n) for n in range(15))}
refused = issued = 0
def attempt(fn):
    global refused, issued
    try:
        fn()
        issued += 1
    except Refused:
        refused += 1
with Privcmd() as dev, Buffer(4096) as ctl:
    for op in range(64):
        for sub in range(64):
            if (op, sub) in ALLOWED or op in (13, 35, 36):
                continue
            a = args5(sub)
            attempt(lambda: dev.ioctl(op, a))
            attempt(lambda: dev.syscall(op, a))
            attempt(lambda: dev.many([(12, args5(2)), (op, a)], syscall=False))
            # A multicall hiding a forbidden entry behind an allowed one.
            attempt(lambda: dev.multicall([(17, args5(0)), (op, a)]))
    # sysctl/domctl commands other than physinfo, getdomaininfolist, getdomaininfo.
    for op, allowed in ((35, {3, 6}), (36, {5})):
        for cmd in range(128):
            if cmd in allowed:
                continue
            ctl.view[0:8] = struct.pack("<II", cmd, 0x15)
            attempt(lambda: dev.ioctl(op, args5(ctl.address)))
            # struct-carrying ops and nested multicalls are never allowed in a multicall.
            attempt(lambda: dev.multicall([(op, args5(ctl.address))]))
    attempt(lambda: dev.multicall([(13, args5(0, 1))]))
    for sub in (2, 3, 4, 14):  # continuation bits make another request
        attempt(lambda: dev.ioctl(12, args5(sub | 1 << 6)))
print(json.dumps({"refused": refused, "issued": issued}))
"""


def hypercalls(log: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(e["op"], e["subop"]) for e in log if e["kind"] in ("hypercall", "multicall_entry")
            and e["op"] != 13]


def test_forbidden_requests_never_reach_the_device(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    env = env_for(load("healthy"), tmp_path, log)
    p = subprocess.run([sys.executable, "-c", FORBIDDEN], env=env, text=True,
                       capture_output=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    counts = json.loads(p.stdout)
    assert counts["issued"] == 0
    assert counts["refused"] > 4 * 64 * 60
    entries = read_log(log)
    assert [e["kind"] for e in entries] == ["open", "close"], "only the device open/close"


def test_every_scenario_sweep_stays_on_the_allow_list(tmp_path: Path) -> None:
    for name in shipped():
        log = tmp_path / f"{name}.jsonl"
        env = env_for(load(name), tmp_path, log)
        run_check(["check", "--json", "--mock", name], env=env)
        entries = read_log(log)
        calls = hypercalls(entries)
        if load(name).device == "present":
            assert calls, name
        assert set(calls) <= ALLOWED, (name, set(calls) - ALLOWED)
        # The only ioctl xenprobe issues is IOCTL_PRIVCMD_HYPERCALL.
        assert {e["cmd"] for e in entries if "cmd" in e and e["kind"] != "multicall_entry"} \
            <= {0x00305000}
