# SPDX-License-Identifier: GPL-2.0-only
"""VCPUOP_is_up on a real PV dom0 whose kernel takes a CPU offline and back.

The shared session's dom0 has one vCPU. This boot gives it two (Xen's
``dom0_max_vcpus=2``, on one pCPU), then in dom0: CPU 1 offline
(``/sys/devices/system/cpu/cpu1/online``), ``xenprobe check``, the independent reader
on what it probed; CPU 1 online again, ``xenprobe check`` once more. On a PV dom0 Linux
takes an offlined CPU down with VCPUOP_down and waits until is_up says 0
(arch/x86/xen/smp_pv.c: xen_pv_play_dead, xen_pv_cpu_die), and brings it back with
VCPUOP_up (xen_pv_cpu_up): so the kernel's online list is is_up's reference, and
xenprobe must find vCPU 1 down (0, reference 0) and then up (1, reference 1), every
layer matching, on every release.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .assets import Assets
from .boot import RELEASES
from .compare import reader_probes
from .conftest import RealXen
from .session import PYCACHE, READER, SHARE_IN_DOM0, VENV_PYTHON, precompile

if TYPE_CHECKING:
    from .boot import Dom0Run

# A cold boot with two Python starts and the reader, on a loaded two-core machine.
TIMEOUT_S = 900


def _script() -> str:
    py = f'env PYTHONPYCACHEPREFIX={SHARE_IN_DOM0}/{PYCACHE} {shlex.quote(str(VENV_PYTHON))}'
    cpu1 = "/sys/devices/system/cpu/cpu1/online"
    return "\n".join([
        'R="$RESULTS"',
        'cat /sys/devices/system/cpu/online > "$R/online-at-boot"',
        f'echo 0 > {cpu1}; echo $? > "$R/offline.rc"',
        'cat /sys/devices/system/cpu/online > "$R/online-offline"',
        f'{py} -m xenprobe check --json --quantity vcpu_is_up > "$R/offline.json" '
        '2> "$R/offline.err"',
        f'python3 {shlex.quote(str(READER))} --probes-from "$R/offline.json" '
        '-o "$R/reader.json" > /dev/null 2> "$R/reader.err"',
        f'echo 1 > {cpu1}; echo $? > "$R/online.rc"',
        f'{py} -m xenprobe check --json --quantity vcpu_is_up > "$R/online.json" '
        '2> "$R/online.err"',
        "exit 0",
    ]) + "\n"


@pytest.fixture(scope="module", params=RELEASES, ids=[f"xen{r}" for r in RELEASES])
def vcpu_run(request: pytest.FixtureRequest, realxen_assets: Assets,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Dom0Run]:
    release: str = request.param
    xen = RealXen(release, realxen_assets,
                  tmp_path_factory.mktemp(f"xen{release.replace('.', '')}-vcpus"))
    run = xen.run(_script(), label="vcpus", timeout=TIMEOUT_S, smp=1,
                  extra_xen_args="dom0_max_vcpus=2",
                  before_boot=lambda share: precompile(share / PYCACHE))
    run.check()
    return release, run


def _json(run: Dom0Run, name: str) -> dict[str, Any]:
    path: Path = run.results_dir / name
    if not path.exists():
        raise AssertionError(f"no {name}\n{run.report()}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _up(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["vcpu"]: r for r in report["results"] if r["quantity"] == "vcpu_is_up"}


@pytest.mark.realxen
def test_an_offlined_cpu_is_down_in_xen_and_back_up_after(
        vcpu_run: tuple[str, Dom0Run]) -> None:
    release, run = vcpu_run
    res = run.results_dir
    assert (res / "online-at-boot").read_text().strip() == "0-1", run.report()
    assert (res / "offline.rc").read_text().strip() == "0", run.report()
    assert (res / "online-offline").read_text().strip() == "0", run.report()
    assert (res / "online.rc").read_text().strip() == "0", run.report()

    for name, expect in (("offline.json", {0: 1, 1: 0}), ("online.json", {0: 1, 1: 1})):
        up = _up(_json(run, name))
        rows = [f"{name} vcpu{v}: raw {r['raw']['value']}, reference {r['reference']}, "
                f"{ {k: v['verdict'] for k, v in r['layers'].items()} }"
                for v, r in sorted(up.items())]
        print(f"\nXen {release}: " + "; ".join(rows), end="")
        assert sorted(up) == [0, 1], rows
        for v, value in expect.items():
            r = up[v]
            assert r["raw"]["value"] == value, rows
            assert r["reference"] == {"lo": value, "hi": value}, rows
            assert r["raw_verdict"] == "match", rows
            for layer in ("ioctl", "syscall"):
                got = r["layers"][layer]
                assert (got["value"], got["errno"], got["verdict"]) == (value, 0, "match")

    # The independent reader, right after the first check, saw vCPU 1 down too.
    seen = reader_probes(_json(run, "reader.json"))
    p = seen[("vcpu_is_up", 1)]
    assert p["multicall"] == p["multicall_after"] == 0, p
    assert p["ioctl"] == p["syscall"] == {"ret": 0, "errno": 0}, p
