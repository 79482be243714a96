# SPDX-License-Identifier: GPL-2.0-only
"""Settings and session fixtures for every test below tests/ (the unit tiers and the
real-Xen tier)."""

from __future__ import annotations

import os
import secrets

import pytest
from hypothesis import settings

from tests.debpkg import DebianPackages, build
from xenprobe.mock import launcher as mock

# No timed assertions: hypothesis's per-example deadline fails a correct test on a loaded
# machine (seen in CI under parallel QEMU boots), so it is off everywhere. Benchmarks print
# figures instead (tests/bench).
settings.register_profile("xenprobe", deadline=None)
settings.load_profile("xenprobe")

# One mock host for this test run: every process a test puts on the mock shares it, and
# the consumer scan sees no process of another run (another pytest, a `check --mock` by
# hand) on the same machine.
os.environ[mock.HOST] = f"tests-{secrets.token_hex(6)}"


@pytest.fixture(scope="session")
def debian_packages(tmp_path_factory: pytest.TempPathFactory) -> DebianPackages:
    """xenprobe and xenprobe-mock .debs built from this checkout, lintian-clean."""
    return build(tmp_path_factory.mktemp("deb"))
