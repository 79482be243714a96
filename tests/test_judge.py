# SPDX-License-Identifier: GPL-2.0-only
"""Drift is never called truncation: bracketed samples of a moving value."""

from __future__ import annotations

import errno

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conversions import glibc_ioctl, glibc_syscall, pvops_kernel
from xenprobe.probe.classify import Truth, Verdict
from xenprobe.probe.judge import RAW, Sample, judge
from xenprobe.xen.reading import Reading, raw_result

small = st.integers(min_value=0, max_value=(1 << 31) - 1)


def sample(before: int, layer_values: list[int], after: int, ref: tuple[int, int] | None
           ) -> Sample:
    layers: dict[str, Reading | None] = {
        "syscall": glibc_syscall(pvops_kernel(layer_values[0])),
        "ioctl": glibc_ioctl(pvops_kernel(layer_values[1])),
    }
    refs = (Truth.exact(ref[0]), Truth.exact(ref[1])) if ref else (None, None)
    return Sample(raw_result(before), raw_result(after), refs[0], refs[1], layers)


@given(st.lists(st.lists(small, min_size=6, max_size=6), min_size=3, max_size=3))
def test_moving_value_is_never_a_mismatch(walks: list[list[int]]) -> None:
    """Three attempts, each six successive values of a quantity that fits in an int,
    read in bracket order (ref, raw, syscall, ioctl, raw, ref): whatever the value did,
    only match or drift, unless all three attempts saw exactly the same readings."""
    samples = [sample(v[1], [v[2], v[3]], v[4], (v[0], v[5])) for v in walks]
    earlier: list[Sample] = []
    for i, s in enumerate(samples):
        verdicts = judge(s, final=i == len(samples) - 1, earlier=earlier)
        if verdicts is not None:
            break
        earlier.append(s)
    assert verdicts is not None
    if any(s != samples[0] for s in samples):
        assert set(verdicts.values()) <= {Verdict.MATCH, Verdict.DRIFT}


@given(st.integers(min_value=1 << 31, max_value=(1 << 32) - 4 * 4096), st.integers(0, 4096))
def test_real_sign_flip_survives_a_moving_value(base: int, step: int) -> None:
    """A value above INT_MAX that moves: the ioctl reading is still a sign flip of a
    value in the bracket, and is reported as one."""
    s = sample(base, [base + step, base + step], base + 2 * step, None)
    verdicts = judge(s, final=True)
    assert verdicts is not None
    assert verdicts["ioctl"] is Verdict.SIGN_FLIPPED


def test_stable_sample_is_classified() -> None:
    s = sample(0x8000_0000, [0x8000_0000, 0x8000_0000], 0x8000_0000,
               (0x8000_0000, 0x8000_0000))
    assert judge(s, final=False) == {"syscall": Verdict.SIGN_FLIPPED,
                                     "ioctl": Verdict.SIGN_FLIPPED, RAW: Verdict.MATCH}


def test_moved_sample_is_retaken_until_final() -> None:
    s = sample(100, [101, 102], 103, (99, 104))
    assert judge(s, final=False) is None
    assert judge(s, final=True) == {"syscall": Verdict.DRIFT, "ioctl": Verdict.DRIFT,
                                    RAW: Verdict.DRIFT}


def test_unexplained_disagreement_is_looked_at_again() -> None:
    # Equal raw reads, a layer that differs: the value may have moved and come back.
    s = sample(100, [100, 150], 100, None)
    assert judge(s, final=False) is None
    # Seen the same way every time: a real, if unexplained, disagreement.
    assert judge(s, final=True, earlier=[s, s]) == {"syscall": Verdict.MATCH,
                                                    "ioctl": Verdict.OTHER}
    # Seen differently before: the value moved.
    moved = sample(100, [100, 120], 100, None)
    assert judge(s, final=True, earlier=[moved]) == {"syscall": Verdict.MATCH,
                                                     "ioctl": Verdict.DRIFT}


def test_absent_layer() -> None:
    s = Sample(raw_result(5), raw_result(5), None, None, {"libxc": None})
    assert judge(s, final=True) == {"libxc": Verdict.ABSENT}


def test_vanished_domain_is_drift() -> None:
    # The domain existed for the first raw read and was gone for the rest.
    esrch = (1 << 64) - 3
    s = Sample(raw_result(4096), raw_result(esrch), Truth.exact(4096), Truth.error(3),
               {"ioctl": Reading(-1, 3, 32)})
    assert judge(s, final=True) == {"ioctl": Verdict.DRIFT, RAW: Verdict.DRIFT}


# -- faults: what a failing or garbage-answering layer can and cannot be called ----------

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
MISMATCH = {v for v in Verdict if v.is_mismatch}


@settings(deadline=None)  # pure, but CI machines stall
@given(u64, u64, u64, st.sampled_from([32, 64]))
def test_a_jump_of_2_32_or_more_is_no_conversion(before: int, after: int, layer: int,
                                                 width: int) -> None:
    """Garbage: the raw value read twice, 2^32 or more apart, and anything in between
    from a layer. Low 32 bits cannot say which value they came from: never a conversion."""
    from hypothesis import assume
    assume(abs(before - after) >= 1 << 32)
    reading = glibc_ioctl(pvops_kernel(layer)) if width == 32 else raw_result(layer)
    s = Sample(raw_result(before), raw_result(after), None, None, {"layer": reading})
    verdicts = judge(s, final=True)
    assert verdicts is not None
    assert verdicts["layer"] in {Verdict.MATCH, Verdict.DRIFT, Verdict.ERROR}


retryable = st.sampled_from([errno.EINTR, errno.EAGAIN])
any_errno = st.integers(min_value=1, max_value=4095)


@settings(deadline=None)  # pure, but CI machines stall
@given(any_errno, retryable, st.booleans())
def test_eintr_and_eagain_are_never_a_changed_or_lost_error(raw_errno: int, layer_errno: int,
                                                            raw_says_it: bool) -> None:
    """Still EINTR/EAGAIN after the retries: no answer, on either side."""
    raw = raw_result(-(layer_errno if raw_says_it else raw_errno))
    layer = Reading(-1, raw_errno if raw_says_it else layer_errno, 32)
    for final in (False, True):
        verdicts = judge(Sample(raw, raw, Truth.error(errno.ESRCH), Truth.error(errno.ESRCH),
                                {"ioctl": layer}), final=final)
        if verdicts is not None:
            assert verdicts["ioctl"] not in MISMATCH, verdicts
    value = Sample(raw, raw, None, None, {"ioctl": Reading(4096, 0, 32)})
    verdicts = judge(value, final=True)
    assert verdicts is not None
    if raw.errno in (errno.EINTR, errno.EAGAIN):
        assert verdicts["ioctl"] is Verdict.DRIFT
    else:
        assert verdicts["ioctl"] is Verdict.LOST_ERROR


@settings(deadline=None)  # pure, but CI machines stall
@given(any_errno.filter(lambda e: e not in (errno.EINTR, errno.EAGAIN, errno.ESRCH)))
def test_an_error_class_verdict_needs_every_look_to_agree(other: int) -> None:
    """A layer's passing failure where the hypervisor said ESRCH, or a value where it
    said ESRCH (a domain that came back): looked at again, and a mismatch only if every
    look saw the same."""
    esrch = raw_result(-errno.ESRCH)
    changed = Sample(esrch, esrch, None, None, {"ioctl": Reading(-1, other, 32)})
    lost = Sample(esrch, esrch, None, None, {"ioctl": Reading(7, 0, 32)})
    fine = Sample(esrch, esrch, None, None, {"ioctl": Reading(-1, errno.ESRCH, 32)})
    for s, kind, otherwise in ((changed, Verdict.CHANGED_ERROR, Verdict.ERROR),
                               (lost, Verdict.LOST_ERROR, Verdict.DRIFT)):
        assert judge(s, final=False) is None
        assert judge(s, final=True, earlier=[s, s]) == {"ioctl": kind}
        assert judge(s, final=True, earlier=[fine, s]) == {"ioctl": otherwise}
