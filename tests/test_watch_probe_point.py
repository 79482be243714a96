# SPDX-License-Identifier: GPL-2.0-only
"""The watch's probe-point finder on the real xen-privcmd modules of Debian's bullseye
(5.10.0-32, the hypercall-page path), bookworm (6.1) and trixie (6.12) kernels.

The expected offsets come from an independent reading of the same file: binutils'
objdump disassembly and relocations (never from the finder's own output), and, for the
builds the reference measured live (shared/reference/privcmd-watch.md, section 2),
from those measurements."""

from __future__ import annotations

import lzma
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.realxen.probe_point import alternatives as readelf_alternatives
from xenprobe.watch import probe_point
from xenprobe.watch.elf64 import Module

# Measured on real Xen in the reference (build -> (HYPERCALL, DM_OP) offsets of the
# narrowings; the watch probes where the call returns, a few NOPs before).
# Where the watch probes, as the real-Xen tier armed them (tests/realxen/test_watch.py:
# the kernel accepted each, and optimized those it names), pinned here so that a
# change of rule shows: 5.10.0-32's HYPERCALL on the narrowing (its call is patched).
ARMED = {"5.10.223-1": (0x269, 0x9DA), "6.1.192-3": (0x24E, 0xB12),
         "6.12.118-1": (0x667, 0xC00)}
MEASURED = {"5.10.223-1": (0x269, 0x9E5), "6.1.192-3": (0x251, 0xB15),
            "6.12.118-1": (0x66A, 0xC03)}


@pytest.fixture(scope="module")
def modules() -> dict[str, tuple[str, str, Path]]:
    from tests.realxen import assets

    try:
        return assets.privcmd_modules()
    except assets.AssetError as e:
        pytest.skip(f"Debian kernel packages not available: {str(e)[:300]}")


def _elf(path: Path) -> bytes:
    raw = path.read_bytes()
    return lzma.decompress(raw) if path.suffix == ".xz" else raw


_INSN = re.compile(r"^\s*([0-9a-f]+):\s+(.*)$")
_RELOC = re.compile(r"^\s*([0-9a-f]+): (R_X86_64_\w+)\s+(\S+)$")


def objdump_expectation(elf: Path) -> tuple[tuple[int, int | None], tuple[int, int | None]]:
    """From objdump's listing of privcmd_ioctl, (HYPERCALL, DM_OP) offsets of the
    narrowing, the movslq %eax that follows (past nops, clac and the movb to
    xen_in_preemptible_hcall) a call of the hypercall, where the call's op came from
    memory (privcmd_call) or is dm_op (mov $0x29,%eax / hypercall_page+0x520); and
    where the probe goes: the instruction right after that call, or the narrowing
    where readelf lists the call in .altinstructions (the kernel may patch it)."""
    out = subprocess.run(["objdump", "-d", "-r", "--no-show-raw-insn", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"^([0-9a-f]+) <privcmd_ioctl>:\n(.*?)(?:\n\n|\Z)", out, re.S | re.M)
    assert m, "objdump lists no privcmd_ioctl"
    start = int(m[1], 16)
    insns: list[tuple[int, str, str]] = []  # (address, text, relocation target)
    for line in m[2].splitlines():
        if r := _RELOC.match(line):
            a, t, target = insns[-1]
            insns[-1] = (a, t, r[3])
        elif i := _INSN.match(line):
            insns.append((int(i[1], 16), " ".join(i[2].split()), ""))
    hypercall = dm_op = None
    returns: dict[str, int] = {}
    patched = readelf_alternatives(elf)
    for n, (_a, text, target) in enumerate(insns):
        is_call = text == "call *%rax" or (text.startswith("call") and (
            target.startswith("__SCT__xen_hypercall") or target.startswith("hypercall_page")))
        if not is_call:
            continue
        k = n + 1
        while k < len(insns) and (insns[k][1] in ("nop", "clac")
                                  or "xen_in_preemptible_hcall" in insns[k][2]):
            k += 1
        if not (k < len(insns) and insns[k][1].startswith("movslq %eax,")):
            continue
        before = [t for _, t, _ in insns[max(0, n - 8):n] if t not in ("nop", "stac")]
        if target == "hypercall_page+0x51c" or "mov $0x29,%eax" in before:
            dm_op = insns[k][0] - start
            returns["dm_op"] = insns[k if insns[n][0] in patched else n + 1][0] - start
        elif text == "call *%rax" or any(re.match(r"mov 0x\w+\(%rsp\),%rax", t)
                                         for t in before[-2:]):
            hypercall = insns[k][0] - start
            returns["hypercall"] = insns[k if insns[n][0] in patched else n + 1][0] - start
    assert hypercall is not None, "objdump shows no HYPERCALL site"
    return (hypercall, dm_op), (returns["hypercall"], returns.get("dm_op"))


def readelf_build_id(elf: Path) -> bytes:
    out = subprocess.run(["readelf", "-n", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert m
    return bytes.fromhex(m[1])


@pytest.mark.skipif(shutil.which("objdump") is None, reason="binutils not installed")
@pytest.mark.parametrize("family", ["bullseye", "bookworm", "trixie"])
def test_finds_the_offsets_objdump_shows(family: str, modules: dict[str, tuple[str, str, Path]],
                                         tmp_path: Path) -> None:
    package, version, path = modules[family]
    elf = tmp_path / "xen-privcmd.ko"
    elf.write_bytes(_elf(path))
    found = probe_point.find(elf.read_bytes())
    narrowings, returns = objdump_expectation(elf)
    print(f"{package} {version}: HYPERCALL +{found.hypercall:#x} DM_OP "
          f"+{(found.dm_op or 0):#x} ({found.path}), narrowings {narrowings}")
    assert (found.hypercall, found.dm_op) == returns
    assert found.build_id == readelf_build_id(elf)
    assert found.path == ("hypercall_page" if family == "bullseye" else "static_call")
    if version in MEASURED:
        assert narrowings == MEASURED[version]
    if version in ARMED:
        assert (found.hypercall, found.dm_op) == ARMED[version]


def _hypercall_site_bytes(data: bytes) -> tuple[int, int]:
    """File offset of privcmd_ioctl's HYPERCALL narrowing instruction (past the NOPs
    from where the finder says the call returns, via the symbol table), and its
    section's file offset."""
    m = Module(data)
    fn = m.function("privcmd_ioctl")
    assert fn is not None
    text = m.sections[fn.section]
    at = text.offset + fn.value + probe_point.find(data).hypercall
    while data[at] == 0x90:
        at += 1
    return at, text.offset


def test_refuses_when_the_narrowing_is_not_next(modules: dict[str, tuple[str, str, Path]]
                                                ) -> None:
    data = bytearray(_elf(modules["bookworm"][2]))
    at, _ = _hypercall_site_bytes(bytes(data))
    assert data[at + 1] == 0x63
    data[at:at + 3] = b"\x48\x89\xc5"  # mov %rax,%rbp: not a narrowing
    with pytest.raises(probe_point.NotCertain):
        probe_point.find(bytes(data))


def test_refuses_an_unknown_instruction_before_the_narrowing(
        modules: dict[str, tuple[str, str, Path]]) -> None:
    for family in ("bullseye", "bookworm"):
        data = bytearray(_elf(modules[family][2]))
        at, _ = _hypercall_site_bytes(bytes(data))
        # The byte before the narrowing is one of the NOPs after the call: make it an
        # instruction the finder does not know (a one-byte `cld`).
        assert data[at - 1] == 0x90
        data[at - 1] = 0xFC
        with pytest.raises(probe_point.NotCertain):
            probe_point.find(bytes(data))


def test_refuses_what_is_not_a_module() -> None:
    for data in (b"", b"\x7fELF" + b"\0" * 60, b"not an elf file at all" * 10):
        with pytest.raises(probe_point.NotCertain):
            probe_point.find(data)


def test_refuses_a_truncated_module(modules: dict[str, tuple[str, str, Path]]) -> None:
    data = _elf(modules["bookworm"][2])
    # Debian's modules end in a signature (~Module signature appended~) after the ELF
    # data: cut inside the ELF file itself, the last cut inside its section table.
    shoff = int.from_bytes(data[0x28:0x30], "little")
    shend = shoff + int.from_bytes(data[0x3A:0x3C], "little") * int.from_bytes(
        data[0x3C:0x3E], "little")
    for cut in (100, shoff // 2, shend - 10):
        with pytest.raises(probe_point.NotCertain):
            probe_point.find(data[:cut])


# privcmd_call()'s registers (arch/x86/include/asm/xen/hypercall.h@v6.1 privcmd_call)
# in struct privcmd_hypercall's order: op, arg[0..4].
_HYPERCALL_REGS = ("%rax", "%rdi", "%rsi", "%rdx", "%r10", "%r8")


def objdump_request_slot(elf: Path) -> int:
    """From objdump's listing: the %rsp offsets the six hypercall registers are loaded
    from right before the HYPERCALL site's call (past nops, the movb to
    xen_in_preemptible_hcall and 5.10's page-entry arithmetic); op's, checked to be
    followed by arg[0..4]'s quadwords."""
    out = subprocess.run(["objdump", "-d", "-r", "--no-show-raw-insn", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"^[0-9a-f]+ <privcmd_ioctl>:\n(.*?)(?:\n\n|\Z)", out, re.S | re.M)
    assert m
    texts = [" ".join(i[2].split()) for line in m[1].splitlines()
             if (i := _INSN.match(line)) and not _RELOC.match(line)]
    slots = []
    for n, text in enumerate(texts):
        if not (text == "call *%rax" or text.startswith("call")):
            continue
        loads = {}
        for t in reversed(texts[max(0, n - 16):n]):
            if lm := re.fullmatch(r"mov (0x[0-9a-f]+)\(%rsp\),(%r\w+)", t):
                loads.setdefault(lm[2], int(lm[1], 16))
        if set(loads) == set(_HYPERCALL_REGS):
            slots.append([loads[r] for r in _HYPERCALL_REGS])
    assert len(slots) == 1, slots  # privcmd_call is the one such site
    base = slots[0][0]
    assert slots[0] == [base + 8 * i for i in range(6)]
    return base


@pytest.mark.skipif(shutil.which("objdump") is None, reason="binutils not installed")
@pytest.mark.parametrize("family", ["bullseye", "bookworm", "trixie"])
def test_finds_the_kernels_copy_of_the_request(
        family: str, modules: dict[str, tuple[str, str, Path]], tmp_path: Path) -> None:
    elf = tmp_path / "xen-privcmd.ko"
    elf.write_bytes(_elf(modules[family][2]))
    found = probe_point.find(elf.read_bytes())
    print(f"{family}: request at {found.request:#x}(%rsp)" if found.request is not None
          else f"{family}: no request slot")
    assert found.request == objdump_request_slot(elf)


def _function_body(data: bytes) -> tuple[int, bytes]:
    """privcmd_ioctl's file offset and bytes in a module file."""
    m = Module(data)
    fn = m.function("privcmd_ioctl")
    assert fn is not None
    start = m.sections[fn.section].offset + fn.value
    return start, data[start:start + fn.size]

def test_no_request_slot_when_a_load_is_not_one(modules: dict[str, tuple[str, str, Path]]
                                                 ) -> None:
    """A register of the hypercall not loaded from the copy: no slot, the offsets stay."""
    data = bytearray(_elf(modules["bookworm"][2]))
    start, body = _function_body(bytes(data))
    # mov 0x88(%rsp),%rdi (48 8b bc 24 88 00 00 00): arg[0]'s load in 6.1.0-57.
    load = bytes.fromhex("488bbc2488000000")
    assert body.count(load) == 1
    at = start + body.index(load)
    data[at:at + 8] = bytes.fromhex("4889df") + b"\x90" * 5  # mov %rbx,%rdi; nops
    found = probe_point.find(bytes(data))
    assert found.request is None and found.hypercall == probe_point.find(
        _elf(modules["bookworm"][2])).hypercall


def objdump_dm_domain_slot(elf: Path) -> int:
    """From objdump's listing: the %rsp offset %edi (the domain) is loaded from, with
    `movzwl`, among the few instructions before the DM_OP site's call (the one that
    loads $0x29 into %eax, or calls hypercall_page's entry 41, +0x520 less 4)."""
    out = subprocess.run(["objdump", "-d", "-r", "--no-show-raw-insn", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"^[0-9a-f]+ <privcmd_ioctl>:\n(.*?)(?:\n\n|\Z)", out, re.S | re.M)
    assert m
    lines = m[1].splitlines()
    slots = []
    for n, line in enumerate(lines):
        i = _INSN.match(line)
        if _RELOC.match(line) or not i or i[2].split()[0] != "call":
            continue
        reloc = _RELOC.match(lines[n + 1]) if n + 1 < len(lines) else None
        window = [" ".join(x[2].split()) for x in map(_INSN.match, lines[max(0, n - 12):n])
                  if x and not _RELOC.match(x[0])]
        if "mov $0x29,%eax" in window or (reloc and reloc[3] == "hypercall_page+0x51c"):
            slots += [int(lm[1], 16) for t in window
                      if (lm := re.fullmatch(r"movzwl (0x[0-9a-f]+)\(%rsp\),%edi", t))]
    assert len(slots) == 1, slots
    return slots[0]


@pytest.mark.skipif(shutil.which("objdump") is None, reason="binutils not installed")
@pytest.mark.parametrize("family", ["bullseye", "bookworm", "trixie"])
def test_finds_the_domain_dm_op_is_given(
        family: str, modules: dict[str, tuple[str, str, Path]], tmp_path: Path) -> None:
    elf = tmp_path / "xen-privcmd.ko"
    elf.write_bytes(_elf(modules[family][2]))
    found = probe_point.find(elf.read_bytes())
    print(f"{family}: DM_OP's domain at {found.dm_domain:#x}(%rsp)"
          if found.dm_domain is not None else f"{family}: no DM_OP domain slot")
    assert found.dm_domain == objdump_dm_domain_slot(elf)


def test_no_dm_domain_slot_when_something_writes_the_domain_first(
        modules: dict[str, tuple[str, str, Path]]) -> None:
    """An instruction between the load and the call that the finder does not know to
    leave %edi and memory alone: no slot; the probe offsets stay."""
    data = bytearray(_elf(modules["bookworm"][2]))
    start, body = _function_body(bytes(data))
    # movzwl 0x60(%rsp),%edi; nop; nop; nop: DM_OP's domain in 6.1.0-57.
    load = bytes.fromhex("0fb77c2460909090")
    assert body.count(load) == 1
    at = start + body.index(load) + 5
    data[at:at + 3] = bytes.fromhex("89df90")  # mov %ebx,%edi; nop
    found = probe_point.find(bytes(data))
    before = probe_point.find(_elf(modules["bookworm"][2]))
    assert before.dm_domain == 0x60
    assert found.dm_domain is None and (found.hypercall, found.dm_op) == (
        before.hypercall, before.dm_op)


def test_probe_stays_on_the_narrowing_when_the_call_is_patched(
        modules: dict[str, tuple[str, str, Path]]) -> None:
    """An alternatives site at the HYPERCALL's call (bookworm's STAC entry, .text+0xc46
    in 6.1.0-57, pointed at the call, 0xc49): the kernel may patch the call into
    something longer, so where it returns is not certain; the probe goes on the
    narrowing."""
    data = bytearray(_elf(modules["bookworm"][2]))
    m = Module(bytes(data))
    fn = m.function("privcmd_ioctl")
    rela = m.section(".rela.altinstructions")
    assert fn is not None and rela is not None
    before = probe_point.find(bytes(data))
    stac, call = fn.value + before.hypercall - 8, fn.value + before.hypercall - 5
    hits = [at for at in range(rela.offset, rela.offset + rela.size, 24)
            if int.from_bytes(data[at + 16:at + 24], "little", signed=True) == stac]
    assert len(hits) == 1 and data[m.sections[fn.section].offset + call] == 0xE8
    data[hits[0] + 16:hits[0] + 24] = call.to_bytes(8, "little", signed=True)
    after = probe_point.find(bytes(data))
    assert (before.hypercall, after.hypercall, after.dm_op) == (0x24E, 0x251, before.dm_op)


def test_refuses_a_section_table_beyond_any_offset(
        modules: dict[str, tuple[str, str, Path]]) -> None:
    """e_shoff damaged to a value no file offset can be (2**63): a refusal, not an
    OverflowError from struct (found by flipping bytes of 6.1.0-57's module)."""
    data = bytearray(_elf(modules["bookworm"][2]))
    data[0x28:0x30] = (1 << 63).to_bytes(8, "little")
    with pytest.raises(probe_point.NotCertain):
        probe_point.find(bytes(data))
