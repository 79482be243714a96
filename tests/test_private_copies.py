# SPDX-License-Identifier: GPL-2.0-only
"""Xen's own writes cannot reach what the allow-list judged, and a judged request is
issued as judged.

Xen reads multicall entry i+1 only after entry i has run (common/multicall.c
@RELEASE-4.17.0:54-67; the mock's multicall reads each entry in its loop, likewise), and
an allowed call writes where its arguments point: xen_version's buffers, a sysctl's
handles, platform_op's struct and resource entries. Every private copy the transport
makes lives in one span of address space between two PROT_NONE guards, and no request
with a word pointing there is issued (docs/readonly.md). These tests aim every writing
allowed call at that span on every path, in one process and from a racing thread, show a
write from below stopping at the guard, show a batch issued as judged, and show what a
debug Xen's poisoning of multicall entries leaves to hand back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.mockhost import env_for, read_log
from tests.test_race import PRELUDE, RACER_SONAME, SECONDS, forbidden, racer  # noqa: F401
from xenprobe.mock.scenario import load


def run(script: str, tmp: Path, racer_so: Path, scenario: str = "pv-dom0",
        extra_env: dict[str, str] | None = None, before: str = ""
        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The script after test_race's PRELUDE (a Privcmd `dev`, the racer library), on the
    mock host: its last line of output as JSON, and the mock's request log. `before`
    runs first, before the transport is loaded."""
    log = tmp / "log.jsonl"
    env = env_for(load(scenario), tmp, log)
    env.update(extra_env or {})
    argv = [sys.executable, "-c", before + PRELUDE + script, str(racer_so),
            str(SECONDS), RACER_SONAME]
    p = subprocess.run(argv, env=env, text=True, capture_output=True,
                       timeout=120 + 4 * SECONDS, check=False)
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout.splitlines()[-1])
    return out, read_log(log)


def requests(log: list[dict[str, Any]]) -> Counter[tuple[int, Any]]:
    return Counter((e["op"], e.get("cmd_raw", e.get("subop"))) for e in log
                   if e["kind"] in ("hypercall", "multicall_entry"))


# Aimed at a private copy found the way a caller can: a fresh mapping of the copy's
# size lands where a just-freed one was. Before the span, entry 0's answer (1024 bytes
# of XENVER_commandline) turned 16 later entries of the judged copy into op 0
# (set_trap_table) on every run, through xp_multicall and Privcmd.ioctl(13, ...). Now a
# buffer Xen writes must be a live hypercall buffer of the caller's (xp_alloc): the
# freed one is none, so the multicall is refused before anything is issued.
PREDICTED = r"""
from xenprobe.support.errors import Refused
N = 4096
res = {}
for path in ("xp_multicall", "ioctl 13"):
    ents = Buffer(N * 64)
    e = ffi.cast("xp_multicall_entry *", ents.ptr)
    probe = Buffer(N * 64)
    where = probe.address
    probe.close()
    for i in range(N):
        e[i].op = 17
    e[0].args[0], e[0].args[1] = 9, where + 64
    if path == "xp_multicall":
        res[path] = [lib.xp_multicall(fd, e, N, ret, err), err[0]]
    else:
        try:
            res[path] = [0, dev.ioctl(13, args5(ents.address, N)).value]
        except Refused as x:
            res[path] = str(x)
print(json.dumps(res))
"""


def test_a_write_aimed_at_where_the_private_copy_would_be_changes_nothing(
        tmp_path: Path, racer: Path) -> None:  # noqa: F811
    out, log = run(PREDICTED, tmp_path, racer, "healthy")
    assert out["xp_multicall"] == [-1000, 7], out  # XP_DENY_WRITE
    assert out["ioctl 13"] == ("hypercall 13, entry 0: 17/9: the hypervisor would write "
                               "outside the caller's hypercall buffers"), out
    assert forbidden(log) == [], requests(log)
    assert requests(log) == Counter(), requests(log)


# Every allowed call that writes through a pointer, with that pointer at a place in the
# span: the guards' ends, the first and last usable byte, and a page inside.
SPAN = r"""
from collections import Counter
from xenprobe.layers import libxc_guard as guard
from xenprobe.support.errors import Refused
span = ffi.new("uint64_t[2]")
lib.xp_private_span(span)
lo, hi = int(span[0]), int(span[1])
assert lo and hi - lo > 2 * 65536, (lo, hi)
TARGETS = [lo, lo + 65536 - 1, lo + 65536, lo + 65536 + 64, (lo + hi) // 2, hi - 65536 - 1,
           hi - 1]
# xen_version subops that write at arg1 (common/kernel.c@RELEASE-4.20.0:577-760).
XENVER = [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14]
out = Counter()

def note(path, rc, detail=None):
    if rc == lib.XP_REFUSED:
        d = ffi.new("uint64_t[3]")
        lib.xp_refusal(d)
        out[f"{path}: refused {err[0]}"] += 1
    else:
        out[f"{path}: {rc} {detail}"] += 1

def why(e):
    return "private" if "private copies" in str(e) else str(e)

def one(op, a):
    # a single hypercall on the ioctl, syscall, multicall and batched paths
    words = ffi.new("uint64_t[5]", a)
    note("ioctl", lib.xp_hypercall_ioctl(fd, op, words, ret, err))
    note("syscall", lib.xp_hypercall_syscall(fd, op, words, lret, err))
    me = ffi.new("xp_multicall_entry[2]")
    me[0].op = 17
    me[1].op = op
    for k in range(5):
        me[1].args[k] = a[k]
    note("xp_multicall", lib.xp_multicall(fd, me, 2, ret, err))
    m = Buffer(128)
    m.view[0:128] = ffi.buffer(me)
    try:
        dev.ioctl(13, args5(m.address, 2))
        out["Privcmd.ioctl(13): issued"] += 1
    except Refused as e:
        out["Privcmd.ioctl(13): refused " + why(e)] += 1
    calls = Calls([17, op], [0] * 5 + list(a))
    for name, f in (("many ioctl", lambda: dev.many_values(calls, syscall=False)),
                    ("many syscall", lambda: dev.many_values(calls, syscall=True)),
                    ("multicall_values", lambda: dev.multicall_values(calls))):
        try:
            f()
            out[f"{name}: issued"] += 1
        except Refused as e:
            out[f"{name}: refused " + why(e)] += 1
    # the guard, on libxenctrl's path: a privcmd_hypercall handed to a guarded ioctl slot
    hcall = ffi.new("uint64_t[6]", [op, *a])
    r = racer.racer_ioctl(fd, HYPERCALL, addr(hcall))
    out[f"guard: {r}"] += 1

assert guard.install([sys.argv[3]]) == 1
s = Buffer(136)
for t in TARGETS:
    for sub in XENVER:
        one(17, (sub, t, 0, 0, 0))
    # a platform_op struct at t, and a resource_op whose entries handle is t
    one(7, (t, 0, 0, 0, 0))
    s.view[0:136] = bytes(136)
    s.view[0:24] = struct.pack("<IIIIQ", 61, 0x03000001, 1, 0, t)
    one(7, (s.address, 0, 0, 0, 0))
    # sysctl getdomaininfolist's buffer, and each handle of livepatch LIST
    for at, head in ((16, struct.pack("<IIHxxI", 6, 0x15, 0, 16)),
                     (32, struct.pack("<IIII", 27, 0x15, 2, 0)),
                     (40, struct.pack("<IIII", 27, 0x15, 2, 0)),
                     (48, struct.pack("<IIII", 27, 0x15, 2, 0)),
                     (56, struct.pack("<IIII", 27, 0x15, 2, 0)),
                     (64, struct.pack("<IIII", 27, 0x15, 2, 0))):
        s.view[0:136] = bytes(136)
        s.view[0:len(head)] = head
        s.view[at:at + 8] = struct.pack("<Q", t)
        words = ffi.new("uint64_t[5]", [s.address, 0, 0, 0, 0])
        note("sysctl ioctl", lib.xp_hypercall_ioctl(fd, 35, words, ret, err))
        note("sysctl syscall", lib.xp_hypercall_syscall(fd, 35, words, lret, err))
        hcall = ffi.new("uint64_t[6]", [35, s.address, 0, 0, 0, 0])
        out[f"guard: {racer.racer_ioctl(fd, HYPERCALL, addr(hcall))}"] += 1
    # the caller's result arrays of a batch
    calls = Calls([17], [0] * 5)
    for name, rc in (("many rets", lib.xp_hypercall_many(fd, 1, calls.ops, calls.args, 0,
                                                         ffi.cast("int64_t *", t),
                                                         ffi.new("int[1]"), err)),
                     ("many errs", lib.xp_hypercall_many(fd, 1, calls.ops, calls.args, 1,
                                                         ffi.new("int64_t[1]"),
                                                         ffi.cast("int *", t), err)),
                     ("multicall_many results",
                      lib.xp_multicall_many(fd, 1, calls.ops, calls.args,
                                            ffi.cast("int64_t *", t), ret, err))):
        out[f"{name}: {rc} {err[0]}"] += 1
print(json.dumps(out))
"""


def test_no_writing_call_aimed_at_the_private_span_is_issued(tmp_path: Path,
                                                             racer: Path) -> None:  # noqa: F811
    out, log = run(SPAN, tmp_path, racer)
    private = 6
    calls = 7 * (13 + 2)  # targets x (xen_version subops + two platform_op forms)
    assert out.pop(f"ioctl: refused {private}") == calls, out
    assert out.pop(f"syscall: refused {private}") == calls, out
    assert out.pop(f"xp_multicall: refused {private}") == calls, out
    for path in ("Privcmd.ioctl(13)", "many ioctl", "many syscall", "multicall_values"):
        assert out.pop(f"{path}: refused private") == calls, (path, out)
    assert out.pop(f"sysctl ioctl: refused {private}") == 7 * 6, out
    assert out.pop(f"sysctl syscall: refused {private}") == 7 * 6, out
    # the guard answers a refusal -1/EPERM to libxenctrl
    assert out.pop("guard: -1") == calls + 7 * 6, out
    efault = 14
    for name in ("many rets", "many errs", "multicall_many results"):
        assert out.pop(f"{name}: -1 {efault}") == 7, (name, out)
    assert out == {}, out
    # Only the harmless XENVER_version entries beside them ever... no: nothing at all.
    assert requests(log) == Counter(), requests(log)


# A native thread flips entry 0's buffer between a page of the caller's and the span
# while the same 4096-entry multicall is issued over and over, on every multicall path.
RACING = r"""
span = ffi.new("uint64_t[2]")
lib.xp_private_span(span)
inside = int(span[0]) + 65536 + 64
N = 4096
mine = Buffer(1024)
ents = Buffer(N * 64)
e = ffi.cast("xp_multicall_entry *", ents.ptr)
for i in range(N):
    e[i].op = 17
e[0].args[0], e[0].args[1] = 9, mine.address
res = {}
res["xp_multicall"] = race([(addr(e) + 24, mine.address, inside)],
                           lambda: outcome(lib.xp_multicall(fd, e, N, ret, err), ret[0]),
                           limit=200)
words = ffi.new("uint64_t[5]", [ents.address, N, 0, 0, 0])
res["Privcmd.ioctl(13)"] = race(
    [(addr(e) + 24, mine.address, inside)],
    lambda: outcome(lib.xp_hypercall_ioctl(fd, 13, words, ret, err), ret[0]), limit=200)
calls = Calls([17] * N, [9, mine.address, 0, 0, 0] + [0] * 5 * (N - 1))
results = ffi.new("int64_t[]", N)
res["multicall_many"] = race(
    [(addr(calls.args) + 8, mine.address, inside)],
    lambda: outcome(lib.xp_multicall_many(fd, N, calls.ops, calls.args, results, ret, err),
                    ret[0]), limit=200)
print(json.dumps(res))
"""


def test_a_thread_aiming_an_entry_at_the_span_never_gets_it_issued(
        tmp_path: Path, racer: Path) -> None:  # noqa: F811
    out, log = run(RACING, tmp_path, racer, "healthy")
    assert forbidden(log) == [], requests(log)
    for path, seen in out.items():
        assert seen.pop("after") == "issued", (path, seen)
        assert set(seen) <= {"issued", "refused"}, (path, seen)
    # Every multicall that reached the device had 4095 XENVER_version entries after the
    # commandline one, as judged.
    n = requests(log)
    assert n[(17, 0)] == 4095 * n[(17, 9)], n
    print(out)


# A write that starts below the span runs into the lower guard and stops there: Xen's
# copy_to_guest fails on the not-present page (the mock's process_vm_writev likewise),
# the entry's result is -EFAULT, and every later entry is read as judged.
# The span is reserved when the transport is loaded, top-down into the highest gap that
# holds it: a gap made just before (mapped and unmapped) leaves room below it.
HOLE = r"""
import ctypes, mmap as m
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
import cffi, _cffi_backend
hole = libc.mmap(None, 512 << 20, 0, m.MAP_PRIVATE | m.MAP_ANONYMOUS, -1, 0)
libc.munmap(hole, 512 << 20)
from xenprobe._transport import ffi, lib
span = ffi.new("uint64_t[2]")
lib.xp_private_span(span)
lo = int(span[0])
MAP_FIXED_NOREPLACE = 0x100000
page = libc.mmap(lo - 4096, 4096, m.PROT_READ | m.PROT_WRITE,
                 m.MAP_PRIVATE | m.MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
"""

# A write that starts below the span runs into the lower guard and stops there: Xen's
# copy_to_guest fails on the not-present page (the mock's process_vm_writev likewise),
# the entry's result is -EFAULT, and every later entry is read as judged.
BELOW = r"""
res = {"below": page == lo - 4096}
if res["below"]:
    N = 4096
    ents = Buffer(N * 64)
    e = ffi.cast("xp_multicall_entry *", ents.ptr)
    for i in range(N):
        e[i].op = 17
    e[0].args[0], e[0].args[1] = 9, lo - 512  # XENVER_commandline: 1024 bytes
    ctypes.memset(lo - 512, 0xFF, 512)
    res["rc"] = [lib.xp_multicall(fd, e, N, ret, err), ret[0]]
    res["results"] = sorted(set(int(ffi.cast("int64_t", e[i].result)) for i in range(1, N)))
    res["entry 0"] = int(ffi.cast("int64_t", e[0].result))
    res["written"] = ctypes.string_at(lo - 512, 512) != b"\xff" * 512
print(json.dumps(res))
"""


def test_a_write_from_below_the_span_is_not_issued(tmp_path: Path,
                                                   racer: Path) -> None:  # noqa: F811
    # The page below the span is the caller's, but no hypercall buffer (xp_alloc): Xen
    # may not write there at all, so the multicall is refused before issue
    # (XP_DENY_WRITE) and nothing below the span is written. The guard that stops an
    # ascending write is now each buffer's own (the next test).
    out, log = run(BELOW, tmp_path, racer, "healthy", before=HOLE)
    assert out["below"], "the page below the span was taken before the test could map it"
    assert out["rc"] == [-1000, -1], out
    assert not out["written"], out
    assert requests(log) == Counter(), requests(log)


# Every hypercall buffer is followed by its own PROT_NONE guard: a write that starts in
# the buffer's last 512 bytes (XENVER_commandline: 1024 bytes) stops there, the entry
# gets -EFAULT as from Xen's copy_to_guest, and every later entry is read as judged.
REGION_END = r"""
N = 4096
buf = Buffer(4096)
ents = Buffer(N * 64)
e = ffi.cast("xp_multicall_entry *", ents.ptr)
for i in range(N):
    e[i].op = 17
e[0].args[0], e[0].args[1] = 9, buf.address + 4096 - 512
buf.view[:] = b"\xff" * 4096
res = {"rc": [lib.xp_multicall(fd, e, N, ret, err), ret[0]]}
res["results"] = sorted(set(int(ffi.cast("int64_t", e[i].result)) for i in range(1, N)))
res["entry 0"] = int(ffi.cast("int64_t", e[0].result))
res["written"] = bytes(buf.view[4096 - 512:]) != b"\xff" * 512
print(json.dumps(res))
"""


def test_a_write_past_a_buffers_end_stops_at_its_guard(tmp_path: Path,
                                                       racer: Path) -> None:  # noqa: F811
    out, log = run(REGION_END, tmp_path, racer, "healthy")
    assert out["rc"] == [0, 0], out
    assert out["entry 0"] == -14, out  # -EFAULT: stopped at the buffer's guard
    assert out["written"], out  # the part inside the buffer was written, as Xen does
    assert out["results"] == [0x40011], out  # the mock's XENVER_version, 4095 times
    assert requests(log) == Counter({(17, 0): 4095, (17, 9): 1, (13, None): 1})


# Judged once, issued as judged: the first call of a batch writes XENVER_extraversion's
# 16 bytes over the platform_op struct the second one points to. Before, the struct was
# judged again when its turn came, refused, and XP_REFUSED was returned after the first
# call had been issued, its result dropped; across two multicalls of xp_multicall_many
# the refusal named entry 0 of the second instead of call 4096.
JUDGED_ONCE = r"""
from xenprobe.support.errors import Refused
from xenprobe.xen.platform_requests import PlatformRequests
from xenprobe.xen.quantities import Quantity
res = {}
req = PlatformRequests()
console = req.address(Quantity.DOM0_CONSOLE_SIZE)
calls = Calls([17, 7], [1, console, 0, 0, 0, console, 0, 0, 0, 0])
for syscall in (False, True):
    req.reset()
    try:
        v, e = dev.many_values(calls, syscall=syscall, retry=False)
        res[f"many {syscall}"] = [list(v), list(e)]
    except Refused as x:
        res[f"many {syscall}"] = str(x)
N = 4097
req.reset()
calls = Calls([17] * (N - 1) + [7],
              [1, console, 0, 0, 0] + [0] * 5 * (N - 2) + [console, 0, 0, 0, 0])
try:
    res["multicall_values"] = list(dev.multicall_values(calls, retry=False))[-1]
except Refused as x:
    res["multicall_values"] = str(x)
# A refusal names the call it was about, on both batch functions.
bad = Calls([17] * N, [0] * 5 * (N - 1) + [99, 0, 0, 0, 0])
for name, f in (("refused many", lambda: dev.many_values(bad, syscall=False)),
                ("refused multicall", lambda: dev.multicall_values(bad))):
    try:
        f()
        res[name] = "issued"
    except Refused as x:
        res[name] = str(x)
print(json.dumps(res))
"""


def test_a_batch_is_issued_as_judged_and_a_refusal_names_its_call(
        tmp_path: Path, racer: Path) -> None:  # noqa: F811
    out, log = run(JUDGED_ONCE, tmp_path, racer)
    # The mock's pv-dom0 has a boot console: get_dom0_console answers its info's size.
    for syscall in ("False", "True"):
        values, errs = out[f"many {syscall}"]
        assert errs == [0, 0] and values[0] == 0 and values[1] > 0, out
    assert out["multicall_values"] > 0, out
    n = requests(log)
    assert n[(7, 64)] == 3 and n[(17, 1)] == 3, n
    assert out["refused many"].startswith("batched hypercalls, call 4096: 17/99:"), out
    assert out["refused multicall"].startswith("multicall, entry 4096: 17/99:"), out


# A debug Xen overwrites every multicall entry with 0xAA after the call and writes back
# its result only (common/multicall.c@RELEASE-4.17.0:76-96). What a platform_op entry's
# call wrote into its struct and entries is handed back all the same.
DEBUG = r"""
from xenprobe.xen.platform_requests import PlatformRequests
from xenprobe.xen.quantities import Quantity
req = PlatformRequests()
res = {}
con, rop = req.address(Quantity.DOM0_CONSOLE_SIZE), req.address(Quantity.RESOURCE_OP_DONE)
CON = 8  # the union of the console's struct, at the start of the requests' buffer

def prefill():
    # What Xen writes there (the mock's console info is all zero) must come back.
    req.reset()
    req.buffer.view[CON:CON + 40] = b"\xff" * 40

prefill()
me = ffi.new("xp_multicall_entry[3]")
me[0].op, me[1].op, me[2].op = 7, 17, 7
me[0].args[0], me[2].args[0] = con, rop
res["rc"] = [lib.xp_multicall(fd, me, 3, ret, err), ret[0]]
res["results"] = [int(ffi.cast("int64_t", me[i].result)) for i in range(3)]
res["ops"] = [int(me[i].op) for i in range(3)]
b = bytes(req.buffer.view)
res["console info"] = b[CON:CON + 40] == bytes(40)
res["msr value"] = struct.unpack_from("<Q", b, 512 + 16)[0]
prefill()
v = dev.multicall_values(Calls([7, 7], [con, 0, 0, 0, 0, rop, 0, 0, 0, 0]))
b = bytes(req.buffer.view)
res["values"] = list(v)
res["console info many"] = b[CON:CON + 40] == bytes(40)
res["msr value many"] = struct.unpack_from("<Q", b, 512 + 16)[0]
print(json.dumps(res))
"""


@pytest.mark.parametrize("debug", ["0", "1"])
def test_platform_op_results_are_handed_back_from_a_debug_xen_too(
        tmp_path: Path, racer: Path, debug: str) -> None:  # noqa: F811
    out, _ = run(DEBUG, tmp_path, racer, extra_env={"XENPROBE_MOCK_XEN_DEBUG": debug})
    assert out["rc"] == [0, 0], out
    assert out["results"][0] > 0 and out["results"][2] == 1, out  # size, nr_done
    poison = 0xAAAAAAAAAAAAAAAA
    assert out["ops"] == ([poison] * 3 if debug == "1" else [7, 17, 7]), out
    assert out["console info"] and out["msr value"] != 0, out
    assert out["values"][0] > 0 and out["values"][1] == 1, out
    assert out["console info many"] and out["msr value many"] != 0, out


ALLOC = r"""
import os
from xenprobe.support.errors import CannotProbe
p = lib.xp_alloc(2**64 - 1, err)
res = {"null": p == ffi.NULL, "errno": err[0]}
try:
    Buffer(2**64 - 1)
    res["buffer"] = "made"
except CannotProbe as e:
    res["buffer"] = str(e)
print(json.dumps(res))
"""


def test_an_allocation_too_large_to_round_is_refused(tmp_path: Path,
                                                     racer: Path) -> None:  # noqa: F811
    log = tmp_path / "log.jsonl"
    env = env_for(load("healthy"), tmp_path, log)
    p = subprocess.run([sys.executable, "-c", PRELUDE + ALLOC, str(racer), "0", RACER_SONAME],
                       env=env, text=True, capture_output=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[-1])
    assert out["null"] and out["errno"] == 12, out  # ENOMEM, not a one-page buffer
    assert out["buffer"].startswith("cannot lock"), out
    # The Buffer that was never made leaves no finaliser's traceback behind.
    assert "Exception ignored" not in p.stderr, p.stderr
