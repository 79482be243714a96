# SPDX-License-Identifier: GPL-2.0-only
"""Metrics for a sweep without the raw layer (xenprobe.rawlayer): that it is missing and
why, and how many readings nothing could judge. Kept apart from metrics.py so the
families a raw-less host adds are in one place.

Series: xenprobe_layer_absent at most 1 (layer raw; the other layers' absence is the
libxc note), xenprobe_unjudged at most Q*L (Q quantities, L layers below raw): 1 + 15
with the defaults, on top of metrics.py's bound, and none on a host with a raw layer."""

from __future__ import annotations

from collections import Counter

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from xenprobe.classify import Verdict
from xenprobe.sweep import Sweep

PREFIX = "xenprobe"


def unjudged_counts(sweep: Sweep) -> Counter[tuple[str, str]]:
    """(quantity, layer) -> readings left unjudged (no raw layer, no exact reference)."""
    return sweep.summary.with_verdict(Verdict.UNJUDGED)


def families(sweep: Sweep, from_sweep: str) -> list[Metric]:
    """The families; from_sweep ends each HELP (metrics.FROM_SWEEP)."""
    absent = GaugeMetricFamily(
        f"{PREFIX}_layer_absent", "1 when a layer could not be read at all, with why "
        "(pvh_no_multicall, multicall_enosys), so a clean xenprobe_mismatch proves less"
        + from_sweep, labels=["layer", "reason"])
    if sweep.raw_absent is not None:
        absent.add_metric(["raw", sweep.raw_absent.reason], 1)
    unjudged = GaugeMetricFamily(
        f"{PREFIX}_unjudged", "Subjects whose reading by this layer nothing could judge "
        "(no raw layer and no exact reference), neither a match nor a mismatch"
        + from_sweep,
        labels=["quantity", "layer"])
    for (quantity, layer), n in sorted(unjudged_counts(sweep).items()):
        unjudged.add_metric([quantity, layer], n)
    return [absent, unjudged]
