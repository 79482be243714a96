"""Session fixtures shared by the unit tiers and the real-Xen tier."""

from __future__ import annotations

import pytest
from hypothesis import settings

from tests.debpkg import DebianPackages, build


@pytest.fixture(scope="session")
def debian_packages(tmp_path_factory: pytest.TempPathFactory) -> DebianPackages:
    """xenprobe and xenprobe-mock .debs built from this checkout, lintian-clean."""
    return build(tmp_path_factory.mktemp("deb"))


# No timed assertions (the project's rule): Hypothesis's default 200 ms deadline per
# example is one, and fails a correct test on a loaded two-core CI machine. Tests that
# set their own settings keep them; only the deadline default changes.
settings.register_profile("xenprobe", deadline=None)
settings.load_profile("xenprobe")
