"""Turn one bracketed sample of a quantity into verdicts, without false alarms.

A sample is: the independent reference and the raw hypercall result read before the
layers, the layers' readings, then the raw result and reference read again. If nothing
moved, each layer is classified against the raw value and the raw value against the
reference. If something moved, the sampler asks for another sample; when it runs out of
attempts, disagreements are drift unless a conversion explains the reading against
every value the quantity took.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from xenprobe.classify import Truth, Verdict, classify
from xenprobe.reading import Reading

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


def _moved_verdict(span: Truth | None, reading: Reading) -> Verdict:
    """A reading taken while the quantity moved: a conversion counts only if it explains
    the reading whatever value in the span was current; anything else is drift."""
    if span is None:
        return Verdict.DRIFT
    v = classify(span, reading)
    return v if v in _EXPLAINED else Verdict.DRIFT


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
        return _moved_verdict(_span(self.before, self.after), r)


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
            verdicts[RAW] = classify(sample.ref_before, sample.raw_before)
        else:
            verdicts[RAW] = _moved_verdict(_span(sample.ref_before, sample.ref_after),
                                           sample.raw_before)
    if Verdict.ERROR in verdicts.values() and not final:
        return None  # a layer's own failure (EINTR, EAGAIN...) may pass: try again
    if Verdict.OTHER in verdicts.values():
        # An unexplained disagreement between equal raw reads may be a value that moved
        # and came back. Look again; call it a mismatch only if every look saw exactly
        # the same readings, else it was the value moving.
        if not final:
            return None
        if any(e != sample for e in earlier):
            verdicts = {k: Verdict.DRIFT if v is Verdict.OTHER else v
                        for k, v in verdicts.items()}
    return verdicts
