# SPDX-License-Identifier: GPL-2.0-only
"""A red-team review of the private span (issue 20): attacks on the read-only path that
the span, the per-pid buffers and the guard do stop.

Each test is an attack that was tried against the transport on the mock host and held:
words that are not pointers aimed at the span, Xen's writes aimed at the transport's
read-only data, a forked child that exits normally and aims at its fresh span, the
DM_OP probe of the guard raced, and xp_alloc at the edges of its sizes. The attacks
that got through are reported on issue 20, not tested here: a test of them would fail.
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


def run(script: str, tmp: Path, racer_so: Path, scenario: str = "healthy"
        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The script after test_race's PRELUDE on the mock host: its last line of output as
    JSON, and the mock's request log."""
    log = tmp / "log.jsonl"
    env = env_for(load(scenario), tmp, log)
    argv = [sys.executable, "-c", PRELUDE + script, str(racer_so), str(SECONDS),
            RACER_SONAME]
    p = subprocess.run(argv, env=env, text=True, capture_output=True,
                       timeout=120 + 4 * SECONDS, check=False)
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout.splitlines()[-1])
    return out, read_log(log)


def requests(log: list[dict[str, Any]]) -> Counter[tuple[int, Any]]:
    return Counter((e["op"], e.get("cmd_raw", e.get("subop"))) for e in log
                   if e["kind"] in ("hypercall", "multicall_entry"))


# Words Xen never writes through (xen_version's args 2-4, a multicall entry's sixth
# argument, an unused word of a batch call, a data word of a sysctl struct) holding an
# address in the span: judged like pointers, so the request is refused (XP_DENY_PRIVATE)
# and nothing reaches the device, on every path.
NOT_POINTERS = r"""
from xenprobe.support.errors import Refused
span = ffi.new("uint64_t[2]")
lib.xp_private_span(span)
t = int(span[0]) + 65536 + 8
out = {}
for k in (2, 3, 4):
    a = [0, 0, 0, 0, 0]
    a[k] = t
    w = ffi.new("uint64_t[5]", a)
    out[f"ioctl arg{k}"] = [lib.xp_hypercall_ioctl(fd, 17, w, ret, err), err[0]]
    out[f"syscall arg{k}"] = [lib.xp_hypercall_syscall(fd, 17, w, lret, err), err[0]]
    calls = Calls([17, 17], [0] * 5 + a)
    for name, f in (("many", lambda: dev.many_values(calls, syscall=False)),
                    ("multicall_values", lambda: dev.multicall_values(calls))):
        try:
            f()
            out[f"{name} arg{k}"] = "issued"
        except Refused as e:
            out[f"{name} arg{k}"] = "private" if "private copies" in str(e) else str(e)
me = ffi.new("xp_multicall_entry[2]")
me[0].op = me[1].op = 17
me[1].args[5] = t
out["multicall args[5]"] = [lib.xp_multicall(fd, me, 2, ret, err), err[0]]
s = Buffer(136)
s.view[0:8] = struct.pack("<II", 3, 0x15)        # XEN_SYSCTL_physinfo: no handle at all
s.view[128:136] = struct.pack("<Q", t)          # a data word of its union
w = ffi.new("uint64_t[5]", [s.address, 0, 0, 0, 0])
out["sysctl data word"] = [lib.xp_hypercall_ioctl(fd, 35, w, ret, err), err[0]]
print(json.dumps(out))
"""


def test_words_that_are_not_pointers_but_point_into_the_span_are_refused(
        tmp_path: Path, racer: Path) -> None:  # noqa: F811
    out, log = run(NOT_POINTERS, tmp_path, racer)
    refused, private = -1000, 6
    for k in (2, 3, 4):
        assert out.pop(f"ioctl arg{k}") == [refused, private], out
        assert out.pop(f"syscall arg{k}") == [refused, private], out
        assert out.pop(f"many arg{k}") == "private", out
        assert out.pop(f"multicall_values arg{k}") == "private", out
    assert out.pop("multicall args[5]") == [refused, private], out
    assert out.pop("sysctl data word") == [refused, private], out
    assert out == {}, out
    assert requests(log) == Counter(), requests(log)


# Xen's writes aimed at the transport's own read-only data: the access tables in RELRO
# (xp_caller_memory, xp_known_memory: the functions every copy goes through) and its
# code. Xen's copy_to_guest fails on a page the guest cannot write (x86 Xen runs with
# CR0.WP set; arch/x86/usercopy.c@RELEASE-4.17.0:17-57 takes the fixup), as the mock's
# process_vm_writev does: -EFAULT, nothing written, and the transport still judges.
READ_ONLY = r"""
import ctypes, xenprobe._transport as T
so = ctypes.CDLL(T.__file__)
targets = {
    "xp_caller_memory": ctypes.addressof(ctypes.c_uint64.in_dll(so, "xp_caller_memory")),
    "xp_known_memory": ctypes.addressof(ctypes.c_uint64.in_dll(so, "xp_known_memory")),
    "xp_issue code": ctypes.cast(so.xp_hypercall_many, ctypes.c_void_p).value,
}
out = {}
for name, where in targets.items():
    before = ctypes.string_at(where, 16)
    for sub in (1, 5, 9):  # extraversion, platform_parameters, commandline
        w = ffi.new("uint64_t[5]", [sub, where, 0, 0, 0])
        rc = lib.xp_hypercall_ioctl(fd, 17, w, ret, err)
        out[f"{name} {sub}"] = [rc, ret[0], err[0]]
    out[f"{name} unchanged"] = ctypes.string_at(where, 16) == before
# and the rule still holds afterwards: an entry aimed at the span is refused
span = ffi.new("uint64_t[2]")
lib.xp_private_span(span)
me = ffi.new("xp_multicall_entry[2]")
me[0].op = me[1].op = 17
me[0].args[0], me[0].args[1] = 9, int(span[0]) + 65536 + 64
out["after"] = [lib.xp_multicall(fd, me, 2, ret, err), err[0]]
print(json.dumps(out))
"""


def test_xens_writes_aimed_at_the_transports_read_only_data_fail(
        tmp_path: Path, racer: Path) -> None:  # noqa: F811
    out, log = run(READ_ONLY, tmp_path, racer)
    # Since Xen may write only into the caller's hypercall buffers (xp_alloc), these are
    # refused before issue (XP_DENY_WRITE) instead of failing with -EFAULT in Xen.
    refused, write = -1000, 7
    for name in ("xp_caller_memory", "xp_known_memory", "xp_issue code"):
        for sub in (1, 5, 9):
            assert out.pop(f"{name} {sub}")[::2] == [refused, write], (name, sub, out)
        assert out.pop(f"{name} unchanged") is True, out
    assert out.pop("after") == [-1000, 6], out
    assert out == {}, out
    assert forbidden(log) == [], requests(log)
    assert requests(log) == Counter(), requests(log)


# A forked child that exits through sys.exit (finalisers run): its span is reserved again
# at the parent's addresses, not accessible, so an entry aimed there is refused; a
# mapping the child makes never lands in it; the 4096-entry multicall whose entry 0
# writes where a fresh copy would be reaches the device as judged.
FORK = r"""
import os
span = ffi.new("uint64_t[2]")
lib.xp_private_span(span)
parent = [int(span[0]), int(span[1])]
pid = os.fork()
if pid == 0:
    res = {}
    lib.xp_private_span(span)
    lo, hi = int(span[0]), int(span[1])
    res["same span"] = [lo, hi] == parent
    maps = [l.split() for l in open("/proc/self/maps")]
    inside = [m[1] for m in maps if lo <= int(m[0].split("-")[0], 16) < hi]
    res["span not accessible"] = inside and all(p.startswith("---") for p in inside)
    bufs = [Buffer(n) for n in (1, 4096, 65536, 1 << 20)]
    res["buffers outside"] = all(not (lo <= b.address < hi) for b in bufs)
    me = ffi.new("xp_multicall_entry[2]")
    me[0].op = me[1].op = 17
    me[0].args[0], me[0].args[1] = 9, lo + 65536 + 64
    res["aimed"] = [lib.xp_multicall(fd, me, 2, ret, err), err[0]]
    N = 4096
    ents = Buffer(N * 64)
    e = ffi.cast("xp_multicall_entry *", ents.ptr)
    probe = Buffer(N * 64)
    where = probe.address
    probe.close()
    for i in range(N):
        e[i].op = 17
    e[0].args[0], e[0].args[1] = 9, where + 64
    res["predicted"] = [lib.xp_multicall(fd, e, N, ret, err), ret[0]]
    with open(sys.argv[-1] + ".child", "w") as f:
        json.dump(res, f)
    for b in bufs:
        b.close()
    sys.exit(0)
_, status = os.waitpid(pid, 0)
res = json.load(open(sys.argv[-1] + ".child"))
res["child status"] = status
print(json.dumps(res))
"""


def test_a_forked_child_refuses_its_fresh_span_and_exits_cleanly(
        tmp_path: Path, racer: Path) -> None:  # noqa: F811
    log = tmp_path / "log.jsonl"
    env = env_for(load("healthy"), tmp_path, log)
    mark = str(tmp_path / "out")
    p = subprocess.run([sys.executable, "-c", PRELUDE + FORK, str(racer), "0",
                        RACER_SONAME, mark], env=env, text=True, capture_output=True,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert "Exception ignored" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    out = json.loads(p.stdout.splitlines()[-1])
    # "predicted": entry 0 aims Xen's write at a freed buffer, which is no hypercall
    # buffer any more: refused before issue (XP_DENY_WRITE), nothing reaches the mock.
    assert out == {"same span": True, "span not accessible": True,
                   "buffers outside": True, "aimed": [-1000, 6], "predicted": [-1000, -1],
                   "child status": 0}, out
    entries = read_log(log)
    assert forbidden(entries) == [], requests(entries)
    assert requests(entries) == Counter(), requests(entries)


# The guard lets libxendevicemodel's open probe through (IOCTL_PRIVCMD_DM_OP with no
# buffers) and refuses every DM_OP that carries buffers. A native thread flips the
# count between 0 and 1 while the probe is made through a guarded ioctl slot: the
# device only ever sees num 0, from the guard's own copy.
DM_OP = r"""
from xenprobe.layers import libxc_guard as guard
assert guard.install([sys.argv[3]]) == 1
DM = 0x00105005
page = Buffer(4096)
bufs = ffi.new("uint64_t[2]", [page.address, 16])
op = ffi.new("uint64_t[2]", [0, addr(bufs)])    # dom 0, num 0, pad, ubufs
def probe():
    r = racer.racer_ioctl(fd, DM, addr(op))
    return "passed" if r == 0 else f"refused {r}"
print(json.dumps(race([(addr(op), 0, 1 << 16)], probe)))
"""


def test_a_raced_dm_op_count_never_reaches_the_device(tmp_path: Path,
                                                     racer: Path) -> None:  # noqa: F811
    out, log = run(DM_OP, tmp_path, racer)
    assert out.pop("after") == "passed", out
    assert set(out) <= {"passed", "refused -1"} and out.get("passed"), out
    dm = [e for e in log if e.get("name") == "DM_OP"]
    assert dm and {e["num"] for e in dm} == {0}, Counter(e["num"] for e in dm)
    assert requests(log) == Counter(), requests(log)


# xp_alloc at the edges of its sizes: nothing it hands out, and nothing a size that
# rounds past SIZE_MAX makes, is in the span; a size that cannot be rounded is ENOMEM.
ALLOC = r"""
span = ffi.new("uint64_t[2]")
lib.xp_private_span(span)
lo, hi = int(span[0]), int(span[1])
M = 2**64
out = {"inside": [], "errors": {}}
held = []
for n in (0, 1, 4095, 4096, 4097, 65536, 65537, 1 << 20,
          M - 4097, M - 4096, M - 4095, M - 4094, M - 1):
    for _ in range(4):
        p = lib.xp_alloc(n, err)
        if p == ffi.NULL:
            out["errors"][str(n)] = err[0]
            continue
        a = int(ffi.cast("uintptr_t", p))
        if lo <= a < hi or lo <= a + max(n, 1) - 1 < hi:
            out["inside"].append(n)
        held.append((p, n))
    # freed and made again: still never the span
    for p, k in held:
        lib.xp_free(p, k)
    held = []
print(json.dumps(out))
"""


def test_xp_alloc_never_hands_out_the_span_at_any_size(tmp_path: Path,
                                                      racer: Path) -> None:  # noqa: F811
    out, _ = run(ALLOC, tmp_path, racer)
    assert out["inside"] == [], out
    enomem = 12
    huge = [str(2**64 - k) for k in (4097, 4096, 4095, 4094, 1)]
    assert out["errors"] == dict.fromkeys(huge, enomem), out


# Breaks found by the same review (issue 20, round two), each a test that failed before
# the fix: Xen (or the transport itself, on the caller's word) writing the transport's
# own state, so that a later request judged on a rule that is no longer the rule.

# The transport's span bounds live in the library's writable data. A
# XENVER_platform_parameters (Xen writes 8 bytes at arg1) aimed there, or a batch's
# result array or a status out-parameter aimed there, must change nothing; the
# multicall aimed at the kept private copy afterwards must not be issued as anything
# but what was judged. Before: the bound was overwritten and 16 entries of op 0 reached
# the mock.
OWN_DATA = r"""
import ctypes, os, xenprobe._transport as T
sp = ffi.new("uint64_t[2]"); lib.xp_private_span(sp)
lo, hi = int(sp[0]), int(sp[1])
real = os.path.realpath(T.__file__)
A = None
maps = [l.split() for l in open("/proc/self/maps")]
for i, f in enumerate(maps):
    # the library's writable data: its rw mapping and the .bss mapped right after it
    if f[-1] == real and f[1].startswith("rw"):
        a, b = (int(x, 16) for x in f[0].split("-"))
        nxt = maps[i + 1] if i + 1 < len(maps) else None
        if nxt and len(nxt) == 5 and int(nxt[0].split("-")[0], 16) == b:
            b = int(nxt[0].split("-")[1], 16)
        raw = ctypes.string_at(a, b - a)
        for o in range(0, len(raw), 8):
            if int.from_bytes(raw[o:o + 8], "little") == lo + 65536:
                A = a + o
res = {"found": A is not None}
if A is None:
    print(json.dumps(res))
    sys.exit(0)
s = Buffer(136); s.view[0:8] = struct.pack("<II", 3, 0x15)
dev.ioctl(35, args5(s.address))                       # leaves the kept private page
P = [int(l.split("-")[0], 16) for l in open("/proc/self/maps")
     if lo <= int(l.split("-")[0], 16) < hi and l.split()[1].startswith("rw")][0]
mode = sys.argv[-1]
if mode == "xen":
    w = ffi.new("uint64_t[5]", [5, A, 0, 0, 0])
    res["write"] = lib.xp_hypercall_ioctl(fd, 17, w, ret, err)
elif mode == "rets":
    ops = ffi.new("uint64_t[1]", [17]); a = ffi.new("uint64_t[5]", [7, 0, 0, 0, 0])
    res["write"] = lib.xp_hypercall_many(fd, 1, ops, a, 0, ffi.cast("int64_t *", A),
                                         ffi.new("int[1]"), err)
else:  # the status out-parameter *err (0 on success)
    w = ffi.new("uint64_t[5]", [7, 0, 0, 0, 0])
    res["write"] = lib.xp_hypercall_ioctl(fd, 17, w, ret, ffi.cast("int *", A))
    res["write"] = lib.xp_hypercall_ioctl(fd, 17, w, ret, ffi.cast("int *", A + 4))
lib.xp_private_span(sp)
res["span kept"] = [int(sp[0]), int(sp[1])] == [lo, hi]
m = Buffer(64 * 64)
e = ffi.cast("xp_multicall_entry *", m.ptr)
for i in range(64):
    e[i].op = 17
e[0].args[0], e[0].args[1] = 9, P + 64                # XENVER_commandline into the copy
res["multicall"] = lib.xp_multicall(fd, e, 64, ret, err)
print(json.dumps(res))
"""


@pytest.mark.parametrize("mode", ["xen", "rets", "err"])
def test_writes_aimed_at_the_transports_own_data_change_no_rule(
        tmp_path: Path, racer: Path, mode: str) -> None:  # noqa: F811
    log = tmp_path / "log.jsonl"
    env = env_for(load("healthy"), tmp_path, log)
    p = subprocess.run([sys.executable, "-c", PRELUDE + OWN_DATA, str(racer), "0",
                        RACER_SONAME, mode], env=env, text=True, capture_output=True,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[-1])
    assert out["found"], out
    assert out["span kept"], out
    assert out["multicall"] == -1000, out  # refused: an entry points into the span
    entries = read_log(log)
    assert forbidden(entries) == [], requests(entries)
    assert (0, None) not in requests(entries) and requests(entries)[(17, 9)] == 0


# Xen's write to the issuing thread's stack: a reader thread finds where
# xp_hypercall_many keeps its copy's address on the main thread's stack (a long harmless
# batch whose args end in 0x108), then call 0 of a batch, XENVER_extraversion, is aimed
# so that its 16 bytes end at that slot. Before: the slot moved by 8 bytes and the later
# calls were issued from words nobody judged (decrease_reservation reached the mock).
STACK = r"""
import ctypes, array
sp = ffi.new("uint64_t[2]"); lib.xp_private_span(sp)
lo, hi = int(sp[0]), int(sp[1])
C = 33
dom = Buffer(8)
D = dom.address
ops = ffi.new("uint64_t[]", C)
args = ffi.new("uint64_t[]", 5 * C)
rets = ffi.new("int64_t[]", C)
errs = ffi.new("int[]", C)

def batch(first, many):
    ops[0] = 17
    for k in range(5):
        args[k] = first[k]
    for i in range(1, C):
        ops[i] = 12
        args[5 * i:5 * i + 5] = [3, D, 0, 0, 1]   # current_reservation; arg4 unused
    if many:
        return lib.xp_hypercall_many(fd, C, ops, args, 0, rets, errs, err)
    return lib.xp_multicall_many(fd, C, ops, args, rets, ret, err)

stk = [l.split()[0] for l in open("/proc/self/maps") if l.rstrip().endswith("[stack]")][0]
s0, s1 = (int(x, 16) for x in stk.split("-"))
BIG = 33 + 512 * 40
bops = array.array("Q", [17] * BIG); bargs = array.array("Q", [0] * 5 * BIG)
brets = array.array("q", [0] * BIG); berrs = array.array("i", [0] * BIG)
found = set(); stop = []
def scan():
    while not stop:
        raw = ctypes.string_at(s1 - 65536, 65536)
        for o in range(0, len(raw), 8):
            v = int.from_bytes(raw[o:o + 8], "little")
            if lo <= v < hi and v & 0xFFF == 0x108:
                found.add(s1 - 65536 + o)
t = threading.Thread(target=scan); t.start()
for _ in range(3):
    lib.xp_hypercall_many(fd, BIG, ffi.from_buffer("uint64_t[]", bops),
                          ffi.from_buffer("uint64_t[]", bargs), 0,
                          ffi.from_buffer("int64_t[]", brets),
                          ffi.from_buffer("int[]", berrs), err)
stop.append(1); t.join()
res = {"candidates": len(found), "outcomes": []}
for S in sorted(found):
    for many in (True, False):
        res["outcomes"].append(batch([1, S - 15, 0, 0, 0], many))
# and a write aimed anywhere at the top of this thread's stack is never issued
for at in range(s1 - 4096, s1, 512):
    w = ffi.new("uint64_t[5]", [9, at, 0, 0, 0])
    res["outcomes"].append(lib.xp_hypercall_ioctl(fd, 17, w, ret, err))
print(json.dumps(res))
"""


def test_xens_write_to_the_issuing_threads_stack_changes_no_judged_call(
        tmp_path: Path, racer: Path) -> None:  # noqa: F811
    out, log = run(STACK, tmp_path, racer)
    assert forbidden(log) == [], Counter(forbidden(log))
    # Every one refused before anything was issued: no stack is a hypercall buffer.
    assert set(out["outcomes"]) == {-1000}, out
    assert (17, 1) not in requests(log) and (17, 9) not in requests(log), requests(log)


# xp_free is the caller's too: a pointer it never handed out (the kept private page, a
# multi-page range of the span, a size that rounds past SIZE_MAX) is left alone, and
# xp_alloc never hands out a page of the span afterwards. Before: xp_free(P) of the
# kept private page made the next xp_alloc return P, and a multi-page xp_free unmapped
# part of the span's reservation.
XP_FREE = r"""
sp = ffi.new("uint64_t[2]"); lib.xp_private_span(sp)
lo, hi = int(sp[0]), int(sp[1])
s = Buffer(136); s.view[0:8] = struct.pack("<II", 3, 0x15)
w = ffi.new("uint64_t[5]", [s.address, 0, 0, 0, 0])
lib.xp_hypercall_ioctl(fd, 35, w, ret, err)          # leaves a kept private page
P = [int(l.split("-")[0], 16) for l in open("/proc/self/maps")
     if lo <= int(l.split("-")[0], 16) < hi and l.split()[1].startswith("rw")][0]

def span_maps():
    return sorted((int(l.split("-")[0], 16), int(l.split()[0].split("-")[1], 16))
                  for l in open("/proc/self/maps")
                  if lo <= int(l.split("-")[0], 16) < hi)

def reserved():
    m = span_maps()
    return m[0][0] == lo and m[-1][1] == hi and all(a[1] == b[0] for a, b in zip(m, m[1:]))

res = {"reserved": reserved()}
lib.xp_free(ffi.cast("void *", P), 4096)
got = [int(ffi.cast("uintptr_t", lib.xp_alloc(4096, err))) for _ in range(4)]
res["alloc in span"] = any(lo <= q < hi for q in got)
lib.xp_free(ffi.cast("void *", lo + 65536 + 8 * 4096), 64 * 4096)
lib.xp_free(ffi.cast("void *", lo + 65536), 2**64 - 4095)
res["still reserved"] = reserved()
e = ffi.new("xp_multicall_entry[1]")
e[0].op = 17
res["issued"] = lib.xp_multicall(fd, e, 1, ret, err)
print(json.dumps(res))
"""


def test_xp_free_leaves_what_xp_alloc_never_handed_out(tmp_path: Path,
                                                      racer: Path) -> None:  # noqa: F811
    out, log = run(XP_FREE, tmp_path, racer)
    assert out == {"reserved": True, "alloc in span": False, "still reserved": True,
                   "issued": 0}, out
    assert forbidden(log) == [], requests(log)
