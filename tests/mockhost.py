# SPDX-License-Identifier: GPL-2.0-only
"""Running xenprobe (or any Python snippet) on the mock host, for tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from tests.report_schema import validate
from xenprobe.mock import launcher as mock
from xenprobe.mock.scenario import Scenario, compile_text, parse


def env_for(scenario: Scenario, tmp: Path, log: Path | None = None) -> dict[str, str]:
    compiled = tmp / f"{scenario.name}.compiled"
    compiled.write_text(compile_text(scenario))
    env = dict(os.environ)
    env.update(mock.environment(scenario, str(compiled), str(log) if log else None))
    return env


def fault(**keys: object) -> str:
    """A [[fault]] table of a scenario file."""
    return "\n[[fault]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())


def variant(tmp: Path, name: str, base: str, extra: str) -> tuple[Path, dict[str, str]]:
    """Shipped scenario `base` with `extra` appended, written to tmp/NAME.toml, and the
    environment that puts processes on it (libxc left out: its own ioctls would take
    the faults)."""
    text = resources.files("xenprobe.mock.scenarios").joinpath(f"{base}.toml").read_text()
    path = tmp / f"{name}.toml"
    path.write_text(text + extra)
    env = env_for(parse(text + extra, str(path), name), tmp)
    env.pop("XENPROBE_LIBXENCTRL", None)
    return path, env


def run_check(args: list[str], env: dict[str, str] | None = None, timeout: float = 60
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xenprobe", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def check_json(scenario: str, *extra: str, env: dict[str, str] | None = None
               ) -> tuple[int, dict[str, Any]]:
    p = run_check(["check", "--json", "--mock", scenario, *extra], env=env)
    assert p.returncode in (0, 1), p.stderr
    report = json.loads(p.stdout)
    validate(report)  # every report a test reads matches the schema xenprobe ships
    return p.returncode, report


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
