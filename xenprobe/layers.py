# SPDX-License-Identifier: GPL-2.0-only
"""The layer ladder: each way a hypercall result reaches user space, one entry each.

The raw 64-bit result (a multicall entry's `result`) is the truth the rungs below are
compared with; it is read by the sweep itself, before and after the rungs. Adding a
layer (libxc) means adding one entry to `ladder()`, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from xenprobe import libxc
from xenprobe.host import Identity
from xenprobe.quantities import Probe
from xenprobe.reading import Columns, Reading
from xenprobe.transport import Args, Calls, Privcmd


class Layer(Protocol):
    name: str
    description: str

    def read_many(self, probes: Sequence[Probe],
                  calls: Sequence[tuple[int, Args]]) -> list[Reading | None]:
        """One reading per probe; None where this layer does not offer the quantity.
        A layer may also offer `read_columns(probes, calls) -> Columns`, the same
        readings column-wise; the sweep uses it where present."""
        ...

    def via_reference(self, probe: Probe) -> bool:
        """True where this layer reads the quantity through the independent source's
        hypercall rather than the probe's own (libxc's xc_get_tot_pages reads domctl
        getdomaininfo, not memory_op): such a reading is judged against the reference."""
        ...


class SyscallLayer:
    name = "syscall"
    description = "the ioctl system call's long return (the kernel's privcmd path)"

    def __init__(self, dev: Privcmd) -> None:
        self.dev = dev

    def read_many(self, probes: Sequence[Probe],
                  calls: Sequence[tuple[int, Args]]) -> list[Reading | None]:
        return list(self.dev.many(calls, syscall=True))

    def read_columns(self, probes: Sequence[Probe], calls: Sequence[tuple[int, Args]],
                     raw: Sequence[int] | None = None) -> Columns:
        """read_many as columns (see Sweeper: a sweep compares columns in bulk); raw,
        the multicall results, tells an aliased value from a transient failure."""
        values, errnos = self.dev.many_values(Calls.of(calls), syscall=True, raw=raw)
        return Columns(values, errnos, 64)

    def via_reference(self, probe: Probe) -> bool:
        return False


class IoctlLayer:
    name = "ioctl"
    description = "glibc ioctl(): an int, and -1 with errno for [-4095,-1]"

    def __init__(self, dev: Privcmd) -> None:
        self.dev = dev

    def read_many(self, probes: Sequence[Probe],
                  calls: Sequence[tuple[int, Args]]) -> list[Reading | None]:
        return list(self.dev.many(calls, syscall=False))

    def read_columns(self, probes: Sequence[Probe], calls: Sequence[tuple[int, Args]],
                     raw: Sequence[int] | None = None) -> Columns:
        """read_many as columns (see Sweeper: a sweep compares columns in bulk); raw,
        the multicall results, tells an aliased value from a transient failure."""
        values, errnos = self.dev.many_values(Calls.of(calls), syscall=False, raw=raw)
        return Columns(values, errnos, 32)

    def via_reference(self, probe: Probe) -> bool:
        return False


def ladder(dev: Privcmd, identity: Identity | None = None) -> list[Layer]:
    """Every layer below the raw result, from the kernel up. With the host's identity,
    libxc too: present when libxenctrl for its release loads, else absent with a note."""
    layers: list[Layer] = [SyscallLayer(dev), IoctlLayer(dev)]
    if identity is not None:
        layers.append(libxc.layer((identity.release.major, identity.release.minor)))
    return layers
