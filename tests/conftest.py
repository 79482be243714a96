"""Session fixtures shared by the unit tiers and the real-Xen tier."""

from __future__ import annotations

import pytest

from tests.debpkg import DebianPackages, build


@pytest.fixture(scope="session")
def debian_packages(tmp_path_factory: pytest.TempPathFactory) -> DebianPackages:
    """xenprobe and xenprobe-mock .debs built from this checkout, lintian-clean."""
    return build(tmp_path_factory.mktemp("deb"))
