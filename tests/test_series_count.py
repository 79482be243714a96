# SPDX-License-Identifier: GPL-2.0-only
"""A scrape an operator can afford: every shipped scenario is scraped at default
settings after its first sweep (tests/scrapes.py) and its series are counted (at most
400 each; pv-dom0 had 1,607 when every quantity x layer x verdict was exported at 0).
The series the alerts read with increase() still exist from the first scrape at 0, and
docs/metrics.md's figure for the large-memory scrape ("The large-memory scrape above has
N.") is that count."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.exporter_util import Serve
from tests.scrapes import Exposition, scrape_all

ROOT = Path(__file__).resolve().parents[1]
METRICS = ROOT / "docs" / "metrics.md"  # the words branch moved the figure out of README
SENTENCE = re.compile(r"The large-memory scrape above has (\d+)\.")
MOST = 400


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exposition]:
    return scrape_all(tmp_path_factory.mktemp("scrapes"))


def test_no_shipped_scenario_exports_more_than_400_series(
        scrapes: dict[str, Exposition]) -> None:
    counts = {name: len(e.samples) for name, e in sorted(scrapes.items())}
    print("\nseries per scrape at default settings: "
          + ", ".join(f"{n} {c}" for n, c in counts.items()))
    assert all(0 < c <= MOST for c in counts.values()), counts


def increase_selectors() -> list[tuple[str, dict[str, str]]]:
    """(metric, equality matchers) of every increase() or rate() in the alert rules."""
    out = []
    doc = yaml.safe_load((ROOT / "contrib" / "prometheus" / "xenprobe-alerts.yml").read_text())
    for r in (r for g in doc["groups"] for r in g["rules"]):
        for name, matchers in re.findall(r"(?:increase|rate)\((\w+)\{([^}]*)\}",
                                         str(r["expr"])):
            out.append((name, dict(re.findall(r'(\w+)="([^"]*)"', matchers))))
    return out


def test_what_alerts_read_with_increase_exists_from_the_first_scrape() -> None:
    """Before any sweep has finished (an interval of an hour, scraped at once), every
    series an alert reads with increase() is there at 0: its first event will show."""
    selectors = increase_selectors()
    assert selectors, "the alert rules read no counter with increase()"
    with Serve("large-memory", "--interval", "3600") as serve:
        status, _, body = serve.get()
    assert status == 200
    first = Exposition(body.decode()).samples
    for name, matchers in selectors:
        found = [s for s in first if s.name == name
                 and all(s.labels.get(k) == v for k, v in matchers.items())]
        assert found and all(s.value == 0 for s in found), (name, matchers)


def test_the_metrics_doc_states_the_measured_series_count(scrapes: dict[str, Exposition]
                                                        ) -> None:
    found = SENTENCE.search(METRICS.read_text())
    assert found, "docs/metrics.md no longer states the large-memory series count"
    got = len(scrapes["large-memory"].samples)
    assert int(found.group(1)) == got, (
        f"docs/metrics.md says {found.group(1)}; a scrape has {got}")
