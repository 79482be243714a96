"""A value as one layer returned it: the integer, the errno beside it, and its width."""

from __future__ import annotations

from dataclasses import dataclass

from xenprobe.abi.hypercalls import MAX_ERRNO


@dataclass(frozen=True, slots=True)
class Reading:
    """What a layer handed back.

    value: the returned integer in the layer's own signed type (width bits).
    errno: set when the layer signalled failure (glibc: -1 and errno). A -1 with
           errno 0 is a value, which is exactly how a result can hide as one.
    """

    value: int
    errno: int = 0
    width: int = 64

    @property
    def failed(self) -> bool:
        return self.errno != 0

    def as_json(self) -> dict[str, int]:
        return {"value": self.value, "errno": self.errno, "width": self.width}


def raw_result(result: int) -> Reading:
    """The hypervisor's own 64-bit result (a multicall entry's `result` field).

    Xen returns -errno in [-4095, -1] for failure, like Linux system calls.
    """
    signed = result - (1 << 64) if result >= 1 << 63 else result
    if -MAX_ERRNO <= signed <= -1:
        return Reading(signed, -signed, 64)
    return Reading(signed, 0, 64)
