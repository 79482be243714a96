# SPDX-License-Identifier: GPL-2.0-only
"""README's "A session" is real: each command in its console blocks is run, and its
output and exit status must be what README shows.  A line of ``...`` (indented or not)
stands for lines left out; everything else must match line for line."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from xenprobe.mock import launcher as mock

README = Path(__file__).resolve().parents[1] / "README.md"
ELLIPSIS = re.compile(r"^\s*\.\.\.\s*$")


@dataclass
class Step:
    command: str
    shown: list[str]  # the output README shows
    status: int | None  # from a following `$ echo $?`


def session_steps() -> list[Step]:
    text = README.read_text()
    section = text[text.index("\n## A session\n"):]
    section = section[: section.index("\n## ", 1)]
    steps: list[Step] = []
    for block in re.findall(r"```console\n(.*?)```", section, re.S):
        for line in block.splitlines():
            if line.startswith("$ echo $?"):
                steps[-1].status = -1  # the next line is the status
            elif line.startswith("$ "):
                steps.append(Step(line[2:], [], None))
            elif steps[-1].status == -1:
                steps[-1].status = int(line)
            else:
                steps[-1].shown.append(line)
    return steps


def matches(shown: list[str], actual: list[str]) -> bool:
    """``shown`` with each ellipsis line standing for zero or more lines of ``actual``."""
    parts: list[list[str]] = [[]]
    for line in shown:
        if ELLIPSIS.match(line):
            parts.append([])
        else:
            parts[-1].append(line)
    if len(parts) == 1:
        return shown == actual
    first, *middle, last = parts
    start, end = len(first), len(actual) - len(last)
    if start > end or actual[:start] != first or actual[end:] != last:
        return False
    for part in middle:  # each in order, as early as it occurs
        for i in range(start, end - len(part) + 1):
            if actual[i: i + len(part)] == part:
                start = i + len(part)
                break
        else:
            return False
    return True


def test_the_matcher() -> None:
    assert matches(["a", "...", "c"], ["a", "b", "b", "c"])
    assert matches(["a", "  ...", "c"], ["a", "c"])
    assert not matches(["a", "...", "c"], ["a", "b"])
    assert not matches(["a", "b"], ["a", "b", "c"])
    assert matches(["a", "...", "x", "...", "c"], ["a", "1", "x", "2", "c"])
    assert not matches(["a", "...", "x", "...", "c"], ["a", "1", "2", "c"])


STEPS = session_steps()


def test_readme_has_a_session() -> None:
    assert [s.command for s in STEPS] == ["xenprobe check", "xenprobe check --mock large-memory"]
    assert all(s.status is not None for s in STEPS)


@pytest.mark.parametrize("step", STEPS, ids=[s.command for s in STEPS])
def test_the_session_is_what_xenprobe_prints(step: Step) -> None:
    if os.path.exists("/dev/xen/privcmd") or os.path.exists("/proc/xen/privcmd"):
        pytest.skip("README's session is from a machine without Xen")
    argv = shlex.split(step.command)
    assert argv[0] == "xenprobe"
    # As on README's machine: no libxenctrl on the loader path, plain output, a mock
    # host of its own (as `check --mock` makes one).
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_LIBRARY_PATH", "XENPROBE_LIBXENCTRL", "NO_COLOR", "FORCE_COLOR",
                            mock.HOST)}
    p = subprocess.run([sys.executable, "-m", "xenprobe", *argv[1:]], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    actual = (p.stdout + p.stderr).splitlines()
    assert matches(step.shown, actual), "\n".join(
        ["README shows:", *step.shown, "", "xenprobe printed:", *actual])
    assert p.returncode == step.status


def test_readme_is_at_most_20_kb() -> None:
    """README is the operator's page; internals go to docs/ (the project's rule)."""
    size = len(README.read_bytes())
    assert size <= 20 * 1024, f"README.md is {size} bytes; move internals to docs/"


def test_readme_keeps_the_two_commands_for_a_fresh_machine() -> None:
    text = README.read_text()
    section = text[text.index("\n## Two commands for a fresh machine\n"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks[0].strip().endswith(".venv/bin/xenprobe check --mock; fi; }")
    assert blocks[1].strip() == "bash tools/run-all"
