# SPDX-License-Identifier: GPL-2.0-only
"""The systemd units: `systemd-analyze verify` accepts them and `systemd-analyze
security` rates xenprobe.service's exposure.

verify checks that every command a unit runs exists. The units run xenprobe from
/usr/local/bin, where nothing is installed on a test machine, so they are verified as
copies whose only change is that path, replaced by the xenprobe installed for these
tests; the test first checks that the shipped units use /usr/local/bin/xenprobe.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "contrib" / "systemd"
UNITS = ["xenprobe.service", "xenprobe-check.service", "xenprobe-check.timer"]
INSTALLED = "/usr/local/bin/xenprobe"


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is not installed: tools/run-all installs Debian's "
                    "systemd package, which has it")
    return path


def xenprobe_command() -> str:
    path = Path(sys.executable).parent / "xenprobe"
    assert path.exists(), f"no xenprobe console script beside {sys.executable}"
    return str(path)


@pytest.fixture
def units(tmp_path: Path) -> Path:
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        if name.endswith(".service"):
            assert f"ExecStart={INSTALLED} " in text
        (tmp_path / name).write_text(text.replace(INSTALLED, xenprobe_command()))
    return tmp_path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([analyze(), *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_systemd_analyze_verify(units: Path) -> None:
    p = run("verify", *(str(units / name) for name in UNITS))
    assert p.returncode == 0 and p.stdout + p.stderr == "", p.stdout + p.stderr


# CAP_SYS_PTRACE, which the consumer scan needs (docs/consumers.md), costs 0.1-0.2 of it.
@pytest.mark.parametrize(("unit", "limit"), [("xenprobe.service", 2.1),
                                             ("xenprobe-check.service", 1.2)])
def test_systemd_analyze_security(units: Path, unit: str, limit: float) -> None:
    p = run("security", "--offline=yes", "--no-pager", str(units / unit))
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", p.stdout)
    assert m, p.stdout + p.stderr
    exposure, rating = float(m.group(1)), m.group(2)
    print(f"\nsystemd-analyze security: {unit}: exposure {exposure} {rating}")
    print("\n".join(line for line in p.stdout.splitlines() if line.startswith("✗")))
    assert exposure <= limit


def test_the_service_is_a_watched_notify_service() -> None:
    text = (SYSTEMD / "xenprobe.service").read_text()
    for line in ("Type=notify", "WatchdogSec=60s", "ExecReload=/bin/kill -HUP $MAINPID",
                 "DevicePolicy=closed", "DeviceAllow=/dev/xen/privcmd rw",
                 "ConditionPathExists=/proc/xen/capabilities",
                 "CapabilityBoundingSet=CAP_IPC_LOCK CAP_SYS_PTRACE", "RestartPreventExitStatus=2"):
        assert f"\n{line}\n" in text, line
