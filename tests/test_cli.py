"""Bad input and hostile hosts: a clear message, a documented exit code, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.mockhost import env_for, run_check
from xenprobe.scenario import parse

BASE = """
[xen]
release = "4.17"
{xen}
[host]
memory = "16 GiB"
[linux]
{linux}
[[domain]]
id = 0
memory = "1 GiB"
"""


def scenario_file(tmp: Path, xen: str = "", linux: str = "") -> Path:
    path = tmp / "s.toml"
    path.write_text(BASE.format(xen=xen, linux=linux))
    return path


def assert_clean_failure(p: subprocess.CompletedProcess[str], code: int, *phrases: str
                         ) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    assert p.stdout == ""  # nothing half-written
    for phrase in phrases:
        assert phrase in p.stderr, p.stderr


def test_no_device_suggests_mock() -> None:
    if Path("/dev/xen/privcmd").exists() or Path("/proc/xen/privcmd").exists():
        pytest.skip("this machine is a Xen domain")
    p = run_check(["check"])
    assert_clean_failure(p, 3, "not a Xen dom0", "--mock")


@pytest.mark.parametrize(("knobs", "phrases"), [
    ({"linux": 'device = "absent"'}, ["not a Xen dom0"]),
    ({"linux": 'device = "eacces"'}, ["permission denied", "needs root"]),
    ({"linux": 'role = "domU"\nself_domid = 0'}, ["EPERM", "not a control domain"]),
    ({"xen": 'reports_version = "4.9"'}, ["Xen 4.9", "not in xenprobe's ABI tables",
                                          "4.13 to 4.22"]),
    ({"xen": 'reports_version = "5.0"'}, ["Xen 5.0", "not in xenprobe's ABI tables"]),
    ({"xen": "sysctl_interface = 0x99"}, ["refused every sysctl interface version",
                                          "EACCES"]),
    ({"xen": "domctl_interface = 0x42"}, ["refused every domctl interface version"]),
])
def test_host_refusals(tmp_path: Path, knobs: dict[str, str], phrases: list[str]) -> None:
    path = scenario_file(tmp_path, **knobs)
    p = run_check(["check", "--mock", str(path)])
    assert_clean_failure(p, 3, *phrases)


def test_interface_version_of_another_release_is_used_with_a_warning(tmp_path: Path) -> None:
    # A 4.17 build that speaks 4.16's sysctl interface (a vendor patch, say): xenprobe
    # finds the accepted version and decodes with that interface's layout.
    path = scenario_file(tmp_path, xen="sysctl_interface = 0x14")
    p = run_check(["check", "--json", "--mock", str(path)])
    assert p.returncode == 0, p.stderr
    assert '"sysctl_interface": 20' in p.stdout
    assert "interface_version_differs" in p.stderr


@pytest.mark.parametrize(("args", "phrase"), [
    (["check", "--bogus"], "unrecognized arguments"),
    ([], "required: command"),
    (["check", "--attempts", "0"], "--attempts must be between 1 and 100"),
    (["check", "--attempts", "1000"], "--attempts must be between 1 and 100"),
    (["check", "--mock", "no-such-scenario"], "no scenario named 'no-such-scenario'"),
    (["check", "--mock", "/nonexistent/x.toml"], "cannot read scenario"),
    (["check", "--color", "purple"], "invalid choice"),
])
def test_usage_errors(args: list[str], phrase: str) -> None:
    assert_clean_failure(run_check(args), 2, phrase)


def test_invalid_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[xen]\nrelease = "4.17"\n[host]\nmemory = "lots"\n')
    assert_clean_failure(run_check(["check", "--mock", str(path)]), 2, "host.memory")
    path.write_bytes(b"\xff\xfe")
    assert_clean_failure(run_check(["check", "--mock", str(path)]), 2, "not UTF-8")


def test_scenarios_listing() -> None:
    p = run_check(["scenarios"])
    assert p.returncode == 0
    assert "large-memory" in p.stdout and "Xen 4.17" in p.stdout


def test_mock_env_without_reexec(tmp_path: Path) -> None:
    """A process already on the mock host (as tests start it) does not re-exec."""
    s = parse(BASE.format(xen="", linux=""), "t.toml", "t")
    p = run_check(["check", "--mock", "t"], env=env_for(s, tmp_path))
    assert p.returncode == 0, p.stderr
    assert "mock host scenario 't'" in p.stdout


def test_mock_reexec_from_a_source_checkout(tmp_path: Path) -> None:
    """Run from a directory holding an uncompiled copy of the package (a checkout, as in
    README's first command): the re-executed process must still use the installed one."""
    import shutil
    import sys

    shutil.copytree(Path(__file__).resolve().parents[1] / "xenprobe", tmp_path / "xenprobe",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    script = Path(sys.executable).parent / "xenprobe"  # the console script
    p = subprocess.run([str(script), "check", "--mock"],
                       cwd=tmp_path, text=True, capture_output=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert "mock host scenario 'healthy'" in p.stdout


def test_control_domain_that_is_not_domain_0(tmp_path: Path) -> None:
    """DOMID_SELF is whoever XENVER_guest_handle says the caller is, not always dom0
    (a hardware/control split, hyperlaunch): its reference is that domain's record."""
    import json

    path = tmp_path / "s.toml"
    path.write_text(BASE.format(xen="", linux="self_domid = 7")
                    + '[[domain]]\nid = 7\nmemory = "3 GiB"\n')
    p = run_check(["check", "--json", "--mock", str(path)])
    assert p.returncode == 0, p.stdout + p.stderr
    own = [r for r in json.loads(p.stdout)["results"] if r["subject"] == "self"]
    assert {r["reference"]["lo"] for r in own} == {3 << 18}
    assert {r["raw_verdict"] for r in own} == {"match"}
