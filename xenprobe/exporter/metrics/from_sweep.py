# SPDX-License-Identifier: GPL-2.0-only
"""The pure mapping from one sweep to metric families (names, HELP and labels: families.py).

Everything a sweep says is exported from here, for the daemon's collector and for the
one-shot textfile alike. Names follow Prometheus conventions: the `xenprobe_` prefix,
base units (seconds, bits), `_total` on counters, `_info` pseudo-metrics with value 1.

Which series exist (docs/metrics.md): the label sets an alert reads with increase()
exist from the first scrape at 0 (xenprobe_layer_errors_total{layer="raw"} for each of
ERRNOS, every reason of xenprobe_sweep_failures_total, every known retry), and
xenprobe_mismatched_readings has every impact from the first sweep: a series born at its
first non-zero value is invisible to increase() and rate(), which need two samples. The
detail gauges (xenprobe_mismatch_verdicts, _drift_verdicts, _probes_at_risk,
_guest_set_mismatch_verdicts) have a series only where non-zero, and the detail counters
(xenprobe_mismatch_onsets_total, _drifted_readings_total,
other layers' errors) appear at their first event: zeros for every quantity x layer x
verdict were 1,176 of pv-dom0's 1,607 series, and no alert reads them.

Series bound. Whatever the number of domains, a scrape returns at most

    2*Q*L*V + 2*Q*L + Q*(R + 2) + L*E + I + 2*N + G*(L*V + 1) + Q*(L + 1) + C

series, where Q = the quantities the host is probed for (5, and up to 16 census ones),
L = 4 layers (raw, syscall, ioctl, libxc), V = 7 mismatch verdicts, R = 4 risks, E = the
errnos seen (bounded by the Linux errno table, about 134), I = 3 impacts,
N = `max_domain_series` (default 100: xenprobe_domain_mismatch, and xenprobe_domain_info
for the domains among those), Q*(L + 1) xenprobe_source_finding (raw's forged_errno and
out_of_range, each other layer's passed_forged), G = 2 guest-set quantities (current_reservation,
maximum_gpfn) and C a constant (xenprobe's fixed series, the 9 known retries, 4 consumer
counts by verdict, up to MAX_CONSUMER_SERIES xenprobe_privcmd_consumer_info, 2
unreadable-process counts, the scan_complete gauge, and prometheus_client's process_*
and python_info). That is the worst case, every label set in mismatch at once; a host
exports what it has: the shipped scenarios 90 to 120 series (tests/test_series_count.py
counts a real scrape of each and holds it to 400). vcpu_is_up is one quantity however
many vCPUs dom0 has (no label names a vCPU), so no series grows with them. The textfile
has no counters. serve --watch adds the xenprobe_watch_* families (exporter/watching.py).
"""

from __future__ import annotations

import errno as errnos
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TypeVar

from prometheus_client.metrics_core import (
    GaugeMetricFamily,
    Metric,
)

from xenprobe import __version__
from xenprobe.exporter.metrics import layer_absent
from xenprobe.exporter.metrics.families import (
    counter_family,
    gauge,
    gauge_family,
    info_family,
)
from xenprobe.layers import protocol as layers
from xenprobe.probe import impact
from xenprobe.probe.classify import MISMATCHES, Risk, Verdict
from xenprobe.probe.judge import RAW
from xenprobe.probe.results import Result
from xenprobe.probe.sweep import Sweep
from xenprobe.support import revision
from xenprobe.xen.consumers import Consumers
from xenprobe.xen.quantities import RECORDS, Probe, Quantity, Subject

PREFIX = "xenprobe"

MISMATCH_VERDICTS = tuple(sorted(v.value for v in MISMATCHES))
RISKS = tuple(r.value for r in Risk)
# The quantities every host is probed for (their records); the census ones
# (Record.census) only where the hypervisor offers them, so their series are known from
# the first sweep that probes them, not before (zeros for all of them on every host
# would triple the series).
QUANTITIES = tuple(q.value for q in Quantity if not RECORDS[q].census)
# Every layer a sweep can have (xenprobe.layers.protocol.ladder, plus raw): known before the first
# sweep, so counters exist from the first scrape.
LAYERS = (RAW, *layers.NAMES)
# The errnos a read can meet and an alert cares about, exported at 0 for every layer:
# EPERM (an XSM/FLASK policy, not a control domain), EACCES (wrong interface version),
# ESRCH (a domain destroyed during the sweep), ENOENT (glibc's reading of 0xFFFFFFFE),
# EINTR and EAGAIN (beyond the retries), EFAULT, EINVAL and ENOSYS (a hypervisor that does
# not understand the request). Others appear when first seen.
ERRNOS = ("EACCES", "EAGAIN", "EFAULT", "EINTR", "EINVAL", "ENOENT", "ENOSYS", "EPERM",
          "ESRCH")
# The retries the transport and the host can make (README "Faults").
RETRIES = (*((call, why) for call in ("ioctl", "multicall", "syscall")
             for why in ("EAGAIN", "EINTR")),
           *((call, "invalid") for call in ("getdomaininfolist", "physinfo", "xen_version")))

# Label values of xenprobe_domain_mismatch's `domid` for the subjects that are not a
# numbered domain: DOMID_SELF, and the id chosen because no domain has it (the number
# changes as domains come and go, so it is not used as a label value).
SELF = "self"
MISSING = "missing"



def errno_name(e: int) -> str:
    return errnos.errorcode.get(e, str(e))


def domid_label(probe: Probe) -> str | None:
    """The `domid` label of a per-domain probe; None for host-wide quantities."""
    if probe.subject is Subject.SELF:
        return SELF
    if probe.subject is Subject.MISSING:
        return MISSING
    if probe.subject is Subject.DOMAIN:
        return str(probe.domid)
    return None


def _expected_error(result: Result, errno: int) -> bool:
    """The missing-domain probe exists to read ESRCH: that error is the point of it."""
    return result.probe.subject is Subject.MISSING and errno == errnos.ESRCH


def _forged(result: Result, layer: str) -> bool:
    """A forged error, at raw or passed on: no failure of the hypervisor's or the
    layer's (xenprobe_source_finding counts it), so no layer error either."""
    return result.verdicts.get(layer) in (Verdict.FORGED_ERRNO, Verdict.PASSED_FORGED)


# -- per-sweep tallies (the daemon adds them to its counters) ---------------------------

def mismatch_counts(sweep: Sweep) -> Counter[tuple[str, str, str]]:
    """(quantity, layer, verdict) -> subjects in that mismatch state."""
    counts: Counter[tuple[str, str, str]] = Counter()
    # The sweep's summary: a scrape must not walk every result (30,000 at 10k domains).
    for (q, layer, v), n in sweep.summary.verdicts.items():
        if v.is_mismatch:
            counts[(q.value, layer, v.value)] += n
    return counts


# A subject, as the same across sweeps: the missing-domain probe's id changes as domains
# come and go, but it is the same probe. A vCPU is keyed by its id.
SubjectKey = tuple[str, str, int | None]
MismatchState = tuple[SubjectKey, str, str]  # (subject, layer, verdict)


def mismatch_states(sweep: Sweep) -> set[MismatchState]:
    """Every (subject, layer, verdict) in mismatch in this sweep."""
    out: set[MismatchState] = set()
    for r in sweep.mismatches:
        p = r.probe
        key = (p.quantity.value, p.subject.value,
               None if p.subject is Subject.MISSING
               else p.vcpu if p.subject is Subject.VCPU else p.domid)
        out.update((key, layer, v.value) for layer, v in r.mismatches.items())
    return out


def transitions(before: set[MismatchState], now: set[MismatchState]
                ) -> Counter[tuple[str, str, str]]:
    """(quantity, layer, verdict) -> subjects that entered that mismatch state: the events
    xenprobe_mismatch_onsets_total counts. A state that lasts is counted once, whatever the
    interval; one that ends and comes back again."""
    return Counter((key[0], layer, verdict) for key, layer, verdict in now - before)


def drift_counts(sweep: Sweep) -> Counter[tuple[str, str]]:
    """(quantity, layer) -> subjects whose reading drifted while being read."""
    return sweep.summary.with_verdict(Verdict.DRIFT)


def layer_errors(sweep: Sweep) -> Counter[tuple[str, str]]:
    """(layer, errno name) -> readings that failed unexpectedly (raw included)."""
    counts: Counter[tuple[str, str]] = Counter()
    for r in sweep.summary.failed:
        readings = [(RAW, r.raw), *r.readings.items()]
        for layer, reading in readings:
            if reading is not None and reading.failed and not _expected_error(
                    r, reading.errno) and not _forged(r, layer):
                counts[(layer, errno_name(reading.errno))] += 1
    return counts


# -- families ------------------------------------------------------------------------

def build_info() -> Metric:
    m = info_family("xenprobe_build_info")
    m.add_metric([], {"version": __version__, "revision": revision.revision()})
    return m


def mock_info(scenario: str) -> Metric:
    m = info_family("xenprobe_mock_info")
    m.add_metric([], {"scenario": scenario})
    return m


def sweep_families(sweep: Sweep, max_domain_series: int,
                   left_out: frozenset[str] = frozenset()) -> list[Metric]:
    """Every family a successful sweep yields (no counters: those span sweeps), without
    the quantities `left_out` (collectors.left_out)."""
    ident = sweep.identity
    xen = info_family("xenprobe_xen_info")
    # One spelling for one value: the interface versions are decimal integers here and
    # in check --json's host (XEN_SYSCTL_INTERFACE_VERSION 0x15 is "21").
    xen.add_metric([], {"version": ident.version, "release": ident.release.name,
                        "sysctl_interface": str(ident.sysctl),
                        "domctl_interface": str(ident.domctl)})
    out: list[Metric] = [
        xen,
        gauge("domains", sweep.domains),
        gauge("sweep_duration_seconds", sweep.duration),
    ]
    out += _per_quantity(sweep)
    out += _verdicts(sweep)
    out += [mismatched_readings(sweep, left_out)]
    out += _guest_set(sweep)
    out += _source_findings(sweep)
    out += _domain_mismatches(sweep, max_domain_series)
    out += layer_absent.families(sweep)
    return [without(f, left_out) for f in out] if left_out else out


def without(family: Metric, left_out: frozenset[str]) -> Metric:
    """The family without the samples of the quantities left out."""
    family.samples = [s for s in family.samples if s.labels.get("quantity") not in left_out]
    return family


def guest_set_counts(sweep: Sweep) -> Counter[tuple[str, str, str]]:
    """(quantity, layer, verdict) -> domUs in that mismatch state on a value they set
    themselves (Record.guest_set)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for r in sweep.mismatches:
        if r.probe.guest_set:
            for layer, v in r.mismatches.items():
                counts[(r.probe.quantity.value, layer, v.value)] += 1
    return counts


def _guest_set(sweep: Sweep) -> list[Metric]:
    info = info_family("xenprobe_guest_set_info", ("quantity",))
    for q, r in RECORDS.items():
        if r.guest_set is not None:
            info.add_metric([q.value], {"how": r.guest_set})
    mismatch = gauge_family("xenprobe_guest_set_mismatch_verdicts")
    _present(mismatch, guest_set_counts(sweep))
    return [info, mismatch]


def source_finding_counts(sweep: Sweep) -> Counter[tuple[str, str, str]]:
    """(quantity, layer, verdict) -> subjects whose raw result was wrong at the source
    (raw: forged_errno, out_of_range) or a layer that passed a forged error on."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for r in sweep.source_findings:
        for layer, v in r.source_findings.items():
            counts[(r.probe.quantity.value, layer, v.value)] += 1
    return counts


def _source_findings(sweep: Sweep) -> list[Metric]:
    family = gauge_family("xenprobe_source_finding")
    quantity = {q.value: q for q in RECORDS}
    for (q, layer, v), n in sorted(source_finding_counts(sweep).items()):
        if n:  # only non-zero series, as the other detail gauges
            family.add_metric([q, layer, v, impact.source_impact(quantity[q]).value], n)
    return [family]


def _per_quantity(sweep: Sweep) -> list[Metric]:
    probes = gauge_family("xenprobe_probes")
    bits = gauge_family("xenprobe_raw_bit_length")
    risk = gauge_family("xenprobe_probes_at_risk")
    summary = sweep.summary
    for q in sorted(summary.probes, key=lambda q: q.value):
        probes.add_metric([q.value], summary.probes[q])
        if q in summary.bits:  # none without a raw layer
            bits.add_metric([q.value], summary.bits[q])
        for kind in Risk:
            if n := summary.at_risk.get((q, kind), 0):
                risk.add_metric([q.value, kind.value], n)
    return [probes, bits, risk]


def _verdicts(sweep: Sweep) -> list[Metric]:
    # Only non-zero series: a gauge needs no zero for increase(), and zeros for every
    # quantity x layer x verdict were most of a scrape (588 of pv-dom0's 1,607 series).
    # The alerts read xenprobe_mismatched_readings, which has every impact from the start.
    mismatch = gauge_family("xenprobe_mismatch_verdicts")
    _present(mismatch, mismatch_counts(sweep))
    drift = gauge_family("xenprobe_drift_verdicts")
    _present(drift, drift_counts(sweep))
    return [mismatch, drift]


def mismatched_readings(sweep: Sweep, left_out: frozenset[str] = frozenset()) -> Metric:
    family = gauge_family("xenprobe_mismatched_readings")
    verdicts = {k: n for k, n in sweep.summary.verdicts.items() if k[0] not in left_out}
    for which, n in impact.readings_by_impact(verdicts).items():
        family.add_metric([which.value], n)
    return family


_Labels = TypeVar("_Labels", bound=tuple[str, ...])


def _present(family: GaugeMetricFamily, counts: Mapping[_Labels, int]) -> None:
    """A sample for every label set counted, none for those at 0."""
    for key in sorted(counts):
        if counts[key]:
            family.add_metric(list(key), counts[key])


def all_layer_error_labels() -> list[tuple[str, str]]:
    """The xenprobe_layer_errors_total series at 0 from the start: the raw layer's, which
    XenprobeHypervisorErrors reads with increase()."""
    return [(RAW, e) for e in ERRNOS]


def _domain_mismatches(sweep: Sweep, limit: int) -> list[Metric]:
    rows: list[tuple[tuple[int, int], list[str]]] = []
    for r in sweep.mismatches:
        domid = domid_label(r.probe)
        if domid is None:
            continue
        for layer, v in r.mismatches.items():
            rows.append((_domain_order(r.probe), [r.probe.quantity.value, layer,
                                                  v.value, domid]))
    # Lowest domain ids first, so the same series survive the cap from sweep to sweep.
    rows.sort()
    family = gauge_family("xenprobe_domain_mismatch")
    for _, labels in rows[:limit]:
        family.add_metric(labels, 1)
    dropped = gauge("domain_mismatch_series_dropped", max(0, len(rows) - limit))
    return [family, dropped, _domain_info(sweep, [labels[3] for _, labels in rows[:limit]])]


def _domain_info(sweep: Sweep, domids: Iterable[str]) -> Metric:
    """The UUID of each numbered domain in xenprobe_domain_mismatch, and its xenstore
    name where it could be read, to join on domid: domain ids are handed out afresh
    when a domain is created again, the UUID stays. Only those domains, so the series
    stay within max_domain_series."""
    info = info_family("xenprobe_domain_info", ("domid",))
    for domid in sorted({d for d in domids if d.isdigit()}, key=int):
        uuid = sweep.uuid(int(domid))
        if uuid is not None:
            name = sweep.name(int(domid))
            info.add_metric([domid], {"uuid": uuid, **({"name": name} if name else {})})
    return info


def _domain_order(probe: Probe) -> tuple[int, int]:
    if probe.subject is Subject.SELF:
        return (0, 0)
    if probe.subject is Subject.MISSING:
        return (2, 0)
    return (1, probe.domid or 0)


def findings_families(sweep: Sweep | None, max_domain_series: int,
                      consumers: Consumers | None,
                      left_out: frozenset[str] = frozenset()) -> list[Metric]:
    """What one sweep found, for /metrics and the textfile alike: the sweep's families
    (when it succeeded) and the privcmd consumers looked up after it (when looked up)."""
    out = (sweep_families(sweep, max_domain_series, left_out) if sweep is not None
           else [])
    if consumers is not None:
        out += consumer_families(consumers)
    return out


# -- consumers at risk --------------------------------------------------------------

# xenprobe_privcmd_consumer_info series at most (most at risk first, then lowest pid);
# the counts per verdict in xenprobe_privcmd_consumers are exact.
MAX_CONSUMER_SERIES = 16


def consumer_families(c: Consumers) -> list[Metric]:
    count = gauge_family("xenprobe_privcmd_consumers")
    for verdict, n in c.by_verdict().items():
        count.add_metric([verdict], n)
    info = info_family("xenprobe_privcmd_consumer_info",
                       ("pid", "comm", "exe", "libxenctrl", "verdict"))
    for p in c.ordered()[:MAX_CONSUMER_SERIES]:
        lib = p.libxenctrl
        info.add_metric([str(p.pid), p.name, p.exe,
                         "" if lib is None else lib.release or lib.path,
                         p.verdict.value], {})
    unreadable = gauge_family("xenprobe_privcmd_consumers_unreadable_processes")
    for reason, n in c.unreadable_by_reason().items():
        unreadable.add_metric([reason], n)
    complete = gauge("privcmd_consumers_scan_complete", int(c.complete))
    return [count, info, unreadable, complete]


# -- counters (values kept by the daemon across sweeps and reloads) -------------------

def counter(name: str, values: Iterable[tuple[tuple[str, ...], float]]) -> Metric:
    """A counter family of the table; `name` as exposed, with `_total`."""
    m = counter_family(name)
    for key, value in sorted(values):
        m.add_metric(list(key), value)
    return m


# -- retries: a counter in the daemon, the one sweep's count in the textfile ----------

def retries_total(values: Mapping[tuple[str, str], int]) -> Metric:
    return counter("xenprobe_retries_total", values.items())


def sweep_retries(values: Mapping[tuple[str, str], int]) -> Metric:
    """The retries of one sweep, for a file each run rewrites. A gauge, not a counter:
    each file holds one run's count from 0, so two runs that both retried twice would
    look to increase() like no retry at all, and a smaller count like a counter reset."""
    m = gauge_family("xenprobe_sweep_retries")
    for key, n in sorted(values.items()):
        if n:
            m.add_metric(list(key), n)
    return m
