# SPDX-License-Identifier: GPL-2.0-only
"""A sweep's results, kept as the columns they were read in.

A sweep of a big host reads tens of thousands of probes, nearly all unanimous (every
layer returned the raw value, which equals its reference). Such a probe keeps no objects
of its own: `Results` holds each attempt's readings column-wise (`Batch`), and a `Result`
is built when one is read. Probes that needed the classifier keep the Result `judge` made.
`Summary` adds a sweep up once, from the columns, for exporters and reports.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import overload

from xenprobe.probe.classify import INT32_MAX, U32, Risk, Truth, Verdict, at_risk, bits_used
from xenprobe.probe.judge import MASK64, RAW, Ref
from xenprobe.xen.abi.hypercalls import MAX_ERRNO
from xenprobe.xen.quantities import Probe, Quantity
from xenprobe.xen.reading import Columns, Reading, raw_result


@dataclass(frozen=True, slots=True)
class Result:
    probe: Probe
    raw: Reading | None     # None: the host has no raw layer (xenprobe.layers.raw_absent)
    reference: Truth | None
    readings: Mapping[str, Reading | None]
    verdicts: Mapping[str, Verdict]
    attempts: int

    @property
    def bits(self) -> int | None:
        return bits_used(self.raw) if self.raw is not None else None

    @property
    def at_risk(self) -> tuple[Risk, ...]:
        return at_risk(self.raw) if self.raw is not None else ()

    @property
    def mismatches(self) -> dict[str, Verdict]:
        return {layer: v for layer, v in self.verdicts.items() if v.is_mismatch}

    @property
    def source_findings(self) -> dict[str, Verdict]:
        """Layers whose verdict says the raw result was wrong where Xen returned it
        (classify.SOURCE_FINDINGS): raw itself, and layers that passed a forged error on."""
        return {layer: v for layer, v in self.verdicts.items() if v.is_source_finding}


@dataclass(frozen=True)
class Summary:
    """What a sweep adds up to, for exporters and reports: counted once per sweep, from
    the columns where the sweep kept them, so reading it costs nothing per probe."""

    probes: dict[Quantity, int]                          # results per quantity
    bits: dict[Quantity, int]                            # most bits a raw value used
    at_risk: dict[tuple[Quantity, Risk], int]            # results at each risk
    verdicts: dict[tuple[Quantity, str, Verdict], int]   # every verdict, "raw" included
    failed: list[Result]   # results where raw or a layer failed (-1/errno, -errno)

    @staticmethod
    def of(results: Iterable[Result]) -> Summary:
        s = Summary({}, {}, {}, {}, [])
        for r in results:
            s._add(r)
        return s

    def _add(self, r: Result) -> None:
        q = r.probe.quantity
        self.probes[q] = self.probes.get(q, 0) + 1
        if r.bits is not None:  # without a raw layer, nothing says how wide a value is
            self.bits[q] = max(self.bits.get(q, 0), r.bits)
        for risk in r.at_risk:
            self.at_risk[(q, risk)] = self.at_risk.get((q, risk), 0) + 1
        for layer, v in r.verdicts.items():
            self.verdicts[(q, layer, v)] = self.verdicts.get((q, layer, v), 0) + 1
        if (r.raw is not None and r.raw.failed) or any(
                x is not None and x.failed for x in r.readings.values()):
            self.failed.append(r)

    def with_verdict(self, verdict: Verdict) -> Counter[tuple[str, str]]:
        """(quantity, layer) -> subjects given this verdict."""
        counts: Counter[tuple[str, str]] = Counter()
        for (q, layer, v), n in self.verdicts.items():
            if v is verdict:
                counts[(q.value, layer)] += n
        return counts


@dataclass(frozen=True)
class Batch:
    """One attempt's readings of the probes still pending, column-wise."""

    attempt: int
    indices: Sequence[int]          # the probes read, by their position in the plan
    raw: Sequence[int]              # raw results before the layers, signed 64-bit
    refs: Sequence[Ref]             # references before the raw read
    layers: Sequence[Columns]


class Results(Sequence[Result]):
    """A sweep's results, kept as the columns they were read in; a Result is built when
    one is read. Probes that needed the classifier keep the Result `judge` made."""

    def __init__(self, probes: list[Probe], layers: list[str], batches: list[Batch],
                 batch: array[int], position: array[int], judged: dict[int, Result]
                 ) -> None:
        self._probes = probes
        self._layers = layers
        self._batches = batches
        self._batch = batch          # probe -> index into batches (unanimous probes)
        self._position = position    # probe -> its position in that batch
        self._judged = judged        # probe -> Result, for the rest
        self._shapes: dict[tuple[bool, ...], Mapping[str, Verdict]] = {}

    def __len__(self) -> int:
        return len(self._probes)

    @overload
    def __getitem__(self, index: int) -> Result: ...
    @overload
    def __getitem__(self, index: slice) -> list[Result]: ...

    def __getitem__(self, index: int | slice) -> Result | list[Result]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self._probes)
        if not -n <= index < n:
            raise IndexError(index)
        i = index % n
        judged = self._judged.get(i)
        return judged if judged is not None else _Row(self, i)

    def __iter__(self) -> Iterator[Result]:
        judged = self._judged
        for i in range(len(self._probes)):
            r = judged.get(i)
            yield r if r is not None else _Row(self, i)

    def mismatches(self) -> list[Result]:
        """Results with a mismatch, in probe order: only judged probes can have one."""
        return [self._judged[i] for i in sorted(self._judged)
                if self._judged[i].mismatches]

    def source_findings(self) -> list[Result]:
        """Results wrong at the source, in probe order: only judged probes can be."""
        return [self._judged[i] for i in sorted(self._judged)
                if self._judged[i].source_findings]

    def summary(self) -> Summary:
        """Summary.of(self), without building a Result per unanimous probe: each has
        MATCH from every layer that read it, ABSENT from the others, raw MATCH where
        there is a reference, no failure, and its raw value decides bits and risks."""
        s = Summary.of(self._judged[i] for i in sorted(self._judged))
        judged, batches, batch, position = self._judged, self._batches, self._batch, \
            self._position
        count: dict[Quantity, int] = {}
        referenced: dict[Quantity, int] = {}
        largest: dict[Quantity, int] = {}
        for i, probe in enumerate(self._probes):
            if i in judged:
                continue
            b, j = batches[batch[i]], position[i]
            q = probe.quantity
            u = b.raw[j] & MASK64
            count[q] = count.get(q, 0) + 1
            if b.refs[j] is not None:
                referenced[q] = referenced.get(q, 0) + 1
            if u > largest.get(q, -1):
                largest[q] = u
            if u > INT32_MAX or u % U32 >= U32 - MAX_ERRNO:
                for risk in at_risk(raw_result(b.raw[j])):
                    s.at_risk[(q, risk)] = s.at_risk.get((q, risk), 0) + 1
        absent: dict[tuple[Quantity, str], int] = {}
        for k, name in enumerate(self._layers):
            for b_index, b in enumerate(batches):
                for j in b.layers[k].absent:
                    i = b.indices[j]
                    if i not in judged and batch[i] == b_index and position[i] == j:
                        where = (self._probes[i].quantity, name)
                        absent[where] = absent.get(where, 0) + 1
        for q, n in count.items():
            s.probes[q] = s.probes.get(q, 0) + n
            s.bits[q] = max(s.bits.get(q, 0), largest[q].bit_length())
            for name in self._layers:
                missing = absent.get((q, name), 0)
                for v, c in ((Verdict.MATCH, n - missing), (Verdict.ABSENT, missing)):
                    if c:
                        s.verdicts[(q, name, v)] = s.verdicts.get((q, name, v), 0) + c
            if referenced.get(q):
                raw_match = (q, RAW, Verdict.MATCH)
                s.verdicts[raw_match] = s.verdicts.get(raw_match, 0) + referenced[q]
        return s

    def _where(self, i: int) -> tuple[Batch, int]:
        return self._batches[self._batch[i]], self._position[i]

    def _verdicts(self, b: Batch, j: int) -> Mapping[str, Verdict]:
        """What judge() returns for a unanimous probe: MATCH for every layer that read
        (ABSENT for the others), then raw MATCH where there is a reference. One
        read-only mapping per shape, shared by every such probe."""
        shape = (*(j in c.absent for c in b.layers), b.refs[j] is not None)
        v = self._shapes.get(shape)
        if v is None:
            d = {n: Verdict.ABSENT if absent else Verdict.MATCH
                 for n, absent in zip(self._layers, shape, strict=False)}
            if shape[-1]:
                d[RAW] = Verdict.MATCH
            v = self._shapes[shape] = MappingProxyType(d)
        return v


class _Row(Result):
    """A unanimous probe's Result, each field read from the columns when asked for:
    an exporter's pass over 30,000 results builds only what it reads."""

    __slots__ = ("_index", "_table")
    _index: int
    _table: Results

    def __init__(self, table: Results, index: int) -> None:
        # Result's own slots stay empty: the properties below stand in for them.
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_index", index)

    @property
    def probe(self) -> Probe:
        return self._table._probes[self._index]

    @property
    def raw(self) -> Reading:
        b, j = self._table._where(self._index)
        return raw_result(b.raw[j])

    @property
    def reference(self) -> Truth | None:
        b, j = self._table._where(self._index)
        return truth_of(b.refs[j])

    @property
    def readings(self) -> Mapping[str, Reading | None]:
        b, j = self._table._where(self._index)
        return {n: c.reading(j) for n, c in zip(self._table._layers, b.layers, strict=True)}

    @property
    def verdicts(self) -> Mapping[str, Verdict]:
        b, j = self._table._where(self._index)
        return self._table._verdicts(b, j)

    @property
    def attempts(self) -> int:
        return self._table._where(self._index)[0].attempt

    @property
    def mismatches(self) -> dict[str, Verdict]:
        return {}  # unanimous: every verdict is MATCH or ABSENT

    @property
    def source_findings(self) -> dict[str, Verdict]:
        return {}  # unanimous: a non-negative raw result, every layer MATCH or ABSENT


def truth_of(ref: Ref) -> Truth | None:
    return Truth.exact(ref) if isinstance(ref, int) else ref
