# SPDX-License-Identifier: GPL-2.0-only
"""The SONAME of a shared library file, read from its ELF dynamic section.

A library named by path (not by SONAME through the loader) says which release it was
built for only here: file names can lie, the SONAME is what the loader binds to.
"""

from __future__ import annotations

import struct
from pathlib import Path

_ELF64_LE = b"\x7fELF\x02\x01"
SHT_DYNAMIC = 6
DT_NULL = 0
DT_SONAME = 14
MAX_SIZE = 64 << 20  # a libxenctrl is well under 1 MiB; refuse to read anything huge


def soname(path: Path) -> str | None:
    """DT_SONAME of a 64-bit little-endian ELF shared object; None if it has none or
    the file is not one."""
    try:
        if path.stat().st_size > MAX_SIZE:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    try:
        return _soname(data)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError):
        return None


def _soname(data: bytes) -> str | None:
    if not data.startswith(_ELF64_LE):
        return None
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    for _name, kind, _flags, _addr, offset, size, link, *_ in sections:
        if kind != SHT_DYNAMIC:
            continue
        strtab = sections[link][4]
        for pos in range(offset, offset + size, 16):
            tag, value = struct.unpack_from("<qQ", data, pos)
            if tag == DT_NULL:
                break
            if tag == DT_SONAME:
                start = strtab + value
                return data[start:data.index(b"\0", start)].decode("ascii")
    return None


ELFCLASS = {1: 32, 2: 64}


def elf_class(path: Path | str) -> int | None:
    """32 or 64: the word size an ELF file (or /proc/PID/exe, the running image) was
    built for, from its e_ident; None if it cannot be read or is not ELF."""
    try:
        with open(path, "rb") as f:
            ident = f.read(5)
    except OSError:
        return None
    if len(ident) < 5 or not ident.startswith(b"\x7fELF"):
        return None
    return ELFCLASS.get(ident[4])
