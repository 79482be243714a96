# SPDX-License-Identifier: GPL-2.0-only
"""Generated bad input: every flag, every config key and every scenario integer, with
values generated rather than listed, so a new class of bad input is found here and not
by an operator. Whatever the value, the answer is a valid setting or a clear error
naming the flag or key (exit 2); never an exception of another kind (exit 4), and never
a scenario the native mock refuses later (EIO at device open, exit 3).

The flags and keys are read from the parser, the config module and the scenario reader
themselves, so a flag or key added later is tried too. tests/test_bad_input.py holds the
members of each class found here as end-to-end cases.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenprobe.cli import command as cli
from xenprobe.exporter import config as cfg
from xenprobe.exporter.http import server
from xenprobe.mock import launcher as mock
from xenprobe.mock import scenario as scenarios
from xenprobe.support.errors import CannotProbe, ConfigError, ScenarioError
from xenprobe.xen import transport

# -- values -------------------------------------------------------------------------------

# Digits of every script (Nd), other numerals (No: superscripts, fractions) and letter
# numerals (Nl), mixed with what a number's syntax uses: what str.isdigit(), int() and
# float() disagree about.
NUMERIC_TEXT = st.text(st.one_of(st.characters(whitelist_categories=("Nd", "No", "Nl")),
                                 st.sampled_from("0123456789+-_. eExX:[]%")), max_size=12)
# Any code point but NUL (argv cannot carry one), lone surrogates included: a byte that is
# not UTF-8 in argv arrives as one (os.fsdecode).
ANY_TEXT = st.text(st.characters(blacklist_categories=(), blacklist_characters="\0"))
# Host names: labels of any length and alphabet (IDNA's limits are 63 per label, 253 in
# all, and what it can map), dots in any place.
HOSTS = st.lists(st.one_of(st.text(st.characters(blacklist_characters="\0.:[]"),
                                   max_size=70),
                           st.text("abcxyz-0123456789", max_size=70)),
                 max_size=6).map(".".join)
FLAG_VALUES = st.one_of(NUMERIC_TEXT, ANY_TEXT,
                        st.builds(lambda h, p: f"{h}:{p}", HOSTS, NUMERIC_TEXT),
                        st.builds(lambda h, p: f"[{h}]:{p}", HOSTS, NUMERIC_TEXT),
                        st.integers().map(str))


def _near_power_of_two(k: int, d: int, sign: int) -> int:
    return sign * (1 << k) + d


# Integers around every power of two up to 2^70, the C types' edges (2^15, 2^31, 2^63...)
# most often, and anywhere.
INTEGERS = st.one_of(st.builds(_near_power_of_two,
                               st.one_of(st.sampled_from((8, 15, 16, 31, 32, 63, 64)),
                                         st.integers(0, 70)),
                               st.integers(-2, 2), st.sampled_from((1, -1))),
                     st.integers())
# A TOML value of any type tomllib returns.
TOML_VALUES = st.recursive(
    st.one_of(INTEGERS, st.floats(), FLAG_VALUES, st.booleans(), st.datetimes(),
              st.dates(), st.times()),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)


# -- serve: every flag, every config key ---------------------------------------------------

def _serve_flags() -> list[tuple[str, str]]:
    """(flag, config key) for every option of `serve` that sets a config key."""
    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.choices["serve"]
    return [(opt, a.dest.removeprefix("config_")) for a in serve._actions
            if a.dest.startswith("config_") for opt in a.option_strings]


SERVE_FLAGS = _serve_flags()


def _bind_numeric(listen: cfg.Listen) -> None:
    """server.bind on `listen`'s host at port 0, with name look-ups limited to numeric
    addresses: the real socket call (and Python's IDNA encoding before it), no DNS."""
    real = socket.getaddrinfo

    def numeric(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["flags"] = kwargs.get("flags", 0) | socket.AI_NUMERICHOST
        return real(host, port, *args, **kwargs)

    socket.getaddrinfo = numeric  # type: ignore[assignment]
    try:
        front = server.bind(cfg.Listen(listen.host, 0), None)  # type: ignore[arg-type]
        front.server_close()
    except ConfigError as e:
        assert e.message.startswith("listen_address "), e.message
    finally:
        socket.getaddrinfo = real  # type: ignore[assignment]


def _listens_where_written(listen: cfg.Listen, written: str) -> None:
    """The port served is the one written, in the digits written (not '٣' read as 3),
    and the host can be bound or fails by name."""
    port = written.strip().rpartition(":")[2]
    assert port.isascii() and port.isdigit() and int(port) == listen.port, (written, listen)
    _bind_numeric(listen)


@pytest.mark.parametrize(("flag", "key"), SERVE_FLAGS, ids=[f for f, _ in SERVE_FLAGS])
@settings(max_examples=150)
@given(value=FLAG_VALUES)
def test_every_serve_flag(flag: str, key: str, value: str) -> None:
    """A flag's value is a setting or ConfigError naming the flag (no other exception);
    a listen address it accepts can be bound or fails by name."""
    try:
        config = cfg.build(None, None, {key: value})
    except ConfigError as e:
        assert e.message.startswith(f"{cfg.flag(key)}: "), e.message
        return
    if key == "listen_address":
        _listens_where_written(config.listen_address, value)


@pytest.mark.parametrize("key", cfg.KEYS)
@settings(max_examples=150)
@given(value=TOML_VALUES)
def test_every_config_key(key: str, value: Any) -> None:
    source = Path("/nonexistent/xenprobe.toml")
    try:
        config = cfg.build({key: value}, source)
    except ConfigError as e:
        assert e.message.startswith(f"config file {source}: {key}: "), e.message
        return
    if key == "listen_address":
        _listens_where_written(config.listen_address, value)


# -- check: every option that takes a value --------------------------------------------

def _check_options() -> list[str]:
    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [a.option_strings[-1] for a in sub.choices["check"]._actions
            if a.option_strings and a.nargs != 0]


@pytest.fixture(scope="module", autouse=True)
def _structlog_as_found() -> Iterator[None]:
    """cli.main runs in this process and configures structlog (level warning) for
    good: put it back, so that later modules' capture_logs() see their info lines
    (tests/test_names.py failed after this module, on main too, before this)."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def no_device(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`check` past its validation meets no device and no re-exec onto the mock (exit
    3), and writes no textfile."""
    def absent(*_: object, **__: object) -> None:
        raise CannotProbe("test: no device")

    monkeypatch.setattr(transport, "Privcmd", absent)  # cli imports it where it is used
    monkeypatch.setattr(mock, "reexec", absent)
    monkeypatch.setattr(cli, "_write_textfile", lambda *_: None)
    yield


@pytest.mark.parametrize("option", _check_options())
@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=FLAG_VALUES)
def test_every_check_option(no_device: None, option: str, value: str,
                            capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["check", f"{option}={value}"])
    err = capsys.readouterr().err
    assert code in (2, 3), err
    assert "internal error" not in err, err


# -- scenarios: every integer the scenario reader reads ----------------------------------

# A scenario with one table of each kind the reader knows, so that every key it reads
# (optional ones too) is read once. Values from the shipped scenarios' conventions.
EVERY_TABLE = """
[xen]
release = "4.17"
[host]
memory = "64 GiB"
[linux]
self_domid = 0
[hypervisor]
census = true
hang = [{op = "sysctl", subop = 6}]
[[domain]]
id = 0
memory = "4 GiB"
vcpus = 4
offline_vcpus = [1]
flap_vcpu = [2, 5]
[[domain]]
id = 1
memory = "1 GiB"
max_memory = "2 GiB"
vanish_after = 3
balloon = {step = 256, every = 2, min = 131072, max = 524288}
[[fault]]
op = "sysctl"
errno = "EAGAIN"
count = 2
[[fault]]
kind = "delay"
op = "domctl"
delay_ms = 5
count = 3
[[fault]]
kind = "garbage"
op = "memory_op"
subop = 4
[[fault]]
kind = "errno"
layer = "driver"
op = "any"
errno = "EINTR"
count = -1
"""


def _bases() -> dict[str, dict[str, Any]]:
    docs = {"every-table": tomllib.loads(EVERY_TABLE)}
    for name in scenarios.shipped():
        text = resources.files("xenprobe.mock.scenarios").joinpath(f"{name}.toml").read_text()
        docs[name] = tomllib.loads(text)
    return docs


BASES = _bases()
Path_ = tuple[str | int, ...]


def _integer_keys() -> dict[str, tuple[str, Path_]]:
    """{key path: (base, path)}: every key the scenario reader reads as an integer,
    seen by watching it read the bases (a key a base leaves out is read as its default
    all the same), and every integer in a list (vCPU ids), by walking the bases."""
    found: dict[str, tuple[str, Path_]] = {}
    real_get = scenarios._Reader.get

    for name, doc in BASES.items():
        for path, value in _leaves(doc):  # first: where a base gives a value
            if type(value) in (int, float):
                found.setdefault(".".join("*" if isinstance(p, int) else p for p in path),
                                 (name, path))

        def spy(self: scenarios._Reader, key: str, kind: type, default: Any = None,
                name: str = name) -> Any:
            if kind is int:
                where = self.where.path
                found.setdefault(_pattern(where, key), (name, _path(where, key)))
            return real_get(self, key, kind, default)

        scenarios._Reader.get = spy  # type: ignore[method-assign]
        try:
            scenarios.parse(_toml(doc), name, name)
        finally:
            scenarios._Reader.get = real_get  # type: ignore[method-assign]
    return found


def _pattern(where: str, key: str) -> str:
    return ".".join("*" if isinstance(p, int) else p for p in _path(where, key))


def _path(where: str, key: str) -> Path_:
    """'domain[1].balloon', 'every' -> ('domain', 1, 'balloon', 'every')."""
    path: list[str | int] = []
    for part in where.split(".") if where else []:
        name, _, index = part.partition("[")
        path.append(name)
        if index:
            path.append(int(index.rstrip("]")))
    if where == "hypervisor.hang":  # _hang's reader names no index: the base's first
        path.append(0)
    return (*path, key)


def _leaves(v: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _leaves(x, (*path, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _leaves(x, (*path, i))
    else:
        yield path, v


def _toml(doc: dict[str, Any]) -> str:
    """A document as TOML: each top-level key one line, tables inline."""
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    return "".join(f"{json.dumps(k)} = {value(v)}\n" for k, v in doc.items())


def _with(doc: Any, path: Path_, new: int) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(doc, list):
        return [_with(x, rest, new) if i == head else x for i, x in enumerate(doc)]
    return {**doc, head: _with(doc.get(head, {}) if rest else None, rest, new)}


INTEGER_KEYS = _integer_keys()


def native_refusal(s: scenarios.Scenario, tmp: Path) -> str:
    """What the native mock says when it reads the compiled scenario ('' if it takes
    it): a shell on the mock opens the device, which makes the mock parse it."""
    compiled = tmp / "s.compiled"
    compiled.write_text(scenarios.compile_text(s))
    env = dict(os.environ)
    env.update(mock.environment(s, str(compiled)))
    p = subprocess.run(["sh", "-c", ": < /dev/xen/privcmd"], env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    return p.stderr if p.returncode or p.stderr else ""


def test_every_integer_key_is_found() -> None:
    """The watch sees the keys of each kind of table (not just the top ones)."""
    for key in ("fault.*.count", "fault.*.subop", "fault.*.delay_ms", "hypervisor.hang.*.subop",
                "domain.*.vanish_after", "domain.*.balloon.every", "domain.*.offline_vcpus.*",
                "domain.*.flap_vcpu.*", "host.cpu_khz", "xen.sysctl_interface"):
        assert key in INTEGER_KEYS, sorted(INTEGER_KEYS)


@pytest.mark.parametrize("key", sorted(INTEGER_KEYS))
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(number=INTEGERS)
def test_every_scenario_integer(tmp_path: Path, key: str, number: int) -> None:
    """Any integer in any key: ScenarioError naming the key, or a scenario the native
    mock accepts (the C type of its directive holds the value)."""
    base, path = INTEGER_KEYS[key]
    text = _toml(_with(BASES[base], path, number))
    try:
        s = scenarios.parse(text, "t.toml", "t")
    except ScenarioError as e:
        assert str(path[-1] if isinstance(path[-1], str) else path[-2]) in e.message, \
            e.message
        return
    assert native_refusal(s, tmp_path) == "", (key, number)
