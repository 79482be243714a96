# SPDX-License-Identifier: GPL-2.0-only
"""The loaded xen_privcmd module's file, proved to be the one running: its
NT_GNU_BUILD_ID must equal the loaded module's (/sys/module/xen_privcmd/notes/
.note.gnu.build-id, which the kernel exports from the module's own notes:
kernel/module.c add_notes_attrs). A file that differs is never used: its offsets
would land on some other instruction boundary, which the kernel accepts."""

from __future__ import annotations

import lzma
from pathlib import Path

from xenprobe.watch import probe_point
from xenprobe.watch.elf64 import note_build_id
from xenprobe.watch.paths import Paths

MAX_SIZE = 16 << 20  # xen-privcmd.ko is about 300 KB with its debug-free symbols


class CannotLocate(Exception):
    """No module file whose build id matches the loaded module."""


def loaded_build_id(paths: Paths) -> bytes:
    if not paths.sys_module.is_dir():
        raise CannotLocate("the xen_privcmd module is not loaded (no "
                           f"{paths.sys_module}); built into this kernel, or not a Xen dom0")
    try:
        found = note_build_id(paths.build_id_note.read_bytes())
    except OSError as e:
        raise CannotLocate(f"cannot read {paths.build_id_note}: {e.strerror}") from None
    if found is None:
        raise CannotLocate(f"{paths.build_id_note} holds no GNU build id")
    return found


def module_path(paths: Paths) -> Path:
    """The file modprobe loads for xen_privcmd, as modules.dep names it."""
    if paths.module_override is not None:
        return paths.module_override
    dep = paths.modules_dir / "modules.dep"
    try:
        text = dep.read_text(errors="replace")
    except OSError as e:
        raise CannotLocate(f"cannot read {dep}: {e.strerror}") from None
    for line in text.splitlines():
        name = line.split(":", 1)[0]
        base = name.rsplit("/", 1)[-1]
        if base.split(".ko", 1)[0].replace("-", "_") == paths.sys_module.name:
            return paths.modules_dir / name
    raise CannotLocate(f"{dep} does not list xen-privcmd")


def read_module(path: Path) -> bytes:
    """The module's ELF bytes (.ko, or .ko.xz as trixie ships them)."""
    try:
        if path.stat().st_size > MAX_SIZE:
            raise CannotLocate(f"{path} is too large for a kernel module")
        raw = path.read_bytes()
    except OSError as e:
        raise CannotLocate(f"cannot read {path}: {e.strerror}") from None
    if path.suffix == ".xz":
        try:
            return lzma.decompress(raw)
        except lzma.LZMAError as e:
            raise CannotLocate(f"{path}: not a valid xz file ({e})") from None
    if path.suffix in (".zst", ".gz"):
        raise CannotLocate(f"{path}: {path.suffix} modules are not read (Debian uses "
                           ".ko and .ko.xz)")
    return raw


def probe_points(paths: Paths) -> tuple[Path, probe_point.ProbePoints]:
    """The running module's probe points, or CannotLocate / probe_point.NotCertain."""
    loaded = loaded_build_id(paths)
    path = module_path(paths)
    found = probe_point.find(read_module(path))
    if found.build_id != loaded:
        raise CannotLocate(
            f"{path} is not the loaded module (build id "
            f"{(found.build_id or b'').hex() or 'none'}, loaded {loaded.hex()}): was the "
            "kernel package upgraded without a reboot?")
    return path, found
