# SPDX-License-Identifier: GPL-2.0-only
"""The Debian packages: what an operator gets from `apt install ./xenprobe_*.deb`.

Built once per session by tools/build-deb (dpkg-buildpackage with debhelper and pybuild,
from Debian's own packages, in a copy of the tree), which fails on any lintian error.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import re
import subprocess
from pathlib import Path

import pytest

import xenprobe
from tests.debpkg import DebianPackages
from tools import manpage

ROOT = Path(__file__).resolve().parent.parent
UNIT_DIR = "lib/systemd/system"


def _field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                          check=True).stdout.strip()


def _files(deb: Path) -> set[str]:
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[5].removeprefix("./").rstrip("/") for line in out.splitlines()}


def _unpack(deb: Path, root: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def _conffiles(deb: Path, tmp: Path) -> list[str]:
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp)], check=True)
    f = tmp / "conffiles"
    return f.read_text().split() if f.exists() else []


def test_debian_version_follows_the_python_version() -> None:
    # Cheap and build-free: debian/changelog's version is __version__ (3.0 native).
    first = (ROOT / "debian" / "changelog").read_text().splitlines()[0]
    m = re.match(r"xenprobe \(([^)]+)\)", first)
    assert m and m.group(1) == xenprobe.__version__, first


def test_lintian_reports_no_error_or_warning(debian_packages: DebianPackages) -> None:
    print(debian_packages.lintian)  # the informational tags, for the log
    tags = re.findall(r"^([EW]): (\S+): (\S+)", debian_packages.lintian, re.MULTILINE)
    assert not tags, tags


def test_command_units_config_and_rules_where_debian_puts_them(
        debian_packages: DebianPackages) -> None:
    files = _files(debian_packages.production)
    expected = {"usr/bin/xenprobe", "etc/xenprobe/xenprobe.toml",
                f"{UNIT_DIR}/xenprobe.service", f"{UNIT_DIR}/xenprobe-check.service",
                f"{UNIT_DIR}/xenprobe-check.timer", "usr/share/man/man1/xenprobe.1.gz",
                "usr/share/xenprobe/xenprobe-alerts.yml",
                "usr/share/xenprobe/xenprobe-recording.yml",
                "usr/share/xenprobe/xenprobe-web.yml", "usr/share/doc/xenprobe/copyright"}
    assert expected <= files, sorted(expected - files)
    assert any(re.fullmatch(r"usr/lib/python3/dist-packages/xenprobe/_transport\..*so", f)
               for f in files)
    dashboards = sorted((ROOT / "contrib" / "grafana").glob("*.json"))
    assert {f"usr/share/xenprobe/dashboards/{d.name}" for d in dashboards} <= files


def test_the_man_page_names_every_file_the_packages_install(
        debian_packages: DebianPackages) -> None:
    """FILES in xenprobe(1) covers both packages' contents: each installed file is
    listed, or lies in a listed directory (a path ending in /), or matches a listed
    pattern; and each listed path but the one the timer writes is installed."""
    installed = set()
    for deb in (debian_packages.production, debian_packages.mock):
        out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
        installed |= {line.split()[5].removeprefix("./") for line in out.splitlines()
                      if not line.startswith("d")}  # files and links, not directories
    listed = [path.lstrip("/") for path, _ in manpage.FILES]
    written = "var/lib/prometheus/node-exporter/xenprobe.prom"

    def names(pattern: str, f: str) -> bool:
        return fnmatch.fnmatch(f, pattern + "*" if pattern.endswith("/") else pattern)
    assert not sorted(f for f in installed if not any(names(p, f) for p in listed))
    for p in listed:
        if p != written:
            assert any(names(p, f) for f in installed), f"xenprobe(1) names {p}: not installed"


def test_the_config_is_a_conffile(debian_packages: DebianPackages, tmp_path: Path) -> None:
    assert "/etc/xenprobe/xenprobe.toml" in _conffiles(debian_packages.production, tmp_path)


def test_units_run_usr_bin_and_name_the_man_page_and_differ_from_the_source_only_there(
        debian_packages: DebianPackages, tmp_path: Path) -> None:
    root = _unpack(debian_packages.production, tmp_path)
    for unit in ("xenprobe.service", "xenprobe-check.service", "xenprobe-check.timer"):
        packaged = (root / UNIT_DIR / unit).read_text().splitlines()
        source = (ROOT / "contrib" / "systemd" / unit).read_text().splitlines()
        # The package adds the man page it ships, after Description=.
        documentation = packaged.index("Documentation=man:xenprobe(1)")
        assert packaged[documentation - 1].startswith("Description=")
        del packaged[documentation]
        assert len(packaged) == len(source)
        changed = [(s, p) for s, p in zip(source, packaged, strict=True) if s != p]
        for s, p in changed:
            # ExecStart=, and the +/- prefixed ExecStartPre=/ExecStopPost= helpers.
            assert re.match(r"Exec[A-Za-z]*=[-+]*/usr/local/bin/xenprobe ", s), s
            assert p == s.replace("/usr/local/bin/xenprobe", "/usr/bin/xenprobe", 1)
        assert not any("/usr/local" in line for line in packaged
                       if line.startswith("Exec"))
    service = (root / UNIT_DIR / "xenprobe.service").read_text()
    assert "ExecStart=/usr/bin/xenprobe serve" in service


def test_the_man_page_is_the_tree_s(debian_packages: DebianPackages, tmp_path: Path) -> None:
    root = _unpack(debian_packages.production, tmp_path)
    page = gzip.decompress((root / "usr/share/man/man1/xenprobe.1.gz").read_bytes())
    assert page.decode() == (ROOT / "docs" / "xenprobe.1").read_text()


def test_the_mock_host_is_only_in_xenprobe_mock(debian_packages: DebianPackages) -> None:
    assert not [f for f in _files(debian_packages.production) if "_mockxen" in f]
    mock = [f for f in _files(debian_packages.mock) if "_mockxen" in f]
    assert len(mock) == 1 and mock[0].startswith("usr/lib/python3/dist-packages/xenprobe/")
    depends = _field(debian_packages.mock, "Depends")
    assert f"xenprobe (= {xenprobe.__version__})" in depends


def test_depends_names_only_debian_packages(debian_packages: DebianPackages) -> None:
    depends = _field(debian_packages.production, "Depends")
    names = {re.split(r"[\s(:]", alt.strip())[0]
             for dep in depends.split(",") for alt in dep.split("|")}
    # The runtime libraries are Debian's python3-* packages (dh_python3 maps them).
    for lib in ("python3-prometheus-client", "python3-structlog", "python3-psutil",
                "python3-bcrypt", "python3-yaml"):
        assert lib in names, depends
    for name in names:
        # A real package or one a real package provides (python3-cffi-backend-api-*).
        shown = subprocess.run(["apt-cache", "showpkg", name], capture_output=True,
                               text=True, check=False).stdout
        assert re.search(r"^Versions: \n\S|^Reverse Provides: \n\S", shown, re.MULTILINE), \
            f"{name} is not a Debian package: {shown[:500]}"


def _run_unpacked(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """/usr/bin/xenprobe from an unpacked package, on Debian's python3 and libraries."""
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8",
           "PYTHONPATH": str(root / "usr/lib/python3/dist-packages")}
    return subprocess.run(["/usr/bin/python3", str(root / "usr/bin/xenprobe"), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False,
                          cwd=root)


@pytest.mark.skipif(not os.path.exists("/usr/lib/python3/dist-packages/structlog"),
                    reason="Debian's python3-* runtime packages are not installed")
def test_check_mock_without_xenprobe_mock_says_what_to_install(
        debian_packages: DebianPackages, tmp_path: Path) -> None:
    root = _unpack(debian_packages.production, tmp_path)
    done = _run_unpacked(root, "check", "--mock")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "mock host is not installed" in done.stderr
    assert "apt install xenprobe-mock" in done.stderr
    # With the mock package unpacked beside it, the same command probes the mock host.
    _unpack(debian_packages.mock, root)
    done = _run_unpacked(root, "check", "--mock")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "healthy" in done.stdout
