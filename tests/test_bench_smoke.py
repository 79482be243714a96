# SPDX-License-Identifier: GPL-2.0-only
"""The benchmark (python -m tests.bench) still runs: tiny hosts, one round, no timings
checked. The figures themselves are for people; see tests/bench/__main__.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_runs_and_prints_its_tables() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--domains", "1,100", "--rounds", "1",
         "--daemon-domains", "100", "--scrapes", "2", "--busy-sweeps", "1",
         "--leak-domains", "100", "--leak-sweeps", "10", "--startups", "1"],
        cwd=ROOT, text=True, capture_output=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    assert "| domains | probes | xenprobe sweep (ms) | floor (ms) |" in out
    # 3 per domain, 5 host and self probes, 26 census probes of the PV bench host (9
    # host-wide by value, livepatch LIST a sysctl, vcpu_is_up for each of dom0's 16 vCPUs).
    assert "| 1 | 34 |" in out and "| 100 | 331 |" in out
    assert "| domains | RSS after 1st sweep (MiB) |" in out and "failed" not in out
    assert "RSS over sweeps (100 domains" in out and "after 10:" in out
    assert "| xenprobe --version |" in out and "| xenprobe check --mock healthy |" in out
