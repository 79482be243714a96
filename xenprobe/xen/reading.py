# SPDX-License-Identifier: GPL-2.0-only
"""A value as one layer returned it: the integer, the errno beside it, and its width."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass

from xenprobe.xen.abi.hypercalls import MAX_ERRNO

# errnos that say "no answer yet, ask again" rather than what the answer is: the
# transport issues such a request again (transport.RETRIES), and one still failing so
# is the layer's own failure, never a changed error (judge).
RETRYABLE = frozenset({errno.EINTR, errno.EAGAIN})


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


@dataclass(frozen=True, slots=True)
class Columns:
    """One layer's readings of many probes, column-wise: what a layer's `read_many`
    says, without a Reading object per probe, so a sweep of thousands of domains
    compares whole columns and builds Readings only for what it reports.

    widths: one width for every reading, or one per reading.
    absent: positions where the layer does not offer the quantity (read_many's None).
    """

    values: Sequence[int]
    errnos: Sequence[int]
    widths: int | Sequence[int]
    absent: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self.values)

    def reading(self, i: int) -> Reading | None:
        if i in self.absent:
            return None
        w = self.widths
        return Reading(self.values[i], self.errnos[i], w if isinstance(w, int) else w[i])

    @staticmethod
    def of(readings: Sequence[Reading | None]) -> Columns:
        """The columns of a read_many answer."""
        return Columns([r.value if r is not None else 0 for r in readings],
                       [r.errno if r is not None else 0 for r in readings],
                       [r.width if r is not None else 64 for r in readings],
                       frozenset(i for i, r in enumerate(readings) if r is None))
