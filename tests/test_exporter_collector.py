# SPDX-License-Identifier: GPL-2.0-only
"""What the collectors export for hand-made sweeps: names, labels, values, the
per-domain cap, counters across sweeps and reloads, health, and the series bound."""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from tests.exporter_util import samples, series, value
from xenprobe import __version__
from xenprobe.exporter.config import Config
from xenprobe.exporter.metrics import families
from xenprobe.exporter.metrics import from_sweep as metrics
from xenprobe.exporter.metrics.collector import DaemonCollector, one_shot_registry
from xenprobe.exporter.state import State
from xenprobe.probe.classify import Truth, Verdict
from xenprobe.probe.results import Result
from xenprobe.probe.sweep import Sweep
from xenprobe.support import revision
from xenprobe.xen.abi.hypercalls import DOMID_SELF
from xenprobe.xen.abi.releases import RELEASES, getdomaininfo_for_domctl, physinfo_for_sysctl
from xenprobe.xen.consumers import Consumer, Consumers, Library
from xenprobe.xen.host import Identity
from xenprobe.xen.quantities import Probe, Quantity, Subject
from xenprobe.xen.reading import Reading

R417 = RELEASES[(4, 17)]
IDENTITY = Identity(4, 17, ".7", R417, R417.sysctl, R417.domctl,
                    physinfo_for_sysctl(R417.sysctl), getdomaininfo_for_domctl(R417.domctl))
LAYERS = ["syscall", "ioctl", "libxc"]
V = Verdict

Parsed = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def result(quantity: Quantity, subject: Subject, domid: int | None, raw: int,
           verdicts: Mapping[str, Verdict], *, raw_errno: int = 0,
           errnos: Mapping[str, int] | None = None) -> Result:
    """A result whose layers read `raw` (or fail with errnos[layer]); libxc absent."""
    errnos = errnos or {}
    readings: dict[str, Reading | None] = {
        layer: Reading(-1 if layer in errnos else raw, errnos.get(layer, 0), 64)
        for layer in ("syscall", "ioctl")}
    readings["libxc"] = None
    all_verdicts = {"syscall": V.MATCH, "ioctl": V.MATCH, "libxc": V.ABSENT, **verdicts}
    raw_reading = Reading(-raw_errno if raw_errno else raw, raw_errno, 64)
    return Result(Probe(quantity, subject, domid), raw_reading, Truth.exact(raw), readings,
                  all_verdicts, 1)


def sweep(results: list[Result], domains: int = 3) -> Sweep:
    return Sweep(IDENTITY, results, domains, 1_700_000_000.0, 0.25, LAYERS)


def healthy() -> Sweep:
    q = Quantity
    return sweep([
        result(q.XEN_VERSION, Subject.HOST, None, 0x40011, {"raw": V.MATCH}),
        result(q.MAXIMUM_RAM_PAGE, Subject.HOST, None, 4456448, {"raw": V.MATCH}),
        result(q.CURRENT_RESERVATION, Subject.SELF, DOMID_SELF, 524288, {"raw": V.MATCH}),
        result(q.CURRENT_RESERVATION, Subject.DOMAIN, 0, 524288, {"raw": V.MATCH}),
        result(q.CURRENT_RESERVATION, Subject.DOMAIN, 1, 1048576, {"raw": V.MATCH}),
        result(q.MAXIMUM_GPFN, Subject.DOMAIN, 1, 0x10FFFF, {}),
        result(q.CURRENT_RESERVATION, Subject.MISSING, 32751, 0, {"raw": V.MATCH},
               raw_errno=errno.ESRCH,
               errnos={"syscall": errno.ESRCH, "ioctl": errno.ESRCH}),
    ])


def troubled() -> Sweep:
    """Mismatches on the host, on DOMID_SELF, on two domains and on the missing one."""
    q = Quantity
    big = 0xC0100000
    return sweep([
        result(q.XEN_VERSION, Subject.HOST, None, 0x40011, {"raw": V.MATCH}),
        result(q.MAXIMUM_RAM_PAGE, Subject.HOST, None, big,
               {"raw": V.MATCH, "syscall": V.SIGN_FLIPPED, "ioctl": V.SIGN_FLIPPED}),
        result(q.CURRENT_RESERVATION, Subject.SELF, DOMID_SELF, big,
               {"raw": V.MATCH, "ioctl": V.SIGN_FLIPPED}),
        result(q.CURRENT_RESERVATION, Subject.DOMAIN, 3, big,
               {"raw": V.MATCH, "ioctl": V.SIGN_FLIPPED}),
        result(q.CURRENT_RESERVATION, Subject.DOMAIN, 7, 5, {"raw": V.DRIFT,
                                                             "ioctl": V.DRIFT}),
        result(q.MAXIMUM_GPFN, Subject.DOMAIN, 4, 0xFFFFFFFE,
               {"syscall": V.ALIASED_ERRNO, "ioctl": V.ALIASED_ERRNO},
               errnos={"syscall": errno.ENOENT, "ioctl": errno.ENOENT}),
        result(q.MAXIMUM_RESERVATION, Subject.DOMAIN, 4, 16, {"raw": V.TRUNCATED},
               raw_errno=errno.EPERM),
        result(q.CURRENT_RESERVATION, Subject.MISSING, 32751, 0,
               {"raw": V.MATCH, "ioctl": V.LOST_ERROR}, raw_errno=errno.ESRCH,
               errnos={"syscall": errno.ESRCH}),
    ])


# Other processes hold privcmd: a qemu on libxenctrl 4.17, an xl on 4.14, a 32-bit tool,
# and one not known.
CONSUMERS = Consumers((Consumer(7, "qemu", "/usr/bin/qemu", 64, "/dev/xen/privcmd",
                                Library("/usr/lib/libxenctrl.so.4.17.0", (4, 17))),
                       Consumer(8, "xl", "/usr/sbin/xl", 64, "/dev/xen/privcmd",
                                Library("/usr/lib/libxenctrl.so.4.14.0", (4, 14))),
                       Consumer(9, "xl32", "/opt/xl32", 32, "/dev/xen/privcmd"),
                       Consumer(12, "", "", None, "/proc/xen/privcmd")), unreadable=1)
RETRIED = {("ioctl", "EINTR"): 2}


def render(registry: CollectorRegistry) -> Parsed:
    return samples(generate_latest(registry).decode())


def one_shot(s: Sweep | None, limit: int = 100, *, consumers: Consumers | None = None,
             retries: Mapping[tuple[str, str], int] | None = None) -> Parsed:
    return render(one_shot_registry(s, limit, consumers=consumers, retries=retries))


def test_info_metrics() -> None:
    m = one_shot(healthy())
    assert value(m, "xenprobe_build_info", version=__version__,
                 revision=revision.revision()) == 1
    assert value(m, "xenprobe_xen_info", version="4.17.7", release="4.17",
                 sysctl_interface="21", domctl_interface="21") == 1
    assert value(m, "xenprobe_up") == 1
    assert value(m, "xenprobe_last_successful_sweep_timestamp_seconds") == 1_700_000_000.25
    assert series(m, "xenprobe_mock_info") == {}


def nonzero(m: Parsed, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {k: v for k, v in series(m, name).items() if v}


def test_a_healthy_sweep_has_no_detail_series_but_every_impact() -> None:
    """The detail gauges only where non-zero (most of a scrape were their zeros); the
    alerts' xenprobe_mismatched_readings has every impact at 0."""
    m = one_shot(healthy())
    assert series(m, "xenprobe_mismatch_verdicts") == {}
    assert series(m, "xenprobe_drift_verdicts") == {}
    assert series(m, "xenprobe_probes_at_risk") == {}
    assert series(m, "xenprobe_guest_set_mismatch_verdicts") == {}
    readings = series(m, "xenprobe_mismatched_readings")
    assert {dict(k)["impact"] for k in readings} == {"harmless", "exposure", "harmful"}
    assert set(readings.values()) == {0}
    assert series(m, "xenprobe_domain_mismatch") == {}
    assert value(m, "xenprobe_domain_mismatch_series_dropped") == 0
    assert value(m, "xenprobe_probes", quantity="current_reservation") == 4
    assert value(m, "xenprobe_raw_bit_length", quantity="maximum_ram_page") == 23
    assert value(m, "xenprobe_raw_bit_length", quantity="current_reservation") == 21
    assert value(m, "xenprobe_domains") == 3
    assert value(m, "xenprobe_sweep_duration_seconds") == 0.25


def test_mismatches_by_quantity_layer_and_verdict() -> None:
    m = one_shot(troubled())
    assert nonzero(m, "xenprobe_mismatch_verdicts") == {
        (("layer", "ioctl"), ("quantity", "current_reservation"),
         ("verdict", "sign_flipped")): 2,
        (("layer", "ioctl"), ("quantity", "current_reservation"),
         ("verdict", "lost_error")): 1,
        (("layer", "ioctl"), ("quantity", "maximum_gpfn"), ("verdict", "aliased_errno")): 1,
        (("layer", "syscall"), ("quantity", "maximum_gpfn"),
         ("verdict", "aliased_errno")): 1,
        (("layer", "ioctl"), ("quantity", "maximum_ram_page"),
         ("verdict", "sign_flipped")): 1,
        (("layer", "syscall"), ("quantity", "maximum_ram_page"),
         ("verdict", "sign_flipped")): 1,
        (("layer", "raw"), ("quantity", "maximum_reservation"), ("verdict", "truncated")): 1,
    }
    # Drift is not a mismatch: it has its own series.
    assert nonzero(m, "xenprobe_drift_verdicts") == {
        (("layer", "ioctl"), ("quantity", "current_reservation")): 1,
        (("layer", "raw"), ("quantity", "current_reservation")): 1,
    }
    assert value(m, "xenprobe_probes_at_risk", quantity="maximum_gpfn", risk="errno_alias") == 1
    assert value(m, "xenprobe_probes_at_risk", quantity="maximum_ram_page", risk="int32") == 1


def test_per_domain_series_name_the_domain() -> None:
    m = one_shot(troubled())
    got = {dict(labels)["domid"] + ":" + dict(labels)["quantity"] + ":"
           + dict(labels)["layer"] for labels in series(m, "xenprobe_domain_mismatch")}
    # Host-wide quantities are not per domain; the missing domain's id is not a label.
    assert got == {"self:current_reservation:ioctl", "3:current_reservation:ioctl",
                   "4:maximum_gpfn:syscall", "4:maximum_gpfn:ioctl",
                   "4:maximum_reservation:raw", "missing:current_reservation:ioctl"}
    assert set(series(m, "xenprobe_domain_mismatch").values()) == {1}


def test_the_per_domain_cap_keeps_the_lowest_ids() -> None:
    m = one_shot(troubled(), limit=2)
    kept = {dict(labels)["domid"] for labels in series(m, "xenprobe_domain_mismatch")}
    assert kept == {"self", "3"}
    assert value(m, "xenprobe_domain_mismatch_series_dropped") == 4
    m = one_shot(troubled(), limit=0)
    assert series(m, "xenprobe_domain_mismatch") == {}
    assert value(m, "xenprobe_domain_mismatch_series_dropped") == 6


def test_layer_errors_leave_out_the_deliberate_esrch() -> None:
    assert metrics.layer_errors(healthy()) == {}
    assert metrics.layer_errors(troubled()) == {("syscall", "ENOENT"): 1,
                                                ("ioctl", "ENOENT"): 1,
                                                ("raw", "EPERM"): 1}


def test_a_failed_one_shot_says_so() -> None:
    m = one_shot(None)
    assert value(m, "xenprobe_up") == 0
    assert series(m, "xenprobe_mismatch_verdicts") == {}
    assert value(m, "xenprobe_build_info", version=__version__,
                 revision=revision.revision()) == 1


def test_the_one_shot_file_has_no_counters_or_process_metrics() -> None:
    text = generate_latest(one_shot_registry(troubled(), 100, consumers=CONSUMERS,
                                             retries=RETRIED)).decode()
    assert "_total" not in text and "process_" not in text
    assert all("# TYPE" not in line or line.endswith(("gauge", "counter"))
               for line in text.splitlines())


def test_every_family_is_built_from_the_table() -> None:
    """Name, type, HELP and labels of every family come from families.FAMILIES."""
    built = [*one_shot_registry(troubled(), 100, consumers=CONSUMERS,
                                retries=RETRIED).collect()]
    assert built
    for family in built:
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        f = families.FAMILIES[family.name + suffix]
        assert family.documentation == f.help, family.name
        assert f.type == family.type, family.name
        for sample in family.samples:
            assert set(sample.labels) <= set(f.labels), family.name


# -- the daemon's collector -------------------------------------------------------------

def daemon(state: State) -> Parsed:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(state.snapshot))
    return render(registry)


def test_the_textfile_has_what_metrics_has_of_a_sweep() -> None:
    """One function builds the findings for both: every series of the one-shot file is
    on /metrics with the same value, but the retries, a counter there."""
    state = State(Config())
    state.sweep_succeeded(troubled())
    state.consumers_seen(CONSUMERS)
    state.retried(Counter(RETRIED))
    served = daemon(state)
    written = one_shot(troubled(), consumers=CONSUMERS, retries=RETRIED)
    assert value(written, "xenprobe_privcmd_consumers", verdict="int_path") == 1
    assert value(written, "xenprobe_privcmd_consumer_info", pid="8", comm="xl",
                 exe="/usr/sbin/xl", libxenctrl="4.14", verdict="int_path") == 1
    assert value(written, "xenprobe_sweep_retries", call="ioctl", reason="EINTR") == 2
    assert value(served, "xenprobe_retries_total", call="ioctl", reason="EINTR") == 2
    assert series(served, "xenprobe_sweep_retries") == {}
    same = {k: v for k, v in written.items() if k[0] != "xenprobe_sweep_retries"}
    assert same == {k: served.get(k) for k in same}


def test_scrapes_between_sweeps_share_the_findings_and_a_new_sweep_replaces_them() -> None:
    """The findings families are built once per sweep (scrapes of a big host would walk
    its mismatches each time), and every new sweep, new consumer list or new per-domain
    cap is served at once."""
    state = State(Config())
    state.sweep_succeeded(healthy())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(state.snapshot))
    first = render(registry)
    assert nonzero(first, "xenprobe_mismatch_verdicts") == {}
    assert render(registry) == first
    state.sweep_succeeded(troubled())
    second = render(registry)
    assert nonzero(second, "xenprobe_mismatch_verdicts") != {}
    assert series(second, "xenprobe_privcmd_consumers") == {}
    state.consumers_seen(CONSUMERS)
    third = render(registry)
    assert value(third, "xenprobe_privcmd_consumers", verdict="int_path") == 1
    assert nonzero(third, "xenprobe_mismatch_verdicts") == \
        nonzero(second, "xenprobe_mismatch_verdicts")
    state.reloaded(replace(state.snapshot().config, max_domain_series=1))
    capped = render(registry)
    assert len(series(capped, "xenprobe_domain_mismatch")) < \
        len(series(third, "xenprobe_domain_mismatch"))


def test_retries_add_up_but_the_textfile_gets_the_last_sweeps() -> None:
    state = State(Config())
    state.retried(Counter(RETRIED))
    state.retried(Counter({("physinfo", "invalid"): 1}))
    m = daemon(state)
    assert value(m, "xenprobe_retries_total", call="ioctl", reason="EINTR") == 2
    assert value(m, "xenprobe_retries_total", call="physinfo", reason="invalid") == 1
    assert state.snapshot().sweep_retries == {("physinfo", "invalid"): 1}
    state.retried(Counter())  # a sweep without retries (or without a device)
    assert state.snapshot().sweep_retries == {}


def test_counters_add_up_over_sweeps_and_survive_a_reload() -> None:
    state = State(Config())
    state.sweep_began()
    state.sweep_succeeded(troubled())
    state.sweep_began()
    state.sweep_succeeded(troubled())
    state.reloaded(replace(Config(), interval=60))
    state.sweep_began()
    state.sweep_failed("cannot_probe", "the hypervisor refused sysctl physinfo")
    m = daemon(state)
    assert value(m, "xenprobe_sweeps_total") == 3
    assert value(m, "xenprobe_sweep_failures_total", reason="cannot_probe") == 1
    assert value(m, "xenprobe_sweep_failures_total", reason="refused") == 0
    # Two subjects entered sign_flipped once; staying there is not a new event.
    assert value(m, "xenprobe_mismatch_onsets_total", quantity="current_reservation",
                 layer="ioctl", verdict="sign_flipped") == 2
    assert value(m, "xenprobe_drifted_readings_total", quantity="current_reservation",
                 layer="raw") == 2
    assert value(m, "xenprobe_layer_errors_total", layer="raw", errno="EPERM") == 2
    assert value(m, "xenprobe_sweep_interval_seconds") == 60
    assert value(m, "xenprobe_config_last_reload_successful") == 1
    # The served data is the last good sweep's, though the last attempt failed.
    assert value(m, "xenprobe_up") == 0
    assert value(m, "xenprobe_domains") == 3


def test_counters_alerts_read_exist_at_zero_before_the_first_sweep() -> None:
    """What an alert reads with increase() (XenprobeHypervisorErrors: layer raw) is there
    at 0; the detail counters appear at their first event."""
    m = daemon(State(Config()))
    assert series(m, "xenprobe_mismatch_onsets_total") == {}
    assert series(m, "xenprobe_drifted_readings_total") == {}
    errors = series(m, "xenprobe_layer_errors_total")
    assert {(dict(k)["layer"], dict(k)["errno"]) for k in errors} == set(
        metrics.all_layer_error_labels())
    assert value(m, "xenprobe_layer_errors_total", layer="raw", errno="EPERM") == 0
    retries = series(m, "xenprobe_retries_total")
    assert len(retries) == 9 and set(retries.values()) == {0}


def test_mismatches_total_counts_entries_not_sweeps() -> None:
    """The counter's rate must not depend on how often xenprobe sweeps: ten sweeps of
    the same state count what one does; leaving and re-entering counts again."""
    def total(sweeps: list[Sweep]) -> float | None:
        state = State(Config())
        for one in sweeps:
            state.sweep_succeeded(one)
        return value(daemon(state), "xenprobe_mismatch_onsets_total",
                     quantity="current_reservation", layer="ioctl", verdict="sign_flipped")

    assert total([troubled()]) == total([troubled()] * 10) == 2
    assert total([healthy()] * 3) is None  # no series before the first entry
    assert total([troubled(), healthy(), troubled()]) == 4
    # A failed sweep in between is no news about the subjects: no new event.
    state = State(Config())
    state.sweep_succeeded(troubled())
    state.sweep_failed("cannot_probe", "EPERM")
    state.sweep_succeeded(troubled())
    assert value(daemon(state), "xenprobe_mismatch_onsets_total", quantity="maximum_ram_page",
                 layer="syscall", verdict="sign_flipped") == 1
    # The missing-domain probe is one subject, whichever id it had.
    moved = troubled()
    moved = sweep([replace(r, probe=replace(r.probe, domid=32700))
                   if r.probe.subject is Subject.MISSING else r for r in moved.results])
    assert total([troubled(), moved]) == 2


def test_a_refused_reload_is_reported_and_changes_nothing() -> None:
    state = State(Config())
    state.reloaded(None)
    m = daemon(state)
    assert value(m, "xenprobe_config_last_reload_successful") == 0
    assert value(m, "xenprobe_sweep_interval_seconds") == 30


def test_health() -> None:
    config = replace(Config(), interval=10, stale_after=3, sweep_timeout=5)
    state = State(config, started=1000.0)
    h = state.health(now=1010.0)
    assert (h.ok, h.stale, h.stuck, h.up) == (False, False, False, False)
    assert state.health(now=1031.0).stale  # no sweep for 3 intervals
    state.sweep_succeeded(healthy())
    assert state.health().up
    state.sweep_began()
    running = state.health()
    assert running.up and not running.stuck
    later = state.health(now=running.age + 10**6)
    assert later.stuck and later.stale and not later.up and later.running_for > 5


def test_before_the_first_sweep() -> None:
    m = daemon(State(Config()))
    assert value(m, "xenprobe_up") == 0
    assert value(m, "xenprobe_last_successful_sweep_timestamp_seconds") == 0
    assert series(m, "xenprobe_xen_info") == {}
    assert value(m, "xenprobe_sweeps_total") == 0


def test_agent_metrics() -> None:
    m = daemon(State(Config()))
    assert (value(m, "xenprobe_agent_threads") or 0) >= 1
    assert value(m, "xenprobe_agent_locked_memory_bytes") is not None


def test_mock_scenario_is_announced() -> None:
    m = daemon(State(Config(), scenario="large-memory"))
    assert value(m, "xenprobe_mock_info", scenario="large-memory") == 1


# -- the bound ----------------------------------------------------------------------------

def many_domains(n: int) -> Sweep:
    """n domains, every one in mismatch on every per-domain quantity and layer."""
    results = [result(Quantity.XEN_VERSION, Subject.HOST, None, 0x40011,
                      {"raw": V.MATCH})]
    kinds = [V.SIGN_FLIPPED, V.TRUNCATED, V.CLAMPED, V.OTHER]
    for d in range(n):
        for i, q in enumerate((Quantity.CURRENT_RESERVATION, Quantity.MAXIMUM_RESERVATION,
                               Quantity.MAXIMUM_GPFN)):
            v = kinds[(d + i) % len(kinds)]
            results.append(result(q, Subject.DOMAIN, d, 0x80000000 + d,
                                  {"raw": V.MATCH, "syscall": v, "ioctl": v},
                                  errnos={"ioctl": 1 + d % 130}))
    return sweep(results, domains=n)


def count(m: Parsed) -> int:
    return sum(1 for (name, _) in m if name.startswith("xenprobe_"))


def test_the_series_count_does_not_grow_with_the_domains() -> None:
    limit = 50
    sizes = {}
    for n in (200, 3000):  # both see all 130 errnos: only domains differ
        state = State(replace(Config(), max_domain_series=limit))
        state.sweep_succeeded(many_domains(n))
        sizes[n] = count(daemon(state))
    assert sizes[200] == sizes[3000]
    # The documented bound: 2QLV + 2QL + Q(R+2) + LE + N + C, with L = 4 layers and E
    # the 130 errnos seen plus those always exported.
    q, layers, v, r, e = 5, 4, 7, 4, 134 + len(metrics.ERRNOS)
    bound = 2 * q * layers * v + 2 * q * layers + q * (r + 2) + layers * e + limit + 60
    assert sizes[3000] <= bound
