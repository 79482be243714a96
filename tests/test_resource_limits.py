# SPDX-License-Identifier: GPL-2.0-only
"""Too little lockable memory is a clear error (exit 3), never a traceback.

Hypercall buffers and the transport's private copies are locked (MAP_LOCKED, mlock), so
RLIMIT_MEMLOCK bounds them unless the process has CAP_IPC_LOCK. The check runs with that
capability dropped (setpriv) and every limit from none to more than a sweep needs.
Before, the limit 0 gave the right error followed by "Exception ignored in: <function
Buffer.__del__ ...>" and a traceback on stderr: the Buffer that could not be made was
finalised all the same.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mockhost import env_for
from xenprobe.mock.scenario import load

# From none through a page and a 4096-entry multicall's copy (256 KiB) to this machine's
# hard limit (a soft limit above it cannot be set).
HARD = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
LIMITS = sorted({min(n, HARD) for n in (0, 4096, 8192, 65536, 266240, 1 << 20, 64 << 20)})


@pytest.mark.parametrize("limit", LIMITS)
def test_a_memlock_limit_gives_a_clear_error_or_a_report(tmp_path: Path, limit: int) -> None:
    setpriv, prlimit = shutil.which("setpriv"), shutil.which("prlimit")
    if setpriv is None or prlimit is None:
        pytest.fail("util-linux's setpriv and prlimit are needed")
    env = env_for(load("healthy"), tmp_path)
    p = subprocess.run([prlimit, f"--memlock={limit}", setpriv, "--bounding-set=-ipc_lock",
                        "--inh-caps=-ipc_lock", sys.executable, "-m", "xenprobe", "check",
                        "--mock", "healthy"], env=env, text=True, capture_output=True,
                       timeout=120, check=False)
    assert p.returncode in (0, 3), (p.returncode, p.stderr)
    if p.returncode == 3:
        assert "RLIMIT_MEMLOCK" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr
