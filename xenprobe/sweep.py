"""One sweep: every probe, every layer, bracketed by raw and reference reads."""

from __future__ import annotations

import errno as errnos
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from xenprobe.classify import Risk, Truth, Verdict, at_risk, bits_used
from xenprobe.host import DomainInfo, Host, Identity, sys_hypervisor_version
from xenprobe.judge import Sample, judge
from xenprobe.layers import Layer
from xenprobe.quantities import Probe, Quantity, Subject, plan
from xenprobe.reading import Reading
from xenprobe.transport import Args, Buffer, args5

log = structlog.get_logger("xenprobe.sweep")

ATTEMPTS = 3
_UNKNOWN = object()


@dataclass(frozen=True)
class Result:
    probe: Probe
    raw: Reading
    reference: Truth | None
    readings: dict[str, Reading | None]
    verdicts: dict[str, Verdict]
    attempts: int

    @property
    def bits(self) -> int:
        return bits_used(self.raw)

    @property
    def at_risk(self) -> tuple[Risk, ...]:
        return at_risk(self.raw)

    @property
    def mismatches(self) -> dict[str, Verdict]:
        return {layer: v for layer, v in self.verdicts.items() if v.is_mismatch}


@dataclass(frozen=True)
class Sweep:
    identity: Identity
    results: list[Result]
    domains: int
    started: float
    duration: float
    layers: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> list[Result]:
        return [r for r in self.results if r.mismatches]


@dataclass(frozen=True)
class _References:
    physinfo: dict[str, int | bytes]
    domains: dict[int, DomainInfo]
    version: int | None
    self_domid: int | None

    def truth(self, probe: Probe) -> Truth | None:
        q = probe.quantity
        if q is Quantity.MAXIMUM_RAM_PAGE:
            # max_page is the highest RAM frame + 1: at least total_pages, at most
            # max_mfn + 1 (xen-abi.md 2.2, 4.3).
            total, max_mfn = self.physinfo["total_pages"], self.physinfo["max_mfn"]
            assert isinstance(total, int) and isinstance(max_mfn, int)
            return Truth.between(total, max_mfn + 1)
        if q is Quantity.XEN_VERSION:
            return Truth.exact(self.version) if self.version is not None else None
        if q is Quantity.MAXIMUM_GPFN:
            return None  # no independent source
        if probe.subject is Subject.MISSING:
            return Truth.error(errnos.ESRCH)
        domid = self.self_domid if probe.subject is Subject.SELF else probe.domid
        if domid is None:
            return None  # who DOMID_SELF is could not be told
        info = self.domains.get(domid)
        if info is None:
            return Truth.error(errnos.ESRCH)
        pages = info.tot_pages if q is Quantity.CURRENT_RESERVATION else info.max_pages
        return Truth.exact(pages)


class Sweeper:
    """Runs sweeps on one host through one set of layers."""

    def __init__(self, host: Host, layers: Sequence[Layer], attempts: int = ATTEMPTS) -> None:
        self.host = host
        self.layers = list(layers)
        self.attempts = attempts
        self._self_domid: int | object | None = _UNKNOWN  # asked once per Sweeper

    def _references(self) -> _References:
        listed = self.host.domains()
        if self._self_domid is _UNKNOWN:
            self._self_domid = self.host.self_domid(listed)
        domains = {d.domid: d for d in listed}
        return _References(self.host.physinfo(), domains, sys_hypervisor_version(),
                           self._self_domid if isinstance(self._self_domid, int) else None)

    def sweep(self) -> Sweep:
        started = time.time()
        t0 = time.perf_counter()
        domains = self.host.domains()
        probes = plan(d.domid for d in domains)
        domids = sorted({p.domid for p in probes if p.domid is not None})
        results: dict[Probe, Result] = {}
        with Buffer(2 * max(1, len(domids))) as slots:
            address = {}
            for i, domid in enumerate(domids):
                struct.pack_into("<H", slots.view, 2 * i, domid)
                address[domid] = slots.address + 2 * i
            pending = probes
            history: dict[Probe, list[Sample]] = {}
            for attempt in range(1, self.attempts + 1):
                final = attempt == self.attempts
                calls = [_call(p, address) for p in pending]
                pending = self._attempt(pending, calls, attempt, final, results, history)
                if not pending:
                    break
        ordered = [results[p] for p in probes]
        duration = time.perf_counter() - t0
        log.debug("sweep", probes=len(ordered), seconds=round(duration, 4))
        return Sweep(self.host.identity, ordered, len(domains), started, duration,
                     [layer.name for layer in self.layers])

    def _attempt(self, probes: list[Probe], calls: list[tuple[int, Args]], attempt: int,
                 final: bool, results: dict[Probe, Result],
                 history: dict[Probe, list[Sample]]) -> list[Probe]:
        dev = self.host.dev
        refs_before = self._references()
        raw_before = dev.multicall(calls)
        readings = {layer.name: layer.read_many(probes, calls) for layer in self.layers}
        raw_after = dev.multicall(calls)
        refs_after = self._references()
        again = []
        for i, probe in enumerate(probes):
            layer_readings = {name: rs[i] for name, rs in readings.items()}
            via_ref = frozenset(layer.name for layer in self.layers
                                if layer.via_reference(probe))
            sample = Sample(raw_before[i], raw_after[i], refs_before.truth(probe),
                            refs_after.truth(probe), layer_readings, via_ref)
            earlier = history.setdefault(probe, [])
            verdicts = judge(sample, final=final, earlier=earlier)
            if verdicts is None:
                earlier.append(sample)
                again.append(probe)
                continue
            results[probe] = Result(probe, raw_before[i], sample.ref_before,
                                    layer_readings, verdicts, attempt)
        return again


def _call(probe: Probe, address: dict[int, int]) -> tuple[int, Args]:
    op, cmd = probe.call
    if probe.domid is None:
        return op, args5(cmd)
    return op, args5(cmd, address[probe.domid])
