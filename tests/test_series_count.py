# SPDX-License-Identifier: GPL-2.0-only
"""docs/metrics.md's series count is measured, not typed: a real `xenprobe serve --mock
large-memory` is scraped after its first sweep, its series are counted, and the figure
docs/metrics.md gives ("The large-memory scrape above has N.") must be that count. The count is
also held to the bound documented in xenprobe/exporter/metrics.py."""

from __future__ import annotations

import re
from pathlib import Path

from tests.exporter_util import Serve
from xenprobe.exporter import metrics
from xenprobe.quantities import GUEST_SET

METRICS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
SENTENCE = re.compile(r"The large-memory scrape above has (\d+)\.")


def scrape_series(scenario: str) -> list[str]:
    with Serve(scenario, "--interval", "60") as serve:
        serve.after_sweeps(1)
        status, _, body = serve.get()
    assert status == 200
    # Every sample line but those naming 32-bit processes that hold a mock device: on a
    # shared machine another test's may, and README's host has none.
    return [line for line in body.decode().splitlines() if line and not line.startswith(
        ("#", "xenprobe_compat_consumer_info"))]


def test_readme_states_the_measured_series_count() -> None:
    lines = scrape_series("large-memory")
    xenprobe = [ln for ln in lines if ln.startswith("xenprobe_")]
    print(f"\nlarge-memory scrape: {len(lines)} series, {len(xenprobe)} of them xenprobe_*")
    # The bound with the defaults (metrics.py): 2QLV + 2QL + Q(R+2) + L*E + N + G(LV+1)
    # + Q(L+1), plus the fixed series; the large-memory host has 2 domains in mismatch, far below N.
    q, layers, v, r = len(metrics.QUANTITIES), len(metrics.LAYERS), \
        len(metrics.MISMATCH_VERDICTS), len(metrics.RISKS)
    assert len(xenprobe) <= 2 * q * layers * v + 2 * q * layers + q * (r + 2) \
        + layers * len(metrics.ERRNOS) + 2 * 100 + len(GUEST_SET) * (layers * v + 1) \
        + q * (layers + 1) + 60
    found = SENTENCE.search(METRICS.read_text())
    assert found, "docs/metrics.md no longer states the large-memory series count"
    assert int(found.group(1)) == len(lines), (
        f"docs/metrics.md says {found.group(1)} series; a scrape has {len(lines)}")
