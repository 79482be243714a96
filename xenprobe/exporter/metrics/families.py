# SPDX-License-Identifier: GPL-2.0-only
"""Every metric family xenprobe exports, once: full name, type, one-sentence HELP and
labels. The code builds each family from this table (from_sweep.py, collector.py,
layer_absent.py), docs/metrics.md is generated from it (tests/test_metric_names.py keeps
it in step), and a test holds every rule and dashboard query to what a scrape of the
shipped scenarios has. prometheus_client's own process_* and python_info are not here
(--web.disable-exporter-metrics leaves them out)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

PREFIX = "xenprobe"


@dataclass(frozen=True, slots=True)
class Family:
    name: str                    # as exposed: counters end in _total, info in _info
    type: str                    # gauge, counter or info (an info is a gauge of 1)
    help: str                    # one sentence
    labels: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {f.name: f for f in (
    # What xenprobe is and runs on.
    Family("xenprobe_build_info", "info", "xenprobe's version and the source revision it "
           "was built from (git describe, or unknown outside a git checkout).",
           ("version", "revision")),
    Family("xenprobe_mock_info", "info", "Present only on xenprobe's built-in mock host, "
           "whose data is simulated.", ("scenario",)),
    Family("xenprobe_xen_info", "info", "The hypervisor as detected: its version, "
           "xenprobe's ABI release row, and the sysctl and domctl interface versions in "
           "decimal (from the last sweep).",
           ("version", "release", "sysctl_interface", "domctl_interface")),
    # The last sweep's findings.
    Family("xenprobe_domains", "gauge", "Domains on the host (from the last sweep)."),
    Family("xenprobe_sweep_duration_seconds", "gauge", "How long the last sweep took."),
    Family("xenprobe_probes", "gauge", "Probes per quantity, one for each subject: the "
           "host, dom0 through DOMID_SELF, each domain, one missing domain, and each of "
           "dom0's vCPUs (from the last sweep).", ("quantity",)),
    Family("xenprobe_raw_bit_length", "gauge", "Most bits the hypervisor's raw result "
           "of the quantity needs, read as unsigned: above 31 an int sign-flips it, above "
           "32 truncates it (from the last sweep).", ("quantity",)),
    Family("xenprobe_probes_at_risk", "gauge", "Probes whose raw value a narrower "
           "consumer would get wrong, by risk (int32, uint32, compat, errno_alias), a risk "
           "and not a mismatch (only non-zero series, from the last sweep).",
           ("quantity", "risk")),
    Family("xenprobe_mismatch_verdicts", "gauge", "Readings by this layer that got this "
           "mismatch verdict (only non-zero series, from the last sweep).",
           ("quantity", "layer", "verdict")),
    Family("xenprobe_mismatched_readings", "gauge", "Readings in mismatch by impact on "
           "the host's consumers (harmless, exposure, harmful: docs/alerts.md), every "
           "impact from the first sweep.", ("impact",)),
    Family("xenprobe_drift_verdicts", "gauge", "Readings by this layer that got the drift "
           "verdict, the value having moved while it was read (only non-zero series, from "
           "the last sweep).",
           ("quantity", "layer")),
    Family("xenprobe_guest_set_info", "info", "A quantity a domU sets for itself, and "
           "how.", ("quantity", "how")),
    Family("xenprobe_guest_set_mismatch_verdicts", "gauge", "The part of "
           "xenprobe_mismatch_verdicts on values that domUs set themselves (only non-zero "
           "series, from the last sweep).",
           ("quantity", "layer", "verdict")),
    Family("xenprobe_domain_mismatch", "gauge", "1 for each domain whose reading by "
           "this layer is a mismatch, at most max_domain_series series, lowest domain "
           "ids first (domid self: DOMID_SELF, missing: an unused id).",
           ("quantity", "layer", "verdict", "domid")),
    Family("xenprobe_domain_info", "info", "The UUID and xenstore name of each domain "
           "that has a xenprobe_domain_mismatch series, for joining on domid (from the "
           "last sweep).", ("domid", "uuid", "name")),
    Family("xenprobe_source_finding", "gauge", "Readings wrong at the source (raw: "
           "forged_errno, out_of_range) or that handed such a result on (passed_forged), "
           "with the impact on the host's consumers (only non-zero series, from the last "
           "sweep).", ("quantity", "layer", "verdict", "impact")),
    Family("xenprobe_domain_mismatch_series_dropped", "gauge", "xenprobe_domain_mismatch "
           "series left out by the max_domain_series cap."),
    Family("xenprobe_layer_absent", "gauge", "1 when a layer could not be read at all in "
           "the last sweep, with why (raw, pvh_no_multicall or multicall_enosys).",
           ("layer", "reason")),
    Family("xenprobe_unjudged", "gauge", "Readings by this layer that nothing could "
           "judge without a raw layer (only non-zero series, from the last sweep).",
           ("quantity", "layer")),
    # privcmd consumers, looked up after each sweep.
    Family("xenprobe_privcmd_consumers", "gauge", "Other processes holding privcmd open, "
           "by what they get from a memory op (int_path, multicall, unknown, "
           "error_only).", ("verdict",)),
    Family("xenprobe_privcmd_consumer_info", "info", "A process holding privcmd open, "
           "with the libxenctrl it maps (\"\" for none) and its verdict, int_path first, "
           "at most 16.", ("pid", "comm", "exe", "libxenctrl", "verdict")),
    Family("xenprobe_privcmd_consumers_unreadable_processes", "gauge", "Processes the "
           "consumer scan could not read, by what (fds or maps): xenprobe lacks "
           "CAP_SYS_PTRACE.", ("reason",)),
    Family("xenprobe_privcmd_consumers_scan_complete", "gauge", "1 when the consumer "
           "scan read every process, 0 when it could not look everywhere."),
    # Health of the exporter.
    Family("xenprobe_up", "gauge", "1 when the last sweep succeeded and its data is "
           "fresh, 0 when xenprobe cannot read the hypervisor or its data is stale."),
    Family("xenprobe_stale", "gauge", "1 when the last good sweep is older than "
           "stale_after intervals or a sweep is stuck past sweep_timeout."),
    Family("xenprobe_sweep_running_seconds", "gauge", "How long the sweep in progress has "
           "been running, 0 between sweeps."),
    Family("xenprobe_last_successful_sweep_timestamp_seconds", "gauge", "Unix time the "
           "last successful sweep finished, 0 before the first."),
    Family("xenprobe_sweep_interval_seconds", "gauge", "Configured seconds between "
           "sweeps."),
    Family("xenprobe_sweeps_total", "counter", "Sweeps finished, successful or not."),
    Family("xenprobe_sweep_failures_total", "counter", "Sweeps that failed, by reason "
           "(cannot_probe, or refused and internal, which are bugs).", ("reason",)),
    Family("xenprobe_mismatch_onsets_total", "counter", "Times a subject's reading by "
           "this layer entered this mismatch verdict, once per entry however long it lasts "
           "(a series appears at its first entry).", ("quantity", "layer", "verdict")),
    Family("xenprobe_drifted_readings_total", "counter", "Readings that got the drift "
           "verdict, summed over every sweep (a series appears at its first drift).",
           ("quantity", "layer")),
    Family("xenprobe_layer_errors_total", "counter", "Readings a layer returned as an "
           "error, by errno, but the missing-domain probe's ESRCH (layer raw: every "
           "common errno from the start).", ("layer", "errno")),
    Family("xenprobe_retries_total", "counter", "Requests issued again, by call and "
           "reason (EINTR, EAGAIN, or invalid: an answer that cannot be right).",
           ("call", "reason")),
    Family("xenprobe_sweep_retries", "gauge", "Requests issued again during this "
           "sweep, by call and reason (textfile only, only non-zero series).",
           ("call", "reason")),
    Family("xenprobe_textfile_write_errors_total", "counter", "Failed writes of the "
           "textfile."),
    # serve --watch only: other processes' privcmd hypercalls (exporter/watching.py).
    Family("xenprobe_watch_armed", "gauge", "1 while serve --watch has its kprobes armed "
           "(0: not armed, see the log's watch_failed line)."),
    Family("xenprobe_watch_calls_total", "counter", "Privcmd hypercalls of other "
           "processes the watch saw, by op (xenprobe's own are in the sweep metrics).",
           ("op",)),
    Family("xenprobe_watch_damaged_calls_total", "counter", "Privcmd hypercalls whose "
           "result reached the calling process damaged, by op, subop, verdict (a "
           "mismatch, or forged_errno or out_of_range at the source: a call with both is "
           "counted under each) and process name, at most max_domain_series series (the "
           "rest under _other).",
           ("op", "subop", "verdict", "process")),
    Family("xenprobe_watch_series_dropped", "gauge", "Damaged calls counted under "
           "_other because the series cap was reached."),
    Family("xenprobe_watch_lost_events_total", "counter", "Trace events the kernel lost "
           "before the watch read them, so calls that may have gone unjudged."),
    Family("xenprobe_config_last_reload_successful", "gauge", "1 when the last "
           "configuration load (start or SIGHUP) succeeded."),
    Family("xenprobe_config_last_reload_success_timestamp_seconds", "gauge", "Unix time "
           "of the last successful configuration load."),
    Family("xenprobe_web_config_last_reload_successful", "gauge", "1 when the web "
           "configuration file last parsed."),
    Family("xenprobe_agent_threads", "gauge", "Threads of the xenprobe process."),
    Family("xenprobe_agent_locked_memory_bytes", "gauge", "Memory the xenprobe process "
           "has locked (hypercall buffers)."),
)}


def _base(name: str, suffix: str) -> str:
    return name[:-len(suffix)] if name.endswith(suffix) else name


def gauge_family(name: str) -> GaugeMetricFamily:
    f = FAMILIES[name]
    return GaugeMetricFamily(f.name, f.help, labels=list(f.labels))


def counter_family(name: str) -> CounterMetricFamily:
    f = FAMILIES[name]  # prometheus_client appends _total
    return CounterMetricFamily(_base(f.name, "_total"), f.help, labels=list(f.labels))


def info_family(name: str, keyed: tuple[str, ...] = ()) -> InfoMetricFamily:
    """An info family; `keyed` are the labels add_metric takes as a list, the rest of
    the table's go in its dict."""
    f = FAMILIES[name]
    return InfoMetricFamily(_base(f.name, "_info"), f.help, labels=list(keyed))


def gauge(name: str, value: float) -> Metric:
    """An unlabelled gauge of the table; `name` without the xenprobe_ prefix."""
    f = FAMILIES[f"{PREFIX}_{name}"]
    return GaugeMetricFamily(f.name, f.help, value=value)


def markdown_table() -> str:
    """The table as docs/metrics.md shows it."""
    rows = ["| Name | Type | Labels | Help |", "|---|---|---|---|"]
    rows += [f"| `{f.name}` | {f.type} | {', '.join(f'`{x}`' for x in f.labels) or '-'} "
             f"| {f.help.replace('|', '/')} |" for f in FAMILIES.values()]
    return "\n".join(rows)
