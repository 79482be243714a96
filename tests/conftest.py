"""Settings for every test below tests/."""

import os
import secrets

from hypothesis import settings

from xenprobe import mock

# No timed assertions: hypothesis's per-example deadline fails a correct test on a loaded
# machine (seen in CI under parallel QEMU boots), so it is off everywhere. Benchmarks print
# figures instead (tests/bench).
settings.register_profile("xenprobe", deadline=None)
settings.load_profile("xenprobe")

# One mock host for this test run: every process a test puts on the mock shares it, and
# the consumer scan sees no process of another run (another pytest, a `check --mock` by
# hand) on the same machine.
os.environ[mock.HOST] = f"tests-{secrets.token_hex(6)}"
