# SPDX-License-Identifier: GPL-2.0-only
"""Turn one bracketed sample of a quantity into verdicts, without false alarms.

A sample is: the independent reference and the raw hypercall result read before the
layers, the layers' readings, then the raw result and reference read again. If nothing
moved, each layer is classified against the raw value and the raw value against the
reference. If something moved, the sampler asks for another sample; when it runs out of
attempts, disagreements are drift unless a conversion explains the reading against
every value the quantity took.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from xenprobe.probe.classify import INT32_MAX, U32, Truth, Verdict, at_source, classify
from xenprobe.xen.reading import RETRYABLE, Reading

RAW = "raw"


@dataclass(frozen=True, slots=True)
class Sample:
    raw_before: Reading
    raw_after: Reading
    ref_before: Truth | None
    ref_after: Truth | None
    layers: Mapping[str, Reading | None]
    # Layers that read through the reference's hypercall: judged against the reference.
    via_reference: frozenset[str] = frozenset()
    # The errnos the raw call can return for this subject (abi.errnos.can_return, less
    # ESRCH for a domain getdomaininfo showed before and after); None: not known.
    can_return: frozenset[int] | None = None

    @property
    def moved(self) -> bool:
        return self.raw_before != self.raw_after or self.ref_before != self.ref_after


def _span(a: Truth, b: Truth) -> Truth | None:
    """Every value between two truths; None when one is an error and the other not."""
    if a.is_error or b.is_error:
        return a if a == b else None
    return Truth(min(a.lo, b.lo), max(a.hi, b.hi))


_EXPLAINED = frozenset({Verdict.TRUNCATED, Verdict.SIGN_FLIPPED, Verdict.CLAMPED,
                        Verdict.ALIASED_ERRNO})


def _needs(v: Verdict, u: int) -> bool:
    """Whether the unsigned value u is one the conversion v happens to: a sign flip to
    [2^31, 2^32), a truncation to 2^32 and above, a clamp above INT_MAX, an errno alias
    to low 32 bits in [-4095, -1]."""
    if v is Verdict.SIGN_FLIPPED:
        return 1 << 31 <= u < U32
    if v is Verdict.TRUNCATED:
        return u >= U32
    if v is Verdict.CLAMPED:
        return u > INT32_MAX
    return u % U32 >= U32 - 4095  # ALIASED_ERRNO


def _moved_verdict(span: Truth | None, reading: Reading, ends: Sequence[Truth] = (),
                   *, through_int: bool = True) -> Verdict:
    """A reading taken while the quantity moved: a conversion counts only if it explains
    the reading by a value in the span and happens to every value the quantity was read
    at (`ends`, the reads before and after); anything else is drift. A value that jumped
    (a garbage answer, a domain gone) is no grounds for a conversion."""
    if span is None or span.hi - span.lo >= U32:
        # Low 32 bits name one value only within a 2^32 window: a value that moved by
        # more in one sample jumped (a garbage answer), and nothing can be told from it.
        return Verdict.DRIFT
    v = classify(span, reading, through_int=through_int)
    if v not in _EXPLAINED:
        return Verdict.DRIFT
    if all(_needs(v, t.lo) and _needs(v, t.hi) for t in ends):
        return v
    return Verdict.DRIFT


@dataclass(frozen=True, slots=True)
class _View:
    """A truth read twice, around the layers."""

    stable: bool
    before: Truth
    after: Truth

    def judge(self, r: Reading | None) -> Verdict:
        if r is None:
            return Verdict.ABSENT
        if self.stable:
            return classify(self.before, r)
        return _moved_verdict(_span(self.before, self.after), r, (self.before, self.after))


def judge(sample: Sample, *, final: bool, earlier: Sequence[Sample] = ()
          ) -> dict[str, Verdict] | None:
    """Verdicts keyed by layer ("raw" is the raw value against the reference), or None
    when the sample should be taken again. `earlier` are this quantity's previous
    samples in the same sweep."""
    raw_stable = sample.raw_before == sample.raw_after
    ref_stable = sample.ref_before == sample.ref_after
    if not (raw_stable and ref_stable) and not final:
        return None
    raw_view = _View(raw_stable, Truth.of(sample.raw_before), Truth.of(sample.raw_after))
    ref_view = (_View(ref_stable, sample.ref_before, sample.ref_after)
                if sample.ref_before is not None and sample.ref_after is not None else None)
    verdicts = {}
    for name, r in sample.layers.items():
        view = ref_view if name in sample.via_reference and ref_view else raw_view
        verdicts[name] = view.judge(r)
    if sample.ref_before is not None and sample.ref_after is not None:
        if not raw_stable:
            verdicts[RAW] = Verdict.DRIFT
        elif ref_stable:
            verdicts[RAW] = classify(sample.ref_before, sample.raw_before,
                                     through_int=False)
        else:
            verdicts[RAW] = _moved_verdict(_span(sample.ref_before, sample.ref_after),
                                           sample.raw_before,
                                           (sample.ref_before, sample.ref_after),
                                           through_int=False)
    if raw_stable:
        _judge_source(verdicts, sample)
    # EINTR or EAGAIN still there after the transport's retries is no answer: a layer
    # saying so did not change an error, and a layer compared with a hypervisor saying
    # so has nothing to be compared with.
    no_answer = sample.raw_before.errno in RETRYABLE or sample.raw_after.errno in RETRYABLE
    for name, r in (*sample.layers.items(), (RAW, sample.raw_before)):
        v = verdicts.get(name)
        if v not in _ERROR_CLASSES:
            continue
        if (r is not None and r.errno in RETRYABLE) or (
                no_answer and name != RAW and name not in sample.via_reference):
            verdicts[name] = Verdict.ERROR if v is Verdict.CHANGED_ERROR else Verdict.DRIFT
    return _confirmed(verdicts, sample, earlier, final=final)


def _judge_source(verdicts: dict[str, Verdict], sample: Sample) -> None:
    """The raw result against Xen's own convention (classify.at_source), whatever the
    reference says: a forged errno or an out-of-range value is the raw verdict, and a
    layer that handed the forged error on unchanged did not "match" anything real."""
    if sample.raw_before.errno in RETRYABLE:
        return  # no answer (below): not an answer Xen could not give either
    found = at_source(sample.raw_before, sample.can_return)
    if found is None:
        return
    verdicts[RAW] = found
    if found is Verdict.FORGED_ERRNO:
        for name, v in verdicts.items():
            if v is Verdict.MATCH and name != RAW and name not in sample.via_reference:
                verdicts[name] = Verdict.PASSED_FORGED


def _confirmed(verdicts: dict[str, Verdict], sample: object, earlier: Sequence[object],
               *, final: bool) -> dict[str, Verdict] | None:
    """The verdicts, or None to look again. A layer's own failure (EINTR, EAGAIN...) may
    pass: look again. An unexplained disagreement between equal raw reads may be a value
    that moved and came back; an error where the other side has a value, or another
    error, may be a domain that came or went, or a layer's passing failure: look again,
    and call it a mismatch only if every look saw exactly the same readings."""
    if Verdict.ERROR in verdicts.values() and not final:
        return None
    if not _UNCONFIRMED.keys().isdisjoint(verdicts.values()):
        if not final:
            return None
        if any(e != sample for e in earlier):
            return {k: _UNCONFIRMED.get(v, v) for k, v in verdicts.items()}
    return verdicts


_ERROR_CLASSES = frozenset({Verdict.CHANGED_ERROR, Verdict.LOST_ERROR})


@dataclass(frozen=True, slots=True)
class RefSample:
    """A sample without the raw layer (xenprobe.layers.raw_absent): the reference read before
    and after the layers, and the layers' readings."""

    ref_before: Truth | None
    ref_after: Truth | None
    layers: Mapping[str, Reading | None]


def judge_by_reference(sample: RefSample, *, final: bool,
                       earlier: Sequence[RefSample] = ()) -> dict[str, Verdict] | None:
    """`judge` for a host with no raw layer: each layer against the reference. A reading
    is MATCH only against a reference that names one value; inside a range (or with no
    reference at all) it is UNJUDGED, since a truncated value may land there too. A
    reading outside the reference is a mismatch whatever the true value: the reference
    bounds it. "raw" is ABSENT."""
    before, after = sample.ref_before, sample.ref_after
    verdicts: dict[str, Verdict] = {RAW: Verdict.ABSENT}
    if before is None or after is None:
        for name, r in sample.layers.items():
            verdicts[name] = Verdict.ABSENT if r is None else Verdict.UNJUDGED
        return verdicts
    stable = before == after
    if not stable and not final:
        return None
    view = _View(stable, before, after)
    exact = all(t.is_error or t.lo == t.hi for t in (before, after))
    for name, r in sample.layers.items():
        v = view.judge(r)
        if v is Verdict.MATCH and not exact:
            v = Verdict.UNJUDGED  # inside a range: consistent, not proven
        if v in _ERROR_CLASSES and r is not None and r.errno in RETRYABLE:
            v = Verdict.ERROR if v is Verdict.CHANGED_ERROR else Verdict.DRIFT
        verdicts[name] = v
    return _confirmed(verdicts, sample, earlier, final=final)

# Mismatches reported only when every look agreed, and what they are when looks differ:
# the value moved (drift), or the layer failed for its own passing reason (error).
_UNCONFIRMED = {Verdict.OTHER: Verdict.DRIFT, Verdict.LOST_ERROR: Verdict.DRIFT,
                Verdict.CHANGED_ERROR: Verdict.ERROR,
                # A guest's value at the source, called so only if every look saw it.
                Verdict.FORGED_ERRNO: Verdict.DRIFT, Verdict.OUT_OF_RANGE: Verdict.DRIFT,
                Verdict.PASSED_FORGED: Verdict.DRIFT}


# An exact reference given as a plain unsigned int stands for Truth.exact(int): a sweep
# of thousands of domains has one per domain and quantity, and builds Truth objects only
# for the samples it hands to `judge`.
Ref = int | Truth | None
MASK64 = (1 << 64) - 1


def unanimous(raw_before: Sequence[int], raw_after: Sequence[int],
              ref_before: Sequence[Ref], ref_after: Sequence[Ref],
              layers: Sequence[tuple[Sequence[int], Sequence[int], Collection[int]]]
              ) -> list[bool]:
    """For each sample given column-wise, True where `judge` is certain to find every
    layer MATCH (or ABSENT) and the raw value MATCH its reference, with nothing moved:
    the common case, decided here in bulk without building a Sample.

    raw_*: the raw results as signed 64-bit ints (multicall entries' `result`);
    ref_*: the references, an int meaning Truth.exact(int); layers: per layer its values,
    errnos, and the positions where it has no reading.

    A conservative test: True only where raw read the same value twice and it is not
    negative (an error, or out of range at the source), the reference stayed the same
    exact value and equals it, and every present layer returned that very value without
    errno. Then classify() can only say MATCH (x % 2^64 lies in the one-value truth),
    whichever of raw or reference a layer is judged against, as the two are equal.
    Anything else is False and goes to `judge`, the single source of every other verdict.
    """
    # A negative raw result is an error or out of range (classify.at_source): judged.
    ok = [a == b and a >= 0 for a, b in zip(raw_before, raw_after, strict=True)]
    for i, (v, rb, ra) in enumerate(zip(raw_before, ref_before, ref_after, strict=True)):
        if rb is None:
            if ra is not None:
                ok[i] = False
        elif rb.__class__ is not int or rb != ra or rb != v & MASK64:
            ok[i] = False
    for values, errnos, absent in layers:
        if _same(values, raw_before) and not any(errnos):
            continue  # every value is raw's, without errno: nothing to clear (a C compare)
        for i, (x, e, v) in enumerate(zip(values, errnos, raw_before, strict=True)):
            if (x != v or e) and i not in absent:
                ok[i] = False
    return ok


def _same(a: Sequence[int], b: Sequence[int]) -> bool:
    """a == b element by element, compared in C where both are arrays of one type (a
    sweep's columns: tens of thousands of values); False where that cannot be told so."""
    return isinstance(a, array) and isinstance(b, array) and a.typecode == b.typecode \
        and a == b
