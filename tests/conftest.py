"""Settings for every test below tests/."""

from hypothesis import settings

# No timed assertions: hypothesis's per-example deadline fails a correct test on a loaded
# machine (seen in CI under parallel QEMU boots), so it is off everywhere. Benchmarks print
# figures instead (tests/bench).
settings.register_profile("xenprobe", deadline=None)
settings.load_profile("xenprobe")
