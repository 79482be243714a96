# SPDX-License-Identifier: GPL-2.0-only
"""The atheris fuzz targets in tests/fuzz, each run for a bounded time: scenario files,
the daemon's config (file and flags), the web config, and struct decoding. Any uncaught
exception but the documented error types fails the run, with the input that caused it.

Each run starts from the corpus in tests/fuzz/corpus/TARGET (read only; new inputs go to
a temporary directory). XENPROBE_FUZZ_SECONDS sets the seconds per target (default 4);
README "Fuzzing" shows how to run one target for longer and keep what it finds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xenprobe.mock import launcher as mock
from xenprobe.mock.scenario import compile_text, parse
from xenprobe.support.errors import ScenarioError

FUZZ = Path(__file__).resolve().parent / "fuzz"
TARGETS = ["scenario", "config", "webconfig", "structs"]
SECONDS = int(os.environ.get("XENPROBE_FUZZ_SECONDS", "4"))


def fuzz(target: str, work: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    pytest.importorskip("atheris")
    found = work / "found"
    found.mkdir()
    dictionary = FUZZ / f"{target}.dict"
    argv = [sys.executable, str(FUZZ / f"fuzz_{target}.py"), f"-max_total_time={SECONDS}",
            "-print_final_stats=1", "-timeout=20", "-rss_limit_mb=2048",
            f"-artifact_prefix={work}/",
            *([f"-dict={dictionary}"] if dictionary.exists() else []),
            str(found), str(FUZZ / "corpus" / target)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=SECONDS + 300,
                       check=False, cwd=work)
    return p, found


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    p, found = fuzz(target, tmp_path)
    crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*")) + \
        sorted(tmp_path.glob("oom-*"))
    runs = re.search(r"stat::number_of_executed_units: (\d+)", p.stderr)
    print(f"fuzz_{target}: {runs.group(1) if runs else '?'} inputs in {SECONDS} s, "
          f"{len(list(found.iterdir()))} new corpus entries, {len(crashes)} crashes")
    assert p.returncode == 0 and not crashes, (
        f"fuzz_{target} failed; inputs: {[c.read_bytes()[:300] for c in crashes]}\n"
        + "\n".join(p.stderr.splitlines()[-40:]))
    assert runs and int(runs.group(1)) > 0
    if target == "scenario":
        the_mock_accepts_what_python_accepts(found, tmp_path)


def the_mock_accepts_what_python_accepts(found: Path, work: Path) -> None:
    """Every scenario the fuzzer produced that parses must compile into directives the
    native mock also takes: a shell on the mock host opens the device (a scenario the
    mock rejected would make every open fail with EIO)."""
    sys.path.insert(0, str(FUZZ))
    try:
        from fuzz_scenario import text_of  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(FUZZ))
    inputs = [*found.iterdir(), *(FUZZ / "corpus" / "scenario").iterdir()]
    checked = 0
    for path in inputs:
        text = text_of(path.read_bytes())
        try:
            s = parse(text, path.name, "fuzz") if text is not None else None
        except ScenarioError:
            continue
        if s is None:
            continue
        compiled = work / "compiled.txt"
        compiled.write_text(compile_text(s))
        env = dict(os.environ, LD_PRELOAD=str(mock.library()),
                   XENPROBE_MOCK_SCENARIO=str(compiled))
        env.pop("XENPROBE_MOCK_LOG", None)
        p = subprocess.run(["sh", "-c", "exec 3<>/dev/xen/privcmd"], env=env,
                           capture_output=True, text=True, timeout=30, check=False)
        if s.device == "present":
            assert p.returncode == 0, (text, p.stderr)
        assert "xenprobe-mock:" not in p.stderr, (text, p.stderr)
        checked += 1
    assert checked > 0
