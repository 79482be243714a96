# SPDX-License-Identifier: GPL-2.0-only
"""Bad input and hostile hosts: a clear message, a documented exit code, no traceback."""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from tests.mockhost import env_for, run_check
from xenprobe.cli import command as cli
from xenprobe.mock import launcher as mock
from xenprobe.mock.scenario import load, parse
from xenprobe.support import errors

BASE = """
[xen]
release = "4.17"
{xen}
[host]
memory = "16 GiB"
[linux]
{linux}
[[domain]]
id = 0
memory = "1 GiB"
"""


def scenario_file(tmp: Path, xen: str = "", linux: str = "") -> Path:
    path = tmp / "s.toml"
    path.write_text(BASE.format(xen=xen, linux=linux))
    return path


def assert_clean_failure(p: subprocess.CompletedProcess[str], code: int, *phrases: str
                         ) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    assert p.stdout == ""  # nothing half-written
    for phrase in phrases:
        assert phrase in p.stderr, p.stderr


def test_no_device_suggests_mock() -> None:
    if Path("/dev/xen/privcmd").exists() or Path("/proc/xen/privcmd").exists():
        pytest.skip("this machine is a Xen domain")
    p = run_check(["check"])
    assert_clean_failure(p, 3, "not a Xen dom0", "--mock")


@pytest.mark.parametrize(("knobs", "phrases"), [
    ({"linux": 'device = "absent"'}, ["not a Xen dom0"]),
    ({"linux": 'device = "eacces"'}, ["permission denied", "needs root"]),
    ({"linux": 'role = "domU"\nself_domid = 0'}, ["EPERM", "not a control domain"]),
    ({"xen": 'reports_version = "4.9"'}, ["Xen 4.9", "not in xenprobe's ABI tables",
                                          "4.13 to 4.22"]),
    ({"xen": 'reports_version = "5.0"'}, ["Xen 5.0", "not in xenprobe's ABI tables"]),
    ({"xen": "sysctl_interface = 0x99"}, ["refused every sysctl interface version",
                                          "EACCES"]),
    ({"xen": "domctl_interface = 0x42"}, ["refused every domctl interface version"]),
])
def test_host_refusals(tmp_path: Path, knobs: dict[str, str], phrases: list[str]) -> None:
    path = scenario_file(tmp_path, **knobs)
    p = run_check(["check", "--mock", str(path)])
    assert_clean_failure(p, 3, *phrases)


def test_interface_version_of_another_release_is_used_with_a_warning(tmp_path: Path) -> None:
    # A 4.17 build that speaks 4.16's sysctl interface (a vendor patch, say): xenprobe
    # finds the accepted version and decodes with that interface's layout.
    path = scenario_file(tmp_path, xen="sysctl_interface = 0x14")
    p = run_check(["check", "--json", "--mock", str(path)])
    assert p.returncode == 0, p.stderr
    assert '"sysctl_interface": 20' in p.stdout
    assert "interface_version_differs" in p.stderr


@pytest.mark.parametrize(("args", "phrase"), [
    (["check", "--bogus"], "unrecognized arguments"),
    ([], "required: command"),
    (["check", "--attempts", "0"], "--attempts must be between 1 and 100"),
    (["check", "--attempts", "1000"], "--attempts must be between 1 and 100"),
    (["check", "--mock", "no-such-scenario"], "no scenario named 'no-such-scenario'"),
    (["check", "--mock", "/nonexistent/x.toml"], "cannot read scenario"),
    (["check", "--color", "purple"], "invalid choice"),
])
def test_usage_errors(args: list[str], phrase: str) -> None:
    assert_clean_failure(run_check(args), 2, phrase)


def test_invalid_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[xen]\nrelease = "4.17"\n[host]\nmemory = "lots"\n')
    assert_clean_failure(run_check(["check", "--mock", str(path)]), 2, "host.memory")
    path.write_bytes(b"\xff\xfe")
    assert_clean_failure(run_check(["check", "--mock", str(path)]), 2, "not UTF-8")


def test_scenarios_listing() -> None:
    p = run_check(["scenarios"])
    assert p.returncode == 0
    assert "large-memory" in p.stdout and "Xen 4.17" in p.stdout


def test_mock_env_without_reexec(tmp_path: Path) -> None:
    """A process already on the mock host (as tests start it) does not re-exec."""
    s = parse(BASE.format(xen="", linux=""), "t.toml", "t")
    p = run_check(["check", "--mock", "t"], env=env_for(s, tmp_path))
    assert p.returncode == 0, p.stderr
    assert "mock host scenario 't'" in p.stdout


def test_mock_reexec_from_a_source_checkout(tmp_path: Path) -> None:
    """Run from a directory holding an uncompiled copy of the package (a checkout, as in
    README's first command): the re-executed process must still use the installed one."""
    import shutil
    import sys

    shutil.copytree(Path(__file__).resolve().parents[1] / "xenprobe", tmp_path / "xenprobe",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    script = Path(sys.executable).parent / "xenprobe"  # the console script
    p = subprocess.run([str(script), "check", "--mock"],
                       cwd=tmp_path, text=True, capture_output=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert "mock host scenario 'healthy'" in p.stdout


def test_control_domain_that_is_not_domain_0(tmp_path: Path) -> None:
    """DOMID_SELF is whoever XENVER_guest_handle says the caller is, not always dom0
    (a hardware/control split, hyperlaunch): its reference is that domain's record."""
    import json

    path = tmp_path / "s.toml"
    path.write_text(BASE.format(xen="", linux="self_domid = 7")
                    + '[[domain]]\nid = 7\nmemory = "3 GiB"\n')
    p = run_check(["check", "--json", "--mock", str(path)])
    assert p.returncode == 0, p.stdout + p.stderr
    own = [r for r in json.loads(p.stdout)["results"] if r["subject"] == "self"]
    assert {r["reference"]["lo"] for r in own} == {3 << 18}
    assert {r["raw_verdict"] for r in own} == {"match"}


# -- streams: a report that did not arrive is never "every layer agrees", never a bug ---

def _closed(*fds: int) -> Callable[[], None]:
    def close() -> None:  # in the child, after subprocess set up its descriptors
        for fd in fds:
            os.close(fd)
    return close


def _check_with_streams(tmp: Path, scenario: str, args: list[str], how: str
                        ) -> tuple[int, str, Path]:
    """`check --mock SCENARIO ARGS` on the mock host with stdout/stderr broken `how`;
    (exit code, stderr as captured if still open, the textfile path)."""
    prom = tmp / "out.prom"
    argv = [sys.executable, "-m", "xenprobe", "check", "--mock", scenario, *args]
    argv = [a.replace("PROM", str(prom)) for a in argv]
    err_path = tmp / "stderr"
    with open(err_path, "wb") as err, open("/dev/full", "wb") as full:
        stdout: int | IO[bytes] = subprocess.PIPE
        stderr: int | IO[bytes] = err
        close: list[int] = []
        if how == "broken-pipe":
            r, w = os.pipe()
            os.close(r)  # no reader: the first write fails with EPIPE
            stdout = w
        elif how == "full":
            stdout = full
        elif how == "stderr-full":
            stderr = full
        if how in ("closed-stdout", "closed-both"):
            close.append(1)
        if how in ("closed-stderr", "closed-both"):
            close.append(2)
        p = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                             preexec_fn=_closed(*close),  # noqa: PLW1509 (no threads here)
                             env=env_for(load(scenario), tmp))
        if how == "broken-pipe":
            os.close(w)
        p.communicate(timeout=60)
    return p.returncode, err_path.read_text(), prom


STREAM_FAILURES = ["broken-pipe", "full", "closed-stdout", "closed-stderr", "closed-both",
                   "stderr-full"]
REPORT_LOST = {"broken-pipe": "broken pipe", "full": "No space left on device",
               "closed-stdout": "stdout is closed"}


@pytest.mark.parametrize("how", STREAM_FAILURES)
@pytest.mark.parametrize("fmt", [[], ["--json"], ["--textfile", "PROM"]])
@pytest.mark.parametrize(("scenario", "found"), [("healthy", 0), ("large-memory", 1)])
def test_stream_failures(tmp_path: Path, how: str, fmt: list[str], scenario: str,
                         found: int) -> None:
    code, err, prom = _check_with_streams(tmp_path, scenario, fmt, how)
    assert "Traceback" not in err and "internal error" not in err, err
    lost = how in REPORT_LOST or how == "closed-both"
    if found == 1:
        assert code == 1, err  # the mismatch is never hidden
    else:
        assert code == (5 if lost else 0), err
    if how in REPORT_LOST:
        assert f"xenprobe: error: the report was not written to stdout: {REPORT_LOST[how]}" \
            in err
    if fmt and fmt[0] == "--textfile":  # one destination failing costs the other nothing
        assert "xenprobe_up 1.0" in prom.read_text()
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_no_room_for_the_scenario_is_not_a_bug() -> None:
    """The scenario travels to the re-executed process in a memfd, which RLIMIT_FSIZE
    limits like any file."""
    def no_file_growth() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    p = subprocess.run([sys.executable, "-m", "xenprobe", "check", "--mock"],
                       capture_output=True, text=True, timeout=60, check=False,
                       preexec_fn=no_file_growth)
    assert_clean_failure(p, 3, "cannot hand the scenario to the mock host: File too large")


def test_the_issue_pipeline_keeps_the_mismatch(tmp_path: Path) -> None:
    """issue 12: `check --mock large-memory --json | head -c 10` exited 0."""
    p = subprocess.run(["sh", "-c", f'"{sys.executable}" -m xenprobe check --mock '
                        'large-memory --json | head -c 10; exit "$(( $? ))"'],
                       capture_output=True, text=True, timeout=60, check=False)
    assert len(p.stdout) == 10
    p = subprocess.run(["bash", "-c", f'"{sys.executable}" -m xenprobe check --mock '
                        'large-memory --json | head -c 10 >/dev/null; '
                        'exit "${PIPESTATUS[0]}"'],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 1, p.stderr


def test_textfile_not_written_keeps_the_report_and_says_so(tmp_path: Path) -> None:
    """RLIMIT_FSIZE 0: regular files cannot grow (EFBIG), the stdout pipe still works."""
    def no_file_growth() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    (tmp_path / "env").mkdir()
    (tmp_path / "out").mkdir()
    for scenario, found, expect in (("healthy", 0, 5), ("large-memory", 1, 1)):
        prom = tmp_path / "out" / f"{scenario}.prom"
        p = subprocess.run([sys.executable, "-m", "xenprobe", "check", "--mock", scenario,
                            "--json", "--textfile", str(prom)], capture_output=True,
                           text=True, timeout=60, check=False, preexec_fn=no_file_growth,
                           env=env_for(load(scenario), tmp_path / "env"))
        assert p.returncode == expect, p.stderr
        assert json.loads(p.stdout)["exit_code"] == found  # the whole report, printed
        assert f"xenprobe: error: --textfile: cannot write {prom}: File too large" \
            in p.stderr
        assert "Traceback" not in p.stderr
        assert list((tmp_path / "out").iterdir()) == []  # nothing half-written or left


@pytest.mark.parametrize("argv", [["--help"], ["check", "--help"], ["serve", "--help"],
                                  ["--version"], ["scenarios"]])
def test_help_to_a_full_stdout(argv: list[str]) -> None:
    with open("/dev/full", "wb") as full:
        p = subprocess.run([sys.executable, "-m", "xenprobe", *argv], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert p.returncode == 5, p.stderr
    assert "not written to stdout: No space left on device" in p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr


def test_top_level_help_lists_every_exit_code() -> None:
    p = run_check(["--help"])
    assert p.returncode == 0
    assert p.stdout.count(errors.EPILOG_HEAD) == 1
    assert errors.exit_code_help() in p.stdout
    for code, _ in errors.EXIT_CODES:
        assert f"\n  {int(code)}  " in p.stdout


@pytest.mark.parametrize("command", sorted(errors.COMMAND_CODES))
def test_command_help_lists_its_exit_codes_once(command: str) -> None:
    """Each command's table holds the codes it can return and no other (issue 23): serve
    never exits 1 or 5, scenarios never 1, 2 or 3."""
    p = run_check([command, "--help"])
    assert p.returncode == 0
    assert p.stdout.count(errors.EPILOG_HEAD) == 1, p.stdout
    table = p.stdout[p.stdout.index(errors.EPILOG_HEAD):]
    listed = [int(c) for c in re.findall(r"^  (\d)  ", table, flags=re.MULTILINE)]
    assert listed == sorted(int(c) for c in errors.COMMAND_CODES[command]), table
    assert "for serve" not in table  # each command's own meaning, not the others'


def _options(argv: list[str]) -> dict[str, str]:
    """`--help`'s options: {first flag: its help text, joined onto one line}."""
    help_text = run_check([*argv, "--help"]).stdout
    body = help_text[help_text.index("options:"):help_text.index(errors.EPILOG_HEAD)]
    entries = re.split(r"\n  (?=-)", body)[1:]
    return {e.split()[0].rstrip(","): " ".join(e.split()) for e in entries}


@pytest.mark.parametrize("argv", [[], ["check"], ["serve"], ["watch"]])
def test_help_shows_every_default(argv: list[str]) -> None:
    """Every option that takes a value says its default; every option has help."""
    sub = cli.parser()
    if argv:
        sub = next(a for a in sub._actions
                   if isinstance(a, argparse._SubParsersAction)).choices[argv[0]]
    takes_value = {a.option_strings[0] for a in sub._actions
                   if a.option_strings and a.nargs != 0 and a.dest != "help"}
    options = _options(argv)
    assert takes_value <= set(options), options
    for flag in takes_value:
        assert "default" in options[flag], options[flag]
    for flag, text in options.items():
        assert len(text.split()) > 1 + text.count(","), f"{flag} has no help: {text}"


def test_top_level_log_level_default_is_each_commands() -> None:
    """The global --log-level states the default serve really uses (its log_level
    setting), not check's for both (issue 23)."""
    top = _options([])["--log-level"]
    serve = _options(["serve"])["--log-level"]
    check = _options(["check"])["--log-level"]
    serve_default = re.search(r"default: (\w+)\)", serve)
    check_default = re.search(r"default: (\w+)\)", check)
    assert serve_default and check_default
    assert f"{serve_default.group(1)} for serve" in top, top
    assert f"{check_default.group(1)} for check" in top, top


@pytest.mark.parametrize(("flag", "alias"), [
    ("--listen-address", "--web.listen-address"),
    ("--web-config-file", "--web.config.file"),
    ("--log-level", "--log.level"),
    ("--log-format", "--log.format"),
    ("--telemetry-path", "--web.telemetry-path"),
])
def test_serve_takes_prometheus_flag_names(tmp_path: Path, flag: str, alias: str) -> None:
    """Prometheus's and node_exporter's names work beside ours (issue 23): a bad value
    through the alias is refused by the key's own check."""
    config = tmp_path / "xenprobe.toml"
    config.write_text("")
    p = run_check(["serve", "--config", str(config), alias, "\u0663"])
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"xenprobe: error: {flag}: "), p.stderr


def test_textfile_exit_codes_agree() -> None:
    """A --textfile whose directory does not exist is refused before probing (exit 2,
    tests/test_bad_input.py textfile-no-directory): --help and the exit code table say
    so, and keep 5 for a write that fails after the probe (issue 23)."""
    textfile = _options(["check"])["--textfile"]
    assert "does not exist is exit 2" in textfile, textfile
    meanings = dict(errors.EXIT_CODES)
    assert "--textfile whose directory does not exist" in meanings[errors.ExitCode.USAGE]
    assert "after the probe" in meanings[errors.ExitCode.NOT_DELIVERED]


@pytest.mark.parametrize("argv", [
    ["--log-level", "debug", "check", "--mock"],
    ["check", "--log-level", "debug", "--mock"],
    ["check", "--mock", "--log-level=debug"],
])
def test_log_level_global_or_after_the_command(argv: list[str]) -> None:
    p = run_check(argv)
    assert p.returncode == 0, p.stderr
    assert '"level": "debug"' in p.stderr


def test_log_level_after_the_command_wins(tmp_path: Path) -> None:
    p = run_check(["--log-level", "debug", "check", "--log-level", "error", "--mock"])
    assert p.returncode == 0, p.stderr
    assert '"level": "debug"' not in p.stderr


def test_log_level_refuses_nonsense() -> None:
    for argv in (["check", "--log-level", "loud"], ["--log-level", "loud", "check"]):
        assert_clean_failure(run_check(argv), 2, "invalid choice: 'loud'")


# -- the mock host cannot be enabled or faked by environment alone ----------------------

def _real_host_only() -> None:
    if Path("/dev/xen/privcmd").exists() or Path("/proc/xen/privcmd").exists():
        pytest.skip("this machine is a Xen domain: the real device would answer")


def test_mock_variable_alone_does_not_make_a_mock_host() -> None:
    """issue 12: XENPROBE_MOCK_ACTIVE set by hand made `check` probe the real device and
    label it a mock host. It is ignored: --mock still re-executes onto the mock..."""
    env = dict(os.environ, XENPROBE_MOCK_ACTIVE="large-memory")
    env.pop("LD_PRELOAD", None)
    p = run_check(["check", "--json", "--mock", "large-memory"], env=env)
    assert p.returncode == 1, p.stderr  # the mock's mismatches: it really ran there
    assert json.loads(p.stdout)["mock_scenario"] == "large-memory"
    assert "mock_variable_ignored" in p.stderr


def test_mock_variable_alone_labels_nothing() -> None:
    """... and without --mock the real device is probed, under no mock label."""
    _real_host_only()
    env = dict(os.environ, XENPROBE_MOCK_ACTIVE="healthy")
    env.pop("LD_PRELOAD", None)
    p = run_check(["check"], env=env)
    assert_clean_failure(p, 3, "no privcmd device", "mock_variable_ignored")


def test_a_library_that_only_looks_like_the_mock_is_not_it(tmp_path: Path) -> None:
    """The marker symbols must come from the mock library file itself."""
    _real_host_only()
    src = tmp_path / "fake.c"
    src.write_text("long hv_hypercall(void) { return 0; }\n"
                   "void *scenario_get(void) { return 0; }\n")
    lib = tmp_path / "fake.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True,
                   timeout=60)
    env = dict(os.environ, XENPROBE_MOCK_ACTIVE="healthy", LD_PRELOAD=str(lib))
    p = run_check(["check"], env=env)
    assert_clean_failure(p, 3, "no privcmd device", "mock_variable_ignored")


def test_on_the_mock_without_the_variable_is_still_labelled(tmp_path: Path) -> None:
    """The other direction: a process really on the mock host says so, even when
    XENPROBE_MOCK_ACTIVE was removed from its environment."""
    env = env_for(load("large-memory"), tmp_path)
    del env["XENPROBE_MOCK_ACTIVE"]
    p = run_check(["check", "--json"], env=env)
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout)["mock_scenario"] == mock.UNNAMED


def test_loaded_needs_the_symbol_inside_the_mock_mapping(tmp_path: Path) -> None:
    """Unit view: this test process does not have the mock loaded."""
    assert not mock.loaded()
    maps = tmp_path / "maps"
    maps.write_text(f"00000000-ffffffffffff r-xp 00000000 00:00 0 {mock.library()}\n")
    assert not mock.loaded(maps)  # a maps file alone does not put the symbols there
