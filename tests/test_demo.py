# SPDX-License-Identifier: GPL-2.0-only
"""The mock demo tells what an operator acts on (issue 23, item 5): the shipped `int-path`
scenario, a 12 TiB Debian 11 host, read with Debian 11's real libxenctrl 4.14 on the
loader path while a process mapping that same library holds the mock host's privcmd.
`check --mock int-path` then shows the libxc layer misreading (what xl and qemu get),
names the consumer on the int path, and says why in a note.

What README tells an operator on a fresh machine is proven too: `check --mock int-path`
alone (no libxenctrl 4.14 on the machine, no other process on the mock host) shows the
kernel layers and the impact but says the libxc layer is absent and no consumer holds
privcmd; tools/demo.py, the one command README gives for the rest, fetches the library,
starts a process that maps it, and shows both."""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import xenpkgs
from tests.holders import HOLD64_WITH_LIB, start, stop
from tests.mockhost import env_for, run_check
from tests.report_schema import validate
from xenprobe.layers import libxc
from xenprobe.mock.scenario import load, shipped


@pytest.fixture(scope="module")
def lib414() -> xenpkgs.XenPackages:
    if os.environ.get(xenpkgs.SKIP_ENV) == "1":
        pytest.skip(f"{xenpkgs.SKIP_ENV}=1: Debian 11's libxenctrl 4.14 not fetched")
    return xenpkgs.ensure(release="4.14")


def test_the_scenario_ships_and_cites_its_sources() -> None:
    assert "int-path" in shipped()
    s = load("int-path")
    assert s.release.name == "4.14"
    text = (Path(__file__).resolve().parents[1] / "xenprobe" / "mock" / "scenarios"
            / "int-path.toml").read_text()
    assert "xc_private.c@RELEASE-4.14.0" in text and "@RELEASE-4.14.6" in text


def test_check_mock_int_path_tells_the_whole_story(lib414: xenpkgs.XenPackages,
                                                   tmp_path: Path) -> None:
    env = env_for(load("int-path"), tmp_path)
    env.update(lib414.env())
    env.pop(libxc.ENV, None)
    consumer = start([sys.executable, "-c", HOLD64_WITH_LIB, "/dev/xen/privcmd",
                      str(lib414.libxenctrl)], env=env)
    try:
        p = run_check(["check", "--json", "--mock", "int-path"], env=env)
        human = run_check(["check", "--mock", "int-path"], env=env).stdout
    finally:
        stop([consumer])
    assert p.returncode == 1, p.stderr
    report = json.loads(p.stdout)
    validate(report)

    # The libxc layer: what every libxenctrl 4.14 consumer on this host reads.
    libxc_verdicts = {(r["quantity"], r["domid"]): r["layers"]["libxc"]["verdict"]
                      for r in report["results"]}
    assert libxc_verdicts[("maximum_ram_page", None)] == "sign_flipped"
    assert libxc_verdicts[("maximum_gpfn", 3)] == "sign_flipped"
    assert libxc_verdicts[("maximum_gpfn", 4)] == "aliased_errno"
    assert any("int ioctl" in n for n in report["notes"]), report["notes"]

    # The consumer that maps it, on the int path.
    mine = [c for c in report["consumers"]["processes"] if c["pid"] == consumer.pid]
    assert [(c["verdict"], c["libxenctrl"]["release"]) for c in mine] == [("int_path",
                                                                            "4.14")]
    line = next(x for x in human.splitlines() if x.startswith(f"  {consumer.pid} "))
    assert line.split()[3:5] == ["4.14", "int_path"]
    assert "libxc" in human.splitlines()[-1]  # the closing line counts libxc's misreadings


ROOT = Path(__file__).resolve().parents[1]


def test_check_mock_int_path_alone_says_what_is_missing(tmp_path: Path) -> None:
    try:
        ctypes.CDLL("libxenctrl.so.4.14")
        pytest.skip("this machine has libxenctrl.so.4.14 on the loader path")
    except OSError:
        pass
    env = dict(os.environ)
    env.pop(libxc.ENV, None)
    p = run_check(["check", "--json", "--mock", "int-path"], env=env)
    human = run_check(["check", "--mock", "int-path"], env=env).stdout
    assert p.returncode == 1, p.stderr
    report = json.loads(p.stdout)
    validate(report)
    assert {r["layers"]["libxc"]["verdict"] for r in report["results"]} == {"absent"}
    assert "note: libxc: libxenctrl.so.4.14 not found" in human.splitlines()
    assert report["consumers"]["processes"] == []
    assert "privcmd consumers: no other process holds the device open" in human
    # What is shown is still what to act on: the int ioctl's exposure and the fix.
    assert "exposure: libxenctrl < 4.15.1 reads memory_op through the int ioctl" in human
    assert "libxc" not in human.splitlines()[-1]


def test_the_demo_tells_the_whole_story(lib414: xenpkgs.XenPackages) -> None:
    """README's command, as README gives it (from the checkout's root)."""
    env = dict(os.environ)
    env.pop(libxc.ENV, None)
    runs = [subprocess.run([sys.executable, "tools/demo.py", *args], cwd=ROOT, env=env,
                           text=True, capture_output=True, timeout=120, check=False)
            for args in (["--json"], [])]
    for p in runs:
        assert p.returncode == 1, p.stderr
    pids = [int(m.group(1)) for p in runs
            for m in [re.search(r"^demo: process (\d+) maps (\S+) and holds", p.stderr,
                                re.M)] if m]
    assert len(pids) == 2, [p.stderr for p in runs]
    report = json.loads(runs[0].stdout)
    validate(report)
    libxc_verdicts = {(r["quantity"], r["domid"]): r["layers"]["libxc"]["verdict"]
                      for r in report["results"]}
    assert libxc_verdicts[("maximum_ram_page", None)] == "sign_flipped"
    assert libxc_verdicts[("maximum_gpfn", 3)] == "sign_flipped"
    assert libxc_verdicts[("maximum_gpfn", 4)] == "aliased_errno"
    assert [(c["pid"], c["verdict"], c["libxenctrl"]["release"])
            for c in report["consumers"]["processes"]] == [(pids[0], "int_path", "4.14")]
    human = runs[1].stdout
    line = next(x for x in human.splitlines() if x.startswith(f"  {pids[1]} "))
    assert line.split()[3:5] == ["4.14", "int_path"]
    assert "libxc" in human.splitlines()[-1]
    for pid in pids:  # the demo's process is gone with the demo
        assert not Path(f"/proc/{pid}").exists()
