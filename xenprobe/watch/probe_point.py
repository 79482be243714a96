# SPDX-License-Identifier: GPL-2.0-only
"""Where in `privcmd_ioctl` the hypervisor's full 64-bit result can be read: the
instruction right after the hypercall returns, before the compiler narrows `%rax` to
the `int` it keeps (`int ret` in privcmd_ioctl(), drivers/xen/privcmd.c@v6.1:851-854;
`int ret` in HYPERVISOR_dm_op(), arch/x86/include/asm/xen/hypercall.h@v6.1:503-508).

Pure: the bytes of the module file in, two offsets (or a refusal) out. Nothing is
guessed. A call site is recognised only by a relocation the linker must resolve:
- `call __SCT__xen_hypercall` (a static call, Linux 5.10.0-46 and later builds:
  the XSA-466 rework), or
- a call into `hypercall_page`: `call hypercall_page+32*op` for a fixed op, and, for
  privcmd's own HYPERCALL, `add $hypercall_page,%rax; call *%rax` (5.10.0-32's
  privcmd_call(): hypercall.h@v5.10:247-255).
After the call only instructions known not to touch `%rax` may come (1-byte NOPs, the
STAC/CLAC alternatives as the file holds them or as patched, the
`movb $0,%gs:xen_in_preemptible_hcall` of a preemptible hypercall) and then the
narrowing itself, `movslq %eax,%reg` (REX.W 63 /r, ModRM mod=11 rm=000) or `cltq`.
Anything else, or not exactly one site of a kind, is a refusal: a probe on another
instruction boundary would be accepted by the kernel and read the wrong value.

The probe goes on the instruction the call returns to, where `%rax` is Xen's as at
the narrowing (on the narrowing when the call is an alternative's: _probe()). There
the kprobe optimizer can replace its int3 by a jump: it copies the instructions in
the 5 bytes the jump overwrites and runs them elsewhere, which it does for NOPs and
the narrowing but never for a jmp (arch/x86/kernel/kprobes/opt.c@v6.1
copy_optimized_instructions, core.c can_boost). A jump spares every watched call a
trap through Xen (an int3 in a PV guest is Xen's exception, bounced to the kernel,
and an iret hypercall back). On the narrowing itself a jmp follows within 5 bytes in
6.1.0-57 and 6.12.118, and the HYPERCALL probe stayed an int3 (DM_OP's narrowing
has 6 copyable bytes before its jmp, and was a jump already).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from xenprobe.watch.elf64 import Module, NotAModule, Relocation
from xenprobe.xen.abi.hypercalls import MEMORY_OP

FUNCTION = "privcmd_ioctl"
STATIC_CALL = "__SCT__xen_hypercall"
HYPERCALL_PAGE = "hypercall_page"
PREEMPTIBLE = "xen_in_preemptible_hcall"
DM_OP = 41  # __HYPERVISOR_dm_op, xen/include/public/xen.h
HYPERCALL_ENTRY = 32  # bytes per hypercall_page entry (hypercall.h: hypercall_page[])
# Where the kernel lists code it patches at boot or load (struct alt_instr, whose first
# field points at the original instructions: arch/x86/include/asm/alternative.h).
ALTERNATIVES = ".altinstructions"

R_X86_64_PC32 = 2
R_X86_64_PLT32 = 4
R_X86_64_32S = 11
CALL_RELOCS = (R_X86_64_PC32, R_X86_64_PLT32)

# Instructions that may sit between the call and the narrowing: they leave %rax alone.
NOPS = (b"\x90",)
UACCESS = (b"\x0f\x01\xca", b"\x0f\x01\xcb")  # clac, stac (patched alternatives)
MOV_EAX_IMM = 0xB8  # mov $imm32,%eax
MAX_GAP = 16  # bytes searched before a static call for the op's constant


class NotCertain(Exception):
    """The probe point cannot be found with certainty in this module."""


@dataclass(frozen=True)
class Site:
    call: int          # section offset of the call instruction
    op: int | None     # the hypercall it issues, when the code fixes it; None: the caller's
    probe: int         # offset from the function's start of the probe (_probe());
    #                    -1 when the narrowing does not follow


@dataclass(frozen=True)
class ProbePoints:
    function_size: int
    hypercall: int            # privcmd_ioctl+hypercall: IOCTL_PRIVCMD_HYPERCALL's result
    dm_op: int | None         # privcmd_ioctl+dm_op: IOCTL_PRIVCMD_DM_OP's, if found
    build_id: bytes | None
    path: str                 # "static_call" or "hypercall_page"
    # Where, at privcmd_ioctl+hypercall, the kernel's own copy of the caller's struct
    # privcmd_hypercall lies: op at request(%rsp), arg[i] at request+8+8*i; None when
    # the code does not show it with certainty (request_slot()).
    request: int | None = None
    # Where, at privcmd_ioctl+dm_op, the domid_t given to DM_OP's hypercall lies:
    # dm_domain(%rsp); None when not certain (dm_domain_slot()).
    dm_domain: int | None = None


def find(data: bytes) -> ProbePoints:
    """The probe points in a xen-privcmd module file, or NotCertain saying why."""
    try:
        module = Module(data)
        fn = module.function(FUNCTION)
        if fn is None:
            raise NotCertain(f"no function {FUNCTION} in the module")
        text = module.sections[fn.section]
        code = module.bytes_of(text)
        relocs = module.relocations(text)
        alt = module.places(ALTERNATIVES, text)
    except NotAModule as e:
        raise NotCertain(str(e)) from None
    except IndexError:
        raise NotCertain(f"{FUNCTION}'s section is missing") from None
    lo, hi = fn.value, fn.value + fn.size
    if not 0 <= lo < hi <= len(code):
        raise NotCertain(f"{FUNCTION} lies outside its section")
    inside = [r for r in relocs if lo <= r.offset < hi]
    at = {r.offset: r for r in inside}
    sites = [_site(code, at, r, lo, hi, alt) for r in inside if _is_call_reloc(code, r)]
    sites += [_indirect_site(code, at, r, lo, hi, alt) for r in inside
              if r.symbol.name == HYPERCALL_PAGE and r.type == R_X86_64_32S]
    if not sites:
        raise NotCertain(f"no hypercall in {FUNCTION}: neither {STATIC_CALL} nor "
                         f"{HYPERCALL_PAGE} is called")
    path = "static_call" if any(r.symbol.name == STATIC_CALL for r in inside) \
        else "hypercall_page"
    dynamic = [s for s in sites if s.op is None]
    if len(dynamic) != 1:
        raise NotCertain(f"{len(dynamic)} hypercall sites with the caller's op in "
                         f"{FUNCTION} (privcmd_call is one)")
    dm = [s for s in sites if s.op == DM_OP]
    unknown = [s for s in sites if s.op not in (None, DM_OP, MEMORY_OP)]
    if unknown:
        raise NotCertain(f"unexpected hypercall {unknown[0].op} in {FUNCTION}")
    if dynamic[0].probe < 0:
        raise NotCertain("the HYPERCALL site is not followed by the narrowing to int")
    dm_site = dm[0] if len(dm) == 1 and dm[0].probe >= 0 else None
    return ProbePoints(fn.size, dynamic[0].probe,
                       None if dm_site is None else dm_site.probe,
                       module.build_id(), path,
                       request_slot(code, at, dynamic[0].call, lo),
                       None if dm_site is None else dm_domain_slot(code, at, dm_site.call, lo))


# privcmd_call()'s register variables (arch/x86/include/asm/xen/hypercall.h@v6.1:
# __HYPERCALL_DECLS and privcmd_call: op in %rax, arg1-5 in %rdi, %rsi, %rdx, %r10,
# %r8; the same in @v5.10:200-255), by (REX.R, ModRM reg) -> index in struct
# privcmd_hypercall { __u64 op; __u64 arg[5]; } (include/uapi/xen/privcmd.h).
_REQUEST_REGS = {(0, 0): 0, (0, 7): 1, (0, 6): 2, (0, 2): 3, (1, 2): 4, (1, 0): 5}
REQUEST_FIELDS = 6
REQUEST_WINDOW = 96  # bytes before the call searched for the loads


def request_slot(code: bytes, at: dict[int, Relocation], call: int, lo: int) -> int | None:
    """The %rsp offset of the kernel's copy of the request at the HYPERCALL site, or
    None. Certain only when the code up to the call is exactly: the six loads of the
    hypercall's registers from consecutive quadwords at one %rsp offset (`mov
    disp(%rsp),%reg`, each register once, op first in memory), then only instructions
    that write neither %rsp nor memory (NOPs, STAC/CLAC, the movb to the per-CPU
    xen_in_preemptible_hcall, and on the hypercall-page path the bound check and
    `mov %eax,%eax; shl $5,%rax; add $hypercall_page,%rax` that pick the page entry).
    Then nothing between the loads and the probe point (where the call returns, or
    the narrowing, past what _narrowing() admits: the same kinds of instruction)
    moves %rsp or stores to the stack, so at the probe the quadwords still hold the
    registers Xen was given.
    The kernel runs without a red zone (arch/x86/Makefile: -mno-red-zone), so an
    interrupt never writes above %rsp."""
    found: set[int] = set()
    for start in range(max(lo, call - REQUEST_WINDOW), call):
        slot = _loads_then_gap(code, at, start, call)
        if slot is not None:
            found.add(slot)
    return found.pop() if len(found) == 1 else None


def _load(code: bytes, pc: int) -> tuple[int, int, int] | None:
    """`mov disp(%rsp),%r64` at pc (REX.W [REX.R] 8b, ModRM mod 01/10 rm 100, SIB 24):
    (length, field index, displacement), else None."""
    b = code[pc:pc + 8]
    if len(b) < 5 or b[0] not in (0x48, 0x4C) or b[1] != 0x8B or b[3] != 0x24:
        return None
    mod, reg, rm = b[2] >> 6, (b[2] >> 3) & 7, b[2] & 7
    field = _REQUEST_REGS.get((b[0] >> 2 & 1, reg))
    if rm != 4 or field is None or mod not in (1, 2):
        return None
    if mod == 1:
        return 5, field, b[4]
    if len(b) < 8:
        return None
    return 8, field, int(struct.unpack_from("<i", b, 4)[0])


def _gap(code: bytes, at: dict[int, Relocation], pc: int) -> int:
    """Length of an instruction that may sit between the loads and the call, 0 if
    none (see request_slot())."""
    b = code[pc:pc + 4]
    if b[:1] in NOPS:
        return 1
    if b[:3] in UACCESS:
        return 3
    if b[:3] == b"\x65\xc6\x05" and _reloc_to(at, pc + 3, PREEMPTIBLE):
        return 8
    if b[:3] == b"\x83\xf8\x7f":       # cmp $0x7f,%eax
        return 3
    if b[:2] == b"\x0f\x87":            # ja rel32 (to the -EINVAL path, off the probe's)
        return 6
    if b[:2] == b"\x89\xc0":            # mov %eax,%eax
        return 2
    if b == b"\x48\xc1\xe0\x05":       # shl $5,%rax
        return 4
    r = at.get(pc + 2)
    if b[:2] == b"\x48\x05" and r is not None and r.symbol.name == HYPERCALL_PAGE \
            and r.type == R_X86_64_32S:
        return 6                         # add $hypercall_page,%rax
    return 0


def _loads_then_gap(code: bytes, at: dict[int, Relocation], pc: int, call: int
                    ) -> int | None:
    disp: dict[int, int] = {}
    while pc < call:
        got = _load(code, pc)
        if got is None:
            break
        n, field, d = got
        if field in disp:
            return None
        disp[field] = d
        pc += n
    if len(disp) != REQUEST_FIELDS:
        return None
    while pc < call:
        n = _gap(code, at, pc)
        if not n:
            return None
        pc += n
    base = disp[0]
    if pc != call or any(disp[i] != base + 8 * i for i in range(REQUEST_FIELDS)):
        return None
    return base


def dm_domain_slot(code: bytes, at: dict[int, Relocation], call: int, lo: int
                   ) -> int | None:
    """The %rsp offset of the domid_t DM_OP's hypercall is given, or None.
    HYPERVISOR_dm_op(dom, nr_bufs, bufs) takes it in %rdi (hypercall.h@v6.1:503-508,
    _hypercall3), and privcmd_ioctl_dm_op() passes its own copy's `kdata.dom`
    (drivers/xen/privcmd.c@v6.1). Certain only when the code up to the call is
    exactly `movzwl disp(%rsp),%edi`, then only instructions that write neither %rdi,
    %rsp nor memory (request_slot()'s, `mov $imm32,%eax` and a 64-bit register move
    into %rdx): seen as `movzwl 0x60(%rsp),%edi` in 6.1.0-57, 0x50 in 5.10.0-32 and
    6.12.118. From the call to the probe, _narrowing() admits nothing that writes the
    stack, and Xen is given a buffer array elsewhere, never this frame."""
    found: set[int] = set()
    for start in range(max(lo, call - REQUEST_WINDOW), call):
        got = _load_domain(code, start)
        if got is None:
            continue
        pc = start + got[0]
        while pc < call:
            n = _gap(code, at, pc) or _dm_gap(code, pc)
            if not n:
                break
            pc += n
        if pc == call:
            found.add(got[1])
    return found.pop() if len(found) == 1 else None


def _load_domain(code: bytes, pc: int) -> tuple[int, int] | None:
    """`movzwl disp(%rsp),%edi` at pc (0f b7, ModRM reg 111 rm 100 mod 01/10, SIB 24):
    (length, displacement), else None."""
    b = code[pc:pc + 8]
    if len(b) >= 5 and b[:2] == b"\x0f\xb7" and b[3] == 0x24:
        if b[2] == 0x7C:
            return 5, b[4]
        if b[2] == 0xBC and len(b) == 8:
            return 8, int(struct.unpack_from("<i", b, 4)[0])
    return None


def _dm_gap(code: bytes, pc: int) -> int:
    """Beside _gap()'s: `mov $imm32,%eax` (the op) and `mov %r64,%rdx` (the buffers:
    REX.W 89 /r, mod 11, rm 010, REX.B clear), which leave %rdi and memory alone."""
    b = code[pc:pc + 3]
    if b[:1] == bytes([MOV_EAX_IMM]) and len(code) >= pc + 5:
        return 5
    if len(b) == 3 and b[0] in (0x48, 0x4C) and b[1] == 0x89 and b[2] & 0xC7 == 0xC2:
        return 3
    return 0


def _is_call_reloc(code: bytes, r: Relocation) -> bool:
    return (r.type in CALL_RELOCS and r.offset >= 1 and code[r.offset - 1] == 0xE8
            and r.symbol.name in (STATIC_CALL, HYPERCALL_PAGE))


def _site(code: bytes, at: dict[int, Relocation], r: Relocation, lo: int, hi: int,
          alt: frozenset[int]) -> Site:
    call = r.offset - 1
    if r.symbol.name == HYPERCALL_PAGE:
        # call hypercall_page+32*op: the PC-relative addend is the entry minus 4.
        entry = r.addend + 4
        if entry % HYPERCALL_ENTRY:
            raise NotCertain(f"a call into the middle of {HYPERCALL_PAGE} entry")
        op: int | None = entry // HYPERCALL_ENTRY
    else:
        op = _loaded_op(code, call, lo)
    return Site(call, op, _probe(code, at, call, call + 5, lo, hi, alt))


def _indirect_site(code: bytes, at: dict[int, Relocation], r: Relocation, lo: int,
                   hi: int, alt: frozenset[int]) -> Site:
    """`add $hypercall_page,%rax` (48 05 imm32) directly followed by `call *%rax`
    (ff d0): privcmd_call() on the hypercall-page path; op is the caller's."""
    add = r.offset - 2
    if add < lo or code[add:add + 2] != b"\x48\x05" or r.addend != 0:
        raise NotCertain(f"a reference to {HYPERCALL_PAGE} that is not add $page,%rax")
    call = add + 6
    if code[call:call + 2] != b"\xff\xd0":
        raise NotCertain(f"add ${HYPERCALL_PAGE},%rax not followed by call *%rax")
    return Site(call, None, _probe(code, at, call, call + 2, lo, hi, alt))


def _loaded_op(code: bytes, call: int, lo: int) -> int | None:
    """The hypercall a static-call site issues when the code loads it as a constant
    shortly before the call (`mov $op,%eax`, then only instructions that leave %eax
    alone), else None (privcmd_call() loads the caller's op from memory)."""
    for start in range(call - 5, max(lo, call - 5 - MAX_GAP) - 1, -1):
        if code[start] == MOV_EAX_IMM and _leaves_eax(code, start + 5, call):
            return int(struct.unpack_from("<I", code, start + 1)[0])
    return None


def _leaves_eax(code: bytes, pc: int, end: int) -> bool:
    """Whether code[pc:end] decodes exactly as NOPs, STAC/CLAC and register-to-register
    64-bit moves whose destination is not %rax."""
    while pc < end:
        b = code[pc:pc + 3]
        if b[:1] in NOPS:
            pc += 1
        elif b in UACCESS:
            pc += 3
        elif (len(b) == 3 and b[0] in (0x48, 0x49, 0x4C, 0x4D) and b[1] == 0x89
              and b[2] >> 6 == 3 and not (b[2] & 7 == 0 and not b[0] & 1)):
            pc += 3  # mov %r64,%r64 (89 /r: rm is the destination; REX.B extends it)
        else:
            return False
    return pc == end


def _probe(code: bytes, at: dict[int, Relocation], call: int, ret: int, lo: int, hi: int,
           alt: frozenset[int]) -> int:
    """Offset from the function start of where the call at `call` returns, `ret`,
    when the narrowing follows; of the narrowing when the call is itself the original
    of an alternative (5.10.0-32's `call *%rax` is CALL_NOSPEC, padded with NOPs to
    the length of its retpoline replacement, nospec-branch.h@v5.10): patched, it
    returns elsewhere and `ret` may fall inside an instruction. -1 with no narrowing.
    Only sites that start inside the call are seen (.altinstructions gives starts;
    the lengths are in version-specific struct alt_instr layouts, not read here).
    Static calls (.static_call_sites) are patched too, but keep a 5-byte call."""
    narrowing = _narrowing(code, at, ret, lo, hi)
    if narrowing < 0:
        return -1
    return narrowing if any(call <= a < ret for a in alt) else ret - lo


def _narrowing(code: bytes, at: dict[int, Relocation], pc: int, lo: int, hi: int) -> int:
    """Offset from the function start of the instruction that narrows %rax after a call
    returning at `pc`; -1 when something unknown comes first."""
    while pc < hi:
        b = code[pc:pc + 3]
        if b[:1] in NOPS:
            pc += 1
        elif b in UACCESS:
            pc += 3
        elif b == b"\x65\xc6\x05" and _reloc_to(at, pc + 3, PREEMPTIBLE):
            pc += 8  # movb $imm8,%gs:xen_in_preemptible_hcall(%rip)
        elif b[:2] == b"\x48\x98":
            return pc - lo  # cltq
        elif b[:1] in (b"\x48", b"\x4c") and b[1:2] == b"\x63" and b[2] & 0xC7 == 0xC0:
            return pc - lo  # movslq %eax,%reg
        else:
            return -1
    return -1


def _reloc_to(at: dict[int, Relocation], offset: int, name: str) -> bool:
    r = at.get(offset)
    return r is not None and r.symbol.name == name and r.type == R_X86_64_PC32
