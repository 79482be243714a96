# SPDX-License-Identifier: GPL-2.0-only
"""Struct layouts, one table per ABI revision, with offsets as gdb `ptype /o` shows them.

Sources: xen/include/public/sysctl.h and domctl.h at each RELEASE tag (see
shared/reference/xen-abi.md sections 4 and 5). A layout decodes and encodes plain bytes;
the mock host packs its answers with the same tables the agent decodes with.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    fmt: str  # struct module code, little-endian: "H", "I", "Q", "B", "16s"

    @property
    def size(self) -> int:
        return struct.calcsize("<" + self.fmt)


@dataclass(frozen=True)
class Layout:
    name: str
    size: int
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    def decode(self, buf: bytes | memoryview, base: int = 0) -> dict[str, int | bytes]:
        if len(buf) < base + self.size:
            raise ValueError(f"{self.name} needs {self.size} bytes, got {len(buf) - base}")
        return {f.name: struct.unpack_from("<" + f.fmt, buf, base + f.offset)[0]
                for f in self.fields}

    def encode(self, values: Mapping[str, int | bytes]) -> bytes:
        unknown = set(values) - {f.name for f in self.fields}
        if unknown:
            raise KeyError(f"{self.name} has no field(s) {sorted(unknown)}")
        out = bytearray(self.size)
        for f in self.fields:
            if f.name in values:
                struct.pack_into("<" + f.fmt, out, f.offset, values[f.name])
        return bytes(out)


def _u32s(*names: str, start: int = 0) -> tuple[Field, ...]:
    return tuple(Field(n, start + 4 * i, "I") for i, n in enumerate(names))


_PHYSINFO_HEAD = _u32s(
    "threads_per_core", "cores_per_socket", "nr_cpus", "max_cpu_id",
    "nr_nodes", "max_node_id", "cpu_khz", "capabilities",
)

# struct xen_sysctl_physinfo, Xen 4.10-4.16 (sysctl interface 0x10-0x14).
PHYSINFO_4_10 = Layout("xen_sysctl_physinfo/4.10", 104, (
    *_PHYSINFO_HEAD,
    Field("total_pages", 32, "Q"),
    Field("free_pages", 40, "Q"),
    Field("scrub_pages", 48, "Q"),
    Field("outstanding_pages", 56, "Q"),
    Field("max_mfn", 64, "Q"),
    Field("hw_cap", 72, "32s"),
))

# Xen 4.17-4.22 (sysctl interface 0x15-0x16): arch_capabilities and pad moved the rest by 8.
PHYSINFO_4_17 = Layout("xen_sysctl_physinfo/4.17", 112, (
    *_PHYSINFO_HEAD,
    Field("arch_capabilities", 32, "I"),
    Field("pad", 36, "I"),
    Field("total_pages", 40, "Q"),
    Field("free_pages", 48, "Q"),
    Field("scrub_pages", 56, "Q"),
    Field("outstanding_pages", 64, "Q"),
    Field("max_mfn", 72, "Q"),
    Field("hw_cap", 80, "32s"),
))

# The first 96 bytes of struct xen_domctl_getdomaininfo are the same from 4.10 to 4.22.
_GETDOMAININFO_HEAD = (
    Field("domain", 0, "H"),
    Field("flags", 4, "I"),
    Field("tot_pages", 8, "Q"),
    Field("max_pages", 16, "Q"),
    Field("outstanding_pages", 24, "Q"),
    Field("shr_pages", 32, "Q"),
    Field("paged_pages", 40, "Q"),
    Field("shared_info_frame", 48, "Q"),
    Field("cpu_time", 56, "Q"),
    Field("nr_online_vcpus", 64, "I"),
    Field("max_vcpu_id", 68, "I"),
    Field("ssidref", 72, "I"),
    Field("handle", 76, "16s"),
    Field("cpupool", 92, "I"),
)

# Xen 4.11-4.14: x86 arch_config is {uint32 emulation_flags}, padded to 104.
GETDOMAININFO_4_11 = Layout("xen_domctl_getdomaininfo/4.11", 104, (
    *_GETDOMAININFO_HEAD,
    Field("emulation_flags", 96, "I"),
))

# Xen 4.15: arch_config gains misc_flags.
GETDOMAININFO_4_15 = Layout("xen_domctl_getdomaininfo/4.15", 104, (
    *_GETDOMAININFO_HEAD,
    Field("emulation_flags", 96, "I"),
    Field("misc_flags", 100, "I"),
))

# Xen 4.16-4.22: gpaddr_bits and pad2[7] inserted before arch_config.
GETDOMAININFO_4_16 = Layout("xen_domctl_getdomaininfo/4.16", 112, (
    *_GETDOMAININFO_HEAD,
    Field("gpaddr_bits", 96, "B"),
    Field("emulation_flags", 104, "I"),
    Field("misc_flags", 108, "I"),
))

# struct xen_sysctl_getdomaininfolist, inside the sysctl union.
GETDOMAININFOLIST = Layout("xen_sysctl_getdomaininfolist", 24, (
    Field("first_domain", 0, "H"),
    Field("max_domains", 4, "I"),
    Field("buffer", 8, "Q"),
    Field("num_domains", 16, "I"),
))

# XEN_DOMINF_* flag bits in getdomaininfo.flags.
DOMINF_DYING = 1 << 0
DOMINF_HVM_GUEST = 1 << 1
DOMINF_SHUTDOWN = 1 << 2
DOMINF_PAUSED = 1 << 3
DOMINF_BLOCKED = 1 << 4
DOMINF_RUNNING = 1 << 5
