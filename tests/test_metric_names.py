# SPDX-License-Identifier: GPL-2.0-only
"""Rules and dashboard cannot name what xenprobe does not export.

Every shipped scenario is scraped (tests/scrapes.py; with an int-path holder, so the
consumer families have series), and so is `serve --watch` on the mock host after a
process received a damaged value (the xenprobe_watch_* families exist only there), and
large-memory with domain names in xenstore (xenprobe_domain_info's `name`), and then
every metric name, label name and label value (= and simple =~ alternations) that an
alert rule, a recording rule, a rule annotation, a dashboard query or a legend uses must
occur in some scrape, or be a recorded series with that label, or be Prometheus's or
node_exporter's own. The checker is also shown to catch what the dashboard once queried
(xenprobe_compat_consumer_info, a `bits` label). The family table
(xenprobe/exporter/metrics/families.py) must describe exactly what the scrapes have, and
docs/metrics.md must be generated from it."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

from tests import watchhost
from tests.exporter_util import Serve, series, wait_for
from tests.exporter_util import value as sample_value
from tests.scrapes import Exposition, own_host, scrape_all
from tests.test_names import NAMES, named
from tests.test_watch_mock import INTACT, TRUNCATED
from xenprobe.exporter.metrics import families

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "contrib" / "prometheus"
DASHBOARD = ROOT / "contrib" / "grafana" / "xenprobe.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"

# Series that come from Prometheus itself (up, per target) or node_exporter's textfile
# collector, with the labels the rules use on them.
FOREIGN = {"up": {"instance", "job"}, "node_textfile_mtime_seconds": {"instance", "job",
                                                                       "file"}}
TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan"}

Known = dict[str, dict[str, set[str]]]  # metric -> label -> values seen


WATCHED = "healthy --watch"  # the key of the serve --watch scrape
NAMED = "large-memory named"  # domains with xenstore names (tests/test_names.py)


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exposition]:
    out = scrape_all(tmp_path_factory.mktemp("scrapes"), holder_on="large-memory")
    out[WATCHED] = watched_scrape(tmp_path_factory.mktemp("watch"))
    # No shipped scenario names its domains in xenstore: xenprobe_domain_info's `name`.
    named_host = named(tmp_path_factory.mktemp("named"), NAMES)
    with Serve(str(named_host), "--interval", "60", env=own_host("named")) as s:
        s.after_sweeps(1)
        status, _, body = s.get()
        assert status == 200, body
        out[NAMED] = Exposition(body.decode())
    return out


def watched_scrape(tmp: Path) -> Exposition:
    """serve --watch on the mock host (tests/test_watch_serve.py) once another process
    received a truncated maximum_gpfn: the xenprobe_watch_* families, damaged calls too."""
    host = watchhost.make(tmp)
    with Serve("healthy", "--watch", env=host.env) as s:
        wait_for("the watch armed",
                 lambda: sample_value(s.metrics(), "xenprobe_watch_armed") == 1 or None)
        s.after_sweeps(1)
        host.consumer(TRUNCATED, *INTACT, name="guestpfn")
        wait_for("a damaged call on /metrics", lambda: series(
            s.metrics(), "xenprobe_watch_damaged_calls_total") or None)
        status, _, body = s.get()
        assert status == 200, body
        return Exposition(body.decode())


@pytest.fixture(scope="module")
def known(scrapes: dict[str, Exposition]) -> Known:
    return collect(scrapes.values())


def collect(scrapes: Iterable[Exposition]) -> Known:
    out: Known = defaultdict(lambda: defaultdict(set))
    for e in scrapes:
        for s in e.samples:
            out[s.name]  # a series without labels is known too
            for k, v in s.labels.items():
                out[s.name][k].add(v)
    return out


# -- a small PromQL reader: names, matchers, grouping labels ------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(\s*\()?")


def metric_names(expr: str) -> set[str]:
    text = _GROUPING.sub(" ", _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", expr))
    text = _STRING.sub(" ", re.sub(r"\[[^\]]*\]", " ", text))
    return {m.group(1) for m in _IDENT.finditer(text)
            if not m.group(2) and m.group(1).lower() not in KEYWORDS}


def problems(expr: str, known: Known, recorded: dict[str, set[str]],
             extra_labels: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """What `expr` (with `extra_labels` used on its result: legends, annotations) names
    that no scrape has."""
    found = []
    names = metric_names(expr.replace("$instance", "x"))
    labels_of: dict[str, set[str]] = {}
    for n in names:
        if n in known:
            labels_of[n] = set(known[n]) | TARGET_LABELS
        elif n in recorded:
            labels_of[n] = recorded[n]
        elif n in FOREIGN:
            labels_of[n] = FOREIGN[n]
        else:
            found.append(f"metric {n}")
    everywhere = set().union(*labels_of.values()) if labels_of else set()
    for m in _SELECTOR.finditer(expr):
        name = m.group(1)
        for label, op, value in _MATCHER.findall(m.group(2)):
            if name is None or name not in labels_of:
                continue
            if label not in labels_of[name]:
                found.append(f"label {label} of {name}")
            elif name in known and label in known[name] and op in ("=", "=~") \
                    and "$" not in value:
                values = value.split("|") if op == "=~" else [value]
                if all(re.fullmatch(r"[\w.-]+", v) for v in values):
                    found += [f"{label}=\"{v}\" of {name}" for v in values
                              if v not in known[name][label]]
    for m in _GROUPING.finditer(expr):
        for label in filter(None, (x.strip() for x in m.group(2).split(","))):
            if label not in everywhere:
                found.append(f"label {label} in {m.group(1)}()")
    found += [f"label {x} shown" for x in extra_labels if x not in everywhere]
    return found


def rules(path: Path) -> list[dict[str, object]]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def recorded_labels(known: Known) -> dict[str, set[str]]:
    """Each recording rule's output name and the labels it keeps."""
    out: dict[str, set[str]] = {}
    for r in rules(SYSTEMD / "xenprobe-recording.yml"):
        expr = str(r["expr"])
        kept = re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr)
        out[str(r["record"])] = ({x.strip() for x in kept[0].split(",")}
                                 if kept and not expr.lstrip().startswith("count(")
                                 and not expr.lstrip().startswith("sum(")
                                 else set())
    return out


def shown_labels(*texts: str) -> set[str]:
    """Labels a legend ({{x}}) or an annotation ($labels.x) shows."""
    out: set[str] = set()
    for t in texts:
        out |= set(re.findall(r"\{\{\s*([a-zA-Z_]\w*)\s*\}\}", t))
        out |= set(re.findall(r"\$labels\.([a-zA-Z_]\w*)", t))
    return out


def panels() -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        found += [p, *p.get("panels", [])]
    return found


# -- the tests ------------------------------------------------------------------------------

def test_the_checker_catches_what_the_dashboard_once_queried(known: Known) -> None:
    recorded = recorded_labels(known)
    assert problems('xenprobe_compat_consumer_info{instance=~"$instance"}', known,
                    recorded) == ["metric xenprobe_compat_consumer_info"]
    assert problems('xenprobe_privcmd_consumers{instance=~"$instance"}', known, recorded,
                    {"bits"}) == ["label bits shown"]
    assert problems('xenprobe_privcmd_consumers{bits="32"} > 0', known, recorded) == [
        "label bits of xenprobe_privcmd_consumers"]
    assert problems('xenprobe_mismatched_readings{impact="fatal"}', known, recorded) == [
        'impact="fatal" of xenprobe_mismatched_readings']
    assert problems('sum by (instance, job, bits) (xenprobe_up)', known, recorded) == [
        "label bits in by()"]
    assert problems('max by (instance) (xenprobe_mismatch_verdicts{verdict="sign_flipped"})',
                    known, recorded) == []


def test_every_rule_names_what_a_scrape_has(known: Known) -> None:
    recorded = recorded_labels(known)
    bad = {}
    for path in (SYSTEMD / "xenprobe-alerts.yml", SYSTEMD / "xenprobe-recording.yml"):
        for r in rules(path):
            notes = r.get("annotations", {})
            assert isinstance(notes, dict)
            found = problems(str(r["expr"]), known, recorded,
                             shown_labels(*map(str, notes.values())))
            if found:
                bad[str(r.get("alert") or r.get("record"))] = found
    assert not bad


def test_every_dashboard_query_and_legend_names_what_a_scrape_has(known: Known) -> None:
    recorded = recorded_labels(known)
    dash = json.loads(DASHBOARD.read_text())
    bad = {}
    for p in panels():
        for t in p.get("targets", []):  # type: ignore[attr-defined]
            found = problems(t["expr"], known, recorded,
                             shown_labels(t.get("legendFormat", "")))
            if found:
                bad[f"{p['title']}: {t['expr']}"] = found
    for v in dash["templating"]["list"]:
        query = v.get("query")
        if isinstance(query, dict) and "label_values(" in query.get("query", ""):
            m = re.fullmatch(r"label_values\((\w+), (\w+)\)", query["query"])
            assert m and not problems(m.group(1), known, recorded, {m.group(2)})
    assert not bad


def test_the_family_table_is_what_is_exported(scrapes: dict[str, Exposition],
                                              known: Known) -> None:
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    for e in scrapes.values():
        helps |= {k: v for k, v in e.meta("HELP").items() if k.startswith("xenprobe_")}
        types |= {k: v for k, v in e.meta("TYPE").items() if k.startswith("xenprobe_")}
    table = families.FAMILIES
    # Every exported family is in the table, as written there.
    for name, text in helps.items():
        f = table[name]
        assert text == f.help, name
        assert types[name] == ("gauge" if f.type == "info" else f.type), name
        assert set(known[name]) <= set(f.labels), name
    # Every family in the table is exported by some scrape, with every label it lists
    # (but those only the textfile or a degraded host has: see the reasons).
    only_elsewhere = {
        "xenprobe_sweep_retries": "the textfile's, with a retry",
        "xenprobe_layer_absent": "pvh-dom0's",
        "xenprobe_unjudged": "pvh-dom0's",
    }
    for name, f in table.items():
        if name in only_elsewhere and name not in known:
            continue
        assert name in known, name
        if name not in ("xenprobe_sweep_retries",):
            assert set(known[name]) == set(f.labels), name


def test_the_metrics_doc_is_the_table() -> None:
    text = METRICS_DOC.read_text()
    assert families.markdown_table() in text, "regenerate: python3 -c 'from " \
        "xenprobe.exporter.metrics import families; print(families.markdown_table())'"
    for f in families.FAMILIES.values():
        assert len(re.findall(r"[.!?](\s|$)", f.help.rstrip(".") + ".")) == 1, \
            f"{f.name}: HELP is one sentence"


# -- names that say what they count --------------------------------------------------------

def _stem(name: str, kind: str) -> str:
    """A family's name as OpenMetrics names the family: a counter without its `_total`,
    an info without its `_info` (prometheus_client/openmetrics/exposition.py writes the
    `# TYPE` line with that name)."""
    suffix = {"counter": "_total", "info": "_info"}.get(kind, "")
    return name[:-len(suffix)] if suffix and name.endswith(suffix) else name


def _singular_word(w: str) -> str:
    if w.endswith("ies"):
        return w[:-3] + "y"
    if w.endswith(("ses", "xes", "ches", "shes")):
        return w[:-2]
    return w[:-1] if w.endswith("s") and not w.endswith("ss") else w


def _singular(stem: str) -> str:
    return "_".join(map(_singular_word, stem.split("_")))


def test_no_two_families_differ_only_by_total_or_a_plural() -> None:
    """Two families whose names differ only by `_total` or a plural read as one thing
    counted twice: xenprobe_mismatch (subjects in mismatch now) and
    xenprobe_mismatches_total (entries into a mismatch) counted different things. A gauge
    `x` beside a counter `x_total` is also one OpenMetrics family twice. An info family
    describes what its count sibling counts (xenprobe_privcmd_consumer_info beside
    xenprobe_privcmd_consumers), so only exact stems are held against it."""
    stems: dict[str, list[str]] = defaultdict(list)
    loose: dict[str, list[str]] = defaultdict(list)
    for f in families.FAMILIES.values():
        stem = _stem(f.name, f.type)
        stems[stem].append(f.name)
        if f.type != "info":
            loose[_singular(stem)].append(f.name)
    assert [n for n in stems.values() if len(n) > 1] == []
    assert [n for n in loose.values() if len(n) > 1] == []


def test_the_plural_rule_sees_a_plural() -> None:
    assert _singular("xenprobe_mismatches") == _singular("xenprobe_mismatch")
    assert _singular("xenprobe_drifts") == _singular("xenprobe_drift")
    assert _singular("xenprobe_privcmd_consumers") == "xenprobe_privcmd_consumer"
    assert _singular("xenprobe_retries") == _singular("xenprobe_retry")
    assert _singular("xenprobe_stale") != _singular("xenprobe_up")
