# SPDX-License-Identifier: GPL-2.0-only
"""How a libxenctrl issues memory ops, read from the file that is loaded
(xenprobe.xen.memop_path), and the per-release tables that must agree with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import xenpkgs
from xenprobe.xen import memop_path
from xenprobe.xen.abi.libxc import LIBXC
from xenprobe.xen.abi.releases import RELEASES


def test_the_release_alone_decides_except_4_15() -> None:
    assert memop_path.by_release((4, 13)) == memop_path.by_release((4, 14)) == "ioctl"
    assert memop_path.by_release((4, 15)) is None  # 4.15.0: ioctl; 4.15.1 on: multicall
    for minor in range(16, 23):
        assert memop_path.by_release((4, minor)) == "multicall"
    # The tables say the same: 4.15's SONAME does not say which point release.
    assert LIBXC[(4, 14)].memory_op_multicall is False
    assert LIBXC[(4, 15)].memory_op_multicall is None
    assert LIBXC[(4, 16)].memory_op_multicall is True
    assert RELEASES[(4, 15)].pvh_multicall is None
    assert RELEASES[(4, 14)].pvh_multicall is False and RELEASES[(4, 16)].pvh_multicall


def test_the_file_decides(tmp_path: Path) -> None:
    with_mark = tmp_path / "libxenctrl.so.4.15.1"
    with_mark.write_bytes(b"\x7fELF..." + memop_path.MULTICALL_MARK + b" (%d = %s)\0")
    without = tmp_path / "libxenctrl.so.4.15.0"
    without.write_bytes(b"\x7fELF...Could not bounce memory for XENMEM hypercall\0")
    assert memop_path.of_file(with_mark, (4, 15)) == "multicall"
    assert memop_path.of_file(without, (4, 15)) == "ioctl"
    # Unreadable: the release decides where it can.
    assert memop_path.of_file(tmp_path / "gone", (4, 14)) == "ioctl"
    assert memop_path.of_file(tmp_path / "gone", (4, 15)) is None


@pytest.mark.parametrize(("release", "path"), [("4.14", "ioctl"), ("4.17", "multicall"),
                                               ("4.20", "multicall")])
def test_debian_libraries(release: str, path: str) -> None:
    """Debian 11's libxenctrl 4.14.6, 12's 4.17 and 13's 4.20, as shipped."""
    if os.environ.get(xenpkgs.SKIP_ENV) == "1":
        pytest.skip(f"{xenpkgs.SKIP_ENV}=1: Debian's Xen libraries not fetched")
    lib = xenpkgs.ensure(release=release).libxenctrl
    major, minor = (int(x) for x in release.split("."))
    assert memop_path.of_file(lib, (major, minor)) == path
