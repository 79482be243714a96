# SPDX-License-Identifier: GPL-2.0-only
"""Metric names, HELP texts and labels, and the pure mapping from one sweep to families.

Everything a sweep says is exported from here, for the daemon's collector and for the
one-shot textfile alike. Names follow Prometheus conventions: the `xenprobe_` prefix,
base units (seconds, bits), `_total` on counters, `_info` pseudo-metrics with value 1.

Known label values exist from the first scrape, at 0: every quantity x layer x verdict of
xenprobe_mismatch (and its counter), every quantity x layer of xenprobe_drift, every
layer x errno of ERRNOS in xenprobe_layer_errors_total, every known retry. A series that
is born at its first non-zero value is invisible to increase() and rate(), which need two
samples: the first event would never alert.

Series bound. Whatever the number of domains, a scrape returns at most

    2*Q*L*V + 2*Q*L + Q*(R + 2) + L*E + 2*N + G*(L*V + 1) + Q*(L + 1) + C

series, where Q = 5 quantities, L = 4 layers (raw, syscall, ioctl, libxc), V = 7 mismatch
verdicts, R = 4 risks, E = the errnos: the len(ERRNOS) always exported plus any other
seen (bounded by the Linux errno table, about 134), N = `max_domain_series` (default 100),
G = 2 guest-set quantities (current_reservation, maximum_gpfn) and C a constant
(xenprobe's fixed series, the 9 known retries, 4 consumer counts by verdict, up to
MAX_CONSUMER_SERIES xenprobe_privcmd_consumer_info, 2 unreadable-process counts, the
scan_complete gauge, and prometheus_client's process_* and python_info).
Per term: xenprobe_mismatch and xenprobe_mismatches_total Q*L*V each; xenprobe_drift and
xenprobe_drifts_total Q*L each; xenprobe_probes and xenprobe_raw_bit_length Q each,
xenprobe_at_risk Q*R; xenprobe_layer_errors_total L*E; xenprobe_domain_mismatch N, and
xenprobe_domain_info at most N (one per domain among those); xenprobe_guest_set_mismatch
G*L*V and xenprobe_guest_set_info G; xenprobe_source_finding Q*(L + 1) (raw's
forged_errno and out_of_range, each other layer's passed_forged); and, on a host without
the raw layer (layer_absent.py), 1 + Q*L more. A census quantity (quantities.CENSUS)
counts in Q only on a host that answers it; vcpu_is_up is one quantity however many
vCPUs dom0 has (no label names a vCPU), so no series grows with them. With the defaults:
280 + 40 + 30 + 36 + 200 + 58 + 25 + C. tests/test_series_count.py counts a real scrape
(docs/metrics.md's figure comes from it). The textfile has no counters: Q*L*V + Q*L +
Q*(R+2) + 2*N + G*(L*V + 1) + Q*(L + 1) plus its fixed series.
"""

from __future__ import annotations

import errno as errnos
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TypeVar

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from xenprobe import __version__, revision
from xenprobe.classify import MISMATCHES, Risk, Verdict
from xenprobe.consumers import Consumers
from xenprobe.exporter import layer_absent
from xenprobe.judge import RAW
from xenprobe.quantities import CENSUS, GUEST_SET, UNBATCHED, Probe, Quantity, Subject
from xenprobe.results import Result
from xenprobe.sweep import Sweep

PREFIX = "xenprobe"

# Ends the HELP of every metric derived from sweep data, as the exporter guidelines ask
# when values are cached rather than collected at scrape time. Each HELP is one sentence
# (tests/test_words.py); details are in docs/metrics.md.
FROM_SWEEP = ", from the last sweep (taken in the background: scrapes never issue hypercalls)."

MISMATCH_VERDICTS = tuple(sorted(v.value for v in MISMATCHES))
RISKS = tuple(r.value for r in Risk)
# The quantities every host is probed for; the census quantities (CENSUS, UNBATCHED) only
# where the hypervisor offers them, so their series are known from the first sweep that
# probes them, not before (zeros for all ten on every host would triple the series).
QUANTITIES = tuple(q.value for q in Quantity if q not in CENSUS and q not in UNBATCHED)
# Every layer a sweep can have (xenprobe.layers.ladder, plus raw): known before the first
# sweep, so counters exist from the first scrape.
LAYERS = (RAW, "syscall", "ioctl", "libxc")
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
    xenprobe_mismatches_total counts. A state that lasts is counted once, whatever the
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
    m = InfoMetricFamily(f"{PREFIX}_build", "xenprobe's version and the source revision "
                         "it was built from (git describe, or unknown).")
    m.add_metric([], {"version": __version__, "revision": revision.revision()})
    return m


def mock_info(scenario: str) -> Metric:
    m = InfoMetricFamily(f"{PREFIX}_mock",
                         "Present only on xenprobe's built-in mock host, whose data "
                         "is simulated.")
    m.add_metric([], {"scenario": scenario})
    return m


def gauge(name: str, help_text: str, value: float) -> Metric:
    return GaugeMetricFamily(f"{PREFIX}_{name}", help_text, value=value)


def sweep_families(sweep: Sweep, max_domain_series: int) -> list[Metric]:
    """Every family a successful sweep yields (no counters: those span sweeps)."""
    ident = sweep.identity
    xen = InfoMetricFamily(f"{PREFIX}_xen", "The hypervisor's version, its row of "
                           "xenprobe's ABI tables and the sysctl and domctl interface "
                           "versions it accepts (decimal)" + FROM_SWEEP)
    # One spelling for one value: the interface versions are decimal integers here and
    # in check --json's host (XEN_SYSCTL_INTERFACE_VERSION 0x15 is "21").
    xen.add_metric([], {"version": ident.version, "release": ident.release.name,
                        "sysctl_interface": str(ident.sysctl),
                        "domctl_interface": str(ident.domctl)})
    out: list[Metric] = [
        xen,
        gauge("domains", "Domains on the host" + FROM_SWEEP, sweep.domains),
        gauge("sweep_duration_seconds", "How long the sweep took" + FROM_SWEEP,
              sweep.duration),
    ]
    out += _per_quantity(sweep)
    out += _verdicts(sweep)
    out += _guest_set(sweep)
    out += _source_findings(sweep)
    out += _domain_mismatches(sweep, max_domain_series)
    out += layer_absent.families(sweep, FROM_SWEEP)
    return out


def guest_set_counts(sweep: Sweep) -> Counter[tuple[str, str, str]]:
    """(quantity, layer, verdict) -> domUs in that mismatch state on a value they set
    themselves (quantities.GUEST_SET)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for r in sweep.mismatches:
        if r.probe.guest_set:
            for layer, v in r.mismatches.items():
                counts[(r.probe.quantity.value, layer, v.value)] += 1
    return counts


def _guest_set(sweep: Sweep) -> list[Metric]:
    info = InfoMetricFamily(
        f"{PREFIX}_guest_set", "Quantities a domU sets by itself for its own domain, "
        "with how (balloon, max_pfn_or_p2m)" + FROM_SWEEP, labels=["quantity"])
    for q, how in GUEST_SET.items():
        info.add_metric([q.value], {"how": how})
    mismatch = GaugeMetricFamily(
        f"{PREFIX}_guest_set_mismatch", "Subjects of xenprobe_mismatch whose value a domU "
        "sets itself, so a guest can make dom0's tools misread it" + FROM_SWEEP,
        labels=["quantity", "layer", "verdict"])
    _with_zeros(mismatch, guest_set_counts(sweep),
                all_mismatch_labels(q.value for q in GUEST_SET))
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
    family = GaugeMetricFamily(
        f"{PREFIX}_source_finding", "Subjects whose hypervisor result is wrong at the "
        "source (raw: forged_errno or out_of_range) or that a layer passed on "
        "(passed_forged), by quantity, layer and verdict" + FROM_SWEEP,
        labels=["quantity", "layer", "verdict"])
    _with_zeros(family, source_finding_counts(sweep), all_source_finding_labels(
        probed(sweep)))
    return [family]


def _per_quantity(sweep: Sweep) -> list[Metric]:
    probes = GaugeMetricFamily(
        f"{PREFIX}_probes", "Probes per quantity, one per subject read (the host, dom0 "
        "through DOMID_SELF, each domain, a missing domain, each of dom0's vCPUs)"
        + FROM_SWEEP,
        labels=["quantity"])
    bits = GaugeMetricFamily(
        f"{PREFIX}_raw_bit_length", "The most bits the hypervisor's raw result needs "
        "over the quantity's subjects (above 31 an int path sign-flips it, above 32 "
        "truncates it)" + FROM_SWEEP, labels=["quantity"])
    risk = GaugeMetricFamily(
        f"{PREFIX}_at_risk", "Subjects whose raw value a narrower consumer would get "
        "wrong, by risk (int32, uint32, compat, errno_alias), a risk and not a mismatch"
        + FROM_SWEEP, labels=["quantity", "risk"])
    summary = sweep.summary
    for q in sorted(summary.probes, key=lambda q: q.value):
        probes.add_metric([q.value], summary.probes[q])
        if q in summary.bits:  # none without a raw layer
            bits.add_metric([q.value], summary.bits[q])
        for kind in Risk:
            risk.add_metric([q.value, kind.value], summary.at_risk.get((q, kind), 0))
    return [probes, bits, risk]


def _verdicts(sweep: Sweep) -> list[Metric]:
    mismatch = GaugeMetricFamily(
        f"{PREFIX}_mismatch", "Subjects whose reading by this layer is a mismatch, by "
        "verdict (layer raw: the hypervisor's result against the reference)" + FROM_SWEEP,
        labels=["quantity", "layer", "verdict"])
    quantities = probed(sweep)
    _with_zeros(mismatch, mismatch_counts(sweep), all_mismatch_labels(quantities))
    drift = GaugeMetricFamily(
        f"{PREFIX}_drift", "Subjects whose value moved while this layer read it, which "
        "is not a mismatch" + FROM_SWEEP, labels=["quantity", "layer"])
    _with_zeros(drift, drift_counts(sweep), all_drift_labels(quantities))
    return [mismatch, drift]


_Labels = TypeVar("_Labels", bound=tuple[str, ...])


def _with_zeros(family: GaugeMetricFamily, counts: Mapping[_Labels, int],
                known: Iterable[_Labels]) -> None:
    """A sample for every label set seen or known, 0 where none was counted."""
    for key in sorted(set(counts) | set(known)):
        family.add_metric(list(key), counts.get(key, 0))


def probed(sweep: Sweep) -> set[str]:
    """The quantities this host is probed for: every host's, and the census ones its
    hypervisor offers."""
    # From the summary, counted once per sweep: walking the results would build every
    # Result of the columns again on each scrape (10,000 domains: 30,000 of them).
    return set(QUANTITIES) | {q.value for q in sweep.summary.probes}


def all_mismatch_labels(quantities: Iterable[str] = QUANTITIES
                        ) -> list[tuple[str, str, str]]:
    """Every (quantity, layer, verdict) of xenprobe_mismatch and its counter."""
    return [(q, layer, v) for q in sorted(quantities) for layer in LAYERS
            for v in MISMATCH_VERDICTS]


def all_source_finding_labels(quantities: Iterable[str] = QUANTITIES
                              ) -> list[tuple[str, str, str]]:
    """Every (quantity, layer, verdict) of xenprobe_source_finding: raw's two verdicts,
    and passed_forged for each layer below."""
    return [(q, layer, v) for q in sorted(quantities)
            for layer, v in ((RAW, Verdict.FORGED_ERRNO.value),
                             (RAW, Verdict.OUT_OF_RANGE.value),
                             *((layer, Verdict.PASSED_FORGED.value)
                               for layer in LAYERS if layer != RAW))]


def all_drift_labels(quantities: Iterable[str] = QUANTITIES) -> list[tuple[str, str]]:
    return [(q, layer) for q in sorted(quantities) for layer in LAYERS]


def all_layer_error_labels() -> list[tuple[str, str]]:
    return [(layer, e) for layer in LAYERS for e in ERRNOS]


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
    family = GaugeMetricFamily(
        f"{PREFIX}_domain_mismatch", "1 for each domain whose reading by this layer is "
        "a mismatch, at most max_domain_series series (domid self: DOMID_SELF, missing: "
        "an unused id)" + FROM_SWEEP, labels=["quantity", "layer", "verdict", "domid"])
    for _, labels in rows[:limit]:
        family.add_metric(labels, 1)
    dropped = gauge("domain_mismatch_series_dropped",
                    "xenprobe_domain_mismatch series left out by the "
                    "max_domain_series cap" + FROM_SWEEP, max(0, len(rows) - limit))
    return [family, dropped, _domain_info(sweep, [labels[3] for _, labels in rows[:limit]])]


def _domain_info(sweep: Sweep, domids: Iterable[str]) -> Metric:
    """The UUID of each numbered domain in xenprobe_domain_mismatch, and its xenstore
    name where it could be read, to join on domid: domain ids are handed out afresh
    when a domain is created again, the UUID stays. Only those domains, so the series
    stay within max_domain_series."""
    info = InfoMetricFamily(
        f"{PREFIX}_domain", "The UUID and name of each domain that has a "
        "xenprobe_domain_mismatch series, for joining on domid" + FROM_SWEEP,
        labels=["domid"])
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
                      consumers: Consumers | None) -> list[Metric]:
    """What one sweep found, for /metrics and the textfile alike: the sweep's families
    (when it succeeded) and the privcmd consumers looked up after it (when looked up)."""
    out = sweep_families(sweep, max_domain_series) if sweep is not None else []
    if consumers is not None:
        out += consumer_families(consumers)
    return out


# -- consumers at risk --------------------------------------------------------------

# xenprobe_privcmd_consumer_info series at most (most at risk first, then lowest pid);
# the counts per verdict in xenprobe_privcmd_consumers are exact.
MAX_CONSUMER_SERIES = 16


def consumer_families(c: Consumers) -> list[Metric]:
    count = GaugeMetricFamily(
        f"{PREFIX}_privcmd_consumers", "Other processes holding privcmd open, by what "
        "their memory ops get (int_path, multicall, unknown, error_only), looked up after "
        "each sweep.", labels=["verdict"])
    for verdict, n in c.by_verdict().items():
        count.add_metric([verdict], n)
    info = InfoMetricFamily(
        f"{PREFIX}_privcmd_consumer", "A process holding privcmd open, with the "
        f"libxenctrl it maps and its verdict, at most {MAX_CONSUMER_SERIES} series "
        "with int_path first.",
        labels=["pid", "comm", "exe", "libxenctrl", "verdict"])
    for p in c.ordered()[:MAX_CONSUMER_SERIES]:
        lib = p.libxenctrl
        info.add_metric([str(p.pid), p.name, p.exe,
                         "" if lib is None else lib.release or lib.path,
                         p.verdict.value], {})
    unreadable = GaugeMetricFamily(
        f"{PREFIX}_privcmd_consumers_unreadable_processes", "Processes the consumer "
        "scan could not read, by what (fds or maps), non-zero when xenprobe lacks "
        "CAP_SYS_PTRACE.", labels=["reason"])
    for reason, n in c.unreadable_by_reason().items():
        unreadable.add_metric([reason], n)
    complete = gauge("privcmd_consumers_scan_complete", "1 when the consumer scan read "
                     "every process, so that a count of 0 means none.", int(c.complete))
    return [count, info, unreadable, complete]


# -- counters (values kept by the daemon across sweeps and reloads) -------------------

def counter(name: str, help_text: str, labels: Iterable[str],
            values: Iterable[tuple[tuple[str, ...], float]]) -> Metric:
    """A counter family; `name` without `_total` (prometheus_client appends it)."""
    m = CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=list(labels))
    for key, value in sorted(values):
        m.add_metric(list(key), value)
    return m


# -- retries: a counter in the daemon, the one sweep's count in the textfile ----------

RETRY_WHY = ("by call and reason (EINTR, EAGAIN, or invalid: an answer that cannot be "
             "right)")
RETRY_LABELS = ("call", "reason")


def retries_total(values: Mapping[tuple[str, str], int]) -> Metric:
    return counter("retries", "Requests issued again, " + RETRY_WHY + ".",
                   RETRY_LABELS, values.items())


def sweep_retries(values: Mapping[tuple[str, str], int]) -> Metric:
    """The retries of one sweep, for a file each run rewrites. A gauge, not a counter:
    each file holds one run's count from 0, so two runs that both retried twice would
    look to increase() like no retry at all, and a smaller count like a counter reset."""
    m = GaugeMetricFamily(f"{PREFIX}_sweep_retries", "Requests issued again in this "
                          "sweep, " + RETRY_WHY + ".",
                          labels=list(RETRY_LABELS))
    for key, n in sorted(values.items()):
        if n:
            m.add_metric(list(key), n)
    return m
