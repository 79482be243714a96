# SPDX-License-Identifier: GPL-2.0-only
"""The read-only proof: every request off the allow-list is refused in native code
before it reaches the device, checked against the mock device's own request log.

Exhaustive over what can be enumerated: every hypercall number 0-63 with every subop
0-63; every memory_op subop 0-63 with continuation bits; every sysctl and domctl command
0-255 and the edges of the 32-bit field; xen_version past subop 14; through the ioctl,
syscall, batched and multicall paths. test_allowlist.py checks the native predicate
itself over wider ranges (every sysctl/domctl command below 2^16)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.mockhost import env_for, read_log, run_check
from xenprobe.mock.scenario import load, shipped

# memory_op queries and sharing counts, get_debugreg(6), hypfs get_version, xen_version,
# VCPUOP_is_up, KEXEC_CMD_kexec_status.
BY_VALUE = {(12, 2), (12, 3), (12, 4), (12, 14), (12, 18), (12, 19), (9, 6), (42, 0),
            (24, 3), (37, 6), *((17, n) for n in range(15))}
# By struct: sysctl physinfo/getdomaininfolist, domctl getdomaininfo, platform_op
# resource_op (MSR_READ entries only) and get_dom0_console; sysctl livepatch_op (27)
# counts as allowed only with LIST (2) inside: see hypercalls().
ALLOWED = {(35, 3), (35, 6), (35, 27), (36, 5), (7, 61), (7, 64), *BY_VALUE}

# Runs on the mock host: tries every forbidden request through every transport path.
FORBIDDEN = r"""
import json, struct, sys
from xenprobe.support.errors import Refused
from xenprobe.xen.transport import Buffer, Privcmd, args5
ALLOWED = {tuple(pair) for pair in json.loads(sys.argv[1])}
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
            if (op, sub) in ALLOWED or op in (7, 13, 35, 36):
                continue
            a = args5(sub)
            attempt(lambda: dev.ioctl(op, a))
            attempt(lambda: dev.syscall(op, a))
            attempt(lambda: dev.many([(12, args5(2)), (op, a)], syscall=False))
            # A multicall hiding a forbidden entry behind an allowed one.
            attempt(lambda: dev.multicall([(17, args5(0)), (op, a)]))
    # sysctl/domctl commands other than physinfo, getdomaininfolist, getdomaininfo, and
    # platform_op commands other than resource_op and get_dom0_console: every command
    # 0-255, and the edges of the 32-bit field, through every path.
    for op, allowed in ((35, {3, 6}), (36, {5}), (7, {61, 64})):
        for cmd in [*range(256), 0x100, 0x7FFF, 0xFFFF, 0x8000_0000, 0xFFFF_FFFF]:
            if cmd in allowed:
                continue
            ctl.view[0:8] = struct.pack("<II", cmd, 0x3000001 if op == 7 else 0x15)
            attempt(lambda: dev.ioctl(op, args5(ctl.address)))
            attempt(lambda: dev.syscall(op, args5(ctl.address)))
            # sysctl/domctl are never allowed in a multicall; a platform_op entry's
            # struct is copied and judged like a single call's.
            attempt(lambda: dev.multicall([(17, args5(0)), (op, args5(ctl.address))]))
            attempt(lambda: dev.many([(op, args5(ctl.address))], syscall=True))
    # XENPF_resource_op is allowed only with 1-3 entries, every one MSR_READ (0): an
    # MSR_WRITE (1) or unknown cmd at any position, no entries, too many, no array.
    entries = ctl.address + 2048
    bad = [(1, [1]), (2, [0, 1]), (3, [0, 0, 1]), (3, [1, 0, 0]), (1, [2]),
           (1, [0xFFFF_FFFF]), (0, []), (4, [0, 0, 0, 0]), (0xFFFF_FFFF, [0, 0, 0])]
    for nr, cmds in bad + [(1, None)]:
        ctl.view[0:24] = struct.pack("<IIIIQ", 61, 0x3000001, nr, 0, 0 if cmds is None else entries)
        for i, c in enumerate(cmds or []):
            ctl.view[2048 + 24 * i:2048 + 24 * (i + 1)] = struct.pack("<IIQQ", c, 0, 0x10, 0)
        attempt(lambda: dev.ioctl(7, args5(ctl.address)))
        attempt(lambda: dev.syscall(7, args5(ctl.address)))
        attempt(lambda: dev.multicall([(17, args5(0)), (7, args5(ctl.address))]))
        attempt(lambda: dev.many([(12, args5(2)), (7, args5(ctl.address))], syscall=False))
    # sysctl livepatch_op (27) with every inner cmd but LIST (2): UPLOAD, GET, ACTION and
    # the rest, 0-255 and the edges of the 32-bit field, on both single-call paths; and
    # LIST itself inside a multicall or a batch (struct ops never go there).
    for inner in [*range(256), 0x100, 0xFFFF, 0x8000_0000, 0xFFFF_FFFF]:
        if inner == 2:
            continue
        ctl.view[0:16] = struct.pack("<IIII", 27, 0x15, inner, 0)
        attempt(lambda: dev.ioctl(35, args5(ctl.address)))
        attempt(lambda: dev.syscall(35, args5(ctl.address)))
    ctl.view[0:16] = struct.pack("<IIII", 27, 0x15, 2, 0)
    attempt(lambda: dev.multicall([(35, args5(ctl.address))]))
    attempt(lambda: dev.many([(35, args5(ctl.address))], syscall=True))
    attempt(lambda: dev.multicall([(13, args5(0, 1))]))
    # Every memory_op subop with continuation bits (cmd >> 6: a start extent, another
    # request), and xen_version past the last read-only subop, on every path.
    for sub in range(64):
        for extent in (1, 2, 0xFFFF, 1 << 26, (1 << 58) - 1):
            cmd = args5(sub | extent << 6)
            attempt(lambda: dev.ioctl(12, cmd))
            attempt(lambda: dev.syscall(12, cmd))
            attempt(lambda: dev.many([(12, cmd)], syscall=False))
            attempt(lambda: dev.multicall([(12, cmd)]))
    for sub in (15, 63, 64, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 64) - 1):
        attempt(lambda: dev.ioctl(17, args5(sub)))
        attempt(lambda: dev.multicall([(17, args5(sub))]))
print(json.dumps({"refused": refused, "issued": issued}))
"""


def hypercalls(log: list[dict[str, Any]]) -> list[tuple[int, ...]]:
    """(op, subop) of each request the mock saw; a sysctl livepatch_op other than LIST
    as (35, 27, its inner cmd), which is on no list."""
    return [(e["op"], e["subop"]) if e.get("inner", 2) == 2 else (e["op"], e["subop"],
                                                                     e["inner"])
            for e in log if e["kind"] in ("hypercall", "multicall_entry") and e["op"] != 13]


def test_forbidden_requests_never_reach_the_device(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    env = env_for(load("healthy"), tmp_path, log)
    p = subprocess.run([sys.executable, "-c", FORBIDDEN, json.dumps(sorted(BY_VALUE))],
                       env=env, text=True, capture_output=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    counts = json.loads(p.stdout)
    assert counts["issued"] == 0
    # 64 ops x 64 subops x 4 paths, less the by-value allowed and the 4 struct ops; 3 x
    # 261 sysctl/domctl/platform_op commands, less the 5 allowed, x 4 paths; 10
    # resource_op shapes x 4 paths; one nested multicall; 64 x 5 continuation encodings
    # x 4 paths; 7 xen_version subops x 2 paths; 259 livepatch inner cmds x 2 paths and
    # LIST in a multicall and a batch.
    assert counts["refused"] == 4 * (64 * 64 - 4 * 64 - len(BY_VALUE)) \
        + 4 * (3 * 261 - 5) + 4 * 10 + 1 + 4 * 64 * 5 + 2 * 7 + 2 * 259 + 2
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
        # resource_op reached the hypervisor with MSR_READ (0) entries only.
        assert {c for e in entries for c in e.get("resource_cmds", [])} <= {0}, name
        # The only ioctl xenprobe issues is IOCTL_PRIVCMD_HYPERCALL.
        assert {e["cmd"] for e in entries if "cmd" in e and e["kind"] != "multicall_entry"} \
            <= {0x00305000}


# The census's state-changing value-returning paths (tests.census, status "refused"),
# each named: (census key, hypercall, subop, where the subop travels). A by-value subop
# is arg0; a struct subop is the first 32-bit field of the struct arg0 points to.
REFUSED_BY_NAME = {
    "S1a": ("XENMEM_increase_reservation", 12, 0, "value"),
    "S1b": ("XENMEM_decrease_reservation", 12, 1, "value"),
    "S1c": ("XENMEM_populate_physmap", 12, 6, "value"),
    "S2": ("CONSOLEIO_read", 18, 1, "value"),
    "S3": ("SCHEDOP_watchdog", 29, 6, "value"),
    "S4": ("PHYSDEVOP_dbgp_op", 33, 29, "value"),
    "S5": ("XENPF_cpu_hotadd", 7, 58, "struct"),
    "S6": ("XENPF_resource_op (MSR write)", 7, 61, "msr-write"),
    "S7": ("XEN_DOMCTL_memory_mapping", 36, 39, "struct"),
    "S8": ("XEN_ARGO_OP_sendv", 39, 3, "value"),
}

# Runs on the mock host: each named request through the ioctl, syscall, batched and
# multicall paths, the multicall hiding it behind an allowed entry. Prints the keys of
# the requests that were issued (none may be).
NAMED = r"""
import json, struct, sys
from xenprobe.support.errors import Refused
from xenprobe.xen.transport import Buffer, Privcmd, args5
named = json.loads(sys.argv[1])
issued, refused = [], 0
with Privcmd() as dev, Buffer(4096) as ctl:
    for key, (name, op, sub, where) in named.items():
        if where == "struct":
            # cmd and interface_version lead platform_op's and domctl's structs.
            ctl.view[0:8] = struct.pack("<II", sub, 0x15)
            a = args5(ctl.address)
        elif where == "msr-write":
            # One XEN_RESOURCE_OP_MSR_WRITE (1) entry of MSR_IA32_CMT_EVTSEL (0xc8d), the
            # MSR Xen lets it write (x86/platform_hypercall.c@RELEASE-4.20.0:97-107).
            ctl.view[0:24] = struct.pack("<IIIIQ", sub, 0x3000001, 1, 0, ctl.address + 2048)
            ctl.view[2048:2072] = struct.pack("<IIQQ", 1, 0, 0xC8D, 0)
            a = args5(ctl.address)
        else:
            a = args5(sub, 0, 0)
        for path, fn in (("ioctl", lambda: dev.ioctl(op, a)),
                         ("syscall", lambda: dev.syscall(op, a)),
                         ("many", lambda: dev.many([(12, args5(2)), (op, a)],
                                                   syscall=False)),
                         ("multicall", lambda: dev.multicall([(17, args5(0)), (op, a)]))):
            try:
                fn()
                issued.append(f"{key}/{path}")
            except Refused:
                refused += 1
print(json.dumps({"issued": issued, "refused": refused}))
"""


def test_state_changing_census_paths_are_refused_by_name(tmp_path: Path) -> None:
    log = tmp_path / "named.jsonl"
    env = env_for(load("healthy"), tmp_path, log)
    p = subprocess.run([sys.executable, "-c", NAMED, json.dumps(REFUSED_BY_NAME)],
                       env=env, text=True, capture_output=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    counts = json.loads(p.stdout)
    assert counts["issued"] == []
    assert counts["refused"] == 4 * len(REFUSED_BY_NAME)
    assert [e["kind"] for e in read_log(log)] == ["open", "close"], \
        "nothing but the device open/close reached the mock"
