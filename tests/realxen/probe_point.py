# SPDX-License-Identifier: GPL-2.0-only
"""Where the hypercall's full result can be read in a xen-privcmd module: an independent
restatement for the real-Xen tier (it imports nothing of xenprobe), from binutils'
disassembly of the module file on the host.

``privcmd_ioctl()`` keeps the result of ``privcmd_call()`` in ``int ret``
(drivers/xen/privcmd.c: L5.10 :852,855, L6.1 :851,854, L6.12 :1533,1536, Debian's
linux-source of each), so the compiled module narrows ``%rax`` with a ``movslq
%eax,%reg`` right after the hypercall returns.  A kprobe on that instruction reads
Xen's whole 64-bit result in ``%ax``.  The hypercall is made either through a static
call (a relocation to ``__SCT__xen_hypercall``, Debian's builds after the XSA-466
rework) or through the hypercall page (``call *%rax`` or a relocation to
``hypercall_page``: bullseye's 5.10.0-32); between the call and the narrowing there may
be 1-byte NOPs (the CLAC alternative) and a ``movb $0x0,%gs:...``
(``xen_in_preemptible_hcall``).  Of those call sites, DM_OP's is preceded by
``mov $0x29,%eax`` (or calls hypercall_page+0x520: __HYPERVISOR_dm_op 41 times 32) and
the two XENMEM_acquire_resource ones by ``mov $0xc,%eax``; IOCTL_PRIVCMD_HYPERCALL's
loads the op from the kernel's copy of the request.

    python3 -m tests.realxen.probe_point MODULE.ko
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FUNCTION = "privcmd_ioctl"
HYPERCALL_TARGETS = ("__SCT__xen_hypercall", "hypercall_page")
DM_OP, MEMORY_OP = 0x29, 0xC
_INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
_RELOC = re.compile(r"^\s*([0-9a-f]+):\s+R_X86_64_\w+\s+(\S+)$")
_NARROW = re.compile(r"^%eax,%r\w+$")


class ProbePointError(RuntimeError):
    """The module's code is not of a shape this finder knows."""


@dataclass(frozen=True)
class Insn:
    addr: int
    mnemonic: str
    operands: str
    reloc: str | None  # the symbol a relocation inside this instruction names


@dataclass(frozen=True)
class ProbePoints:
    hypercall: int  # offset from privcmd_ioctl of IOCTL_PRIVCMD_HYPERCALL's narrowing
    dm_op: int | None
    function_size: int
    # Where the watch probes IOCTL_PRIVCMD_HYPERCALL: the instruction its hypercall
    # returns to, or the narrowing when the call is an alternatives site (5.10.0-32's
    # `call *%rax`, which the kernel may patch into a longer retpoline call).
    probe: int


def disassemble(ko: Path) -> list[Insn]:
    """privcmd_ioctl's instructions, with their relocations, from objdump."""
    out = subprocess.run(
        ["objdump", "-dr", "--no-show-raw-insn", f"--disassemble={FUNCTION}", str(ko)],
        capture_output=True, text=True, check=True,
    ).stdout
    insns: list[Insn] = []
    inside = False
    for line in out.splitlines():
        if line.endswith(f"<{FUNCTION}>:"):
            inside = True
            continue
        if not inside or not line.strip():
            continue
        r = _RELOC.match(line)
        if r and insns:
            last = insns[-1]
            insns[-1] = Insn(last.addr, last.mnemonic, last.operands, r.group(2))
            continue
        m = _INSN.match(line)
        if m:
            insns.append(Insn(int(m.group(1), 16), m.group(2), m.group(3).split("#")[0].strip(),
                              None))
    if not insns:
        raise ProbePointError(f"no {FUNCTION} in {ko}")
    return insns


def alternatives(ko: Path) -> set[int]:
    """The .text addresses the kernel may patch at load (.altinstructions' relocations,
    per readelf)."""
    out = subprocess.run(["readelf", "-rW", str(ko)], capture_output=True, text=True,
                         check=True).stdout
    places: set[int] = set()
    inside = False
    for line in out.splitlines():
        if line.startswith("Relocation section"):
            inside = "'.rela.altinstructions'" in line
        elif inside and (m := re.search(r"\s\.text \+ ([0-9a-f]+)$", line)):
            places.add(int(m.group(1), 16))
    return places


def _is_hypercall(i: Insn) -> bool:
    if not i.mnemonic.startswith("call"):
        return False
    if i.operands == "*%rax":
        return True
    return i.reloc is not None and i.reloc.split("+")[0].split("-")[0] in HYPERCALL_TARGETS


def _skippable(i: Insn) -> bool:
    return i.mnemonic == "nop" or (i.mnemonic == "movb" and "%gs:" in i.operands)


def _immediate_op(insns: list[Insn], at: int) -> int | None:
    """The hypercall number put in %eax by an immediate just before insns[at], if any."""
    for i in reversed(insns[max(0, at - 4):at]):
        if i.mnemonic == "mov" and i.operands.endswith(",%eax") and i.operands.startswith("$"):
            return int(i.operands[1:].split(",")[0], 16)
    reloc = insns[at].reloc or ""
    if reloc.startswith("hypercall_page+"):
        # A PC-relative relocation's addend is the entry's offset less 4 (the call's
        # operand ends 4 bytes after it): round to the 32-byte entry.
        return round(int(reloc.split("+")[1], 16) / 32)
    return None


def find(ko: Path) -> ProbePoints:
    insns = disassemble(ko)
    start = insns[0].addr
    hypercall: list[int] = []
    probe: list[int] = []
    patched = alternatives(ko)
    dm_op: list[int] = []
    for n, i in enumerate(insns):
        if not _is_hypercall(i):
            continue
        k = n + 1
        while k < len(insns) and _skippable(insns[k]):
            k += 1
        if k == len(insns) or insns[k].mnemonic != "movslq" or not _NARROW.match(
                insns[k].operands):
            continue
        op = _immediate_op(insns, n)
        if op is None:
            hypercall.append(insns[k].addr - start)
            probe.append(insns[k].addr - start if i.addr in patched
                         else insns[n + 1].addr - start)
        elif op == DM_OP:
            dm_op.append(insns[k].addr - start)
    if len(hypercall) != 1:
        raise ProbePointError(f"{ko}: {len(hypercall)} IOCTL_PRIVCMD_HYPERCALL narrowings "
                              f"{[hex(h) for h in hypercall]}, expected one")
    return ProbePoints(hypercall[0], dm_op[0] if len(dm_op) == 1 else None,
                       insns[-1].addr - start, probe[0])


def main() -> int:
    p = find(Path(sys.argv[1]))
    print(json.dumps({"hypercall": hex(p.hypercall),
                      "dm_op": None if p.dm_op is None else hex(p.dm_op)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
