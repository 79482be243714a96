# SPDX-License-Identifier: GPL-2.0-only
"""The daemon's configuration: every key's bad values are refused with a message that
names the key and where it came from; flags override the file; the CLI exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from xenprobe.cli import command as cli
from xenprobe.exporter import config
from xenprobe.exporter.config import Config, Listen
from xenprobe.support.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def load_text(tmp_path: Path, text: str, **overrides: str) -> Config:
    path = tmp_path / "xenprobe.toml"
    path.write_text(text)
    return config.load(path, explicit=True, overrides=overrides)


def test_defaults_when_the_default_file_is_absent(tmp_path: Path) -> None:
    assert config.load(tmp_path / "none.toml", explicit=False) == Config()


def test_an_explicit_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "none.toml", explicit=True)


def test_the_shipped_example_is_the_defaults() -> None:
    assert config.load(ROOT / "contrib" / "systemd" / "xenprobe.toml", explicit=True) == Config()


def test_good_values(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text("")
    c = load_text(tmp_path, """
listen_address = "[::1]:9100"
web_config_file = "web.yml"
interval = "1m30s"
attempts = 5
sweep_timeout = "500ms"
stale_after = 2.5
max_domain_series = 0
textfile = "xenprobe.prom"
log_level = "DEBUG"
log_format = "json"
""")
    assert c.listen_address == Listen("::1", 9100)
    assert c.web_config_file == tmp_path / "web.yml"  # relative to the config file
    assert c.interval == 90 and c.sweep_timeout == 0.5 and c.stale_after == 2.5
    assert c.attempts == 5 and c.max_domain_series == 0
    assert c.textfile == tmp_path / "xenprobe.prom"
    assert (c.log_level, c.log_format) == ("debug", "json")
    assert c.stale_seconds == 225


@pytest.mark.parametrize(("text", "expected"), [
    (":9723", Listen("", 9723)),
    ("0.0.0.0:80", Listen("0.0.0.0", 80)),
    ("localhost:0", Listen("localhost", 0)),
    ("[::]:9723", Listen("::", 9723)),
])
def test_listen_addresses(tmp_path: Path, text: str, expected: Listen) -> None:
    assert load_text(tmp_path, f'listen_address = "{text}"').listen_address == expected


BAD = [
    ("listen_address", "9723", "expected host:port"),
    ("listen_address", '"9723"', "expected host:port"),
    ("listen_address", '"localhost"', "expected host:port"),
    ("listen_address", '"::1:9723"', "expected host:port"),
    ("listen_address", '"[::1:9723"', "expected host:port"),
    ("listen_address", '":70000"', "port must be a number from 0 to 65535"),
    ("listen_address", '":http"', "port must be a number"),
    ("listen_address", '":"', "port must be a number"),
    ("web_config_file", "5", "expected a path"),
    ("web_config_file", '"/nonexistent/web.yml"', "no such file"),
    ("interval", "0", "at least 1"),
    ("interval", "0.5", "at least 1"),
    ("interval", "-30", "at least 1"),
    ("interval", "86401", "at most 86400"),
    ("interval", "nan", "finite"),
    ("interval", "inf", "finite"),
    ("interval", '"soon"', "expected seconds"),
    ("interval", '"30x"', "expected seconds"),
    ("interval", '"1m 30s"', "expected seconds"),
    ("interval", "true", "expected a number of seconds"),
    ("interval", "[30]", "expected a number of seconds"),
    ("attempts", "0", "between 1 and 100"),
    ("attempts", "101", "between 1 and 100"),
    ("attempts", "1.5", "expected a whole number"),
    ("attempts", '"three"', "expected a whole number"),
    ("attempts", "true", "expected a whole number"),
    ("sweep_timeout", "0", "above 0"),
    ("sweep_timeout", "-1", "above 0"),
    ("sweep_timeout", "3601", "at most 3600"),
    ("sweep_timeout", '"long"', "expected seconds"),
    ("stale_after", "0.5", "at least 1"),
    ("stale_after", "1001", "at most 1000"),
    ("stale_after", '"x"', "expected a number"),
    ("stale_after", "false", "expected a number"),
    ("max_domain_series", "-1", "between 0 and 100000"),
    ("max_domain_series", "100001", "between 0 and 100000"),
    ("max_domain_series", "2.5", "expected a whole number"),
    ("max_domain_series", '"many"', "expected a whole number"),
    ("textfile", "5", "expected a path"),
    ("textfile", '"/nonexistent-dir/xenprobe.prom"', "does not exist"),
    ("textfile", '"/tmp/xenprobe.txt"', "reads only *.prom files"),
    ("textfile", '"bad\\u0000.prom"', "NUL"),
    ("telemetry_path", '"metrics"', "expected a URL path such as /metrics"),
    ("telemetry_path", '"/a b"', "expected a URL path"),
    ("telemetry_path", '"/-/healthy"', "is the path of another page"),
    ("telemetry_path", '"/"', "is the path of another page"),
    ("log_level", '"verbose"', "expected one of debug, info, warning, error"),
    ("log_level", "3", "expected one of"),
    ("log_format", '"xml"', "expected one of auto, json, console"),
]


@pytest.mark.parametrize(("key", "toml", "problem"), BAD)
def test_bad_values_in_the_file_name_the_key(tmp_path: Path, key: str, toml: str,
                                             problem: str) -> None:
    path = tmp_path / "xenprobe.toml"
    path.write_text(f"{key} = {toml}\n")
    with pytest.raises(ConfigError) as e:
        config.load(path, explicit=True)
    assert e.value.message.startswith(f"config file {path}: {key}: ")
    assert problem in e.value.message


@pytest.mark.parametrize(("key", "toml", "problem"),
                         [b for b in BAD if b[1].startswith('"') or b[1][0].isdigit()
                          or b[1][0] == "-"])
def test_bad_values_from_flags_name_the_flag(tmp_path: Path, key: str, toml: str,
                                             problem: str) -> None:
    text = toml.strip('"').replace("\\u0000", "\0")
    with pytest.raises(ConfigError) as e:
        config.build(None, None, {key: text})
    assert e.value.message.startswith(f"{config.flag(key)}: ")


def test_a_directory_named_like_a_textfile(tmp_path: Path) -> None:
    (tmp_path / "x.prom").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_text(tmp_path, f'textfile = "{tmp_path / "x.prom"}"')


def test_unknown_keys_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, "intervall = 30")
    assert "unknown key 'intervall'" in e.value.message
    assert "did you mean 'interval'?" in e.value.message
    assert "listen_address" in e.value.hint


def test_tables_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="interval: expected a value, got a table"):
        load_text(tmp_path, "[interval]\nseconds = 3")


@pytest.mark.parametrize(("data", "problem"), [
    (b"interval = ", "not valid TOML"),
    (b"interval = 30\ninterval = 31\n", "not valid TOML"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_unreadable_files(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "xenprobe.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=problem):
        config.load(path, explicit=True)


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        config.load(tmp_path, explicit=True)


def test_flags_override_the_file(tmp_path: Path) -> None:
    c = load_text(tmp_path, f'interval = 10\ntextfile = "{tmp_path}/x.prom"\n',
                  interval="20", textfile="", listen_address="127.0.0.1:1")
    assert c.interval == 20
    assert c.textfile is None  # "" turns a file's setting off
    assert c.listen_address == Listen("127.0.0.1", 1)


# -- through the command line: exit 2, a message naming the key, no traceback --------

def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    finally:
        # main() points structlog at this test's captured stderr, closed after it.
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_cli_bad_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["serve", "--config", str(tmp_path / "none.toml"), "--interval",
                     "0"], capsys)
    assert code == 2
    assert "does not exist" in err  # the explicit --config is checked first
    (tmp_path / "x.toml").write_text("")
    code, err = run(["serve", "--config", str(tmp_path / "x.toml"), "--interval", "0"],
                    capsys)
    assert code == 2
    assert err.startswith("xenprobe: error: --interval: must be at least 1 ")


def test_cli_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.toml"
    path.write_text('log_format = "xml"\n')
    code, err = run(["serve", "--config", str(path)], capsys)
    assert code == 2
    assert f"config file {path}: log_format: expected one of" in err


def test_cli_web_config_flag_alias(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    path = tmp_path / "x.toml"
    path.write_text("")
    code, err = run(["serve", "--config", str(path), "--web.config.file",
                     str(tmp_path / "missing.yml")], capsys)
    assert code == 2
    assert "--web-config-file: no such file" in err


@pytest.mark.skipif(Path("/dev/xen/privcmd").exists(), reason="this is a Xen dom0")
def test_cli_without_a_hypervisor_exits_3(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.toml"
    path.write_text('listen_address = "127.0.0.1:0"\nlog_level = "error"\n')
    code, err = run(["serve", "--config", str(path)], capsys)
    assert code == 3
    assert "no privcmd device" in err


def test_cli_check_textfile_checks_the_path(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["check", "--textfile", str(tmp_path / "no" / "x.prom")], capsys)
    assert code == 2
    assert "--textfile: directory" in err
    code, err = run(["check", "--textfile", str(tmp_path / "x.txt")], capsys)
    assert code == 2
    assert "*.prom" in err


def test_every_key_has_a_flag_and_help() -> None:
    assert set(config.HELP) == set(config.METAVARS) == set(config.KEYS)
    text = cli.parser().format_help()  # the top level parses; serve's own help:
    assert "serve" in text
    sub = next(a for a in cli.parser()._actions if a.dest == "command")
    serve = sub.choices["serve"]  # type: ignore[attr-defined]
    flags = {o for a in serve._actions for o in a.option_strings}
    assert {config.flag(k) for k in config.KEYS} <= flags
    assert {"--web.listen-address", "--web.config.file"} <= flags
