# SPDX-License-Identifier: GPL-2.0-only
"""The read-only allow-list under attack from other threads: what is checked is exactly
what is issued.

Every entry point of the native transport (and the guard on libxenctrl's path) is
called over and over for a bounded time while native threads (tests/racer.c, built here
with gcc) rewrite the request in the caller's memory between an allowed and a forbidden
value: the by-value arguments, the op numbers and arguments of a batch, a multicall's
count and entries, the cmd inside a sysctl or domctl struct. The mock device's request
log must show no forbidden request, and the allowed ones must still go through. A
Python thread racing the high-level API does the same. Bad pointers give EFAULT, not a
crash, and a refusal names the cmd the allow-list read, not a pointer.

XENPROBE_RACE_SECONDS sets how long each entry point is hammered (default 1.5 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.mockhost import env_for, read_log
from xenprobe.mock.scenario import load

SECONDS = float(os.environ.get("XENPROBE_RACE_SECONDS", "1.5"))
RACER_SONAME = "libxenprobe_racer.so"

# By value: (op, arg0); by struct: (op, cmd). As test_readonly.ALLOWED.
ALLOWED = {(12, 2), (12, 3), (12, 4), (12, 14), (35, 3), (35, 6), (36, 5),
           *((17, n) for n in range(15)),
           # The census's pairs (tests/census.py): sharing counts, DR6, hypfs version,
           # VCPUOP_is_up, KEXEC_CMD_kexec_status, platform_op's resource_op (MSR_READ
           # entries only) and get_dom0_console; sysctl livepatch_op with LIST (2) inside
           # (forbidden() keys it by that cmd).
           (12, 18), (12, 19), (9, 6), (42, 0), (24, 3), (37, 6), (7, 61), (7, 64),
           (35, 27, 2)}


@pytest.fixture(scope="module")
def racer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build tests/racer.c")
    out = tmp_path_factory.mktemp("racer") / RACER_SONAME
    src = Path(__file__).with_name("racer.c")
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-pthread", "-Wall", "-Wextra",
                    "-Werror", "-std=gnu11", f"-Wl,-soname,{RACER_SONAME}", "-Wl,-z,now",
                    "-o", str(out), str(src)], check=True, timeout=60)
    return out


def forbidden(log: list[dict[str, Any]]) -> list[tuple[int, ...]]:
    """Requests in the mock's log that are not on the allow-list: memory_op by its whole
    cmd (continuation bits included), sysctl/domctl by the cmd the mock read, and a
    sysctl livepatch_op by its own cmd as well."""
    seen = []
    for e in log:
        if e["kind"] not in ("hypercall", "multicall_entry") or e["op"] == 13:
            continue
        key: tuple[int, ...] = (e["op"], e.get("cmd_raw", e.get("subop")))
        if "inner" in e:
            key = (*key, e["inner"])
        if key not in ALLOWED:
            seen.append(key)
        # A resource_op reaches Xen only with MSR_READ (0) entries (the mock logs the
        # entries it read through the struct's handle).
        if key == (7, 61) and set(e.get("resource_cmds", [])) - {0}:
            seen.append((7, 61, *e["resource_cmds"]))
    return seen


PRELUDE = r"""
import json, struct, sys, threading, time
from cffi import FFI
from xenprobe._transport import ffi, lib
from xenprobe.xen.transport import Buffer, Calls, Privcmd, args5
R = FFI()
R.cdef('''int racer_start(uintptr_t where, uint64_t a, uint64_t b);
          unsigned long racer_stop(int h);
          int racer_ioctl(int fd, unsigned long request, uintptr_t arg);''')
racer = R.dlopen(sys.argv[1])
SECONDS = float(sys.argv[2])
HYPERCALL = 0x00305000
dev = Privcmd()
fd = dev.fd
ret, lret, err = ffi.new("int *"), ffi.new("long *"), ffi.new("int *")

def addr(p):
    return int(ffi.cast("uintptr_t", p))

def race(words, call, limit=None):
    # call() over and over for SECONDS (or `limit` calls) while each (address, a, b)
    # in words flips between a and b; how often each outcome came. Then once more with
    # every word back at a, the allowed value: "after".
    hs = [racer.racer_start(w, a, b) for w, a, b in words]
    assert all(h >= 0 for h in hs), hs
    out = {}
    end = time.monotonic() + SECONDS
    n = 0
    while time.monotonic() < end and (limit is None or n < limit):
        k = call()
        out[k] = out.get(k, 0) + 1
        n += 1
    flips = [racer.racer_stop(h) for h in hs]
    assert all(flips), flips
    out["after"] = call()
    return out

def outcome(rc, value=0):
    if rc == lib.XP_REFUSED:
        return "refused"
    assert rc == 0, (rc, err[0])
    return "issued" if value != -1 else f"errno {err[0]}"

def sysctl(cmd, iface=0x15, domain=0):
    return struct.pack("<IIH", cmd, iface, domain)

def word(cmd, iface=0x15):
    return cmd | iface << 32
"""

# One racing scenario per entry point: a snippet that prints what happened as JSON.
RACES = {
    # prepare() checked `in`, then copied it: arg0 of a memory_op flips 3 <-> 0
    # (current_reservation <-> increase_reservation).
    "ioctl_by_value": """
a = ffi.new("uint64_t[5]", [3, 0, 0, 0, 0])
dom = Buffer(8); a[1] = dom.address
print(json.dumps(race([(addr(a), 3, 0)],
      lambda: outcome(lib.xp_hypercall_ioctl(fd, 12, a, ret, err), ret[0]))))
""",
    "syscall_by_value": """
a = ffi.new("uint64_t[5]", [3, 0, 0, 0, 0])
dom = Buffer(8); a[1] = dom.address
print(json.dumps(race([(addr(a), 3, 0)],
      lambda: outcome(lib.xp_hypercall_syscall(fd, 12, a, lret, err), lret[0]))))
""",
    # A multicall's count read more than once: 1 allowed entry then 63 forbidden ones,
    # the count flipping 1 <-> 64.
    "ioctl_multicall_count": """
e = Buffer(64 * 64)
ents = ffi.cast("xp_multicall_entry *", e.ptr)
ents[0].op = 17
for i in range(1, 64):
    ents[i].op = 12
a = ffi.new("uint64_t[5]", [e.address, 1, 0, 0, 0])
print(json.dumps(race([(addr(a) + 8, 1, 64)],
      lambda: outcome(lib.xp_hypercall_ioctl(fd, 13, a, ret, err), ret[0]))))
""",
    "syscall_multicall_count": """
e = Buffer(64 * 64)
ents = ffi.cast("xp_multicall_entry *", e.ptr)
ents[0].op = 17
for i in range(1, 64):
    ents[i].op = 12
a = ffi.new("uint64_t[5]", [e.address, 1, 0, 0, 0])
print(json.dumps(race([(addr(a) + 8, 1, 64)],
      lambda: outcome(lib.xp_hypercall_syscall(fd, 13, a, lret, err), lret[0]))))
""",
    # The entries themselves: an entry's op (xen_version <-> set_trap_table) and a
    # memory_op entry's cmd (maximum_ram_page <-> increase_reservation).
    "multicall_entries": """
e = Buffer(4 * 64)
ents = ffi.cast("xp_multicall_entry *", e.ptr)
for i in range(4):
    ents[i].op = 17
ents[3].op, ents[3].args[0] = 12, 2
print(json.dumps(race([(addr(ents + 1), 17, 0), (addr(ents[3].args), 2, 0)],
      lambda: outcome(lib.xp_multicall(fd, ents, 4, ret, err), ret[0]))))
""",
    # The cmd inside the struct: physinfo <-> 2 (sysctl readconsole), and domctl
    # getdomaininfo <-> destroydomain, both for domain 1.
    "sysctl_domctl_struct": """
s, d = Buffer(136), Buffer(144)
s.view[0:10] = sysctl(3)
d.view[0:10] = sysctl(5, domain=1)
a_s = ffi.new("uint64_t[5]", [s.address, 0, 0, 0, 0])
a_d = ffi.new("uint64_t[5]", [d.address, 0, 0, 0, 0])
def both():
    k1 = outcome(lib.xp_hypercall_ioctl(fd, 35, a_s, ret, err), ret[0])
    k2 = outcome(lib.xp_hypercall_syscall(fd, 36, a_d, lret, err), lret[0])
    return k1 + "/" + k2
print(json.dumps(race([(s.address, word(3), word(2)), (d.address, word(5), word(2))],
      both)))
""",
    # platform_op's cmd inside its struct: resource_op <-> cpu_hotadd (61 <-> 58, census
    # S5) and get_dom0_console <-> cpu_hotadd, alone and as a multicall entry.
    "platform_op_struct": """
IV = 0x03000001
r, c, ent = Buffer(136), Buffer(136), Buffer(24)
r.view[0:24] = struct.pack("<IIIIQ", 61, IV, 1, 0, ent.address)
ent.view[0:24] = struct.pack("<IIQQ", 0, 0, 0x10, 0)
c.view[0:8] = struct.pack("<II", 64, IV)
a_r = ffi.new("uint64_t[5]", [r.address, 0, 0, 0, 0])
a_c = ffi.new("uint64_t[5]", [c.address, 0, 0, 0, 0])
m = Buffer(2 * 64)
ents = ffi.cast("xp_multicall_entry *", m.ptr)
ents[0].op, ents[0].args[0] = 7, r.address
ents[1].op, ents[1].args[0] = 7, c.address
def three():
    k1 = outcome(lib.xp_hypercall_ioctl(fd, 7, a_r, ret, err), ret[0])
    k2 = outcome(lib.xp_hypercall_syscall(fd, 7, a_c, lret, err), lret[0])
    k3 = outcome(lib.xp_multicall(fd, ents, 2, ret, err), ret[0])
    return "/".join((k1, k2, k3))
print(json.dumps(race([(r.address, word(61, IV), word(58, IV)),
                       (c.address, word(64, IV), word(58, IV))], three)))
""",
    # A resource_op's entries behind its handle: the middle entry's cmd MSR_READ <->
    # MSR_WRITE (0 <-> 1, census S6); the count 1 <-> 3 over entries whose last two
    # write; the handle itself between all-read entries and writing ones. Through both
    # single-call paths, both batch layers and the multicall batch.
    "resource_op_entries": """
IV = 0x03000001
def op(n, entries):
    b = Buffer(136)
    b.view[0:24] = struct.pack("<IIIIQ", 61, IV, n, 0, entries.address)
    return b
def entries(*cmds):
    e = Buffer(24 * len(cmds))
    for i, cmd in enumerate(cmds):
        e.view[24 * i:24 * i + 24] = struct.pack("<IIQQ", cmd, 0, 0x10, 0)
    return e
mid, tail, good, bad = entries(0, 0, 0), entries(0, 1, 1), entries(0, 0, 0), entries(1, 1, 1)
o_mid, o_tail, o_handle = op(3, mid), op(1, tail), op(3, good)
addrs = [o.address for o in (o_mid, o_tail, o_handle)]
N = len(addrs)
c = Calls([7] * N, [w for a in addrs for w in (a, 0, 0, 0, 0)])
a = ffi.new("uint64_t[5]", [o_mid.address, 0, 0, 0, 0])
rets, errs = ffi.new("int64_t[]", N), ffi.new("int[]", N)
results = ffi.new("int64_t[]", N)
def five():
    k1 = outcome(lib.xp_hypercall_ioctl(fd, 7, a, ret, err), ret[0])
    k2 = outcome(lib.xp_hypercall_syscall(fd, 7, a, lret, err), lret[0])
    k3 = outcome(lib.xp_hypercall_many(fd, N, c.ops, c.args, 0, rets, errs, err))
    k4 = outcome(lib.xp_hypercall_many(fd, N, c.ops, c.args, 1, rets, errs, err))
    k5 = outcome(lib.xp_multicall_many(fd, N, c.ops, c.args, results, ret, err), ret[0])
    return "/".join((k1, k2, k3, k4, k5))
flip = [(mid.address + 24, 0, 1), (o_tail.address + 8, 1, 3),
        (o_handle.address + 16, good.address, bad.address)]
print(json.dumps(race(flip, five)))
""",
    # The cmd inside the livepatch_op inside the sysctl: LIST <-> ACTION (3, apply or
    # revert a patch) through the ioctl, LIST <-> UPLOAD (0) through the syscall.
    "sysctl_livepatch_inner": """
s1, s2 = Buffer(136), Buffer(136)
s1.view[0:16] = struct.pack("<IIII", 27, 0x15, 2, 0)
s2.view[0:16] = struct.pack("<IIII", 27, 0x15, 2, 0)
a1 = ffi.new("uint64_t[5]", [s1.address, 0, 0, 0, 0])
a2 = ffi.new("uint64_t[5]", [s2.address, 0, 0, 0, 0])
def both():
    k1 = outcome(lib.xp_hypercall_ioctl(fd, 35, a1, ret, err), ret[0])
    k2 = outcome(lib.xp_hypercall_syscall(fd, 35, a2, lret, err), lret[0])
    return k1 + "/" + k2
print(json.dumps(race([(s1.address + 8, 2, 3), (s2.address + 8, 2, 0)], both)))
""",
    # A batch re-read ops[i] and args[5i] after checking them all.
    "hypercall_many": """
N = 16
c = Calls([12] * N, [2, 0, 0, 0, 0] * N)
rets, errs = ffi.new("int64_t[]", N), ffi.new("int[]", N)
flip = [(addr(c.args + 5 * (N - 1)), 2, 0), (addr(c.ops + N - 2), 12, 0)]
def both():
    k1 = outcome(lib.xp_hypercall_many(fd, N, c.ops, c.args, 0, rets, errs, err))
    k2 = outcome(lib.xp_hypercall_many(fd, N, c.ops, c.args, 1, rets, errs, err))
    return k1 + "/" + k2
print(json.dumps(race(flip, both)))
""",
    # The census's pairs, each flipping to a state-changing neighbour, through both batch
    # layers and the multicall batch: get_debugreg <-> set_debugreg (op 9 <-> 8), hypfs
    # get_version <-> write_contents (0 <-> 4), the sharing counts <-> increase and
    # decrease_reservation (18 <-> 0, 19 <-> 1), VCPUOP_is_up <-> VCPUOP_down (3 <-> 2),
    # kexec_status <-> KEXEC_CMD_kexec (6 <-> 0).
    "census_pairs": """
N = 6
c = Calls([9, 42, 12, 12, 24, 37], [6, 0, 0, 0, 0] + [0] * 5 + [18, 0, 0, 0, 0]
          + [19, 0, 0, 0, 0] + [3, 1, 0, 0, 0] + [6, 0, 0, 0, 0])
rets, errs = ffi.new("int64_t[]", N), ffi.new("int[]", N)
results = ffi.new("int64_t[]", N)
flip = [(addr(c.ops), 9, 8), (addr(c.args + 5), 0, 4), (addr(c.args + 10), 18, 0),
        (addr(c.args + 15), 19, 1), (addr(c.args + 20), 3, 2), (addr(c.args + 25), 6, 0)]
def three():
    k1 = outcome(lib.xp_hypercall_many(fd, N, c.ops, c.args, 0, rets, errs, err))
    k2 = outcome(lib.xp_hypercall_many(fd, N, c.ops, c.args, 1, rets, errs, err))
    k3 = outcome(lib.xp_multicall_many(fd, N, c.ops, c.args, results, ret, err), ret[0])
    return "/".join((k1, k2, k3))
print(json.dumps(race(flip, three)))
""",
    # A batch of two multicalls: the second chunk's entries flip. A refused batch must
    # reach the device not at all, so every multicall in the log is one of a batch that
    # was issued whole.
    "multicall_many": """
N = lib.XP_MULTICALL_MAX + 8
c = Calls([17] * N, [0] * (5 * N))
results = ffi.new("int64_t[]", N)
flip = [(addr(c.args + 5 * (N - 1)), 0, 63), (addr(c.ops + N - 2), 17, 0)]
out = race(flip, lambda: outcome(
    lib.xp_multicall_many(fd, N, c.ops, c.args, results, ret, err), ret[0]), limit=40)
print(json.dumps(out))
""",
    # The guard on libxenctrl's path, through racer_ioctl's guarded relocation slot.
    "guard": """
from xenprobe.layers import libxc_guard as guard
assert guard.install([sys.argv[3]]) == 1
hc = ffi.new("uint64_t[6]", [12, 3, 0, 0, 0, 0])
dom = Buffer(8); hc[2] = dom.address
s = Buffer(136); s.view[0:10] = sysctl(3)
hs = ffi.new("uint64_t[6]", [35, s.address, 0, 0, 0, 0])
e = Buffer(64 * 64)
ents = ffi.cast("xp_multicall_entry *", e.ptr)
ents[0].op = 17
for i in range(1, 64):
    ents[i].op = 12
hm = ffi.new("uint64_t[6]", [13, e.address, 1, 0, 0, 0])
def call(h):
    r = racer.racer_ioctl(fd, HYPERCALL, addr(h))
    return "issued" if r != -1 else f"errno {ffi.errno}"
def three():
    return "/".join((call(hc), call(hs), call(hm)))
flip = [(addr(hc + 1), 3, 0), (s.address, word(3), word(2)), (addr(hm + 2), 1, 64)]
out = race(flip, three)
out["guard_refused"] = guard.refused()
print(json.dumps(out))
""",
    # The guard's path with platform_op (libxenctrl's xc_resource_op): the struct's cmd
    # (resource_op <-> cpu_hotadd) and its entry's cmd (MSR_READ <-> MSR_WRITE), alone
    # and as a multicall entry, as xc_resource_op issues more than one op.
    "guard_platform_op": """
from xenprobe.layers import libxc_guard as guard
assert guard.install([sys.argv[3]]) == 1
IV = 0x03000001
r, ent = Buffer(136), Buffer(24)
r.view[0:24] = struct.pack("<IIIIQ", 61, IV, 1, 0, ent.address)
ent.view[0:24] = struct.pack("<IIQQ", 0, 0, 0x10, 0)
hp = ffi.new("uint64_t[6]", [7, r.address, 0, 0, 0, 0])
m = Buffer(64)
ents = ffi.cast("xp_multicall_entry *", m.ptr)
ents[0].op, ents[0].args[0] = 7, r.address
hm = ffi.new("uint64_t[6]", [13, m.address, 1, 0, 0, 0])
def call(h):
    rc = racer.racer_ioctl(fd, HYPERCALL, addr(h))
    return "issued" if rc != -1 else f"errno {ffi.errno}"
out = race([(r.address, word(61, IV), word(58, IV)), (ent.address, 0, 1)],
           lambda: call(hp) + "/" + call(hm))
out["guard_refused"] = guard.refused()
print(json.dumps(out))
""",
    # A Python thread rewriting the Calls of the high-level API during the sweep paths.
    "python_thread": """
from xenprobe.support.errors import Refused
N = 16
c = Calls([12] * N, [2, 0, 0, 0, 0] * N)
stop = False
def rewrite():
    while not stop:
        c.args[5 * (N - 1)] = 0
        c.ops[N - 2] = 36
        c.args[5 * (N - 1)] = 2
        c.ops[N - 2] = 12
t = threading.Thread(target=rewrite)
t.start()
out = {}
end = time.monotonic() + SECONDS
while time.monotonic() < end:
    for name, f in (("ioctl", lambda: dev.many_values(c, syscall=False, retry=False)),
                    ("syscall", lambda: dev.many_values(c, syscall=True, retry=False)),
                    ("multicall", lambda: dev.multicall_values(c, retry=False))):
        try:
            f()
            k = name + " issued"
        except Refused:
            k = name + " refused"
        out[k] = out.get(k, 0) + 1
stop = True
t.join()
for name, f in (("ioctl", lambda: dev.many_values(c, syscall=False, retry=False)),
                ("syscall", lambda: dev.many_values(c, syscall=True, retry=False)),
                ("multicall", lambda: dev.multicall_values(c, retry=False))):
    f()
    out[name + " after"] = "issued"
print(json.dumps(out))
""",
}


# Races whose allowed request needs a host that models it (pv-dom0: the census's calls).
SCENARIO = {"platform_op_struct": "pv-dom0", "resource_op_entries": "pv-dom0",
            "guard_platform_op": "pv-dom0", "sysctl_livepatch_inner": "pv-dom0"}


def run_race(name: str, tmp: Path, racer: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    log = tmp / f"{name}.jsonl"
    env = env_for(load(SCENARIO.get(name, "healthy")), tmp, log)
    p = subprocess.run([sys.executable, "-c", PRELUDE + RACES[name], str(racer),
                        str(SECONDS), RACER_SONAME], env=env, text=True,
                       capture_output=True, timeout=60 + 4 * SECONDS, check=False)
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout.splitlines()[-1])
    return out, read_log(log)


@pytest.mark.parametrize("name", sorted(set(RACES) - {"multicall_many", "python_thread"}))
def test_nothing_forbidden_reaches_the_device_while_native_threads_rewrite_the_request(
        name: str, tmp_path: Path, racer: Path) -> None:
    out, log = run_race(name, tmp_path, racer)
    assert forbidden(log) == [], (name, out)
    # Once the racers stop, the allowed request goes through, on every path raced.
    after = out.pop("after")
    assert set(after.split("/")) == {"issued"}, out
    if name in ("guard", "guard_platform_op"):
        assert out.pop("guard_refused") > 0, out  # the forbidden variants were raced in
    # What the racing calls came to, for the record (-rA shows it): how often each path
    # saw the allowed and the forbidden request is up to the scheduler.
    print(name, out)


def test_nothing_forbidden_reaches_the_device_while_a_python_thread_rewrites_the_calls(
        tmp_path: Path, racer: Path) -> None:
    out, log = run_race("python_thread", tmp_path, racer)
    assert forbidden(log) == [], out
    for path in ("ioctl", "syscall", "multicall"):
        assert out[f"{path} after"] == "issued", out
    print(out)


def test_a_refused_batch_reaches_the_device_not_at_all(tmp_path: Path, racer: Path) -> None:
    out, log = run_race("multicall_many", tmp_path, racer)
    assert forbidden(log) == [], out
    assert out.pop("after") == "issued", out
    multicalls = [e for e in log if e["kind"] == "hypercall" and e["op"] == 13]
    # Two chunks per batch issued (the one after the race too), none for a refused one.
    assert len(multicalls) == 2 * (out.get("issued", 0) + 1), out
    print(out)


BAD_POINTERS = r"""
from xenprobe.layers import libxc_guard as guard
from xenprobe.support.errors import Refused
res = {}
BAD = 0xdead0000
for op in (35, 36, 13, 7):
    for path in ("ioctl", "syscall"):
        a = args5(BAD, 1)
        r = getattr(dev, path)(op, a)
        res[f"{path} {op}"] = [r.value, r.errno]
# A resource_op whose struct is fine but whose entries handle is bad, alone and inside a
# multicall: nothing can be checked, so nothing is issued.
pf = Buffer(136)
pf.view[0:24] = struct.pack("<IIIIQ", 61, 0x03000001, 1, 0, BAD)
for path in ("ioctl", "syscall"):
    r = getattr(dev, path)(7, args5(pf.address))
    res[f"{path} resource_op entries"] = [r.value, r.errno]
me = ffi.new("xp_multicall_entry[1]")
me[0].op, me[0].args[0] = 7, pf.address
res["multicall resource_op entries"] = [lib.xp_multicall(fd, me, 1, ret, err), ret[0], err[0]]
# The request itself behind a bad pointer, on every native entry point.
bad = ffi.cast("uint64_t *", BAD)
res["xp_hypercall_ioctl args"] = [lib.xp_hypercall_ioctl(fd, 17, bad, ret, err), ret[0], err[0]]
res["xp_hypercall_syscall args"] = [lib.xp_hypercall_syscall(fd, 17, bad, lret, err), lret[0],
                                    err[0]]
res["xp_multicall entries"] = [lib.xp_multicall(fd, ffi.cast("xp_multicall_entry *", BAD), 2,
                                                ret, err), ret[0], err[0]]
rets, errs = ffi.new("int64_t[]", 2), ffi.new("int[]", 2)
ok = Calls([17, 17], [0] * 10)
res["xp_hypercall_many ops"] = [lib.xp_hypercall_many(fd, 2, bad, ok.args, 0, rets, errs, err),
                                err[0]]
res["xp_hypercall_many args"] = [lib.xp_hypercall_many(fd, 2, ok.ops, bad, 1, rets, errs, err),
                                 err[0]]
res["xp_multicall_many args"] = [lib.xp_multicall_many(fd, 2, ok.ops, bad, rets, ret, err),
                                 err[0]]
# The guard reads with memcpy (its callers' buffers are libxencall's own); it keeps
# the NULL page out, as before.
assert guard.install([sys.argv[3]]) == 1
r = racer.racer_ioctl(fd, HYPERCALL, 0)
res["guard request"] = [r, ffi.errno]
hs = ffi.new("uint64_t[6]", [35, 8, 0, 0, 0, 0])
r = racer.racer_ioctl(fd, HYPERCALL, addr(hs))
res["guard sysctl"] = [r, ffi.errno]
# (The guard reads a struct's entries with memcpy too: they are libxencall's buffers,
# which /dev/xen/hypercall maps VM_IO, out of process_vm_readv's reach.)
print(json.dumps(res))
"""


def test_bad_pointers_give_efault_not_a_crash(tmp_path: Path, racer: Path) -> None:
    log = tmp_path / "bad.jsonl"
    env = env_for(load("healthy"), tmp_path, log)
    p = subprocess.run([sys.executable, "-c", PRELUDE + BAD_POINTERS, str(racer), "0",
                        RACER_SONAME], env=env, text=True, capture_output=True, timeout=60,
                       check=False)
    assert p.returncode == 0, (p.returncode, p.stderr)
    res = json.loads(p.stdout.splitlines()[-1])
    efault = 14
    for op in (35, 36, 13, 7):
        for path in ("ioctl", "syscall"):
            # What the kernel answers when it cannot read the request: -1, EFAULT.
            assert res[f"{path} {op}"] == [-1, efault], (path, op, res)
    for path in ("ioctl", "syscall"):
        assert res[f"{path} resource_op entries"] == [-1, efault], res
    assert res["multicall resource_op entries"] == [0, -1, efault], res
    assert res["xp_hypercall_ioctl args"] == [0, -1, efault], res
    assert res["xp_hypercall_syscall args"] == [0, -1, efault], res
    assert res["xp_multicall entries"] == [0, -1, efault], res
    for k in ("xp_hypercall_many ops", "xp_hypercall_many args", "xp_multicall_many args"):
        assert res[k] == [-1, efault], (k, res)
    assert res["guard request"] == [-1, efault], res
    assert res["guard sysctl"] == [-1, efault], res
    # Nothing reached the device: it could not have been checked.
    assert [e for e in read_log(log) if e["kind"] not in ("open", "close")] == []


REFUSAL_MESSAGE = r"""
from xenprobe.support.errors import Refused
s = Buffer(144)
msgs = {}
for op, cmd in ((35, 2), (36, 2)):
    s.view[0:10] = sysctl(cmd)
    try:
        dev.ioctl(op, args5(s.address))
    except Refused as e:
        msgs[str(op)] = str(e)
e = Buffer(128)
ents = ffi.cast("xp_multicall_entry *", e.ptr)
ents[0].op, ents[1].op, ents[1].args[0] = 17, 12, 6
try:
    dev.ioctl(13, args5(e.address, 2))
except Refused as x:
    msgs["13"] = str(x)
msgs["address"] = s.address
msgs["entries"] = e.address
print(json.dumps(msgs))
"""


def test_a_refusal_names_the_cmd_the_allow_list_read(tmp_path: Path, racer: Path) -> None:
    env = env_for(load("healthy"), tmp_path)
    p = subprocess.run([sys.executable, "-c", PRELUDE + REFUSAL_MESSAGE, str(racer), "0",
                        RACER_SONAME], env=env, text=True, capture_output=True, timeout=60,
                       check=False)
    assert p.returncode == 0, p.stderr
    msgs = json.loads(p.stdout.splitlines()[-1])
    assert msgs["35"].startswith("hypercall 35/2:"), msgs
    assert msgs["36"].startswith("hypercall 36/2:"), msgs
    assert msgs["13"].startswith("hypercall 13, entry 1: 12/6:"), msgs
    for k in ("35", "36", "13"):
        assert str(msgs["address"]) not in msgs[k] and str(msgs["entries"]) not in msgs[k]


FORK = r"""
import os, struct
from xenprobe.xen.transport import Buffer, Privcmd, args5
with Privcmd() as dev, Buffer(136) as s:  # the parent issues a sysctl: pages are kept
    s.view[0:8] = struct.pack("<II", 3, 0x15)
    assert dev.ioctl(35, args5(s.address)).value == 0
Buffer(16).close()
pid = os.fork()
if pid == 0:
    b = Buffer(16)
    b.view[0:4] = b"abcd"
    ok = b.view[0:4] == b"abcd"
    # The child's own request, copied from the child's memory (not the parent's).
    with Privcmd() as dev, Buffer(136) as s:
        s.view[0:8] = struct.pack("<II", 3, 0x15)
        ok = ok and dev.ioctl(35, args5(s.address)).value == 0
        ok = ok and dev.ioctl(17, args5(0)).value == 0x40011
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
print(status)
"""


def test_a_forked_child_uses_its_own_memory(tmp_path: Path) -> None:
    """Locked buffers are not inherited (MADV_DONTFORK), so neither are the kept pages;
    and a child's requests are copied out of the child."""
    env = env_for(load("healthy"), tmp_path)
    p = subprocess.run([sys.executable, "-c", FORK], text=True, capture_output=True,
                       env=env, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "0", "the child died on the page its parent kept"
