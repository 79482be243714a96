# SPDX-License-Identifier: GPL-2.0-only
"""Classify how a layer's reading relates to the value it should have carried.

Pure functions. A truth is either an error (an errno) or a closed interval of unsigned
64-bit values: exactly one value for the hypervisor's raw result, a range where an
independent source only bounds the quantity, or the span of values seen while it moved.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from xenprobe.xen.abi.hypercalls import MAX_ERRNO
from xenprobe.xen.reading import Reading

U32 = 1 << 32
U64 = 1 << 64
INT32_MAX = (1 << 31) - 1
INT32_MIN = -(1 << 31)


class Verdict(enum.StrEnum):
    MATCH = "match"
    TRUNCATED = "truncated"          # high bits lost (value >= 2^32)
    SIGN_FLIPPED = "sign_flipped"    # an unsigned value read back as signed
    CLAMPED = "clamped"              # pinned to INT_MAX/INT_MIN (Xen's compat layer)
    ALIASED_ERRNO = "aliased_errno"  # a valid value that came back as -1 with errno
    LOST_ERROR = "lost_error"        # the hypervisor failed; the layer shows a value
    CHANGED_ERROR = "changed_error"  # both failed, with different errnos
    DRIFT = "drift"                  # the quantity moved while it was being read
    ERROR = "error"                  # the layer failed for its own reason (EINTR, EACCES..)
    OTHER = "other"                  # disagrees, and no known conversion explains it
    ABSENT = "absent"                # this layer does not offer the quantity here
    UNJUDGED = "unjudged"            # read, but nothing here says what it should be
                                     # (no raw layer, and no exact reference: raw_absent)
    # At the source: the hypervisor's own 64-bit result breaks "-errno or 0..LONG_MAX".
    FORGED_ERRNO = "forged_errno"    # raw: an errno this call cannot return (abi.errnos),
                                     # or ESRCH for a domain getdomaininfo shows
    OUT_OF_RANGE = "out_of_range"    # raw: negative as a long, and not an errno
    PASSED_FORGED = "passed_forged"  # a layer passed on a forged error as the hypervisor's

    @property
    def is_source_finding(self) -> bool:
        return self in SOURCE_FINDINGS

    @property
    def is_mismatch(self) -> bool:
        return self in MISMATCHES


MISMATCHES = frozenset({
    Verdict.TRUNCATED, Verdict.SIGN_FLIPPED, Verdict.CLAMPED, Verdict.ALIASED_ERRNO,
    Verdict.LOST_ERROR, Verdict.CHANGED_ERROR, Verdict.OTHER,
})


# Not mismatches (no layer misread anything): the value was wrong where Xen returned it.
SOURCE_FINDINGS = frozenset({Verdict.FORGED_ERRNO, Verdict.OUT_OF_RANGE,
                             Verdict.PASSED_FORGED})


@dataclass(frozen=True, slots=True)
class Truth:
    lo: int = 0
    hi: int = 0
    errno: int = 0

    @staticmethod
    def exact(value: int) -> Truth:
        u = value % U64
        return Truth(u, u)

    @staticmethod
    def between(lo: int, hi: int) -> Truth:
        lo, hi = lo % U64, hi % U64
        return Truth(min(lo, hi), max(lo, hi))

    @staticmethod
    def error(errno: int) -> Truth:
        return Truth(errno=errno)

    @staticmethod
    def of(reading: Reading) -> Truth:
        """The truth a raw (64-bit, hypervisor) reading states."""
        return Truth.error(reading.errno) if reading.failed else Truth.exact(reading.value)

    @property
    def is_error(self) -> bool:
        return self.errno != 0

    def contains(self, u: int) -> bool:
        return self.lo <= u <= self.hi


def sext32(u: int) -> int:
    """Keep the low 32 bits and read them as a signed int (what `int ret = long` does)."""
    low = u % U32
    return low - U32 if low >= 1 << 31 else low


def _first_congruent(lo: int, hi: int, residue: int, modulus: int) -> int | None:
    """The smallest t in [lo, hi] with t % modulus == residue, if any."""
    t = lo + (residue - lo) % modulus
    return t if t <= hi else None


def _value_verdict(truth: Truth, r: Reading) -> Verdict:
    x = r.value
    # Same 64-bit pattern once sign-extended: the layer passed the value on unchanged
    # (a negative raw value read through an int is still the same value).
    if truth.contains(x % U64):
        return Verdict.MATCH
    if x == INT32_MAX and truth.lo > INT32_MAX and truth.lo != truth.hi:
        # A range above INT_MAX (a reference, not a raw value): the clamp turns every
        # value in it into exactly this, a truncation only some of them.
        return Verdict.CLAMPED
    low = x % U32
    if x < 0 and low >= 1 << 31 and (r.width == 32 or x >= INT32_MIN):
        # x is a sign-extended 32-bit pattern: which unsigned value could it have been?
        if truth.contains(low):
            return Verdict.SIGN_FLIPPED
        if _first_congruent(max(truth.lo, U32), truth.hi, low, U32) is not None:
            return Verdict.TRUNCATED
    if 0 <= x < U32 and _first_congruent(max(truth.lo, U32), truth.hi, x, U32) is not None:
        # Low 32 bits kept, high bits dropped.
        return Verdict.TRUNCATED
    if x == INT32_MAX and truth.hi > INT32_MAX:
        return Verdict.CLAMPED
    if x == INT32_MIN and truth.lo >= 1 << 63:
        return Verdict.CLAMPED
    return Verdict.OTHER


def _alias(truth: Truth, errno: int, through_int: bool = True) -> bool:
    """Could a value in the truth have been turned into -1/errno by an int return path?
    (`through_int` False: the reading kept 64 bits, as the hypervisor's own raw result
    does, so only a value in the 64-bit errno range could read as an error.)"""
    if not 1 <= errno <= MAX_ERRNO:
        return False
    # int truncation: a value whose low 32 bits read as -errno.
    if through_int and _first_congruent(truth.lo, truth.hi, U32 - errno, U32) is not None:
        return True
    # 64-bit path: the value itself is in the errno range.
    return truth.contains(U64 - errno)


def classify(truth: Truth, reading: Reading, *, through_int: bool = True) -> Verdict:
    """How `reading` relates to `truth`. Never returns DRIFT or ABSENT: those are
    decided by the sampler, which knows whether the quantity moved. `through_int` False
    for the raw result against its reference: no int path lies between them."""
    if truth.is_error:
        if reading.failed:
            return Verdict.MATCH if reading.errno == truth.errno else Verdict.CHANGED_ERROR
        return Verdict.LOST_ERROR
    if reading.failed:
        # An errno no value in the truth can turn into is the layer's own failure: worth
        # counting, but nothing was truncated.
        return (Verdict.ALIASED_ERRNO if _alias(truth, reading.errno, through_int)
                else Verdict.ERROR)
    return _value_verdict(truth, reading)


def at_source(raw: Reading, can_return: frozenset[int] | None) -> Verdict | None:
    """The hypervisor's own 64-bit result judged by itself: FORGED_ERRNO for an errno
    outside `can_return` (what this call can return for this subject, abi.errnos; None:
    not known, nothing is called forged), OUT_OF_RANGE for a value negative as a long
    that is no errno (0x8000000000000000 .. 0xfffffffffffff000); None when it is
    -errno or in 0..LONG_MAX as Xen's convention has it."""
    if raw.failed:
        if can_return is not None and raw.errno not in can_return:
            return Verdict.FORGED_ERRNO
        return None
    return Verdict.OUT_OF_RANGE if raw.value % U64 >= 1 << 63 else None


def bits_used(reading: Reading) -> int:
    """Significant bits of a raw value read as unsigned (0 for errors and zero)."""
    if reading.failed:
        return 0
    return (reading.value % U64).bit_length()


class Risk(enum.StrEnum):
    INT32 = "int32"              # does not fit a signed int: sign-flipped by int returns
    UINT32 = "uint32"            # does not fit 32 bits at all: truncated
    COMPAT = "compat"            # a 32-bit (compat) guest gets INT_MAX instead
    ERRNO_ALIAS = "errno_alias"  # low 32 bits in [-4095,-1]: glibc reports an error


def at_risk(reading: Reading) -> tuple[Risk, ...]:
    """Which narrower consumers would get this raw value wrong (not a mismatch: a risk)."""
    if reading.failed:
        return ()
    u = reading.value % U64
    risks = []
    if u > INT32_MAX:
        risks += [Risk.INT32, Risk.COMPAT]
    if u >= U32:
        risks.append(Risk.UINT32)
    if u % U32 >= U32 - MAX_ERRNO:
        risks.append(Risk.ERRNO_ALIAS)
    return tuple(sorted(risks))
