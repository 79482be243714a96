# SPDX-License-Identifier: GPL-2.0-only
"""The mock host against the real one.

test_mock_reproduces_the_real_report: a scenario is written from what the independent
reader saw in the real dom0 (release, extraversion, interface versions, physinfo, raw
maximum_ram_page, every domain's tot/max pages and raw maximum_gpfn), `xenprobe check
--json --mock` runs on it on the host, and the two reports are compared field by field
(host identity, the probes, raw values, references, per-layer values and verdicts,
bits, at_risk, attempts, summary, exit code).  A difference is a mock or scenario
compiler bug: the mock answers differently from real Xen + Linux for the same state.

test_mismatch_confirmation_on_the_mock: the relations test_xenprobe.py uses to confirm
mismatches on real Xen (compare.relation_holds) must confirm every mismatch the agent
reports on the shipped mock scenarios too, with the reader re-reading on the mock host.
Real Xen shows few kinds of mismatch; this covers the rest (no boot needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests import xenpkgs
from tests.mockhost import check_json, env_for
from xenprobe.mock.scenario import load, shipped

from .compare import (
    READER_PATH,
    diff_reports,
    mismatches,
    probe_key,
    reader_layer,
    reader_probes,
    reference_holds,
    relation_holds,
    scenario_from_readings,
)
from .session import READER, Session

if TYPE_CHECKING:
    from .conftest import RealXen


@pytest.mark.realxen
def test_mock_reproduces_the_real_report(realxen: RealXen, tmp_path: Path) -> None:
    s: Session = realxen.session()
    if s.check is None or s.reader is None:
        raise AssertionError(f"no check/reader JSON from the real dom0\n{s.report()}")
    text = scenario_from_readings(
        s.reader, description=f"The real-Xen tier's QEMU host (Xen {s.release}), as the "
                              "independent reader saw it in dom0.")
    path = tmp_path / f"qemu-xen{s.release.replace('.', '')}.toml"
    path.write_text(text)
    scenario = load(str(path))  # validated like any scenario
    assert scenario.release.name == s.release
    env = None
    if any(r["layers"].get("libxc", {}).get("verdict", "absent") != "absent"
           for r in s.check["results"]):
        # The real run had Debian's libxenctrl of its release: give the mock run the
        # same one, so the libxc column (and its int-path note on 4.14) is compared too.
        env = {**os.environ, **xenpkgs.ensure(release=s.release).env()}
    code, mock = check_json(str(path), env=env)
    (tmp_path / "real.json").write_text(json.dumps(s.check, indent=2))
    (tmp_path / "mock.json").write_text(json.dumps(mock, indent=2))
    assert mock["mock_scenario"] == path.stem
    assert code == mock["exit_code"]
    diffs = diff_reports(s.check, mock)
    assert not diffs, (
        f"Xen {s.release}: the mock host disagrees with the real one in {len(diffs)} "
        f"fields (scenario, real.json, mock.json in {tmp_path}):\n" + "\n".join(diffs))


def _probing() -> list[str]:
    out = []
    for name in shipped():
        sc = load(name)
        # A host without multicalls (pvh-dom0) has no raw reading for the reader to
        # confirm against; tests/test_pvh.py covers it.
        if sc.role == "dom0" and sc.device == "present" and not sc.hangs and sc.multicall:
            out.append(name)
    return out


@pytest.mark.parametrize("name", _probing())
def test_mismatch_confirmation_on_the_mock(name: str, tmp_path: Path) -> None:
    code, report = check_json(name)
    found = [r for r in report["results"] if mismatches(r)]
    if not found:
        pytest.skip(f"{name}: no mismatch to confirm")
    check = tmp_path / "check.json"
    check.write_text(json.dumps(report))
    env = env_for(load(name), tmp_path)
    p = subprocess.run([sys.executable, str(READER), "--probes-from", str(check)], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr + p.stdout
    seen = reader_probes(json.loads(p.stdout))
    balloons = {d.domid for d in load(name).domains if d.balloon}
    checked = 0
    for r in found:
        if r["domid"] in balloons:
            continue  # moves between the agent's read and the reader's
        rp: dict[str, Any] = seen[probe_key(r)]
        assert rp["multicall"] == r["raw"]["value"], (r, rp)
        for layer, verdict in mismatches(r).items():
            if layer == "raw":
                assert not reference_holds(r["reference"], rp["multicall"]), (r, rp)
            elif layer in READER_PATH:
                value, errno = reader_layer(rp, layer)
                got = r["layers"][layer]
                assert (got["value"], got["errno"]) == (value, errno), (layer, r, rp)
                assert relation_holds(verdict, rp["multicall"], value, errno), (layer, r, rp)
            checked += 1
    if checked == 0:
        pytest.skip(f"{name}: only moving domains mismatch")
    # Exit 1 only for a finding some consumer would read wrong (xenprobe/probe/impact.py).
    acted = any(f["impact"] != "harmless" for f in report["findings"])
    assert code == (1 if acted else 0), report["findings"]
