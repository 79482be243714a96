# SPDX-License-Identifier: GPL-2.0-only
"""`check --json` is output a machine can rely on: a format version, every key in the
schema that ships with xenprobe (xenprobe/cli/schema/report.schema.json, docs/json.md), JSON
on stdout even on errors with the documented exit codes, and the same value spelled the
same way in JSON and in metric labels. Every report here is validated against the schema
(tests/mockhost.check_json validates those of the other tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.bench.scenario import write
from tests.mockhost import check_json, run_check
from tests.report_schema import schema, validate
from xenprobe.cli.render import FORMAT
from xenprobe.mock.scenario import shipped
from xenprobe.probe.classify import Risk, Verdict
from xenprobe.xen.quantities import Quantity, Subject


def test_the_schema_names_every_verdict_quantity_and_risk() -> None:
    """The schema's enums are xenprobe's own (a new verdict must reach the schema)."""
    defs = schema()["$defs"]
    assert set(defs["verdict"]["enum"]) == {v.value for v in Verdict}
    assert set(defs["quantity"]["enum"]) == {q.value for q in Quantity}
    assert set(defs["risk"]["enum"]) == {r.value for r in Risk}
    subject = defs["result"]["properties"]["subject"]["enum"]
    assert set(subject) == {s.value for s in Subject}
    assert defs["format"]["const"] == FORMAT


@pytest.mark.parametrize("name", [n for n in shipped() if n != "domu"])
def test_every_scenario_report_is_valid(name: str) -> None:
    code, report = check_json(name)  # validates
    assert report["format"] == FORMAT
    assert report["exit_code"] == code
    # The summary adds up: per (quantity, layer) verdicts sum to the whole-host counts,
    # and those to what the results say.
    total: dict[str, int] = {}
    for row in report["summary"]["by_quantity"]:
        for v, n in row["verdicts"].items():
            total[v] = total.get(v, 0) + n
    assert total == report["summary"]["verdicts"]
    from_results: dict[str, int] = {}
    for r in report["results"]:
        verdicts = [r["raw_verdict"]] if r["raw_verdict"] else []
        verdicts += [layer["verdict"] for layer in r["layers"].values()]
        for v in verdicts:
            from_results[v] = from_results.get(v, 0) + 1
    assert from_results == total


def json_run(*args: str) -> tuple[int, dict[str, Any], str]:
    p = run_check(["check", "--json", *args])
    report = json.loads(p.stdout)  # stdout is JSON whatever happened
    validate(report)
    return p.returncode, report, p.stderr


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--mock", "domu"], 3, "not a control domain"),
    (["--mock", "no-such-scenario"], 2, "no scenario named"),
    (["--mock", "healthy", "--attempts", "0"], 2, "--attempts"),
    (["--mock", "healthy", "--quantity", "nope"], 2, "--quantity"),
    (["--mock", "healthy", "--domain", "x"], 2, "--domain"),
    (["--mock", "healthy", "--domain", "32752"], 2, "--domain 32752"),
    (["--mock", "healthy", "--no-such-flag"], 2, "--no-such-flag"),
])
def test_errors_are_json_too_with_the_same_exit_code(args: list[str], code: int,
                                                     words: str) -> None:
    rc, report, stderr = json_run(*args)
    assert rc == code
    assert report["exit_code"] == report["error"]["code"] == code
    assert words in report["error"]["message"]
    assert report["format"] == FORMAT
    # The person's message is still on stderr, where it always was.
    assert f"xenprobe: error: {report['error']['message']}" in stderr


def test_errors_without_json_print_nothing_on_stdout() -> None:
    p = run_check(["check", "--mock", "domu"])
    assert p.returncode == 3 and p.stdout == ""


def test_interface_versions_are_spelled_alike_in_json_and_labels(tmp_path: Path) -> None:
    """One value, one spelling: decimal in JSON (an integer) and in labels (a string)."""
    prom = tmp_path / "x.prom"
    _, report = check_json("huge-address-space", "--textfile", str(prom))
    line = next(ln for ln in prom.read_text().splitlines()
                if ln.startswith("xenprobe_xen_info{"))
    for key in ("sysctl_interface", "domctl_interface"):
        assert f'{key}="{report["host"][key]}"' in line


def test_views_narrow_the_results_never_the_summary_or_exit_code(tmp_path: Path) -> None:
    path = write(1000, tmp_path)
    code, whole = check_json(str(path))
    assert code == 1
    views: list[tuple[list[str], Any]] = [
        (["--summary"], lambda r: False),
        (["--mismatches"], lambda r: r["raw_verdict"] not in (None, "match", "drift",
                                                               "absent")
         or any(x["verdict"] in MISMATCH for x in r["layers"].values())),
        (["--quantity", "maximum_gpfn", "--quantity", "xen_version"],
         lambda r: r["quantity"] in ("maximum_gpfn", "xen_version")),
        (["--domain", "25", "--domain", "7"],
         lambda r: r["subject"] == "domain" and r["domid"] in (7, 25)),
    ]
    for args, wanted in views:
        rc, narrowed = check_json(str(path), *args)
        assert rc == code, args
        assert narrowed["summary"] == whole["summary"], args
        assert narrowed["results"] == [r for r in whole["results"] if wanted(r)], args
    assert whole["summary"]["top_domains"][0] == {
        "domid": 7, "uuid": whole["summary"]["top_domains"][0]["uuid"], "name": None,
        "mismatches": 6,
        "quantities": ["current_reservation", "maximum_gpfn", "maximum_reservation"]}


MISMATCH = {"truncated", "sign_flipped", "clamped", "aliased_errno", "lost_error",
            "changed_error", "other"}


def test_a_bug_is_json_too(monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 4 (a bug in xenprobe) under --json: still one JSON object on stdout."""
    from xenprobe.cli import command as cli

    def broken(*_: object) -> int:
        raise ValueError("a bug")

    monkeypatch.setattr(cli, "_check", broken)
    assert cli.main(["check", "--json"]) == 4
    out = capsys.readouterr().out
    report = json.loads(out)
    validate(report)
    assert report["error"] == {"code": 4, "message": "internal error: ValueError: a bug"}
    assert cli.main(["check"]) == 4
    assert capsys.readouterr().out == ""
