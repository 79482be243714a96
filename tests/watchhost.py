# SPDX-License-Identifier: GPL-2.0-only
"""A fake system for `xenprobe watch` on the mock host: a tracefs directory the mock
library treats as the kernel's (native/mock/tracing.c), a loaded xen_privcmd module
(its build-id note under sys/module) and its module file, assembled here with binutils
so that its HYPERCALL and DM_OP probe points are where this file puts them."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.mockhost import env_for
from xenprobe.mock.scenario import parse

# Where each hypercall of the assembled privcmd_ioctl returns to, which is where the
# watch probes (by construction: .org below; each call is followed by a CLAC's NOPs and
# the narrowing, at 0x251 and 0xb10), and its size.
HYPERCALL_AT = 0x24E
DM_OP_AT = 0xB0D
FUNCTION_SIZE = 0xBE0

# Where its code keeps privcmd's own copies (the loads below), as 6.1.0-57's does: the
# request at 0x80(%rsp), DM_OP's domain at 0x60(%rsp).
REQUEST_AT = 0x80
DM_DOMAIN_AT = 0x60

_MODULE_ASM = """
    .text
    .globl privcmd_ioctl
    .type privcmd_ioctl, @function
privcmd_ioctl:
    .org 0x246 - {loads_len}, 0xcc
{loads}
    nop; nop; nop                  # STAC alternative
    call __SCT__xen_hypercall
    nop; nop; nop                  # CLAC alternative
    movslq %eax, %rbp              # 0x251: int ret = ...
    ret
    .org 0xafb, 0xcc
{dm_load}
    mov $0x29, %eax                # dm_op
    mov %r14, %rdx
    call __SCT__xen_hypercall
    nop; nop; nop
    movslq %eax, %rbp              # 0xb10
    ret
    .org 0xbe0, 0xcc
    .size privcmd_ioctl, . - privcmd_ioctl
    .section .note.gnu.build-id, "a", @note
    .long 4, 20, 3
    .asciz "GNU"
    .byte {build_id}
"""

# The scenario the consumers run on: results that need more than 31 bits, an errno
# look-alike, and intact ones (xenprobe/mock/scenarios/healthy.toml plus these domains).
WATCH_SCENARIO = """
description = "watch tests: maximum_gpfn values the int ioctl damages"
[xen]
release = "4.17"
[hypervisor]
census = true
[host]
memory = "16 GiB"
max_page = 4456448
[[domain]]
id = 0
memory = "2 GiB"
max_memory = "2 GiB"
[[domain]]
id = 3
memory = "1 GiB"
hvm = true
max_gpfn = 0x100000004
[[domain]]
id = 4
memory = "1 GiB"
hvm = true
max_gpfn = 0x80000000
[[domain]]
id = 5
memory = "1 GiB"
hvm = true
max_gpfn = 0xfffffffe
[[domain]]
id = 6
memory = "1 GiB"
hvm = true
max_gpfn = 0x10ffff
"""

# A consumer: issues IOCTL_PRIVCMD_HYPERCALL for each (op, a0, domid) on argv, through
# the mock's privcmd (ctypes.CDLL(None): the ioctl LD_PRELOAD provides), and prints
# what ioctl() returned and errno.
CONSUMER = r"""
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open("/dev/xen/privcmd", os.O_RDWR)
out = []
for spec in sys.argv[1:]:
    op, a0, dom = (int(x, 0) for x in spec.split(","))
    domid = ctypes.c_uint16(dom)
    hc = (ctypes.c_uint64 * 6)(op, a0, ctypes.addressof(domid), 0, 0, 0)
    r = libc.ioctl(fd, 0x305000, hc)
    out.append([r, ctypes.get_errno()])
print(json.dumps(out))
"""


@dataclass
class WatchHost:
    root: Path
    tracefs: Path
    module: Path
    env: dict[str, str]          # the watch's environment
    consumer_env: dict[str, str]  # a consumer's: on the mock host, same tracefs
    carried: bool = True         # result probes carry the request: one event a call

    @property
    def events_per_call(self) -> int:
        return 1 if self.carried else 2

    def watch(self, *args: str, stdout: int | IO[Any] = subprocess.PIPE
              ) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "xenprobe", "watch", *args],
                                env=self.env, stdout=stdout, stderr=subprocess.PIPE,
                                text=True)

    def consumer(self, *calls: str, name: str = "consumer") -> list[list[int]]:
        """Runs a consumer process named `name` (its comm) making `calls`."""
        script = self.root / f"{name}.py"
        script.write_text(CONSUMER)
        exe = self.root / name
        if not exe.exists():
            os.symlink(sys.executable, exe)
        p = subprocess.run([str(exe), str(script), *calls], env=self.consumer_env,
                           capture_output=True, text=True, timeout=60, check=False)
        assert p.returncode == 0, p.stderr
        result: list[list[int]] = json.loads(p.stdout)
        return result

    def kprobe_events(self) -> list[str]:
        from xenprobe.watch.probes import listed_events

        path = self.tracefs / "kprobe_events"
        text = path.read_text() if path.exists() else ""
        groups = {line.split()[0].split(":", 1)[1].split("/")[0]
                  for line in text.splitlines() if line.strip()}
        return [f"{g}/{e}" for g in sorted(groups) for e in listed_events(text, g)]

    def instances(self) -> list[str]:
        return sorted(p.name for p in (self.tracefs / "instances").iterdir())


# privcmd_call()'s loads of the hypercall's registers from the request's copy (op in
# %rax, arg[0..4] in %rdi, %rsi, %rdx, %r10, %r8: hypercall.h@v6.1 privcmd_call), and
# the load of DM_OP's domain into %rdi; each mov disp32(%rsp) is 8 bytes.
_LOADS = "\n".join(f"    mov {REQUEST_AT + 8 * i:#x}(%rsp), %{r}"
                   for i, r in enumerate(("rax", "rdi", "rsi", "rdx", "r10", "r8")))
_DM_LOAD = f"    movzwl {DM_DOMAIN_AT:#x}(%rsp), %edi"
# Without them (only the op's load, the domain taken from a register), the copies' slots
# are not certain and the watch pairs each result with an entry probe.
_LOAD_OP = f"    mov {REQUEST_AT:#x}(%rsp), %rax"
_DM_LOAD_REG = "    mov %ebx, %edi; nop; nop; nop"


def assemble_module(dest: Path, build_id: bytes, carried: bool = True) -> None:
    asm = dest.with_suffix(".s")
    asm.write_text(_MODULE_ASM.format(
        build_id=", ".join(str(b) for b in build_id),
        loads=_LOADS if carried else _LOAD_OP, loads_len=48 if carried else 8,
        dm_load=_DM_LOAD if carried else _DM_LOAD_REG))
    subprocess.run(["as", "--64", "-o", str(dest), str(asm)], check=True,
                   capture_output=True)


# PV guests that wrote their own shared_info max_pfn (xenprobe/mock/scenarios/pv-guest-max-pfn
# .toml cites the sources): XENMEM_maximum_gpfn -3 (ESRCH, which the call can return for
# a missing domain), -22 (EINVAL, which it never returns) and 0x8000000000000000.
FORGED_DOMAINS = """
[[domain]]
id = 7
memory = "1 GiB"
max_pfn = 0xfffffffffffffffe
[[domain]]
id = 8
memory = "1 GiB"
max_pfn = 0xffffffffffffffeb
[[domain]]
id = 9
memory = "1 GiB"
max_pfn = 0x8000000000000001
"""

# The kernel log's boot banner as /dev/kmsg gives it: one record a read,
# "<facility << 3 | level>,<seq>,<usec>,<flags>;<text>" (info_print_ext_header(),
# kernel/printk/printk.c), the banner from xen_banner() (arch/x86/xen/enlighten_pv.c).
KMSG_417 = ("6,0,0,-;Linux version 6.1.0-57-amd64\n"
            "6,210,0,-;Booting paravirtualized kernel on Xen\n"
            "6,211,0,-;Xen version: 4.17.7 (preserve-AD)\n")


def make(tmp: Path, extra: str = "", kmsg: str | None = None, carried: bool = True
         ) -> WatchHost:
    """`extra`: more scenario text (domains); `kmsg`: the kernel log's records (none:
    no dev/kmsg, as in a sandbox); `carried`: the module's code shows where privcmd's
    copies lie, so each result probe carries its request (as in Debian's 5.10, 6.1
    and 6.12), else the watch arms an entry probe too."""
    if shutil.which("as") is None:
        import pytest

        pytest.skip("binutils (as) is not installed")
    root = tmp / "root"
    tracefs = root / "sys/kernel/tracing"
    (tracefs / "instances").mkdir(parents=True)
    (tracefs / "kprobe_events").write_text("")
    (tracefs / "trace").write_text("")
    build_id = secrets.token_bytes(20)
    notes = root / "sys/module/xen_privcmd/notes"
    notes.mkdir(parents=True)
    (notes / ".note.gnu.build-id").write_bytes(
        (4).to_bytes(4, "little") + (20).to_bytes(4, "little") + (3).to_bytes(4, "little")
        + b"GNU\0" + build_id)
    module = tmp / "xen-privcmd.ko"
    assemble_module(module, build_id, carried)
    if kmsg is not None:
        (root / "dev").mkdir()
        (root / "dev/kmsg").write_text(kmsg)
    scenario = parse(WATCH_SCENARIO + extra, str(tmp / "watch.toml"), "watch-tests")
    base = env_for(scenario, tmp)
    base.pop("XENPROBE_LIBXENCTRL", None)
    base["XENPROBE_MOCK_TRACEFS"] = str(tracefs)
    base["XENPROBE_MOCK_PRIVCMD_TEXT"] = (
        f"hypercall={HYPERCALL_AT:#x} dm_op={DM_OP_AT:#x} size={FUNCTION_SIZE:#x}"
        + (f" request={REQUEST_AT:#x} dm_domain={DM_DOMAIN_AT:#x}" if carried else ""))
    env = dict(base)
    env["XENPROBE_WATCH_ROOT"] = str(root)
    env["XENPROBE_WATCH_MODULE"] = str(module)
    return WatchHost(root, tracefs, module, env, base, carried)


def read_until(p: subprocess.Popen[str], event: str, timeout: float = 30
               ) -> list[dict[str, Any]]:
    """JSON lines from a watch until one with `event` (inclusive)."""
    assert p.stdout is not None
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        obj = json.loads(line)
        seen.append(obj)
        if obj.get("event") == event:
            return seen
    raise AssertionError(f"no {event!r} event; got {seen}; stderr "
                         f"{p.stderr.read() if p.stderr and p.poll() is not None else ''}")
