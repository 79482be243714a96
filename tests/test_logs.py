# SPDX-License-Identifier: GPL-2.0-only
"""Log lines carry their priority to the journal, and only to the journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from xenprobe.support import logs


def _stream_id(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file that JOURNAL_STREAM names, as systemd names the journal's socket."""
    f = tmp_path / "journal"
    f.touch()
    monkeypatch.setenv("JOURNAL_STREAM", _stream_id(f))
    return f


def _emit(path: Path, fmt_json: bool) -> list[str]:
    with open(path, "w") as out:
        logs.configure("debug", stream=out, json=fmt_json)
        log = structlog.get_logger()
        log.debug("d")
        log.info("i", n=1)
        log.warning("w")
        log.error("e")
        log.critical("c")
    return path.read_text().splitlines()


def test_lines_to_the_journal_start_with_their_syslog_priority(journal: Path) -> None:
    lines = _emit(journal, fmt_json=True)
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    # After the prefix (journald strips it), each line is still one JSON object.
    events = [json.loads(line[3:]) for line in lines]
    assert [(e["event"], e["level"]) for e in events] == [
        ("d", "debug"), ("i", "info"), ("w", "warning"), ("e", "error"), ("c", "critical")]
    assert events[1]["n"] == 1


def test_a_redirected_stderr_gets_no_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # systemd set JOURNAL_STREAM, but the daemon's stderr was redirected elsewhere (a
    # wrapper script, `xenprobe check 2>file` from a unit): no journal, no prefix.
    other = tmp_path / "other"
    other.touch()
    monkeypatch.setenv("JOURNAL_STREAM", _stream_id(other))
    lines = _emit(tmp_path / "file", fmt_json=True)
    assert [json.loads(line)["level"] for line in lines] == [
        "debug", "info", "warning", "error", "critical"]
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not any(line.startswith("<") for line in _emit(tmp_path / "file", fmt_json=True))


def test_console_format_to_the_journal_is_prefixed_too(journal: Path) -> None:
    lines = _emit(journal, fmt_json=False)
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    assert "[error" in lines[3] and " e " in lines[3] + " "


def test_the_cli_prefixes_its_own_stderr_when_it_is_the_journal(tmp_path: Path) -> None:
    # The real process (re-executed under the mock host): its stderr is a file that
    # JOURNAL_STREAM names, as systemd names the journal's socket.
    err = tmp_path / "stderr"
    err.touch()
    env = dict(os.environ, JOURNAL_STREAM=_stream_id(err))
    with open(err, "w") as stderr:
        proc = subprocess.run(
            [sys.executable, "-m", "xenprobe", "--log-level", "debug", "check", "--mock",
             "healthy", "--json"],
            env=env, stdout=subprocess.PIPE, stderr=stderr, timeout=120, check=False)
    assert proc.returncode == 0, err.read_text()
    lines = [line for line in err.read_text().splitlines() if line]
    assert lines, "check --mock at debug level logged nothing"
    for line in lines:
        assert line[:3] in ("<7>", "<6>", "<4>", "<3>", "<2>"), line
        body = json.loads(line[3:])
        assert logs.PRIORITY[body["level"]] == int(line[1])
