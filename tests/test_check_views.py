# SPDX-License-Identifier: GPL-2.0-only
"""A person at a big host (tests/bench/scenario.py's 1,000 and 10,000 domains): the
default output stays a few screens, --summary is one screen, --mismatches shows every
subject in mismatch and nothing else, --quantity and --domain narrow, and the exit code
is the whole host's in every view. Line counts are printed, for the record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bench.scenario import write
from tests.mockhost import check_json, run_check

SCREEN = 50  # lines: --summary must fit one terminal screen
LABEL = re.compile(r"^  (\S+)\s+(?:reference|raw)\s", re.M)


@pytest.fixture(scope="module", params=[1000, 10_000])
def host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(request.param, tmp_path_factory.mktemp("big"))


def check(host: Path, *args: str) -> tuple[int, str]:
    p = run_check(["check", "--mock", str(host), "--color", "never", *args], timeout=120)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, p.stdout


def test_every_view_of_a_big_host(host: Path) -> None:
    _, report = check_json(str(host), "--mismatches")
    bad = {(r["quantity"], f"dom{r['domid']}" if r["subject"] == "domain" else r["subject"])
           for r in report["results"]}
    assert len(bad) > 20  # enough that the default view has to leave some out

    code, default = check(host)
    assert code == 1
    lines = default.splitlines()
    print(f"\n{host.name}: default {len(lines)} lines", end="")
    assert len(lines) < 200
    assert "verdicts by quantity and layer" in default  # a big host opens with the counts
    assert re.search(r"\.\.\. and \d+ more domains in mismatch \(see them all: "
                     r"--mismatches --quantity maximum_gpfn\)", default)

    rc, summary = check(host, "--summary")
    print(f", --summary {len(summary.splitlines())}", end="")
    assert rc == code and len(summary.splitlines()) <= SCREEN
    assert re.search(r"^  dom7      [0-9a-f-]{36}  6         current_reservation, maximum_gpfn, "
                     r"maximum_reservation$", summary, re.M)
    assert summary.splitlines()[-1] == lines[-1]  # the same whole-host line

    rc, mismatches = check(host, "--mismatches")
    print(f", --mismatches {len(mismatches.splitlines())}")
    assert rc == code
    shown = set()
    quantity = ""
    for line in mismatches.splitlines():
        if re.fullmatch(r"[a-z_0-9]+(?: \(4 KiB pages\))?", line):
            quantity = line.split()[0]
        elif m := LABEL.match(line):
            shown.add((quantity, m.group(1)))
    assert shown == bad
    # Only the bad layers: no row of syscall/ioctl/libxc says match or absent.
    assert not re.search(r"^\s+(syscall|ioctl|libxc)\s+\S+.*\b(match|absent)\b",
                         mismatches, re.M)
    assert mismatches.splitlines()[-1].startswith("(this view leaves rows out")


def test_one_quantity_one_domain(host: Path) -> None:
    rc, out = check(host, "--quantity", "maximum_gpfn", "--domain", "25", "--domain", "3")
    assert rc == 1
    assert [m.group(1) for m in LABEL.finditer(out)] == ["dom3", "dom25"]
    assert re.findall(r"^([a-z_0-9]+)(?: \(4 KiB pages\))?$", out, re.M) == ["maximum_gpfn"]
    rc, out = check(host, "--domain", "32000")
    assert rc == 1 and "note: no domain 32000 on this host" in out
    assert "Nothing to show in this view." in out
