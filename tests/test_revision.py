# SPDX-License-Identifier: GPL-2.0-only
"""xenprobe_build_info's revision: stamped at build time from git (xenprobe/support/revision.py,
run by setup.py for build_py and sdist), carried by an sdist, "unknown" otherwise."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from xenprobe.support import revision


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c",
                           "user.email=t@t", *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()


def test_a_build_from_git_stamps_git_describe(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "xenprobe").mkdir(parents=True)
    git(src, "init", "-q")
    (src / "f").write_text("1")
    git(src, "add", "f")
    git(src, "commit", "-qm", "one")
    git(src, "tag", "v9.9")
    out = tmp_path / "build" / "xenprobe"
    out.mkdir(parents=True)
    assert revision.stamp(src, out) == "v9.9"
    assert (out / "REVISION").read_text() == "v9.9\n"
    (src / "f").write_text("2")  # an uncommitted change says so
    assert revision.stamp(src, out) == "v9.9-dirty"


def test_an_sdist_keeps_what_it_carries_else_unknown(tmp_path: Path) -> None:
    unpacked = tmp_path / "xenprobe-0.1.0"  # no .git: an unpacked sdist
    package = unpacked / "xenprobe"
    package.mkdir(parents=True)
    assert revision.stamp(unpacked, package) == "unknown"
    (package / "REVISION").write_text("v1.2-3-gabcdef0\n")
    assert revision.stamp(unpacked, package) == "v1.2-3-gabcdef0"
    assert (package / "REVISION").read_text() == "v1.2-3-gabcdef0\n"


def test_a_packager_can_name_the_revision(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "xenprobe"
    package.mkdir()
    monkeypatch.setenv(revision.OVERRIDE, "debian/0.1.0-1")
    assert revision.stamp(tmp_path, package) == "debian/0.1.0-1"


def test_run_in_place_without_a_stamp_it_is_unknown_or_the_stamp() -> None:
    stamped = Path(revision.__file__).with_name(revision.FILE)
    expected = stamped.read_text().strip() if stamped.exists() else revision.UNKNOWN
    assert revision.revision() == expected
