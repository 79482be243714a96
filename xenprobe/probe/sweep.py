# SPDX-License-Identifier: GPL-2.0-only
"""One sweep: every probe, every layer, bracketed by raw and reference reads.

Built for hosts with thousands of domains. Each attempt issues the whole batch at
once (two multicall batches, one C loop per ioctl layer, getdomaininfolist in chunks)
and compares the readings column-wise (judge.unanimous): a probe where every layer
returned the raw value, which equals its reference, with nothing moved, is a match
without a Sample. Every other probe goes through `judge` and the pure classifier, as
before. Results are kept as columns too, and a Result object is built when it is read.
"""

from __future__ import annotations

import dataclasses
import errno as errnos
import functools
import struct
import time
import uuid
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from xenprobe.layers.protocol import Layer
from xenprobe.layers.raw_absent import RawAbsent
from xenprobe.probe.calls import KexecStatuses, Memory, call
from xenprobe.probe.classify import Truth
from xenprobe.probe.judge import (
    Ref,
    RefSample,
    Sample,
    judge,
    judge_by_reference,
    unanimous,
)
from xenprobe.probe.references import (
    REFERENCES,
    Sources,
    max_pages,
    no_reference,
    read_facts,
    references,
    tot_pages,
)
from xenprobe.probe.results import Batch, Result, Results, Summary, truth_of
from xenprobe.support.errors import CannotProbe
from xenprobe.xen.abi.errnos import can_return
from xenprobe.xen.host import (
    DomainPages,
    Host,
    Identity,
    sys_hypervisor_guest_type,
    sys_hypervisor_version,
)
from xenprobe.xen.livepatch import LivepatchList
from xenprobe.xen.platform_requests import PlatformRequests
from xenprobe.xen.quantities import (
    RECORDS,
    Argument,
    Probe,
    Quantity,
    Scope,
    Subject,
    census,
    census_probe,
    offered,
    plan,
)
from xenprobe.xen.reading import Columns, Reading, raw_result
from xenprobe.xen.transport import Buffer, Calls, NoMulticall
from xenprobe.xen.xenstore import Names

log = structlog.get_logger("xenprobe.probe.sweep")

ATTEMPTS = 3


def uuid_text(handle: bytes) -> str:
    """A domain handle as libxl and xl print it: its 16 bytes in order, in lowercase hex,
    grouped 4-2-2-2-6 (tools/include/libxl_uuid.h@RELEASE-4.17.0: LIBXL_UUID_FMT)."""
    return str(uuid.UUID(bytes=handle))
_UNKNOWN = object()


@dataclass(frozen=True)
class Sweep:
    identity: Identity
    results: Sequence[Result]
    domains: int
    started: float
    duration: float
    layers: list[str] = field(default_factory=list)
    raw_absent: RawAbsent | None = None  # why there is no raw layer, if there is none
    # domid -> handle (the domain's UUID, 16 bytes) of the domains listed at the start:
    # domain ids are reused after every reboot, the UUID names the same domain.
    handles: Mapping[int, bytes] = field(default_factory=dict)
    # domid -> name, for the listed domains whose xenstore name could be read.
    names: Mapping[int, str] = field(default_factory=dict)

    def name(self, domid: int | None) -> str | None:
        """A domain's name from xenstore, or None where it could not be read."""
        return self.names.get(domid) if domid is not None else None

    def uuid(self, domid: int | None) -> str | None:
        """A domain's UUID as toolstacks print it, or None for a domain not listed."""
        handle = self.handles.get(domid) if domid is not None else None
        return uuid_text(handle) if handle is not None else None

    @property
    def mismatches(self) -> list[Result]:
        if isinstance(self.results, Results):
            return self.results.mismatches()
        return [r for r in self.results if r.mismatches]

    @property
    def source_findings(self) -> list[Result]:
        """Results whose raw value was wrong where Xen returned it (a forged errno, out
        of range), with the layers that passed it on."""
        if isinstance(self.results, Results):
            return self.results.source_findings()
        return [r for r in self.results if r.source_findings]

    @functools.cached_property
    def summary(self) -> Summary:
        if isinstance(self.results, Results):
            return self.results.summary()
        return Summary.of(self.results)


@dataclass(frozen=True)
class _References(Sources):
    """The Sources read around one attempt, looked up per probe or column-wise."""

    def truth(self, probe: Probe) -> Truth | None:
        ref = self.ref(probe)
        return Truth.exact(ref) if isinstance(ref, int) else ref

    def ref(self, probe: Probe) -> Ref:
        """truth(), with an exact page count as a plain int (see judge.Ref)."""
        return REFERENCES[probe.quantity](self, probe)

    def column(self, plan: _Plan, indices: Sequence[int]) -> list[Ref]:
        """ref() of the plan's probes at these positions. The per-domain probes, nearly
        all of them, are looked up in bulk."""
        if len(indices) != len(plan.calls):
            return [self.ref(plan.probes[i]) for i in indices]
        out: list[Ref] = [None] * len(indices)  # what has no reference stays None
        pages = self.domains
        for column, bulk in enumerate((plan.current, plan.maximum)):
            if isinstance(pages, DomainPages) and bulk.every is not None \
                    and pages.ids == bulk.ids:
                # The domains listed are the plan's, in its order: the whole column at once.
                out[bulk.every] = pages.max if column else pages.tot
                continue
            for i, domid in zip(bulk.at, bulk.ids, strict=True):
                info = pages.get(domid)
                out[i] = info[column] if info is not None else _ESRCH
        for i in plan.others:
            out[i] = self.ref(plan.probes[i])
        return out


_ESRCH = Truth.error(errnos.ESRCH)


@dataclass
class _Bulk:
    """Where in a plan's by-value probes one page count of every domain is read
    (current_reservation's tot_pages, maximum_reservation's max_pages), and whose."""

    at: list[int]                # positions, one per domain probe
    ids: array[int] = field(default_factory=lambda: array("l"))  # the domid at each
    every: slice | None = None   # `at` as a slice, where its steps are even

    def add(self, position: int, domid: int) -> None:
        self.at.append(position)
        self.ids.append(domid)

    def done(self) -> _Bulk:
        at = self.at
        first = at[0] if at else 0
        step = at[1] - first if len(at) > 1 else 1
        every = range(first, at[-1] + 1 if at else 0, step) if step > 0 else range(0)
        if list(every) == at:
            self.every = slice(every.start, every.stop, every.step)
        return self


_INVALID_MAX_VCPU_ID = 0xFFFF_FFFF  # XEN_INVALID_MAX_VCPU_ID, public/domctl.h@4.17:142


@dataclass
class _Plan:
    """The probes for one set of domains and the calls that read them, kept while the
    domains stay the same (a daemon sweeps the same host over and over)."""

    domids: tuple[int, ...]
    offered: tuple[Quantity, ...]          # the census quantities this host answers
    probes: list[Probe]
    calls: Calls                           # for probes[:len(calls)]: the by-value ones
    by_value: list[Probe]                  # probes[:len(calls)]; UNBATCHED ones follow
    slots: Buffer                          # the domid_t each per-domain call points to
    current: _Bulk                         # where current_reservation is, per domain
    maximum: _Bulk                         # ... and maximum_reservation
    others: list[int]                      # every other probe with a possible reference
    via_reference: dict[str, frozenset[int]]
    layers: tuple[Layer, ...]              # whose ids key this plan in Known.plans

    @staticmethod
    def build(domids: tuple[int, ...], layers: Sequence[Layer],
              census: tuple[Quantity, ...] = (), vcpus: int = 1,
              requests: PlatformRequests | None = None,
              kexec: KexecStatuses | None = None) -> _Plan:
        probes = plan(domids, census, vcpus)
        by_value = [p for p in probes if RECORDS[p.quantity].batched]
        ids = sorted({p.domid for p in probes if p.domid is not None})
        slots = Buffer(2 * max(1, len(ids)))
        address = {}
        for i, domid in enumerate(ids):
            struct.pack_into("<H", slots.view, 2 * i, domid)
            address[domid] = slots.address + 2 * i
        memory = Memory(address, kexec, requests)
        calls = Calls.of([call(p, memory) for p in by_value])
        current, maximum = _Bulk([]), _Bulk([])
        others = []
        # A domain's page counts are looked up in bulk (_References.column); what has
        # no reference is left out.
        bulk = {tot_pages: current, max_pages: maximum}
        for i, p in enumerate(by_value):
            reference = REFERENCES[p.quantity]
            column = bulk.get(reference) if p.subject is Subject.DOMAIN else None
            if column is not None:
                column.add(i, p.domid or 0)
            elif reference is not no_reference:
                others.append(i)
        via = {layer.name: frozenset(i for i, p in enumerate(probes)
                                     if layer.via_reference(p)) for layer in layers}
        return _Plan(domids, census, probes, calls, by_value, slots, current.done(),
                     maximum.done(), others, via, tuple(layers))


@dataclass
class _Progress:
    """What a sweep's attempts share: each attempt's columns, where each unanimous
    probe's readings are (batch and position), the judged probes, and the samples of
    probes still to be read again."""

    batches: list[Batch]
    batch: array[int]       # probe -> index into batches
    position: array[int]    # probe -> its position in that batch
    judged: dict[int, Result] = field(default_factory=dict)
    history: dict[int, list[Sample]] = field(default_factory=dict)

    @staticmethod
    def start(n: int) -> _Progress:
        # Every probe first points at the first attempt's batch, at its own position.
        return _Progress([], array("B", bytes(n)), array("l", range(n)))

    def results(self, probes: list[Probe], layers: list[str]) -> Results:
        return Results(probes, layers, self.batches, self.batch, self.position, self.judged)


@dataclass
class Known:
    """What a sweep learns about a host that the next sweep through the same open
    device can reuse: which domain is the caller, what the hypervisor offers, the
    request buffers and the plans. Its owner is the probe session (xenprobe.probe.session),
    which makes a Sweeper per sweep; a Sweeper made without one keeps its own."""

    self_domid: int | object | None = _UNKNOWN  # asked once per Host
    offered: tuple[Quantity, ...] | None = None  # census quantities, asked once per Host
    vcpus: int = 1  # the caller's own vCPU count (getdomaininfo), asked with `offered`
    livepatch: LivepatchList | None = None  # its request buffer, once it is offered
    # One plan per set of layers (by identity; the plan keeps them alive).
    plans: dict[tuple[int, ...], _Plan] = field(default_factory=dict)
    # Set once the multicall answered ENOSYS: the hypervisor will not grow one.
    raw_absent: RawAbsent | None = None
    # The structs the platform_op quantities point to, made when first asked for.
    requests: PlatformRequests | None = None
    # Domain names from xenstore; it remembers why they were last absent.
    names: Names = field(default_factory=Names)
    # The kexec_status structs the kexec quantities point to.
    kexec: KexecStatuses = field(default_factory=KexecStatuses)

_PLANS_KEPT = 4


class Sweeper:
    """Runs sweeps on one host through one set of layers."""

    def __init__(self, host: Host, layers: Sequence[Layer], attempts: int = ATTEMPTS,
                 known: Known | None = None) -> None:
        self.host = host
        self.layers = list(layers)
        self.attempts = attempts
        self._known = known if known is not None else Known()

    def _references(self) -> _References:
        known = self._known
        if known.self_domid is _UNKNOWN:
            listed = self.host.domains()
            known.self_domid = self.host.self_domid(listed)
            domains = DomainPages((d.domid, d.tot_pages, d.max_pages) for d in listed)
            del listed  # 10,000 DomainInfo objects: not kept over the attempt
        else:
            domains = self.host.domain_pages()
        facts = read_facts() if self._offered() else None
        census = references(facts) if facts is not None else {}
        return _References(self.host.physinfo(), domains, sys_hypervisor_version(),
                           known.self_domid if isinstance(known.self_domid, int) else None,
                           facts, census)

    def _offered(self) -> tuple[Quantity, ...]:
        """The census quantities this hypervisor answers (anything but -ENOSYS), asked
        once per Host: by one multicall, or where there is none (a PVH dom0 before
        4.15.1) through the ioctl system call, whose errno tells ENOSYS as well."""
        known = self._known
        if known.offered is None:
            memory = Memory({}, known.kexec, self._requests())
            calls = Calls.of([call(census_probe(q), memory) for q in census()])
            try:
                raw = list(self.host.dev.multicall_values(calls))
            except CannotProbe:
                values, errs = self.host.dev.many_values(calls, syscall=True)
                raw = [-e if e else v for v, e in zip(values, errs, strict=True)]
            known.offered = offered(raw) + self._offered_unbatched()
            if any(RECORDS[q].scope is Scope.PER_VCPU for q in known.offered):
                known.vcpus = self._own_vcpus()
            log.debug("census_offered", quantities=[q.value for q in known.offered],
                      vcpus=known.vcpus)
        return known.offered

    def _own_vcpus(self) -> int:
        """The caller's vCPU count: its getdomaininfo max_vcpu_id + 1, the highest vCPU
        id it has (common/domctl.c@RELEASE-4.17.0:75,85), which Xen bounds. Where the
        caller cannot be told among the domains, or has no vCPU id (~0U), vCPU 0 alone."""
        listed = self.host.domains()
        me = self.host.self_domid(listed)
        # The same answer the first sweep's references would list the domains again for.
        self._known.self_domid = me
        for d in listed:
            if d.domid == me and d.max_vcpu_id < _INVALID_MAX_VCPU_ID:
                return d.max_vcpu_id + 1
        return 1

    def _requests(self) -> PlatformRequests:
        known = self._known
        if known.requests is None:
            known.requests = PlatformRequests()
        return known.requests

    def _fresh(self) -> None:
        """The platform_op requests as asked: Xen writes into them (platform_requests)."""
        if self._known.requests is not None:
            self._known.requests.reset()

    def _offered_unbatched(self) -> tuple[Quantity, ...]:
        """The UNBATCHED quantities this hypervisor answers: livepatch LIST, asked once
        through the ioctl system call (-ENOSYS: a build without CONFIG_LIVEPATCH)."""
        lp = LivepatchList(self.host.dev, self.host.identity.sysctl)
        r, _ = lp.read(syscall=True)
        if r.failed and r.errno == errnos.ENOSYS:
            lp.close()
            return ()
        self._known.livepatch = lp
        return (Quantity.LIVEPATCH_LISTED,)

    def _read_unbatched(self, probe: Probe) -> dict[str, Reading | None]:
        """Every layer's reading of an UNBATCHED probe: syscall and ioctl issue the
        struct themselves (a batch takes by-value calls only), other layers read it as
        they read one probe (libxc: xc_livepatch_list_get_sizes, the same request)."""
        lp = self._known.livepatch
        assert lp is not None and probe.quantity is Quantity.LIVEPATCH_LISTED
        out: dict[str, Reading | None] = {}
        for layer in self.layers:
            out[layer.name] = layer.read_request(probe, lp)
        return out

    def _judge_unbatched(self, p: _Plan) -> dict[int, Result]:
        """The UNBATCHED probes (after the by-value ones in the plan), each read by every
        layer and judged against the reference alone, as a host without multicalls is."""
        judged: dict[int, Result] = {}
        for i in range(len(p.calls), len(p.probes)):
            probe = p.probes[i]
            earlier: list[RefSample] = []
            for attempt in range(1, self.attempts + 1):
                # Host-wide census references come from sysfs and the source alone:
                # no getdomaininfolist or physinfo round for them.
                before = truth_of(_facts_only().ref(probe))
                readings = self._read_unbatched(probe)
                after = truth_of(_facts_only().ref(probe))
                sample = RefSample(before, after, readings)
                verdicts = judge_by_reference(sample, final=attempt == self.attempts,
                                              earlier=earlier)
                if verdicts is not None:
                    judged[i] = Result(probe, None, sample.ref_before, readings, verdicts,
                                       attempt)
                    break
                earlier.append(sample)
        return judged

    def _planned(self, domids: tuple[int, ...]) -> _Plan:
        plans = self._known.plans
        key = tuple(id(layer) for layer in self.layers)
        p = plans.get(key)
        census = self._offered()
        if p is None or p.domids != domids or p.offered != census:
            if p is not None:
                p.slots.close()
            elif len(plans) >= _PLANS_KEPT:
                plans.pop(next(iter(plans))).slots.close()
            platform = any(RECORDS[q].argument is Argument.PLATFORM for q in census)
            requests = self._requests() if platform else None
            p = plans[key] = _Plan.build(domids, self.layers, census, self._known.vcpus,
                                         requests, self._known.kexec)
        return p

    def sweep(self) -> Sweep:
        swept = self._swept()
        return dataclasses.replace(swept, names=self._known.names.read(swept.handles))

    def _swept(self) -> Sweep:
        started = time.time()
        t0 = time.perf_counter()
        handles = self.host.domain_handles()
        domids = tuple(handles)
        p = self._planned(domids)
        if self._known.raw_absent is None:
            try:
                return self._sweep(p, started, t0, handles)
            except NoMulticall:
                self._known.raw_absent = RawAbsent.after_enosys(
                    sys_hypervisor_guest_type())
                log.info("raw_layer_absent", reason=self._known.raw_absent.reason)
        results = self._sweep_without_raw(p)
        return Sweep(self.host.identity, results, len(p.domids), started,
                     time.perf_counter() - t0, [layer.name for layer in self.layers],
                     self._known.raw_absent, handles)

    def _sweep_without_raw(self, p: _Plan) -> list[Result]:
        """Every probe read by every layer and judged against the reference alone
        (judge_by_reference), a Result each: hosts without multicalls are small and
        rare, and every probe needs the judge here anyway."""
        n = len(p.probes)
        judged = self._judge_unbatched(p)
        history: dict[int, list[RefSample]] = {}
        pending = list(range(len(p.calls)))
        for attempt in range(1, self.attempts + 1):
            final = attempt == self.attempts
            calls = p.calls if len(pending) == len(p.calls) else p.calls.subset(pending)
            probes = [p.probes[i] for i in pending]
            refs_before = self._references()
            columns = [self._read(layer, probes, calls, None) for layer in self.layers]
            ref_before = refs_before.column(p, pending)
            ref_after = self._references().column(p, pending)
            again = []
            for j, i in enumerate(pending):
                readings = {layer.name: c.reading(j)
                            for layer, c in zip(self.layers, columns, strict=True)}
                sample = RefSample(truth_of(ref_before[j]), truth_of(ref_after[j]), readings)
                earlier = history.setdefault(i, [])
                verdicts = judge_by_reference(sample, final=final, earlier=earlier)
                if verdicts is None:
                    earlier.append(sample)
                    again.append(i)
                    continue
                judged[i] = Result(p.probes[i], None, sample.ref_before, readings,
                                   verdicts, attempt)
            pending = again
            if not pending:
                break
        return [judged[i] for i in range(n)]

    def _sweep(self, p: _Plan, started: float, t0: float,
               handles: Mapping[int, bytes]) -> Sweep:
        """A sweep with the raw layer (the multicall) bracketing the others: attempts
        until every probe has a verdict or the attempts run out."""
        n = len(p.probes)
        progress = _Progress.start(n)
        progress.judged.update(self._judge_unbatched(p))
        # Every by-value probe at first: a range, not a list of 30,000 ints.
        pending: Sequence[int] = range(len(p.calls))
        for attempt in range(1, self.attempts + 1):
            pending = self._attempt(p, progress, pending, attempt,
                                    final=attempt == self.attempts)
            if not pending:
                break
        results = progress.results(p.probes, [layer.name for layer in self.layers])
        duration = time.perf_counter() - t0
        log.debug("sweep", probes=n, judged=len(progress.judged), seconds=round(duration, 4))
        return Sweep(self.host.identity, results, len(p.domids), started, duration,
                     [layer.name for layer in self.layers], handles=handles)

    def _read(self, layer: Layer, probes: list[Probe], calls: Calls,
              raw: array[int] | None) -> Columns:
        self._fresh()
        # The raw results let the int paths tell an alias from a transient EINTR.
        return layer.read_columns(probes, calls, raw)

    def _attempt(self, p: _Plan, progress: _Progress, pending: Sequence[int], attempt: int,
                 *, final: bool) -> list[int]:
        """One bracketed read of the pending probes: reference, raw, every layer, raw,
        reference. Unanimous probes stay in the batch's columns; the others go to the
        judge. Returns the probes to read again."""
        dev = self.host.dev
        calls = p.calls if len(pending) == len(p.calls) else p.calls.subset(pending)
        probes = [p.probes[i] for i in pending] if len(pending) < len(p.calls) \
            else p.by_value
        refs_before = self._references()
        self._fresh()
        raw_before = dev.multicall_values(calls)
        columns = [self._read(layer, probes, calls, raw_before) for layer in self.layers]
        self._fresh()
        raw_after = dev.multicall_values(calls)
        refs_after = self._references()
        ref_before = refs_before.column(p, pending)
        ref_after = refs_after.column(p, pending)
        agree = unanimous(raw_before, raw_after, ref_before, ref_after,
                          [(c.values, c.errnos, c.absent) for c in columns])
        index = len(progress.batches)
        whole = len(pending) == len(p.calls)  # every by-value probe, in plan order
        progress.batches.append(Batch(attempt, range(len(pending)) if whole else pending,
                                      raw_before, ref_before, [_compact(c) for c in columns]))
        again = []
        for j, i in enumerate(pending):
            if agree[j]:
                if index:  # the first batch is where every probe points already
                    progress.batch[i], progress.position[i] = index, j
                continue
            probe = p.probes[i]
            readings = {layer.name: c.reading(j) for layer, c in zip(self.layers, columns,
                                                                     strict=True)}
            via_ref = frozenset(layer.name for layer in self.layers
                                if i in p.via_reference[layer.name])
            raw = raw_result(raw_before[j])
            sample = Sample(raw, raw_result(raw_after[j]), truth_of(ref_before[j]),
                            truth_of(ref_after[j]), readings, via_ref,
                            self._can_return(probe, refs_before, refs_after))
            earlier = progress.history.setdefault(i, [])
            verdicts = judge(sample, final=final, earlier=earlier)
            if verdicts is None:
                earlier.append(sample)
                again.append(i)
                continue
            progress.judged[i] = Result(probe, raw, sample.ref_before, readings, verdicts,
                                        attempt)
        return again

    def _can_return(self, probe: Probe, before: _References, after: _References
                    ) -> frozenset[int] | None:
        """The errnos this probe's raw call can return (abi.errnos, for the release the
        host runs). ESRCH only where a domain can be missing: not for DOMID_SELF (the
        caller, always found: common/domain.c@RELEASE-4.17.0:885-888), nor for a
        domain getdomaininfo listed both before and after the raw reads."""
        release = self.host.identity.release
        known = can_return(*probe.call, (release.major, release.minor))
        if known is None or errnos.ESRCH not in known:
            return known
        exists = probe.subject is Subject.SELF or (
            probe.subject is Subject.DOMAIN and probe.domid in before.domains
            and probe.domid in after.domains)
        return known - {errnos.ESRCH} if exists else known


def _compact(c: Columns) -> Columns:
    """The columns as machine integers (8 bytes a value rather than a Python int each):
    a sweep keeps them until the next one replaces it."""
    if isinstance(c.values, array) and isinstance(c.errnos, array) and (
            isinstance(c.widths, int | array)):
        return c
    try:
        widths = c.widths if isinstance(c.widths, int) else array("b", c.widths)
        return Columns(array("q", c.values), array("i", c.errnos), widths, c.absent)
    except (OverflowError, TypeError):
        return c  # a layer returned something wider; keep it as it is


def _facts_only() -> _References:
    """The references of host-wide census quantities: from sysfs and the source alone,
    with no getdomaininfolist or physinfo round."""
    facts = read_facts()
    return _References(facts=facts, census=references(facts))
