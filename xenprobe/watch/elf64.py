# SPDX-License-Identifier: GPL-2.0-only
"""The parts of a 64-bit little-endian relocatable ELF file (a kernel module) that the
probe-point finder reads: sections, symbols, RELA relocations and the GNU build-id note.

Pure: bytes in, tuples out. Layouts from the System V gABI (elf.h: Elf64_Ehdr,
Elf64_Shdr, Elf64_Sym, Elf64_Rela, Elf64_Nhdr).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ET_REL = 1
EM_X86_64 = 62
SHT_SYMTAB = 2
SHT_RELA = 4
SHT_NOTE = 7
SHT_NOBITS = 8
STT_FUNC = 2
NT_GNU_BUILD_ID = 3


class NotAModule(ValueError):
    """Not a 64-bit little-endian x86-64 relocatable ELF file, or a damaged one."""


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int
    offset: int
    size: int
    link: int
    info: int


@dataclass(frozen=True)
class Symbol:
    name: str
    type: int
    section: int   # st_shndx
    value: int     # offset in its section (relocatable file)
    size: int


@dataclass(frozen=True)
class Relocation:
    offset: int    # where in the target section
    type: int      # R_X86_64_*
    symbol: Symbol
    addend: int


class Module:
    """One relocatable ELF file held in memory."""

    def __init__(self, data: bytes) -> None:
        if data[:6] != b"\x7fELF\x02\x01" or len(data) < 64:
            raise NotAModule("not a 64-bit little-endian ELF file")
        e_type, e_machine = struct.unpack_from("<HH", data, 16)
        if e_type != ET_REL or e_machine != EM_X86_64:
            raise NotAModule(f"not an x86-64 kernel module (type {e_type}, machine "
                             f"{e_machine})")
        self.data = data
        try:
            shoff = struct.unpack_from("<Q", data, 0x28)[0]
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
            raw = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                   for i in range(shnum)]
            names = raw[shstrndx][4]
            self.sections = tuple(
                Section(i, self._cstr(names + r[0]), r[1], r[4], r[5], r[6], r[7])
                for i, r in enumerate(raw))
        except (struct.error, IndexError, ValueError, UnicodeDecodeError) as e:
            raise NotAModule(f"damaged section table: {e}") from None
        except OverflowError:
            raise NotAModule("damaged section table: an offset past the end of any "
                             "file") from None
        for s in self.sections:
            if s.type != SHT_NOBITS and s.offset + s.size > len(data):
                raise NotAModule(f"section {s.name or s.index} runs past the end of "
                                 "the file (truncated?)")
        self._symbols: tuple[Symbol, ...] | None = None

    def _cstr(self, at: int) -> str:
        end = self.data.index(b"\0", at)
        return self.data[at:end].decode()

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def bytes_of(self, s: Section) -> bytes:
        return self.data[s.offset:s.offset + s.size]

    def symbols(self) -> tuple[Symbol, ...]:
        if self._symbols is None:
            tab = next((s for s in self.sections if s.type == SHT_SYMTAB), None)
            if tab is None:
                raise NotAModule("no symbol table (a stripped module)")
            strings = self.sections[tab.link].offset
            out = []
            try:
                for at in range(tab.offset, tab.offset + tab.size, 24):
                    name, info, _other, shndx, value, size = struct.unpack_from(
                        "<IBBHQQ", self.data, at)
                    out.append(Symbol(self._cstr(strings + name), info & 0xF, shndx,
                                      value, size))
            except (struct.error, ValueError, UnicodeDecodeError) as e:
                raise NotAModule(f"damaged symbol table: {e}") from None
            self._symbols = tuple(out)
        return self._symbols

    def function(self, name: str) -> Symbol | None:
        return next((s for s in self.symbols() if s.name == name and s.type == STT_FUNC),
                    None)

    def relocations(self, target: Section) -> tuple[Relocation, ...]:
        """The RELA relocations that apply to section `target`."""
        syms = self.symbols()
        out = []
        for s in self.sections:
            if s.type != SHT_RELA or s.info != target.index:
                continue
            try:
                for at in range(s.offset, s.offset + s.size, 24):
                    offset, info, addend = struct.unpack_from("<QQq", self.data, at)
                    out.append(Relocation(offset, info & 0xFFFFFFFF, syms[info >> 32],
                                          addend))
            except (struct.error, IndexError) as e:
                raise NotAModule(f"damaged relocations: {e}") from None
        return tuple(sorted(out, key=lambda r: r.offset))

    def places(self, source: str, target: Section) -> frozenset[int]:
        """The offsets in `target` (S+A) that the relocations of section `source` point
        at, when they are against symbols of `target`; empty when there is no such
        section."""
        src = self.section(source)
        if src is None:
            return frozenset()
        return frozenset(r.symbol.value + r.addend for r in self.relocations(src)
                         if r.symbol.section == target.index)

    def build_id(self) -> bytes | None:
        """The NT_GNU_BUILD_ID note's descriptor, if the file has one."""
        for s in self.sections:
            if s.type == SHT_NOTE:
                found = note_build_id(self.bytes_of(s))
                if found is not None:
                    return found
        return None


def note_build_id(notes: bytes) -> bytes | None:
    """The GNU build id in a run of ELF notes (a .note section, or the loaded module's
    /sys/module/NAME/notes/.note.gnu.build-id, which is the same bytes)."""
    at = 0
    while at + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, at)
        name_at = at + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        end = desc_at + (descsz + 3) // 4 * 4
        if end > len(notes):
            return None
        if ntype == NT_GNU_BUILD_ID and notes[name_at:name_at + namesz] == b"GNU\0":
            return notes[desc_at:desc_at + descsz]
        at = end
    return None
