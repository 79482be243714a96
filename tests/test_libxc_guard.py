# SPDX-License-Identifier: GPL-2.0-only
"""The read-only guard on libxenctrl's own path to privcmd (native/transport/guard.c).

Debian's real libxenctrl 4.17 runs on the mock host. After the libxc layer installs the
guard, libxenctrl functions that are not read-only are called through the same loaded
library: each must fail with EPERM, be counted, and leave no trace in the mock device's
request log. The same calls without the guard do reach the log, which shows the log
would have seen them. The guard's install fails closed, with a note, when it cannot
cover what libxenctrl uses.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import xenpkgs
from tests.mockhost import env_for, read_log
from xenprobe.layers import libxc
from xenprobe.mock.scenario import load
from xenprobe.xen.quantities import plan

# libxenctrl 4.17's closure on Debian: which of its libraries reach ioctl() (one
# JUMP_SLOT each) and which do not (libxenctrl calls libxencall & co., never ioctl).
DEBIAN_SLOTS = {
    "libxenctrl.so.4.17": 0,
    "libxencall.so.1": 1,
    "libxenforeignmemory.so.1": 1,
    "libxendevicemodel.so.1": 1,
    "libxenevtchn.so.1": 1,
    "libxengnttab.so.1": 1,
    "libxentoolcore.so.1": 0,
    "libxentoollog.so.1": 0,
}


@pytest.fixture(scope="session")
def pkgs() -> xenpkgs.XenPackages:
    if os.environ.get(xenpkgs.SKIP_ENV) == "1":
        pytest.skip(f"{xenpkgs.SKIP_ENV}=1: real Xen 4.17 libraries not fetched")
    return xenpkgs.ensure()


def _env(tmp: Path, pkgs: xenpkgs.XenPackages, log: Path | None = None) -> dict[str, str]:
    env = env_for(load("healthy"), tmp, log)  # a Xen 4.17 dom0 with domains 0-2
    env.update(pkgs.env())
    env.pop(libxc.ENV, None)
    return env


def _run(code: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    p = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout.splitlines()[-1])
    return out


# ------------------------------------------------------------------ installed, and harmless

INSTALLED = """
import json, sys
from xenprobe.layers import libxc_guard as guard
from xenprobe.layers import libxc
from xenprobe.support import logs
from xenprobe.xen.quantities import plan
logs.configure("warning")

def maps():
    out = []
    for line in open("/proc/self/maps"):
        f = line.split()
        if len(f) >= 6 and "/libxen" in f[5]:
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            out.append((lo, hi, f[1]))
    return out

def prot(ms, addr):
    return next(p for lo, hi, p in ms if lo <= addr < hi)

library = libxc.load((4, 17))
before = maps()
layer = libxc.LibxcLayer(library, (4, 17))
after = maps()
probes = plan(range(3))
readings = layer.read_many(probes, [])
print(json.dumps({
    "slots": {n: guard.slots(n) for n in json.loads(sys.argv[1])},
    "again": guard.protect(library.signatures.soname),
    "prot_changed": [(hex(lo), p, prot(before, lo)) for lo, hi, p in after
                     if prot(before, lo) != p],
    "readings": sum(r is not None for r in readings),
    "refused": guard.refused(),
}))
layer.close()
"""


def test_guard_covers_libxenctrl_and_its_libraries(pkgs: xenpkgs.XenPackages,
                                                   tmp_path: Path) -> None:
    """Every libxen* library under libxenctrl is guarded; the ones that call ioctl() have
    their slot patched; RELRO pages are read-only again afterwards; libxc's own query
    traffic for a whole plan passes untouched (nothing refused)."""
    out = _run(INSTALLED, _env(tmp_path, pkgs), json.dumps(list(DEBIAN_SLOTS)))
    assert out["slots"] == DEBIAN_SLOTS
    assert out["again"] == sum(DEBIAN_SLOTS.values())  # installing twice changes nothing
    assert out["prot_changed"] == []
    assert out["readings"] == len(plan(range(3)))
    assert out["refused"] == 0


# ------------------------------------------------------------------ what is refused

# Runs libxenctrl (and the libraries under it) functions that are not read-only through
# the library the libxc layer loaded, between two allowed xc_version calls that fence
# them in the request log. argv[1]: "guarded" (the libxc layer first) or "unguarded".
ATTEMPTS = r"""
import ctypes, json, sys
from cffi import FFI

ffi = FFI()
ffi.cdef('''
typedef struct xc_interface_core xc_interface;
typedef unsigned long xen_pfn_t;
xc_interface *xc_interface_open(void *logger, void *dombuild_logger, unsigned open_flags);
int xc_interface_close(xc_interface *xch);
int xc_version(xc_interface *xch, int cmd, void *arg);
int xc_domain_pause(xc_interface *xch, uint32_t domid);
int xc_domain_unpause(xc_interface *xch, uint32_t domid);
int xc_domain_setmaxmem(xc_interface *xch, uint32_t domid, uint64_t max_memkb);
int xc_domain_destroy(xc_interface *xch, uint32_t domid);
int xc_domain_create(xc_interface *xch, uint32_t *pdomid, void *config);
int xc_domain_increase_reservation_exact(xc_interface *xch, uint32_t domid,
        unsigned long nr_extents, unsigned int extent_order, unsigned int mem_flags,
        xen_pfn_t *extent_start);
long xc_memory_op(xc_interface *xch, unsigned cmd, void *arg, size_t len);
int xc_sched_id(xc_interface *xch, int *sched_id);
int xc_flask_getenforce(xc_interface *xch);
int xc_hvm_param_get(xc_interface *xch, uint32_t domid, int param, uint64_t *value);
void *xc_map_foreign_range(xc_interface *xch, uint32_t domid, int size, int prot,
                           unsigned long mfn);
void *xenforeignmemory_open(void *logger, unsigned open_flags);
int xenforeignmemory_close(void *fmem);
void *xenforeignmemory_map_resource(void *fmem, uint16_t domid, unsigned int type,
        unsigned int id, unsigned long frame, unsigned long nr_frames, void **paddr,
        int prot, int flags);
void *xendevicemodel_open(void *logger, unsigned open_flags);
int xendevicemodel_close(void *dmod);
int xendevicemodel_set_irq_level(void *dmod, uint16_t domid, uint32_t irq,
                                 unsigned int level);
int xendevicemodel_restrict(void *dmod, uint16_t domid);
void *xencall_open(void *logger, unsigned open_flags);
int xencall_close(void *xcall);
int xencall2(void *xcall, unsigned int op, uint64_t arg1, uint64_t arg2);
''')

guarded = sys.argv[1] == "guarded"
if guarded:
    from xenprobe.layers import libxc_guard as guard
    from xenprobe.layers import libxc
    from xenprobe.support import logs
    logs.configure("warning")
    layer = libxc.layer((4, 17))
    assert isinstance(layer, libxc.LibxcLayer), layer.note
    refused = guard.refused
else:
    refused = lambda: 0
xc = ffi.dlopen("libxenctrl.so.4.17")  # the object the layer loaded, if it did
fm = ffi.dlopen("libxenforeignmemory.so.1")
dm = ffi.dlopen("libxendevicemodel.so.1")
call = ffi.dlopen("libxencall.so.1")
xch = xc.xc_interface_open(ffi.NULL, ffi.NULL, 0)
assert xch != ffi.NULL
pfn = ffi.new("xen_pfn_t *", 0x1000)
domid = ffi.new("uint32_t *", 0)
config = ffi.new("char[]", 1024)          # a zeroed xen_domctl_createdomain
reservation = ffi.new("uint64_t[4]")      # xen_memory_reservation, extent_start NULL
reservation[1] = 1                        # nr_extents
reservation[3] = 1                        # domid
sched = ffi.new("int *")
value = ffi.new("uint64_t *")
addr = ffi.new("void **")

def failed(r):
    return r == ffi.NULL if isinstance(r, ffi.CData) else r < 0

results = []
def attempt(name, fn):
    before = refused()
    ffi.errno = 0
    r = fn()
    results.append({"name": name, "failed": bool(failed(r)), "errno": ffi.errno,
                    "refused": refused() - before})

assert xc.xc_version(xch, 0, ffi.NULL) > 0                      # fence: xen_version 0
attempt("xc_domain_pause", lambda: xc.xc_domain_pause(xch, 1))
attempt("xc_domain_unpause", lambda: xc.xc_domain_unpause(xch, 1))
attempt("xc_domain_setmaxmem", lambda: xc.xc_domain_setmaxmem(xch, 1, 1 << 20))
attempt("xc_domain_destroy", lambda: xc.xc_domain_destroy(xch, 1))
attempt("xc_domain_create", lambda: xc.xc_domain_create(xch, domid, config))
attempt("xc_domain_increase_reservation_exact",
        lambda: xc.xc_domain_increase_reservation_exact(xch, 1, 1, 0, 0, pfn))
attempt("xc_memory_op(increase_reservation)",
        lambda: xc.xc_memory_op(xch, 0, reservation, 32))
attempt("xc_sched_id", lambda: xc.xc_sched_id(xch, sched))
attempt("xc_flask_getenforce", lambda: xc.xc_flask_getenforce(xch))
attempt("xc_hvm_param_get", lambda: xc.xc_hvm_param_get(xch, 1, 1, value))
attempt("xc_map_foreign_range", lambda: xc.xc_map_foreign_range(xch, 1, 4096, 1, 0x1000))
fmem = fm.xenforeignmemory_open(ffi.NULL, 0)
assert fmem != ffi.NULL
attempt("xenforeignmemory_map_resource",
        lambda: fm.xenforeignmemory_map_resource(fmem, 1, 0, 0, 0, 1, addr, 1, 0))
fm.xenforeignmemory_close(fmem)
dmod = dm.xendevicemodel_open(ffi.NULL, 0)
assert dmod != ffi.NULL
attempt("xendevicemodel_set_irq_level", lambda: dm.xendevicemodel_set_irq_level(dmod, 1, 5, 1))
attempt("xendevicemodel_restrict", lambda: dm.xendevicemodel_restrict(dmod, 1))
dm.xendevicemodel_close(dmod)
xcall = call.xencall_open(ffi.NULL, 0)
assert xcall != ffi.NULL
attempt("xencall2(sched_op yield)", lambda: call.xencall2(xcall, 29, 0, 0))
call.xencall_close(xcall)
assert xc.xc_version(xch, 1, ffi.new("char[16]")) == 0          # fence: xen_version 1
xc.xc_interface_close(xch)
print(json.dumps({"results": results, "refused": refused()}))
"""

# What each attempt would have asked the device for, had it got there.
WOULD_REACH = {
    "xc_domain_pause": ("hypercall", 36, 3),
    "xc_domain_unpause": ("hypercall", 36, 4),
    "xc_domain_setmaxmem": ("hypercall", 36, 11),
    "xc_domain_destroy": ("hypercall", 36, 2),
    "xc_domain_create": ("hypercall", 36, 1),
    "xc_domain_increase_reservation_exact": ("multicall_entry", 12, 0),
    "xc_memory_op(increase_reservation)": ("multicall_entry", 12, 0),
    "xc_sched_id": ("hypercall", 35, 4),
    "xc_flask_getenforce": ("hypercall", 27, None),
    "xc_hvm_param_get": ("hypercall", 34, None),
    "xc_map_foreign_range": ("ioctl", 0x00205004, None),           # MMAPBATCH_V2
    "xenforeignmemory_map_resource": ("ioctl", 0x00205007, None),  # MMAP_RESOURCE
    "xendevicemodel_set_irq_level": ("ioctl", 0x00105005, None),   # DM_OP, num 1
    "xendevicemodel_restrict": ("ioctl", 0x00025006, None),        # RESTRICT
    "xencall2(sched_op yield)": ("hypercall", 29, None),
}


def _fenced(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The log lines between the two xc_version fences."""
    fences = [i for i, e in enumerate(entries) if e["kind"] == "hypercall" and e["op"] == 17]
    assert [entries[i]["subop"] for i in fences[-2:]] == [0, 1]
    return entries[fences[-2] + 1:fences[-1]]


def _key(e: dict[str, Any]) -> tuple[str, int, int | None]:
    if e["kind"] in ("open", "close"):
        return (e["kind"], 0, None)
    if e["kind"] == "ioctl":
        return ("ioctl", e["cmd"], None)
    return (e["kind"], e["op"], e.get("subop") if e["op"] in (12, 35, 36) else None)


def test_requests_off_the_list_never_reach_the_device(pkgs: xenpkgs.XenPackages,
                                                      tmp_path: Path) -> None:
    log = tmp_path / "guarded.jsonl"
    out = _run(ATTEMPTS, _env(tmp_path, pkgs, log), "guarded")
    results = {r["name"]: r for r in out["results"]}
    assert set(results) == set(WOULD_REACH)
    for name, r in results.items():
        assert r["failed"] and r["errno"] == errno.EPERM, (name, r)
        assert r["refused"] == 1, name  # one request each, refused once, no retry
    assert out["refused"] == len(WOULD_REACH)
    # The device saw the handles open and close and their two probes, nothing else.
    fenced = _fenced(read_log(log))
    assert {e["kind"] for e in fenced} <= {"open", "close", "ioctl"}
    probes = [(e.get("name"), e.get("num")) for e in fenced if e["kind"] == "ioctl"]
    assert set(probes) <= {("UNIMPLEMENTED", None), ("DM_OP", 0)}, probes
    assert not [e for e in read_log(log) if e["kind"] == "hypercall" and e["op"] != 17
                and (e["op"], e.get("subop")) not in {(13, None), (36, 5), (35, 3), (35, 6)}]


def test_without_the_guard_the_same_calls_reach_the_log(pkgs: xenpkgs.XenPackages,
                                                        tmp_path: Path) -> None:
    """The control: libxenctrl loaded without the libxc layer (so without the guard).
    Every attempt shows up in the request log, so the guarded run's empty log is
    the guard's doing, not the mock's blindness."""
    log = tmp_path / "unguarded.jsonl"
    out = _run(ATTEMPTS, _env(tmp_path, pkgs, log), "unguarded")
    assert {r["name"] for r in out["results"]} == set(WOULD_REACH)
    seen = {_key(e) for e in _fenced(read_log(log))}
    for name, key in WOULD_REACH.items():
        assert key in seen, (name, key, sorted(seen, key=str))


# ------------------------------------------------------------------ fail closed

NOT_INSTALLED = """
import json, sys
from xenprobe.layers import libxc_guard as guard
from xenprobe.layers import libxc
from xenprobe.support import logs
logs.configure("warning")
mode = sys.argv[1]
out = {}
if mode == "nothing-loaded":
    try:
        guard.install(["libxenctrl.so.4.17"])
    except guard.NotGuarded as e:
        out["error"] = str(e)
else:
    guard.PRIVCMD_USERS = (*guard.PRIVCMD_USERS, sys.argv[2])
    layer = libxc.layer((4, 17))
    out["present"] = isinstance(layer, libxc.LibxcLayer)
    out["note"] = layer.note
    out["slots"] = guard.slots("libxencall.so.1")
print(json.dumps(out))
"""


def test_library_not_loaded(pkgs: xenpkgs.XenPackages, tmp_path: Path) -> None:
    out = _run(NOT_INSTALLED, _env(tmp_path, pkgs), "nothing-loaded")
    assert out["error"] == "libxenctrl.so.4.17 is not loaded"


@pytest.mark.parametrize(("user", "why"), [
    # Not loaded at all: nothing to guard, so nothing may be trusted.
    ("libxenhypfs.so.1", "libxenhypfs.so.1 is not loaded"),
    # Loaded, but with no ioctl slot: it would reach privcmd some other way.
    ("libxentoollog.so.1", "libxentoollog.so.1 has no ioctl relocation to guard"),
])
def test_layer_absent_when_the_guard_cannot_cover_a_library(
        pkgs: xenpkgs.XenPackages, tmp_path: Path, user: str, why: str) -> None:
    log = tmp_path / "log.jsonl"
    out = _run(NOT_INSTALLED, _env(tmp_path, pkgs, log), "layer", user)
    assert not out["present"]
    assert out["note"].startswith(f"read-only guard not installed: {why}"), out["note"]
    # xc_interface_open never ran: libxenctrl did not touch the device at all.
    assert read_log(log) == []
    if user == "libxentoollog.so.1":
        assert out["slots"] == 1  # the slots that were guarded stay guarded


# ------------------------------------------------------------------ the installer's rules

FAKE_LIB = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <sys/syscall.h>
int fake_ioctl(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
#ifdef USE_SYSCALL
long fake_syscall(int fd, unsigned long request, void *arg)
{ return syscall(SYS_ioctl, fd, request, arg); }
#endif
#ifdef USE_DLSYM
void *fake_lookup(void) { return dlsym(RTLD_DEFAULT, "ioctl"); }
#endif
"""

FAKE_CHILD = r"""
import json, os, sys
from cffi import FFI
from xenprobe.layers import libxc_guard as guard
ffi = FFI()
ffi.cdef("int fake_ioctl(int fd, unsigned long request, void *arg);")
lib = ffi.dlopen(sys.argv[1], ffi.RTLD_LAZY if sys.argv[2] == "lazy" else 0)
out = {}
try:
    out["slots"] = guard.install(["libxenfake.so.1"])
except guard.NotGuarded as e:
    out["error"] = str(e)
    print(json.dumps(out)); sys.exit(0)
fd = os.open("/dev/null", os.O_RDONLY)
arg = ffi.new("char[64]")
for name, request in (("TCGETS", 0x5401), ("HYPERCALL", 0x00305000),
                      ("HYPERCALL_HIGH_BITS", 0x1_00305000), ("MMAPBATCH_V2", 0x00205004)):
    ffi.errno = 0
    before = guard.refused()
    r = lib.fake_ioctl(fd, request, arg)
    out[name] = [r, ffi.errno, guard.refused() - before]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def gcc() -> str:
    path = shutil.which("gcc") or shutil.which("cc")
    if path is None:
        pytest.skip("no C compiler")
    return path


def _fake(gcc: str, tmp: Path, *flags: str) -> Path:
    src = tmp / "fake.c"
    src.write_text(FAKE_LIB)
    out = tmp / "libxenfake.so.1"
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(out), str(src),
                    "-Wl,-soname,libxenfake.so.1", *flags], check=True, timeout=60)
    return out


def test_an_unlisted_request_is_refused_whatever_the_fd(gcc: str, tmp_path: Path) -> None:
    """A library of our own with ioctl bound at load time (-z now, as Debian builds):
    a terminal ioctl on /dev/null, a hypercall that is not on the list (op 0 in a
    zeroed request), the same with bits above the 32 the kernel reads, and a mapping
    ioctl are all refused without being passed on."""
    lib = _fake(gcc, tmp_path, "-Wl,-z,now")
    out = _run(FAKE_CHILD, {"PATH": "/usr/bin:/bin"}, str(lib), "now")
    assert out["slots"] == 1
    for name in ("TCGETS", "HYPERCALL", "HYPERCALL_HIGH_BITS", "MMAPBATCH_V2"):
        assert out[name] == [-1, errno.EPERM, 1], name


def test_lazy_binding_fails_closed(gcc: str, tmp_path: Path) -> None:
    """Lazily bound and never called: the slot still points at the PLT, so there is
    no resolved ioctl to pass allowed requests on to; the install says so."""
    lib = _fake(gcc, tmp_path, "-Wl,-z,lazy")
    out = _run(FAKE_CHILD, {"PATH": "/usr/bin:/bin"}, str(lib), "lazy")
    assert "lazy binding" in out["error"]


@pytest.mark.parametrize(("define", "imported"), [("USE_SYSCALL", "syscall"),
                                                  ("USE_DLSYM", "dlsym")])
def test_a_library_with_a_way_around_the_hook_is_not_guarded(
        gcc: str, tmp_path: Path, define: str, imported: str) -> None:
    """syscall(SYS_ioctl, ...) and dlsym("ioctl") reach the kernel without the GOT slot
    the guard patches: a library importing either is refused, not half-guarded."""
    lib = _fake(gcc, tmp_path, "-Wl,-z,now", f"-D{define}")
    out = _run(FAKE_CHILD, {"PATH": "/usr/bin:/bin"}, str(lib), "now")
    assert out["error"] == (f"libxenfake.so.1 imports {imported}, which the guard cannot "
                            "see through")
