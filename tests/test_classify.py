# SPDX-License-Identifier: GPL-2.0-only
"""The classifier against every 64-bit value, with the layers' real conversions."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tests.conversions import (
    INT32_MAX,
    U32,
    U64,
    compat_clamp,
    glibc_ioctl,
    glibc_syscall,
    pvops_kernel,
    s32,
    s64,
    xenlinux_kernel,
)
from xenprobe.probe.classify import Risk, Truth, Verdict, at_risk, bits_used, classify
from xenprobe.xen.reading import Reading, raw_result

u64s = st.integers(min_value=0, max_value=U64 - 1)
# Values that are not themselves hypervisor errors, i.e. valid results.
values = u64s.filter(lambda u: not -4095 <= s64(u) <= -1)
errnos = st.integers(min_value=1, max_value=4095)


def expected_int_path(u: int) -> Verdict:
    """What an int-returning layer does to a valid value u, by case."""
    if u <= INT32_MAX:
        return Verdict.MATCH
    if -4095 <= s32(u) <= -1:
        return Verdict.ALIASED_ERRNO
    return Verdict.SIGN_FLIPPED if u < U32 else Verdict.TRUNCATED


@given(values)
@example(0x7FFF_FFFF)
@example(0x8000_0000)
@example(0xFFFF_F000)
@example(0xFFFF_F001)
@example(0xFFFF_FFFF)
@example(0x1_0000_0000)
@example(0x1_0000_0005)
@example(0x1_FFFF_FFFE)
def test_pvops_ioctl(u: int) -> None:
    assert classify(Truth.exact(u), glibc_ioctl(pvops_kernel(u))) is expected_int_path(u)


@given(values)
def test_pvops_syscall_is_as_narrow_as_the_kernel(u: int) -> None:
    # syscall(2) keeps 64 bits, but the kernel already narrowed to int.
    assert classify(Truth.exact(u), glibc_syscall(pvops_kernel(u))) is expected_int_path(u)


@given(values)
def test_xenlinux_syscall_keeps_every_bit(u: int) -> None:
    assert classify(Truth.exact(u), glibc_syscall(xenlinux_kernel(u))) is Verdict.MATCH


@given(values)
def test_xenlinux_ioctl_is_narrowed_by_glibc(u: int) -> None:
    got = classify(Truth.exact(u), glibc_ioctl(xenlinux_kernel(u)))
    if u <= INT32_MAX:
        assert got is Verdict.MATCH
    elif u < U32:
        # glibc sees a positive long, so no errno: even 0xFFFFFFFF comes back as -1 value.
        assert got is Verdict.SIGN_FLIPPED
    else:
        assert got in (Verdict.TRUNCATED, Verdict.ALIASED_ERRNO)


@given(values)
def test_raw_reading_matches_itself(u: int) -> None:
    assert classify(Truth.exact(u), raw_result(u)) is Verdict.MATCH


@given(st.integers(min_value=INT32_MAX + 1, max_value=(1 << 63) - 1))
def test_compat_clamp(u: int) -> None:
    got = classify(Truth.exact(u), Reading(compat_clamp(u), 0, 64))
    # A value whose low 32 bits are INT_MAX is equally well explained by truncation.
    expected = {Verdict.CLAMPED} | ({Verdict.TRUNCATED} if u % U32 == INT32_MAX and u >= U32
                                    else set())
    assert got in expected


@given(st.integers(min_value=0, max_value=U32 - 1))
def test_32bit_hypervisor_sign_conversion(u: int) -> None:
    """A hypervisor whose long is 32 bits hands back s32(u) sign-extended."""
    raw = raw_result(s32(u) % U64)
    got = classify(Truth.exact(u), raw)
    if u <= INT32_MAX:
        assert got is Verdict.MATCH
    elif raw.failed:
        assert got is Verdict.ALIASED_ERRNO
    else:
        assert got is Verdict.SIGN_FLIPPED


@given(errnos, errnos)
def test_errors(e: int, other: int) -> None:
    truth = Truth.error(e)
    assert classify(truth, Reading(-1, e, 32)) is Verdict.MATCH
    assert classify(truth, Reading(-1, e, 64)) is Verdict.MATCH
    if other != e:
        assert classify(truth, Reading(-1, other, 32)) is Verdict.CHANGED_ERROR
    # The errno handed back as a value: the error is lost.
    assert classify(truth, Reading(-e, 0, 32)) is Verdict.LOST_ERROR
    assert classify(truth, Reading(0, 0, 64)) is Verdict.LOST_ERROR


@given(values, st.integers(min_value=0, max_value=1 << 40))
def test_interval_truth(u: int, width: int) -> None:
    hi = min(u + width, U64 - 1)
    truth = Truth.between(u, hi)
    assert classify(truth, Reading(s64(u), 0, 64)) is Verdict.MATCH
    assert classify(truth, Reading(s64(hi), 0, 64)) is Verdict.MATCH


@given(u64s, st.sampled_from([32, 64]), st.integers(min_value=0, max_value=4095))
def test_never_drift_or_absent(u: int, width: int, e: int) -> None:
    v = classify(Truth.exact(u), Reading(s32(u) if width == 32 else s64(u), e, width))
    assert v not in (Verdict.DRIFT, Verdict.ABSENT)


def test_unexplained_is_other() -> None:
    assert classify(Truth.exact(1000), Reading(999, 0, 32)) is Verdict.OTHER
    # A failure no conversion of the value explains is the layer's own error.
    assert classify(Truth.exact(1000), Reading(-1, 5, 32)) is Verdict.ERROR
    assert not Verdict.ERROR.is_mismatch


@given(values)
def test_bits_and_risks(u: int) -> None:
    r = raw_result(u)
    assert bits_used(r) == u.bit_length()
    risks = at_risk(r)
    assert (Risk.INT32 in risks) == (u > INT32_MAX)
    assert (Risk.COMPAT in risks) == (u > INT32_MAX)
    assert (Risk.UINT32 in risks) == (u >= U32)
    assert (Risk.ERRNO_ALIAS in risks) == (-4095 <= s32(u) <= -1)
    # A value at risk of aliasing really does alias through the pvops ioctl path.
    if Risk.ERRNO_ALIAS in risks:
        assert glibc_ioctl(pvops_kernel(u)).failed


def test_a_raw_error_against_a_wide_reference_is_an_error_not_an_alias() -> None:
    """The raw result keeps 64 bits: a hypervisor that answers -EINTR has not aliased a
    value whose low 32 bits read as -4, though the reference's range (maximum_ram_page:
    [total_pages, 2^52)) holds such values. Through an int path, the same reading may be
    one. (Found by test_faults' random fault sequences once the reference lost its upper
    bound max_mfn + 1.)"""
    wide = Truth.between(4194304, 1 << 52)
    eintr = Reading(-1, 4, 64)
    assert classify(wide, eintr, through_int=False) is Verdict.ERROR
    assert classify(wide, eintr) is Verdict.ALIASED_ERRNO
