"""Metric names, HELP texts and labels, and the pure mapping from one sweep to families.

Everything a sweep says is exported from here, for the daemon's collector and for the
one-shot textfile alike. Names follow Prometheus conventions: the `xenprobe_` prefix,
base units (seconds, bits), `_total` on counters, `_info` pseudo-metrics with value 1.

Series bound. Whatever the number of domains, a scrape returns at most

    2*Q*L*V + 2*Q*L + Q*(R + 2) + L*E + N + G*(L*V + 1) + C

series, where Q = 5 quantities, L = layers including `raw` (4: raw, syscall, ioctl, libxc),
V = 7 mismatch verdicts, R = 4 risks, E = distinct errnos seen (bounded by the Linux
errno table, about 134), N = `max_domain_series` (default 100) and C is a constant
(about 30 xenprobe_* series plus prometheus_client's process_* and python_info).
Per term: xenprobe_mismatch and xenprobe_mismatches_total Q*L*V each;
xenprobe_drift and xenprobe_drifts_total Q*L each; xenprobe_probes and
xenprobe_raw_bit_length Q each, xenprobe_at_risk Q*R; xenprobe_layer_errors_total L*E;
xenprobe_domain_mismatch N; xenprobe_guest_set_mismatch G*L*V and xenprobe_guest_set_info
G, with G = 2 guest-set quantities (current_reservation, maximum_gpfn). With the defaults:
280 + 40 + 30 + 4E + 100 + 58 + C.
The daemon adds at most 9 xenprobe_retries_total series (ioctl, syscall and multicall by
EINTR and EAGAIN; physinfo, getdomaininfolist and xen_version by "invalid"), 3
xenprobe_privcmd_consumers and MAX_COMPAT_SERIES xenprobe_compat_consumer_info: 28 more.
The textfile has no counters; it has at most 9 xenprobe_sweep_retries series instead.
"""

from __future__ import annotations

import errno as errnos
from collections import Counter
from collections.abc import Iterable, Mapping

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from xenprobe import __version__
from xenprobe.classify import MISMATCHES, Risk, Verdict
from xenprobe.consumers import Consumers
from xenprobe.exporter import layer_absent
from xenprobe.judge import RAW
from xenprobe.quantities import GUEST_SET, Probe, Subject
from xenprobe.sweep import Result, Sweep

PREFIX = "xenprobe"

# Appended to the HELP of every metric derived from sweep data, as the exporter
# guidelines ask when values are cached rather than collected at scrape time.
FROM_SWEEP = " From the last sweep, taken in the background: scrapes never issue hypercalls."

MISMATCH_VERDICTS = tuple(sorted(v.value for v in MISMATCHES))
RISKS = tuple(r.value for r in Risk)

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


# -- per-sweep tallies (the daemon adds them to its counters) ---------------------------

def mismatch_counts(sweep: Sweep) -> Counter[tuple[str, str, str]]:
    """(quantity, layer, verdict) -> subjects in that mismatch state."""
    counts: Counter[tuple[str, str, str]] = Counter()
    # The sweep's summary: a scrape must not walk every result (30,000 at 10k domains).
    for (q, layer, v), n in sweep.summary.verdicts.items():
        if v.is_mismatch:
            counts[(q.value, layer, v.value)] += n
    return counts


def drift_counts(sweep: Sweep) -> Counter[tuple[str, str]]:
    """(quantity, layer) -> subjects whose reading drifted while being read."""
    counts: Counter[tuple[str, str]] = Counter()
    for (q, layer, v), n in sweep.summary.verdicts.items():
        if v is Verdict.DRIFT:
            counts[(q.value, layer)] += n
    return counts


def judged_pairs(sweep: Sweep) -> set[tuple[str, str]]:
    """(quantity, layer) pairs that got a verdict: the label sets worth initialising."""
    return {(q.value, layer) for (q, layer, v), n in sweep.summary.verdicts.items()
            if v is not Verdict.ABSENT and n}


def layer_errors(sweep: Sweep) -> Counter[tuple[str, str]]:
    """(layer, errno name) -> readings that failed unexpectedly (raw included)."""
    counts: Counter[tuple[str, str]] = Counter()
    for r in sweep.summary.failed:
        readings = [(RAW, r.raw), *r.readings.items()]
        for layer, reading in readings:
            if reading is not None and reading.failed and not _expected_error(
                    r, reading.errno):
                counts[(layer, errno_name(reading.errno))] += 1
    return counts


# -- families ------------------------------------------------------------------------

def build_info() -> Metric:
    m = InfoMetricFamily(f"{PREFIX}_build", "xenprobe's version.")
    m.add_metric([], {"version": __version__})
    return m


def mock_info(scenario: str) -> Metric:
    m = InfoMetricFamily(f"{PREFIX}_mock",
                         "Present only when xenprobe runs on its built-in mock host: "
                         "the data is simulated, not read from a real hypervisor.")
    m.add_metric([], {"scenario": scenario})
    return m


def gauge(name: str, help_text: str, value: float) -> Metric:
    return GaugeMetricFamily(f"{PREFIX}_{name}", help_text, value=value)


def sweep_families(sweep: Sweep, max_domain_series: int) -> list[Metric]:
    """Every family a successful sweep yields (no counters: those span sweeps)."""
    ident = sweep.identity
    xen = InfoMetricFamily(f"{PREFIX}_xen", "The hypervisor as detected: version, "
                           "release row of xenprobe's ABI tables, and the sysctl and "
                           "domctl interface versions it accepts." + FROM_SWEEP)
    xen.add_metric([], {"version": ident.version, "release": ident.release.name,
                        "sysctl_interface": f"{ident.sysctl:#x}",
                        "domctl_interface": f"{ident.domctl:#x}"})
    out: list[Metric] = [
        xen,
        gauge("domains", "Domains on the host." + FROM_SWEEP, sweep.domains),
        gauge("sweep_duration_seconds", "How long the sweep took." + FROM_SWEEP,
              sweep.duration),
    ]
    out += _per_quantity(sweep)
    out += _verdicts(sweep)
    out += _guest_set(sweep)
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
        f"{PREFIX}_guest_set", "Quantities a domU sets by itself for its own domain "
        "(current_reservation by ballooning, maximum_gpfn through its shared_info or its "
        "p2m), with how." + FROM_SWEEP, labels=["quantity"])
    for q, how in GUEST_SET.items():
        info.add_metric([q.value], {"how": how})
    mismatch = GaugeMetricFamily(
        f"{PREFIX}_guest_set_mismatch", "Domains counted in xenprobe_mismatch whose value "
        "the domain sets itself: a guest can make dom0 tools read a fake error or a wrong "
        "value. Only non-zero series are exported." + FROM_SWEEP,
        labels=["quantity", "layer", "verdict"])
    for (quantity, layer, verdict), n in sorted(guest_set_counts(sweep).items()):
        mismatch.add_metric([quantity, layer, verdict], n)
    return [info, mismatch]


def _per_quantity(sweep: Sweep) -> list[Metric]:
    probes = GaugeMetricFamily(
        f"{PREFIX}_probes", "Subjects probed per quantity (host, dom0 through "
        "DOMID_SELF, each domain, and one missing domain)." + FROM_SWEEP,
        labels=["quantity"])
    bits = GaugeMetricFamily(
        f"{PREFIX}_raw_bit_length", "Bits needed to hold the hypervisor's raw 64-bit "
        "result read as unsigned (its bit length): the maximum over the quantity's subjects. "
        "Above 31 an int return path sign-flips it, above 32 truncates it."
        + FROM_SWEEP, labels=["quantity"])
    risk = GaugeMetricFamily(
        f"{PREFIX}_at_risk", "Subjects whose raw value a narrower consumer would get "
        "wrong (int32: sign flip, uint32: truncation, compat: clamped for 32-bit "
        "callers, errno_alias: read as an error by glibc). A risk, not a mismatch."
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
        f"{PREFIX}_mismatch", "Subjects whose value this layer got wrong, by verdict "
        "(layer raw: the hypervisor's own result against an independent reference). "
        "Only non-zero series are exported." + FROM_SWEEP,
        labels=["quantity", "layer", "verdict"])
    for (quantity, layer, verdict), n in sorted(mismatch_counts(sweep).items()):
        mismatch.add_metric([quantity, layer, verdict], n)
    drift = GaugeMetricFamily(
        f"{PREFIX}_drift", "Subjects whose value moved while it was being read, so no "
        "verdict could be reached (not a mismatch). Only non-zero series are exported."
        + FROM_SWEEP, labels=["quantity", "layer"])
    for (quantity, layer), n in sorted(drift_counts(sweep).items()):
        drift.add_metric([quantity, layer], n)
    return [mismatch, drift]


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
        f"{PREFIX}_domain_mismatch", "1 for each domain, quantity and layer currently in "
        "mismatch (domid self: read through DOMID_SELF; missing: a domain id nobody "
        "has). At most max_domain_series series, lowest domain ids first."
        + FROM_SWEEP, labels=["quantity", "layer", "verdict", "domid"])
    for _, labels in rows[:limit]:
        family.add_metric(labels, 1)
    dropped = gauge("domain_mismatch_series_dropped",
                    "xenprobe_domain_mismatch series left out because of the "
                    "max_domain_series cap." + FROM_SWEEP, max(0, len(rows) - limit))
    return [family, dropped]


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

# xenprobe_compat_consumer_info series at most (lowest pids first); the count is exact in
# xenprobe_privcmd_consumers{bits="32"}. A host rarely has any: each is a finding.
MAX_COMPAT_SERIES = 16


def consumer_families(c: Consumers) -> list[Metric]:
    count = GaugeMetricFamily(
        f"{PREFIX}_privcmd_consumers", "Other processes holding the privcmd device open, "
        "by the word size of their program (32: a compat consumer, which reads every "
        "hypercall result cut to 32 bits). Looked up after each sweep.", labels=["bits"])
    for bits, n in c.by_bits().items():
        count.add_metric([bits], n)
    info = InfoMetricFamily(
        f"{PREFIX}_compat_consumer", "A 32-bit process holding privcmd open: it reads "
        f"every result cut to 32 bits. At most {MAX_COMPAT_SERIES} series, lowest pid "
        "first.", labels=["pid", "comm", "exe"])
    for p in c.compat[:MAX_COMPAT_SERIES]:
        info.add_metric([str(p.pid), p.name, p.exe], {})
    unreadable = gauge("privcmd_consumers_unreadable_processes", "Processes whose open "
                       "files xenprobe could not read (it does not run as root).",
                       c.unreadable)
    return [count, info, unreadable]


# -- counters (values kept by the daemon across sweeps and reloads) -------------------

def counter(name: str, help_text: str, labels: Iterable[str],
            values: Iterable[tuple[tuple[str, ...], float]]) -> Metric:
    """A counter family; `name` without `_total` (prometheus_client appends it)."""
    m = CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=list(labels))
    for key, value in sorted(values):
        m.add_metric(list(key), value)
    return m


# -- retries: a counter in the daemon, the one sweep's count in the textfile ----------

RETRY_WHY = ("by the transport after EINTR or EAGAIN (call ioctl, syscall or multicall), "
             "or by xenprobe after an answer that cannot be right (reason invalid: "
             "garbage or a short struct from physinfo, getdomaininfolist or xen_version).")
RETRY_LABELS = ("call", "reason")


def retries_total(values: Mapping[tuple[str, str], int]) -> Metric:
    return counter("retries", "Requests issued again, summed over sweeps: " + RETRY_WHY,
                   RETRY_LABELS, values.items())


def sweep_retries(values: Mapping[tuple[str, str], int]) -> Metric:
    """The retries of one sweep, for a file each run rewrites. A gauge, not a counter:
    each file holds one run's count from 0, so two runs that both retried twice would
    look to increase() like no retry at all, and a smaller count like a counter reset."""
    m = GaugeMetricFamily(f"{PREFIX}_sweep_retries", "Requests issued again during this "
                          "sweep, " + RETRY_WHY + " Only non-zero series are exported.",
                          labels=list(RETRY_LABELS))
    for key, n in sorted(values.items()):
        if n:
            m.add_metric(list(key), n)
    return m
