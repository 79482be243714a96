# SPDX-License-Identifier: GPL-2.0-only
"""Metrics for a sweep without the raw layer (xenprobe.layers.raw_absent): that it is missing and
why, and how many readings nothing could judge. Kept apart from from_sweep.py so the
families a raw-less host adds are in one place.

Series: xenprobe_layer_absent at most 1 (layer raw; the other layers' absence is the
libxc note), xenprobe_unjudged at most Q*L (Q quantities, L layers below raw): 1 + 15
with the defaults, on top of from_sweep.py's bound, and none on a host with a raw layer."""

from __future__ import annotations

from collections import Counter

from prometheus_client.metrics_core import Metric

from xenprobe.exporter.metrics.families import gauge_family
from xenprobe.probe.classify import Verdict
from xenprobe.probe.sweep import Sweep

PREFIX = "xenprobe"


def unjudged_counts(sweep: Sweep) -> Counter[tuple[str, str]]:
    """(quantity, layer) -> readings left unjudged (no raw layer, no exact reference)."""
    return sweep.summary.with_verdict(Verdict.UNJUDGED)


def families(sweep: Sweep) -> list[Metric]:
    """The families (names, HELP and labels: families.FAMILIES). Without the raw layer
    only readings an exact reference pins are judged: a clean xenprobe_mismatch_verdicts then
    proves less (pvh_no_multicall: a PVH dom0 before Xen 4.15.1 has no multicall)."""
    absent = gauge_family(f"{PREFIX}_layer_absent")
    if sweep.raw_absent is not None:
        absent.add_metric(["raw", sweep.raw_absent.reason], 1)
    unjudged = gauge_family(f"{PREFIX}_unjudged")
    for (quantity, layer), n in sorted(unjudged_counts(sweep).items()):
        unjudged.add_metric([quantity, layer], n)
    return [absent, unjudged]
