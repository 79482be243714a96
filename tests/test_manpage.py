# SPDX-License-Identifier: GPL-2.0-only
"""xenprobe(1) follows `--help`: docs/xenprobe.1 is what tools/manpage.py writes from the
real parser, every option `--help` prints is on the page, and groff reads it cleanly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import manpage
from xenprobe.cli import command as cli
from xenprobe.support.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "xenprobe.1"
REGENERATE = ".venv/bin/python -m tools.manpage > docs/xenprobe.1"


def _help(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "100", "LC_ALL": "C.UTF-8"}
    done = subprocess.run([sys.executable, "-m", "xenprobe", *command, "--help"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _page_text() -> str:
    """The page as words: roff's escaped hyphens and font changes undone."""
    text = PAGE.read_text()
    return re.sub(r"\\f[BIR]", "", text).replace(r"\-", "-").replace(r"\e", "\\")


def test_page_is_what_the_parser_writes() -> None:
    assert PAGE.read_text() == manpage.render(), f"docs/xenprobe.1 is stale: {REGENERATE}"


@pytest.mark.parametrize("command", [(), ("check",), ("serve",), ("watch",), ("scenarios",)])
def test_every_option_in_help_is_on_the_page(command: tuple[str, ...]) -> None:
    options = set(re.findall(r"(?<![\w-])--?[a-zA-Z][\w.-]*", _help(*command)))
    assert options, "no option found in --help: the pattern no longer reads it"
    page = _page_text()
    missing = sorted(o for o in options if o not in page)
    assert not missing, f"on --help, not in docs/xenprobe.1: {missing}; {REGENERATE}"


def test_every_subcommand_has_a_section() -> None:
    page = PAGE.read_text()
    for name in manpage._subparsers(cli.parser()):
        assert rf".SS \fB{name}\fR" in page


def test_every_exit_code_is_described() -> None:
    page = _page_text()
    status = page[page.index(".SH EXIT STATUS"):page.index(".SH FILES")]
    codes = [int(c) for c in re.findall(r"^\.TP\n(\d+)$", status, flags=re.MULTILINE)]
    assert codes == [int(code) for code, _ in EXIT_CODES]


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_groff_reads_the_page_without_warnings() -> None:
    done = subprocess.run(["groff", "-man", "-ww", "-z", "-t", str(PAGE)],
                          capture_output=True, text=True, env={**os.environ,
                                                               "LC_ALL": "C.UTF-8"},
                          timeout=60)
    assert done.returncode == 0 and not done.stderr, done.stderr
