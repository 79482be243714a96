# SPDX-License-Identifier: GPL-2.0-only
"""Tests for the mock Xen host (native/mock, an LD_PRELOAD library).

Each test writes a compiled scenario, runs a short Python child under
LD_PRELOAD that talks to the device with ctypes only (libc ioctl/syscall),
and checks the results against expectations computed here from the
scenario and from the documented Linux/glibc rules (xen-abi.md §1.3).
"""

import errno
import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MOCK_SRC = ROOT / "native" / "mock"
MASK64 = (1 << 64) - 1

DOMID_SELF, DOMID_IO, DOMID_XEN, DOMID_INVALID = 0x7FF0, 0x7FF1, 0x7FF2, 0x7FF4


@pytest.fixture(scope="session")
def mock_lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("mock") / "libxenprobe_mock.so"
    sources = sorted(str(p) for p in MOCK_SRC.glob("*.c"))
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
         "-std=gnu11", "-o", str(out), *sources],
        check=True)
    return out


# ---------------------------------------------------------------- models

def s64(x):
    x &= MASK64
    return x - (1 << 64) if x >> 63 else x


def s32(x):
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >> 31 else x


def kernel_return(result, driver):
    """What the privcmd ioctl returns for a hypervisor result."""
    return s32(result) if driver == "pvops" else s64(result)


def glibc(k, via):
    """(return value, errno) as glibc's ioctl()/syscall() deliver k.

    errno 0 means "untouched" (the children zero it before each call)."""
    if -4095 <= k <= -1:
        return -1, -k
    return (s32(k) if via == "ioctl" else k), 0


def record(domid, size):
    """Deterministic stand-in for a pre-packed getdomaininfo record."""
    return bytes((domid * 31 + i * 7 + 3) & 0xFF for i in range(size))


def answered_record(domid, size, tot, max_pages):
    rec = bytearray(record(domid, size))
    struct.pack_into("<H", rec, 0, domid)
    struct.pack_into("<QQ", rec, 8, tot, max_pages)
    return bytes(rec)


class Balloon:
    """The documented balloon rule: after every EVERY reads, tot moves by
    |STEP| in the current direction, stopping at MIN/MAX and turning back."""

    def __init__(self, tot, step, every, lo, hi):
        self.tot, self.step, self.every, self.lo, self.hi = tot, step, every, lo, hi
        self.reads = 0

    def read(self):
        value = self.tot
        self.reads += 1
        if self.reads % self.every == 0:
            nxt = self.tot + self.step
            if self.step > 0 and nxt >= self.hi:
                nxt, self.step = self.hi, -self.step
            elif self.step < 0 and nxt <= self.lo:
                nxt, self.step = self.lo, -self.step
            self.tot = nxt
        return value


# ---------------------------------------------------------------- scenarios

# (id, tot_pages, max_pages, maximum_gpfn)
DOMAINS = [
    (0, 262144, 262400, 0x10FFFF),
    (3, 0x80000001, 0xFFFFFFFF, 0x100000005),
    (7, 65536, 131072, 0xFFFFFFFF),
]


def scenario(extra="", *, size=112, domains=DOMAINS, version=(4, 17),
             iface=(0x15, 0x15), exact=0, max_page=0x1040000, self_domid=0,
             sys_hypervisor=1):
    lines = [
        "# compiled by the tests",
        "xen %d %d" % version,
        "extraversion .7",
        "capabilities xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64",
        "sysctl_interface %#x" % iface[0],
        "domctl_interface %#x" % iface[1],
        "getdomaininfo_exact %d" % exact,
        "getdomaininfo_size %d" % size,
        "max_page %#x" % max_page,
        "self_domid %d" % self_domid,
        "sys_hypervisor %d" % sys_hypervisor,
    ]
    for domid, tot, mx, gpfn in domains:
        lines.append("domain %d %d %d %#x %s" % (domid, tot, mx, gpfn,
                                                 record(domid, size).hex()))
    return "\n".join(lines) + "\n" + textwrap.dedent(extra)


# ---------------------------------------------------------------- child side

PRELUDE = r'''
import ctypes, json, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)    # global scope: sees LD_PRELOAD
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
libc.ioctl.restype = ctypes.c_int
libc.syscall.restype = ctypes.c_long
SYS_ioctl, SYS_close, SYS_getpid, SYS_openat = 16, 3, 39, 257
HYPERCALL, DM_OP, RESTRICT, UNIMPL = 0x00305000, 0x00105005, 0x00025006, 0x50FF
MASK64 = (1 << 64) - 1
out = {}
keep = []      # buffers whose addresses were handed out stay alive

class Buf:
    """A bytearray the callee can write into, with its address."""
    def __init__(self, data):
        self.b = bytearray(data)
        self.c = (ctypes.c_char * len(self.b)).from_buffer(self.b)
        self.addr = ctypes.addressof(self.c)
        keep.append(self)

def ioctl(fd, cmd, arg):
    ctypes.set_errno(0)
    r = libc.ioctl(fd, cmd, arg)
    return [r, ctypes.get_errno()]

def sysioctl(fd, cmd, arg):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(SYS_ioctl), ctypes.c_long(fd),
                     ctypes.c_ulong(cmd), ctypes.c_void_p(arg))
    return [r, ctypes.get_errno()]

def hypercall(fd, op, *args, via="ioctl"):
    a = [x & MASK64 for x in args] + [0] * (5 - len(args))
    hc = (ctypes.c_uint64 * 6)(op, *a)
    return (ioctl if via == "ioctl" else sysioctl)(fd, HYPERCALL, ctypes.addressof(hc))

def multicall(fd, entries, via="ioctl"):
    """entries: (op, arg0, ...).  Returns [ret, errno], results, raw words."""
    words = (ctypes.c_uint64 * (8 * max(len(entries), 1)))()
    for i, (op, *args) in enumerate(entries):
        words[8 * i] = op
        words[8 * i + 1] = 0x5A5A5A5A5A5A5A5A       # overwritten by the result
        for k, a in enumerate(args):
            words[8 * i + 2 + k] = a & MASK64
    r = hypercall(fd, 13, ctypes.addressof(words), len(entries), via=via)
    return r, [words[8 * i + 1] for i in range(len(entries))], list(words)

def domid_ptr(domid):
    d = ctypes.c_uint16(domid)
    keep.append(d)
    return ctypes.addressof(d)

def memop(fd, sub, domid=None, via="ioctl"):
    return hypercall(fd, 12, sub, 0 if domid is None else domid_ptr(domid), via=via)

def sysctl(fd, cmd, iv, union=b""):
    b = Buf(struct.pack("<II", cmd, iv) + union.ljust(128, b"\xee"))
    r = hypercall(fd, 35, b.addr)
    return r, bytes(b.b)

def domctl(fd, cmd, iv, domain, union=b""):
    b = Buf(struct.pack("<IIH6x", cmd, iv, domain) + union.ljust(128, b"\xee"))
    r = hypercall(fd, 36, b.addr)
    return r, bytes(b.b)

def privcmd(path="/dev/xen/privcmd", flags=os.O_RDWR | os.O_CLOEXEC):
    return os.open(path, flags)

def try_open(path, flags=os.O_RDONLY):
    try:
        fd = os.open(path, flags)
    except OSError as e:
        return [-1, e.errno]
    os.close(fd)
    return [fd, 0]

def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode()
    except OSError as e:
        return e.errno
'''


class Run:
    def __init__(self, out, stderr, log, pid):
        self.out, self.stderr, self.log, self.pid = out, stderr, log, pid


def child_env(mock_lib, scenario_path, log_path=None):
    env = dict(os.environ, LD_PRELOAD=str(mock_lib),
               XENPROBE_MOCK_SCENARIO=str(scenario_path))
    env.pop("XENPROBE_MOCK_LOG", None)
    if log_path is not None:
        env["XENPROBE_MOCK_LOG"] = str(log_path)
    return env


def run(mock_lib, tmp_path, scen, body, timeout=60):
    scen_path = tmp_path / "scenario.txt"
    scen_path.write_text(scen)
    log_path = tmp_path / "log.jsonl"
    if log_path.exists():
        log_path.unlink()
    code = PRELUDE + textwrap.dedent(body) + \
        "\nout['pid'] = os.getpid()\nprint(json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=timeout,
                          env=child_env(mock_lib, scen_path, log_path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    log = []
    if log_path.exists():
        log = [json.loads(line) for line in log_path.read_text().splitlines()]
    return Run(out, proc.stderr, log, out["pid"])


# ---------------------------------------------------------------- device paths

def test_device_open_paths(mock_lib, tmp_path):
    r = run(mock_lib, tmp_path, scenario(), '''
        import fcntl
        fd = privcmd()
        out["cloexec"] = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        # os.open always adds O_CLOEXEC (PEP 446), so ask libc directly
        libc.open.argtypes = [ctypes.c_char_p, ctypes.c_int]
        fd2 = libc.open(b"/dev/xen/privcmd", os.O_RDWR)
        out["no_cloexec"] = bool(fcntl.fcntl(fd2, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        out["dev_version"] = hypercall(fd, 17, 0)
        fd3 = privcmd("/proc/xen/privcmd")
        out["proc_version"] = hypercall(fd3, 17, 0)
        out["hypercall_dev"] = try_open("/dev/xen/hypercall", os.O_RDWR | os.O_CLOEXEC)
        out["caps"] = read_file("/proc/xen/capabilities")
        out["sys"] = [read_file("/sys/hypervisor/" + p) for p in
                      ("type", "version/major", "version/minor", "version/extra")]
        # other entry points: openat, __open_2, fopen, syscall(SYS_openat)
        libc.openat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        fd4 = libc.openat(-100, b"/dev/xen/privcmd", os.O_RDWR)
        out["openat_version"] = hypercall(fd4, 17, 0)
        libc.__open_2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        fd5 = libc.__open_2(b"/dev/xen/privcmd", os.O_RDWR)
        out["open2_version"] = hypercall(fd5, 17, 0)
        fd6 = libc.syscall(ctypes.c_long(SYS_openat), ctypes.c_long(-100),
                           ctypes.c_char_p(b"/dev/xen/privcmd"), ctypes.c_long(os.O_RDWR))
        out["sys_openat_version"] = hypercall(fd6, 17, 0)
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.fgets.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        f = libc.fopen(b"/sys/hypervisor/type", b"r")
        line = ctypes.create_string_buffer(64)
        libc.fgets(line, 64, f)
        libc.fclose(f)
        out["fopen_type"] = line.value.decode()
        out["write_caps"] = try_open("/proc/xen/capabilities", os.O_WRONLY)
        for x in (fd, fd2, fd3, fd4, fd5, fd6):
            os.close(x)
    ''')
    o = r.out
    version = (4 << 16) | 17
    assert o["cloexec"] is True and o["no_cloexec"] is False
    for key in ("dev_version", "proc_version", "openat_version",
                "open2_version", "sys_openat_version"):
        assert o[key] == [version, 0], key
    assert o["hypercall_dev"] == [-1, errno.ENOENT]
    assert o["caps"] == "control_d\n"
    assert o["sys"] == ["xen\n", "4\n", "17\n", ".7\n"]
    assert o["fopen_type"] == "xen\n"
    assert o["write_caps"] == [-1, errno.EACCES]


def test_sys_hypervisor_disabled_and_device_states(mock_lib, tmp_path):
    body = '''
        out["dev"] = try_open("/dev/xen/privcmd", os.O_RDWR)
        out["proc"] = try_open("/proc/xen/privcmd", os.O_RDWR)
        out["hypercall"] = try_open("/dev/xen/hypercall", os.O_RDWR)
        out["caps"] = read_file("/proc/xen/capabilities")
        out["sys_type"] = read_file("/sys/hypervisor/type")
    '''
    absent = run(mock_lib, tmp_path, scenario("device absent\n", sys_hypervisor=0), body).out
    assert absent["dev"] == [-1, errno.ENOENT]
    assert absent["proc"] == [-1, errno.ENOENT]
    assert absent["hypercall"] == [-1, errno.ENOENT]
    assert absent["caps"] == errno.ENOENT
    assert absent["sys_type"] == errno.ENOENT

    eacces = run(mock_lib, tmp_path, scenario("device eacces\n"), body).out
    assert eacces["dev"] == [-1, errno.EACCES]
    assert eacces["proc"] == [-1, errno.EACCES]
    assert eacces["hypercall"] == [-1, errno.ENOENT]
    assert eacces["caps"] == "control_d\n"
    assert eacces["sys_type"] == "xen\n"


# ---------------------------------------------------------------- the libxc open probes

def test_probe_ioctls_and_restrict(mock_lib, tmp_path):
    r = run(mock_lib, tmp_path, scenario(), '''
        fd = privcmd()
        out["unimpl"] = ioctl(fd, UNIMPL, 0)
        # struct privcmd_dm_op {u16 dom; u16 num; ptr ubufs}
        out["dm_op0"] = ioctl(fd, DM_OP, Buf(struct.pack("<HH4xQ", 0x7FF4, 0, 0)).addr)
        data = Buf(b"\\0" * 64)
        bufs = Buf(struct.pack("<QQ", data.addr, 64))
        out["dm_op1"] = ioctl(fd, DM_OP, Buf(struct.pack("<HHxxxxQ", 1, 1, bufs.addr)).addr)
        out["dm_op17"] = ioctl(fd, DM_OP, Buf(struct.pack("<HHxxxxQ", 1, 17, bufs.addr)).addr)
        big = Buf(struct.pack("<QQ", data.addr, 4097))
        out["dm_op_big"] = ioctl(fd, DM_OP, Buf(struct.pack("<HHxxxxQ", 1, 1, big.addr)).addr)
        out["dm_op_efault"] = ioctl(fd, DM_OP, 8)
        out["mmap_ioctl"] = ioctl(fd, 0x00105002, 0)
        out["bogus"] = ioctl(fd, 0x1234, 0)

        dup = os.dup(fd)
        out["restrict"] = ioctl(fd, RESTRICT, Buf(struct.pack("<H", 5)).addr)
        out["hc_restricted"] = hypercall(fd, 17, 0)
        out["hc_restricted_dup"] = hypercall(dup, 17, 0)
        out["restrict_same"] = ioctl(fd, RESTRICT, Buf(struct.pack("<H", 5)).addr)
        out["restrict_other"] = ioctl(fd, RESTRICT, Buf(struct.pack("<H", 6)).addr)
        out["dm_op_other"] = ioctl(fd, DM_OP, Buf(struct.pack("<HH4xQ", 6, 0, 0)).addr)
        out["dm_op_same"] = ioctl(fd, DM_OP, Buf(struct.pack("<HH4xQ", 5, 0, 0)).addr)
        fresh = privcmd()
        out["hc_fresh"] = hypercall(fresh, 17, 0)
        out["hc_efault"] = ioctl(fresh, HYPERCALL, 8)
    ''')
    o = r.out
    assert o["unimpl"] == [-1, errno.ENOTTY]
    assert o["dm_op0"] == [0, 0]
    assert o["dm_op1"] == [-1, errno.ENOSYS]     # dm_op (41) is not emulated
    assert o["dm_op17"] == [-1, errno.E2BIG]
    assert o["dm_op_big"] == [-1, errno.E2BIG]
    assert o["dm_op_efault"] == [-1, errno.EFAULT]
    assert o["mmap_ioctl"] == [-1, errno.ENOTTY]
    assert o["bogus"] == [-1, errno.ENOTTY]
    assert o["restrict"] == [0, 0]
    assert o["hc_restricted"] == [-1, errno.EPERM]
    assert o["hc_restricted_dup"] == [-1, errno.EPERM]
    assert o["restrict_same"] == [0, 0]
    assert o["restrict_other"] == [-1, errno.EINVAL]
    assert o["dm_op_other"] == [-1, errno.EPERM]
    assert o["dm_op_same"] == [0, 0]
    assert o["hc_fresh"] == [(4 << 16) | 17, 0]
    assert o["hc_efault"] == [-1, errno.EFAULT]


# ---------------------------------------------------------------- xen_version

def test_xen_version(mock_lib, tmp_path):
    caps = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"
    r = run(mock_lib, tmp_path, scenario(version=(4, 19)), '''
        fd = privcmd()
        out["v0"] = hypercall(fd, 17, 0)
        b = Buf(b"\\xff" * 16)
        out["v1"] = hypercall(fd, 17, 1, b.addr) + [b.b.hex()]
        b = Buf(b"\\xff" * 1024)
        out["v3"] = hypercall(fd, 17, 3, b.addr) + [b.b.hex()]
        b = Buf(b"\\xff" * 8)
        out["v5"] = hypercall(fd, 17, 5, b.addr) + [struct.unpack("<Q", b.b)[0]]
        b = Buf(struct.pack("<II", 0, 0))
        out["v6"] = hypercall(fd, 17, 6, b.addr) + [struct.unpack("<II", b.b)[1]]
        b = Buf(struct.pack("<II", 1, 0))
        out["v6_idx1"] = hypercall(fd, 17, 6, b.addr)
        out["v7"] = hypercall(fd, 17, 7, 0)
        out["v7_arg"] = hypercall(fd, 17, 7, b.addr)
        out["v10"] = hypercall(fd, 17, 10, 0)
        out["v1_efault"] = hypercall(fd, 17, 1, 8)
        out["unknown_op"] = hypercall(fd, 99, 0)
    ''')
    o = r.out
    assert o["v0"] == [(4 << 16) | 19, 0]
    assert o["v1"] == [0, 0, (b".7" + b"\0" * 14).hex()]
    assert o["v3"] == [0, 0, caps.encode().ljust(1024, b"\0").hex()]
    assert o["v5"] == [0, 0, 0xFFFF800000000000]
    assert o["v6"][:2] == [0, 0] and o["v6"][2] & (1 << 11)   # XENFEAT_dom0
    assert o["v6_idx1"] == [-1, errno.EINVAL]
    assert o["v7"] == [4096, 0]
    assert o["v7_arg"] == [-1, errno.EINVAL]
    assert o["v10"] == [-1, errno.ENOSYS]
    assert o["v1_efault"] == [-1, errno.EFAULT]
    assert o["unknown_op"] == [-1, errno.ENOSYS]


# ---------------------------------------------------------------- widths

WIDTH_CASES = [5, 0x7FFFFFFF, 0x80000000, 0xFFFFF000, 0xFFFFF001, 0xFFFFFFFF,
               0x100000000, 0x100000005, 0x7FFFFFFFFFFFFFFF]

WIDTH_BODY = '''
    fd = privcmd()
    out["ioctl"] = memop(fd, 2)
    out["syscall"] = memop(fd, 2, via="syscall")
    r, results, _ = multicall(fd, [(12, 2, 0)])
    out["multicall"] = r + results
    r, results, _ = multicall(fd, [(12, 2, 0)], via="syscall")
    out["multicall_syscall"] = r + results
'''


@pytest.mark.parametrize("driver", ["pvops", "xenlinux"])
def test_max_page_ioctl_vs_multicall(mock_lib, tmp_path, driver):
    # One child per max_page value keeps each scenario honest and small.
    for max_page in WIDTH_CASES:
        o = run(mock_lib, tmp_path,
                scenario("driver %s\n" % driver, max_page=max_page),
                WIDTH_BODY).out
        k = kernel_return(max_page, driver)
        assert o["ioctl"] == list(glibc(k, "ioctl")), hex(max_page)
        assert o["syscall"] == list(glibc(k, "syscall")), hex(max_page)
        # The multicall entry carries the full 64-bit result.
        assert o["multicall"] == [0, 0, max_page], hex(max_page)
        assert o["multicall_syscall"] == [0, 0, max_page], hex(max_page)


def test_max_page_spot_checks(mock_lib, tmp_path):
    """The three shapes the probe exists to detect, spelled out for pvops."""
    def one(max_page, driver="pvops"):
        return run(mock_lib, tmp_path,
                   scenario("driver %s\n" % driver, max_page=max_page), WIDTH_BODY).out

    o = one(0x100000005)
    assert o["ioctl"] == [5, 0]                     # high bits lost
    assert o["multicall"][2] == 0x100000005
    o = one(0xFFFFFFFF)
    assert o["ioctl"] == [-1, errno.EPERM]          # aliased to -EPERM
    o = one(0x80000000)
    assert o["ioctl"][0] < 0 and o["ioctl"][1] == 0  # negative, no errno
    o = one(0x100000005, "xenlinux")
    assert o["syscall"] == [0x100000005, 0]         # syscall() keeps the long
    assert o["ioctl"] == [5, 0]                     # ioctl() is still an int
    o = one(0xFFFFFFFF, "xenlinux")
    assert o["ioctl"] == [-1, 0]                    # -1 but errno untouched


def test_hypervisor_bits_32(mock_lib, tmp_path):
    for max_page in (0x100000005, 0x80000000, 0x7FFFFFFF):
        o = run(mock_lib, tmp_path,
                scenario("hypervisor_bits 32\ndriver xenlinux\n", max_page=max_page),
                WIDTH_BODY).out
        r = s32(max_page)                           # (int64)(int32)(uint32)r
        assert o["multicall"] == [0, 0, r & MASK64], hex(max_page)
        assert o["syscall"] == list(glibc(r, "syscall")), hex(max_page)


def test_compat_clamp(mock_lib, tmp_path):
    for max_page in (0x100000005, 0x80000000, 0x7FFFFFFF, 5):
        o = run(mock_lib, tmp_path,
                scenario("compat_clamp 1\n", max_page=max_page), WIDTH_BODY).out
        clamped = min(max_page, 0x7FFFFFFF)
        assert o["multicall"] == [0, 0, clamped], hex(max_page)
        assert o["ioctl"] == [clamped, 0], hex(max_page)
    o = run(mock_lib, tmp_path, scenario("compat_clamp 1\n"), '''
        fd = privcmd()
        out["einval"] = multicall(fd, [(12, 2 | (1 << 6), 0)])[1]
    ''').out
    assert o["einval"] == [(-errno.EINVAL) & MASK64]


# ---------------------------------------------------------------- memory_op on domains

def test_memory_op_domains(mock_lib, tmp_path):
    r = run(mock_lib, tmp_path, scenario(), '''
        fd = privcmd()
        for name, dom in (("self", 0x7FF0), ("d0", 0), ("d3", 3), ("d7", 7)):
            out[name] = {
                "ioctl": [memop(fd, sub, dom) for sub in (3, 4, 14)],
                "mc": multicall(fd, [(12, sub, domid_ptr(dom)) for sub in (3, 4, 14)])[1],
            }
        out["missing"] = memop(fd, 3, 5)
        out["dom_io"] = memop(fd, 3, 0x7FF1)
        out["dom_xen"] = memop(fd, 14, 0x7FF2)
        out["dom_invalid"] = memop(fd, 4, 0x7FF4)
        out["null"] = hypercall(fd, 12, 3, 0)
        out["start_extent"] = memop(fd, 3 | (1 << 6), 0)
        out["start_extent_2"] = hypercall(fd, 12, 2 | (5 << 6), 0)
        out["unknown_subop"] = hypercall(fd, 12, 5, 0)
    ''')
    o = r.out
    doms = {d[0]: d for d in DOMAINS}
    for name, domid in (("self", 0), ("d0", 0), ("d3", 3), ("d7", 7)):
        _, tot, mx, gpfn = doms[domid]
        values = [tot, mx, gpfn]
        assert o[name]["mc"] == values, name
        assert o[name]["ioctl"] == [list(glibc(s32(v), "ioctl")) for v in values], name
    assert o["missing"] == [-1, errno.ESRCH]
    assert o["dom_io"] == [-1, errno.ESRCH]
    assert o["dom_xen"] == [-1, errno.ESRCH]
    assert o["dom_invalid"] == [-1, errno.ESRCH]
    assert o["null"] == [-1, errno.EFAULT]
    assert o["start_extent"] == [-1, errno.EINVAL]
    assert o["start_extent_2"] == [-1, errno.EINVAL]
    assert o["unknown_subop"] == [-1, errno.ENOSYS]


def test_domid_self_follows_self_domid(mock_lib, tmp_path):
    o = run(mock_lib, tmp_path, scenario(self_domid=7), '''
        fd = privcmd()
        out["self"] = multicall(fd, [(12, sub, domid_ptr(0x7FF0)) for sub in (3, 4, 14)])[1]
    ''').out
    _, tot, mx, gpfn = DOMAINS[2]
    assert o["self"] == [tot, mx, gpfn]


def test_scenario_rejects_32bit_overflowing_pages(mock_lib, tmp_path):
    bad = scenario(domains=[(1, 0x100000000, 5, 0)])
    r = run(mock_lib, tmp_path, bad, '''
        out["open"] = try_open("/dev/xen/privcmd", os.O_RDWR)
    ''')
    assert r.out["open"] == [-1, errno.EIO]
    assert "unsigned int" in r.stderr


# ---------------------------------------------------------------- sysctl

def test_sysctl_physinfo_and_interface(mock_lib, tmp_path):
    blob = bytes((i * 37 + 11) & 0xFF for i in range(112))
    r = run(mock_lib, tmp_path, scenario("physinfo %s\n" % blob.hex()), '''
        fd = privcmd()
        r, after = sysctl(fd, 3, 0x15)
        out["physinfo"] = r + [after.hex()]
        r, after = sysctl(fd, 3, 0x14)
        out["mismatch"] = r + [after.hex()]
        out["mismatch_other_cmd"] = sysctl(fd, 1, 0x14)[0]
        out["other_cmd"] = sysctl(fd, 1, 0x15)[0]
        out["efault"] = hypercall(fd, 35, 8)
        b = Buf(struct.pack("<II", 3, 0x15) + b"\\xee" * 128)
        r, results, _ = multicall(fd, [(35, b.addr)])
        out["in_multicall"] = r + results + [bytes(b.b).hex()]
    ''')
    o = r.out
    expected = struct.pack("<II", 3, 0x15) + blob + b"\xee" * 16
    assert o["physinfo"] == [0, 0, expected.hex()]
    untouched = struct.pack("<II", 3, 0x14) + b"\xee" * 128
    assert o["mismatch"] == [-1, errno.EACCES, untouched.hex()]
    assert o["mismatch_other_cmd"] == [-1, errno.EACCES]   # checked before cmd
    assert o["other_cmd"] == [-1, errno.ENOSYS]
    assert o["efault"] == [-1, errno.EFAULT]
    assert o["in_multicall"] == [0, 0, 0, expected.hex()]


@pytest.mark.parametrize("size,version,iface", [(96, (4, 10), (0x10, 0x0E)),
                                                (104, (4, 15), (0x13, 0x13)),
                                                (112, (4, 17), (0x15, 0x15))])
def test_getdomaininfolist_stride(mock_lib, tmp_path, size, version, iface):
    scen = scenario(size=size, version=version, iface=iface)
    r = run(mock_lib, tmp_path, scen, '''
        size = %d
        fd = privcmd()
        def listdom(first, maxd, nbuf=10):
            buf = Buf(b"\\xcc" * (size * nbuf))
            union = struct.pack("<HxxIQI", first, maxd, buf.addr, 0xABCD)
            r, after = sysctl(fd, 6, %d, union)
            return r + [struct.unpack_from("<I", after, 24)[0], bytes(buf.b).hex()]
        out["from1"] = listdom(1, 10)
        out["from0_max1"] = listdom(0, 1)
        out["from8"] = listdom(8, 10)
        union = struct.pack("<HxxIQI", 0, 10, 8, 0)
        out["efault"] = sysctl(fd, 6, %d, union)[0]
    ''' % (size, iface[0], iface[0]))
    o = r.out
    doms = {d[0]: d for d in DOMAINS}

    def rec(domid):
        _, tot, mx, _ = doms[domid]
        return answered_record(domid, size, tot, mx)

    assert o["from1"][:3] == [0, 0, 2]
    buf = bytes.fromhex(o["from1"][3])
    assert buf[:size] == rec(3)
    assert buf[size:2 * size] == rec(7)
    assert buf[2 * size:] == b"\xcc" * (8 * size)     # nothing past the stride
    assert o["from0_max1"][:3] == [0, 0, 1]
    assert bytes.fromhex(o["from0_max1"][3])[:size] == rec(0)
    assert o["from8"][:3] == [0, 0, 0]
    assert o["efault"] == [-1, errno.EFAULT]


# ---------------------------------------------------------------- domctl

def test_getdomaininfo_next_domain_semantics(mock_lib, tmp_path):
    """Xen <= 4.17: an unknown id answers with the next domain >= id."""
    r = run(mock_lib, tmp_path, scenario(exact=0), '''
        fd = privcmd()
        def gdi(dom, iv=0x15, cmd=5):
            r, after = domctl(fd, cmd, iv, dom)
            return r + [struct.unpack_from("<H", after, 8)[0], after[16:16 + 112].hex()]
        out["exact3"] = gdi(3)
        out["next1"] = gdi(1)
        out["next4"] = gdi(4)
        out["beyond"] = gdi(8)
        out["self"] = gdi(0x7FF0)
        out["invalid"] = gdi(0x7FF4)
        out["mismatch"] = gdi(3, iv=0x16)
        out["other_cmd"] = gdi(0, cmd=0x3E)
        out["other_cmd_missing"] = gdi(5, cmd=0x3E)
    ''')
    o = r.out
    doms = {d[0]: d for d in DOMAINS}

    def rec(domid):
        _, tot, mx, _ = doms[domid]
        return answered_record(domid, 112, tot, mx).hex()

    assert o["exact3"] == [0, 0, 3, rec(3)]
    assert o["next1"] == [0, 0, 3, rec(3)]       # domain field rewritten to 3
    assert o["next4"] == [0, 0, 7, rec(7)]
    assert o["beyond"][:3] == [-1, errno.ESRCH, 8]
    assert o["self"][:2] == [-1, errno.EINVAL]
    assert o["invalid"][:2] == [-1, errno.EINVAL]
    assert o["mismatch"][:3] == [-1, errno.EACCES, 3]
    assert o["other_cmd"][:2] == [-1, errno.ENOSYS]
    assert o["other_cmd_missing"][:2] == [-1, errno.ESRCH]


def test_getdomaininfo_exact_semantics(mock_lib, tmp_path):
    """Xen >= 4.18: exact match or -ESRCH."""
    r = run(mock_lib, tmp_path, scenario(exact=1, iface=(0x15, 0x16)), '''
        fd = privcmd()
        def gdi(dom, iv=0x16):
            r, after = domctl(fd, 5, iv, dom)
            return r + [struct.unpack_from("<H", after, 8)[0], after[16:16 + 112].hex()]
        out["exact7"] = gdi(7)
        out["missing1"] = gdi(1)
        out["self"] = gdi(0x7FF0)
        out["mismatch"] = gdi(7, iv=0x15)
    ''')
    o = r.out
    _, tot, mx, _ = DOMAINS[2]
    assert o["exact7"] == [0, 0, 7, answered_record(7, 112, tot, mx).hex()]
    assert o["missing1"][:3] == [-1, errno.ESRCH, 1]
    assert o["self"][:2] == [-1, errno.ESRCH]
    assert o["mismatch"][:2] == [-1, errno.EACCES]


# ---------------------------------------------------------------- balloon

def test_balloon_moves_across_ops(mock_lib, tmp_path):
    domains = [*DOMAINS, (5, 100, 200, 0x1000)]
    step, every, lo, hi = 4, 2, 96, 110
    scen = scenario("balloon 5 %d %d %d %d\n" % (step, every, lo, hi), domains=domains)
    r = run(mock_lib, tmp_path, scen, '''
        fd = privcmd()
        seen = []
        for i in range(30):
            kind = i % 5
            if kind == 0:
                seen.append(memop(fd, 3, 5)[0])
            elif kind == 1:
                seen.append(multicall(fd, [(12, 3, domid_ptr(5))])[1][0])
            elif kind == 2:
                after = domctl(fd, 5, 0x15, 5)[1]
                seen.append(struct.unpack_from("<Q", after, 16 + 8)[0])
            elif kind == 3:
                buf = Buf(b"\\0" * 112 * 4)
                sysctl(fd, 6, 0x15, struct.pack("<HxxIQ", 5, 1, buf.addr))
                seen.append(struct.unpack_from("<Q", buf.b, 8)[0])
            else:
                memop(fd, 4, 5)            # max_pages: not a read of tot_pages
                seen.append(None)
        out["seen"] = seen
    ''')
    model = Balloon(100, step, every, lo, hi)
    expected = [None if i % 5 == 4 else model.read() for i in range(30)]
    assert r.out["seen"] == expected
    assert len({v for v in expected if v is not None}) > 2   # it really moved


# ---------------------------------------------------------------- faults and hangs

def test_fault_injection(mock_lib, tmp_path):
    extra = """
        fault 12 2 5 2
        fault 17 -1 11 1
        fault 12 3 16 1
        fault 36 5 12 -1
    """
    r = run(mock_lib, tmp_path, scenario(extra), '''
        fd = privcmd()
        out["memop2"] = [memop(fd, 2) for _ in range(3)]
        out["xenver"] = [hypercall(fd, 17, 0), hypercall(fd, 17, 0)]
        out["mc_entry"] = [multicall(fd, [(12, 3, domid_ptr(0))]) [:2] for _ in range(2)]
        out["domctl"] = [domctl(fd, 5, 0x15, 0)[0] for _ in range(3)]
    ''')
    o = r.out
    assert o["memop2"] == [[-1, errno.EIO], [-1, errno.EIO], [0x1040000, 0]]
    assert o["xenver"] == [[-1, errno.EAGAIN], [(4 << 16) | 17, 0]]
    assert o["mc_entry"] == [[[0, 0], [(-errno.EBUSY) & MASK64]],
                             [[0, 0], [DOMAINS[0][1]]]]
    assert o["domctl"] == [[-1, errno.ENOMEM]] * 3


@pytest.mark.parametrize("in_multicall", [False, True])
def test_hang_blocks(mock_lib, tmp_path, in_multicall):
    scen_path = tmp_path / "scenario.txt"
    scen_path.write_text(scenario("hang 12 3\n"))
    log_path = tmp_path / "log.jsonl"
    call = ('multicall(fd, [(12, 3, domid_ptr(0))])' if in_multicall
            else 'memop(fd, 3, 0)')
    code = PRELUDE + textwrap.dedent('''
        fd = privcmd()
        print(json.dumps(memop(fd, 2)), flush=True)
        r = %s
        print("RETURNED", flush=True)
    ''' % call)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=child_env(mock_lib, scen_path, log_path))
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=3)
    proc.send_signal(signal.SIGKILL)
    stdout, _ = proc.communicate()
    assert json.loads(stdout.splitlines()[0]) == [0x1040000, 0]
    assert "RETURNED" not in stdout
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    hangs = [e for e in log if e["kind"] == "hang"]
    assert len(hangs) == 1
    assert hangs[0]["op"] == 12 and hangs[0]["subop"] == 3
    assert hangs[0]["via"] == ("multicall" if in_multicall else "ioctl")


# ---------------------------------------------------------------- domU

def test_domu_role(mock_lib, tmp_path):
    r = run(mock_lib, tmp_path, scenario("role domU\n", self_domid=3), '''
        fd = privcmd()
        out["sysctl"] = sysctl(fd, 3, 0x15)[0]
        out["sysctl_mismatch"] = sysctl(fd, 3, 0x14)[0]
        out["domctl"] = domctl(fd, 5, 0x15, 3)[0]
        out["domctl_missing"] = domctl(fd, 5, 0x15, 1)[0]
        out["memop_other"] = memop(fd, 3, 0)
        out["memop_self"] = multicall(fd, [(12, 3, domid_ptr(0x7FF0))])[1]
        out["memop_own_id"] = multicall(fd, [(12, 4, domid_ptr(3))])[1]
        out["memop_missing"] = memop(fd, 3, 5)
        out["max_page"] = memop(fd, 2)
        out["version"] = hypercall(fd, 17, 0)
        b = Buf(struct.pack("<II", 0, 0))
        hypercall(fd, 17, 6, b.addr)
        out["features"] = struct.unpack("<II", b.b)[1]
        b = Buf(b"\\xff" * 1024)
        out["cmdline"] = hypercall(fd, 17, 9, b.addr) + [bytes(b.b[:10]).hex()]
        out["caps"] = read_file("/proc/xen/capabilities")
    ''')
    o = r.out
    assert o["sysctl"] == [-1, errno.EPERM]
    assert o["sysctl_mismatch"] == [-1, errno.EACCES]
    assert o["domctl"] == [-1, errno.EPERM]
    assert o["domctl_missing"] == [-1, errno.EPERM]    # <= 4.17: XSM before lookup
    assert o["memop_other"] == [-1, errno.EPERM]
    assert o["memop_self"] == [DOMAINS[1][1]]
    assert o["memop_own_id"] == [DOMAINS[1][2]]
    assert o["memop_missing"] == [-1, errno.ESRCH]     # lookup before XSM
    assert o["max_page"] == [0x1040000, 0]
    assert o["version"] == [(4 << 16) | 17, 0]
    assert not o["features"] & (1 << 11)
    assert o["cmdline"] == [0, 0, (b"<denied>\0\xff").hex()]
    assert o["caps"] == ""


def test_domu_exact_lookup_before_xsm(mock_lib, tmp_path):
    r = run(mock_lib, tmp_path,
            scenario("role domU\n", exact=1, iface=(0x15, 0x16), self_domid=3), '''
        fd = privcmd()
        out["missing"] = domctl(fd, 5, 0x16, 1)[0]
        out["present"] = domctl(fd, 5, 0x16, 3)[0]
    ''')
    assert r.out["missing"] == [-1, errno.ESRCH]
    assert r.out["present"] == [-1, errno.EPERM]


# ---------------------------------------------------------------- multicall details

def test_multicall_details(mock_lib, tmp_path):
    r = run(mock_lib, tmp_path, scenario(), '''
        fd = privcmd()
        inner = (ctypes.c_uint64 * 8)(17, 0, 0)
        r, results, words = multicall(fd, [
            (17, 0),
            (13, ctypes.addressof(inner), 1),
            (99, 1, 2),
            (12, 2, 0, 0, 0, 0, 0xABC),
        ])
        out["mixed"] = r + results
        out["args_kept"] = words[8 * 3 + 2: 8 * 3 + 8]
        out["ops_kept"] = [words[8 * i] for i in range(4)]
        out["inner_untouched"] = inner[1]
        out["empty"] = hypercall(fd, 13, 0, 0)
        out["null"] = hypercall(fd, 13, 0, 1)
    ''')
    o = r.out
    assert o["mixed"] == [0, 0, (4 << 16) | 17, (-errno.EINVAL) & MASK64,
                          (-errno.ENOSYS) & MASK64, 0x1040000]
    assert o["args_kept"] == [2, 0, 0, 0, 0, 0xABC]
    assert o["ops_kept"] == [17, 13, 99, 12]
    assert o["inner_untouched"] == 0
    assert o["empty"] == [0, 0]
    assert o["null"] == [-1, errno.EFAULT]


# ---------------------------------------------------------------- the log

def test_request_log(mock_lib, tmp_path):
    r = run(mock_lib, tmp_path, scenario("max_page 0x100000005\n"), '''
        fd = privcmd()
        out["fd"] = fd
        ioctl(fd, UNIMPL, 0)
        memop(fd, 2)
        memop(fd, 2, via="syscall")
        multicall(fd, [(12, 2, 0), (12, 14, domid_ptr(3))])
        sysctl(fd, 3, 0x15)
        domctl(fd, 5, 0x15, 7)
        ioctl(fd, DM_OP, Buf(struct.pack("<HH4xQ", 0x7FF4, 0, 0)).addr)
        os.close(fd)
        out["hc_dev"] = try_open("/dev/xen/hypercall", os.O_RDWR)
    ''')
    log, pid, fd = r.log, r.pid, r.out["fd"]
    assert all(e["pid"] == pid for e in log)
    seqs = [e["seq"] for e in log]
    assert len(set(seqs)) == len(seqs)
    kinds = [e["kind"] for e in log]
    assert kinds == ["open", "ioctl", "hypercall", "hypercall", "multicall_entry",
                     "multicall_entry", "hypercall", "hypercall", "hypercall",
                     "ioctl", "close", "open"]

    opened = log[0]
    assert opened["path"] == "/dev/xen/privcmd" and opened["returned"] == fd
    assert opened["errno"] == 0

    unimpl = log[1]
    assert (unimpl["cmd"], unimpl["returned"], unimpl["errno"]) == (0x50FF, -1, errno.ENOTTY)

    via_ioctl, via_syscall = log[2], log[3]
    for e, via in ((via_ioctl, "ioctl"), (via_syscall, "syscall")):
        assert e["cmd"] == 0x00305000 and e["via"] == via
        assert e["op"] == 12 and e["args"] == [2, 0, 0, 0, 0]
        assert e["subop"] == 2 and e["cmd_raw"] == 2
        assert e["result"] == 0x100000005
        assert e["returned"] == 5 and e["errno"] == 0
        assert e["fd"] == fd and e["path"] == "/dev/xen/privcmd"

    mc = log[6]
    assert mc["op"] == 13 and mc["result"] == 0 and mc["args"][1] == 2
    entries = log[4:6]
    assert [e["index"] for e in entries] == [0, 1]
    assert all(e["parent_seq"] == mc["seq"] and e["via"] == "multicall" for e in entries)
    assert entries[0]["result"] == 0x100000005 and len(entries[0]["args"]) == 6
    assert entries[1]["subop"] == 14 and entries[1]["domain"] == 3
    assert entries[1]["result"] == DOMAINS[1][3]

    sysctl_e, domctl_e = log[7], log[8]
    assert (sysctl_e["op"], sysctl_e["subop"], sysctl_e["interface_version"]) == (35, 3, 0x15)
    assert (domctl_e["op"], domctl_e["subop"], domctl_e["domain"]) == (36, 5, 7)
    assert domctl_e["interface_version"] == 0x15

    dm = log[9]
    assert dm["cmd"] == 0x00105005 and dm["returned"] == 0 and dm["num"] == 0

    closed = log[10]
    assert closed["fd"] == fd and closed["returned"] == 0
    assert log[11]["path"] == "/dev/xen/hypercall" and log[11]["errno"] == errno.ENOENT


def test_log_shared_by_processes(mock_lib, tmp_path):
    r = run(mock_lib, tmp_path, scenario(), '''
        children = []
        for i in range(4):
            pid = os.fork()
            if pid == 0:
                fd = privcmd()
                for _ in range(25):
                    hypercall(fd, 17, 0)
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        out["children"] = children
    ''')
    hyper = [e for e in r.log if e["kind"] == "hypercall"]
    assert len(hyper) == 100
    assert {e["pid"] for e in hyper} == set(r.out["children"])


# ---------------------------------------------------------------- other fds

def test_non_mock_fds_untouched(mock_lib, tmp_path):
    r = run(mock_lib, tmp_path, scenario(), '''
        import termios
        fd = privcmd()
        rd, wr = os.pipe()
        os.write(wr, b"hello")
        n = ctypes.c_int(-1)
        out["fionread"] = ioctl(rd, termios.FIONREAD, ctypes.addressof(n)) + [n.value]
        n.value = -1
        out["fionread_sys"] = sysioctl(rd, termios.FIONREAD, ctypes.addressof(n)) + [n.value]
        ws = (ctypes.c_ushort * 4)()
        out["tty_on_pipe"] = ioctl(rd, termios.TIOCGWINSZ, ctypes.addressof(ws))
        null = os.open("/dev/null", os.O_RDWR)
        hc = (ctypes.c_uint64 * 6)(17, 0, 0, 0, 0, 0)
        out["privcmd_cmd_on_null"] = ioctl(null, HYPERCALL, ctypes.addressof(hc))
        out["getpid"] = libc.syscall(ctypes.c_long(SYS_getpid))
        out["real_pid"] = os.getpid()
    ''')
    o = r.out
    assert o["fionread"] == [0, 0, 5]
    assert o["fionread_sys"] == [0, 0, 5]
    assert o["tty_on_pipe"] == [-1, errno.ENOTTY]
    assert o["privcmd_cmd_on_null"] == [-1, errno.ENOTTY]
    assert o["getpid"] == o["real_pid"]
    assert [e["kind"] for e in r.log] == ["open"]     # only the privcmd open


def test_dup_close_and_stale_fds(mock_lib, tmp_path):
    r = run(mock_lib, tmp_path, scenario(), '''
        import fcntl, termios
        fd = privcmd()
        d1 = os.dup(fd)
        d2 = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 50)
        os.close(fd)
        out["dup_after_close"] = [hypercall(d1, 17, 0), hypercall(d2, 17, 0)]
        # dup2 a pipe over a mock fd: it is no longer privcmd
        rd, wr = os.pipe()
        os.dup2(rd, d1)
        out["dup2_over"] = hypercall(d1, 17, 0)
        # closed behind the mock's back (raw syscall via glibc's close_range)
        # and the number reused by a pipe: must not be taken for privcmd
        fd = privcmd()
        libc.close_range(fd, fd, 0)
        rd2, wr2 = os.pipe()
        os.write(wr2, b"abc")
        n = ctypes.c_int(-1)
        out["reused"] = [rd2 == fd or wr2 == fd,
                         ioctl(rd2, termios.FIONREAD, ctypes.addressof(n)) + [n.value],
                         hypercall(rd2, 17, 0)]
        # syscall(SYS_close) keeps the table right as well
        fd = privcmd()
        out["sys_close"] = libc.syscall(ctypes.c_long(SYS_close), ctypes.c_long(fd))
        out["after_sys_close"] = hypercall(fd, 17, 0)
    ''')
    o = r.out
    version = (4 << 16) | 17
    assert o["dup_after_close"] == [[version, 0], [version, 0]]
    assert o["dup2_over"] == [-1, errno.ENOTTY]
    assert o["reused"][0] is True
    assert o["reused"][1] == [0, 0, 3]
    assert o["reused"][2] == [-1, errno.ENOTTY]
    assert o["sys_close"] == 0
    assert o["after_sys_close"] == [-1, errno.EBADF]


# ---------------------------------------------------------------- bad scenarios

@pytest.mark.parametrize("text,line,fragment", [
    pytest.param(*case, id=case[2].split()[0] + "-line%d" % case[1]) for case in [
    ("xen 4 17\nmax_page 5\nbogus 1\n", 3, "unknown directive 'bogus'"),
    ("xen 4\n", 1, "xen takes 2 arguments"),
    ("max_page 0xZZ\n", 1, "not an integer"),
    ("getdomaininfo_size 104\ndomain 1 5 5 0 %s\n" % ("00" * 112), 2,
     "record is 112 bytes"),
    ("balloon 9 1 1 0 10\n", 1, "domain 9 is not defined"),
    ("driver linux\n", 1, "expected pvops or xenlinux"),
    ("extraversion .1234567890123456\n", 1, "at most 15"),
]])
def test_invalid_scenario(mock_lib, tmp_path, text, line, fragment):
    path = tmp_path / "scenario.txt"
    r = run(mock_lib, tmp_path, text, '''
        out["first"] = try_open("/dev/xen/privcmd", os.O_RDWR)
        out["second"] = try_open("/proc/xen/privcmd", os.O_RDWR)
        out["devnull"] = try_open("/dev/null")[1]
    ''')
    assert r.out["first"] == [-1, errno.EIO]
    assert r.out["second"] == [-1, errno.EIO]
    assert r.out["devnull"] == 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr                  # reported once
    assert lines[0].startswith("xenprobe-mock: %s:%d: " % (path, line)), lines[0]
    assert fragment in lines[0]


def test_missing_scenario_and_quiet_bystanders(mock_lib, tmp_path):
    missing = tmp_path / "nope.txt"
    code = PRELUDE + textwrap.dedent('''
        out["open"] = try_open("/dev/xen/privcmd", os.O_RDWR)
        print(json.dumps(out))
    ''')
    env = child_env(mock_lib, missing)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["open"] == [-1, errno.EIO]
    assert proc.stderr.startswith("xenprobe-mock: %s:0: cannot open" % missing)

    env.pop("XENPROBE_MOCK_SCENARIO")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, env=env, timeout=60)
    assert json.loads(proc.stdout)["open"] == [-1, errno.EIO]
    assert "XENPROBE_MOCK_SCENARIO" in proc.stderr

    # A process that never touches Xen paths stays silent and unaffected.
    proc = subprocess.run(["sh", "-c", "echo ok; ls / >/dev/null"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


# ---------------------------------------------------------------- real libxenctrl

def find_libxenctrl():
    """Debian ships libxenctrl.so.4.17 in libxenmisc4.17; tests may also be
    pointed at an unpacked copy with XENPROBE_TEST_LIBXENCTRL."""
    candidates = [os.environ.get("XENPROBE_TEST_LIBXENCTRL", ""),
                  "/usr/lib/x86_64-linux-gnu/libxenctrl.so.4.17",
                  "/usr/lib/libxenctrl.so.4.17"]
    return next((c for c in candidates if c and os.path.exists(c)), None)


def test_real_libxenctrl_4_17(mock_lib, tmp_path):
    lib = find_libxenctrl()
    if lib is None:
        # Debian's own, fetched and cached by the test suite (tests/xenpkgs.py).
        from tests import xenpkgs
        if os.environ.get(xenpkgs.SKIP_ENV) == "1":
            pytest.skip(f"{xenpkgs.SKIP_ENV}=1: real Xen 4.17 libraries not fetched")
        lib = str(xenpkgs.ensure().libxenctrl)
    blob = bytes((i * 5 + 1) & 0xFF for i in range(112))
    scen = scenario("physinfo %s\n" % blob.hex(), max_page=0x100000005)
    scen_path = tmp_path / "scenario.txt"
    scen_path.write_text(scen)
    log_path = tmp_path / "log.jsonl"
    code = textwrap.dedent('''
        import ctypes, json, struct, sys
        V, U32 = ctypes.c_void_p, ctypes.c_uint32
        xc = ctypes.CDLL(sys.argv[1])
        xc.xc_interface_open.restype = V
        xc.xc_interface_open.argtypes = [V, V, ctypes.c_uint]
        for name, args, res in [
                ("xc_version", [V, ctypes.c_int, V], ctypes.c_int),
                ("xc_physinfo", [V, V], ctypes.c_int),
                ("xc_maximum_ram_page", [V, V], ctypes.c_int),
                ("xc_domain_maximum_gpfn", [V, U32, V], ctypes.c_int),
                ("xc_get_tot_pages", [V, U32], ctypes.c_long),
                ("xc_domain_getinfolist", [V, U32, ctypes.c_uint, V], ctypes.c_int),
                ("xc_interface_close", [V], ctypes.c_int)]:
            getattr(xc, name).argtypes, getattr(xc, name).restype = args, res
        out = {}
        h = xc.xc_interface_open(None, None, 0)
        out["opened"] = bool(h)
        out["version"] = xc.xc_version(h, 0, None)
        pi = ctypes.create_string_buffer(112)
        out["physinfo"] = [xc.xc_physinfo(h, pi), pi.raw.hex()]
        v = ctypes.c_uint64()
        out["max_ram"] = [xc.xc_maximum_ram_page(h, ctypes.byref(v)), v.value]
        out["gpfn3"] = [xc.xc_domain_maximum_gpfn(h, 3, ctypes.byref(v)), v.value]
        out["tot3"] = xc.xc_get_tot_pages(h, 3)
        out["tot1"] = xc.xc_get_tot_pages(h, 1)
        buf = ctypes.create_string_buffer(112 * 8)
        n = xc.xc_domain_getinfolist(h, 0, 8, buf)
        out["list"] = [struct.unpack_from("<H", buf.raw, 112 * i)[0] for i in range(n)]
        out["close"] = xc.xc_interface_close(h)
        print(json.dumps(out))
    ''')
    env = child_env(mock_lib, scen_path, log_path)
    env["LD_LIBRARY_PATH"] = os.path.dirname(lib)
    proc = subprocess.run([sys.executable, "-c", code, lib], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    o = json.loads(proc.stdout)
    assert o["opened"] is True
    assert o["version"] == (4 << 16) | 17
    assert o["physinfo"] == [0, blob.hex()]
    assert o["max_ram"] == [0, 0x100000005]        # libxc's one-entry multicall
    assert o["gpfn3"] == [0, DOMAINS[1][3]]
    assert o["tot3"] == DOMAINS[1][1]
    assert o["tot1"] == -1       # 4.17 libxc: getinfo answered for domain 3
    assert o["list"] == [d[0] for d in DOMAINS]
    assert o["close"] == 0
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    opens = [(e["path"], e["errno"]) for e in log if e["kind"] == "open"]
    assert opens.count(("/dev/xen/privcmd", 0)) == 4
    assert opens.count(("/dev/xen/hypercall", errno.ENOENT)) == 2
    probes = [(e["cmd"], e["returned"]) for e in log if e["kind"] == "ioctl"]
    assert probes == [(0x50FF, -1), (0x00105005, 0)]
