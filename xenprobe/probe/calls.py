# SPDX-License-Identifier: GPL-2.0-only
"""How each probe is called: its (hypercall, arguments), built from its quantity's
Record.argument, one builder per kind of argument.

The structs some calls point to (a domid_t per domain, the kexec_status structs, the
platform_op requests) are the sweep's: it hands them in as `Memory`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from xenprobe.xen.platform_requests import PlatformRequests
from xenprobe.xen.quantities import KEXEC_TYPE, RECORDS, Argument, Probe
from xenprobe.xen.transport import Args, Buffer, args5


class KexecStatuses:
    """One struct xen_kexec_status ({uint8_t type}) per image type, at the offset of its
    type: kexec_status only reads it (common/kexec.c@4.17:1199-1214). Made afresh in a
    forked child: hypercall memory is not inherited (MADV_DONTFORK), so a child that used
    its parent's address would point Xen at whatever it has there."""

    def __init__(self) -> None:
        self.buffer: Buffer | None = None  # made when first asked for

    def address(self, kexec_type: int) -> int:
        if self.buffer is None or not self.buffer.mine():
            self.buffer = Buffer(max(KEXEC_TYPE.values()) + 1)
            for t in KEXEC_TYPE.values():
                self.buffer.view[t] = bytes([t])
        return self.buffer.address + kexec_type


@dataclass(frozen=True, slots=True)
class Memory:
    """Where the by-reference arguments are: each domain's domid_t, the kexec_status
    structs, the platform_op requests (None where no probe needs them)."""

    domids: Mapping[int, int]  # domid -> the address of a domid_t holding it
    kexec: KexecStatuses | None = None
    requests: PlatformRequests | None = None


def _none(p: Probe, cmd: int, m: Memory) -> Args:
    return args5(cmd)


def _domid(p: Probe, cmd: int, m: Memory) -> Args:
    if p.domid is None:
        return args5(cmd)
    return args5(cmd, m.domids[p.domid])


def _vcpu(p: Probe, cmd: int, m: Memory) -> Args:
    return args5(cmd, p.vcpu or 0)  # VCPUOP_is_up(vcpuid, NULL)


def _kexec(p: Probe, cmd: int, m: Memory) -> Args:
    kexec_type = RECORDS[p.quantity].kexec_type
    assert m.kexec is not None and kexec_type is not None
    return args5(cmd, m.kexec.address(kexec_type))


def _platform(p: Probe, cmd: int, m: Memory) -> Args:
    assert m.requests is not None  # the cmd is inside the struct
    return args5(m.requests.address(p.quantity))


def _request(p: Probe, cmd: int, m: Memory) -> Args:
    raise AssertionError(f"{p.quantity}: a struct request is issued whole, not by value")


_BUILDERS: dict[Argument, Callable[[Probe, int, Memory], Args]] = {
    Argument.NONE: _none,
    Argument.DOMID: _domid,
    Argument.VCPU: _vcpu,
    Argument.KEXEC: _kexec,
    Argument.PLATFORM: _platform,
    Argument.REQUEST: _request,
}


def call(probe: Probe, memory: Memory) -> tuple[int, Args]:
    """The probe's hypercall and its arguments."""
    record = RECORDS[probe.quantity]
    op, cmd = record.call
    return op, _BUILDERS[record.argument](probe, cmd, memory)
