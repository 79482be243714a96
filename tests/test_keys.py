# SPDX-License-Identifier: GPL-2.0-only
"""support/keys.py: every message names its origin and the keys down to the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from xenprobe.support.errors import ConfigError, ScenarioError, XenprobeError
from xenprobe.support.keys import Table, Where


def test_where_names_origin_then_path() -> None:
    flag = Where("--interval")
    assert flag.fail("expected seconds").message == "--interval: expected seconds"
    where = Where("scenario x.toml", error=ScenarioError).key("domain").index(2).key("balloon")
    e = where.key("step").fail("expected a non-zero number of pages", "a hint")
    assert isinstance(e, ScenarioError)
    assert e.message == ("scenario x.toml: domain[2].balloon.step: expected a non-zero "
                         "number of pages")
    assert e.hint == "a hint"
    assert isinstance(Where("web config w.yml").fail("x"), ConfigError)


def test_where_resolves_relative_paths_against_its_base() -> None:
    where = Where("config file /etc/x/x.toml", base=Path("/etc/x"))
    assert where.resolve(Path("web.yml")) == Path("/etc/x/web.yml")
    assert where.resolve(Path("/srv/web.yml")) == Path("/srv/web.yml")
    assert Where("--web.config.file").resolve(Path("web.yml")) == Path("web.yml")


def _fails(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(XenprobeError) as e:
        call()
    assert e.value.message == message


def test_table_reads_typed_values_and_names_the_key() -> None:
    t = Table(Where("scenario s.toml", error=ScenarioError),
              {"n": 5, "b": True, "s": "a\tb", "sub": {"k": 1}, "list": 3})
    assert t.get("n", int) == 5
    assert t.int_in("missing", 0, 9, 7) == 7
    _fails(lambda: t.get("b", int), "scenario s.toml: b: expected an integer, got True")
    _fails(lambda: t.get("n", str), "scenario s.toml: n: expected str, got 5")
    _fails(lambda: t.get("absent", int), "scenario s.toml: absent: is required")
    _fails(lambda: t.int_in("n", 0, 4), "scenario s.toml: n: expected 0 to 0x4, got 5")
    _fails(lambda: t.line("s", "", 64), "scenario s.toml: s: must be one line of printable text")
    _fails(lambda: t.choice("s", ("x",), "x"), "scenario s.toml: s: expected one of x, got 'a\\tb'")
    _fails(lambda: t.table("list"), "scenario s.toml: list: expected a table")
    sub = t.table("sub")
    _fails(sub.done, "scenario s.toml: sub.k: is not a known key")


def test_done_refuses_the_first_unread_key_in_sorted_order() -> None:
    t = Table(Where("scenario s.toml"), {"zeta": 1, "alpha": 2, "read": 3})
    assert t.peek("zeta") == 1  # a look is not a read
    assert t.take("read") == 3
    _fails(t.done, "scenario s.toml: alpha: is not a known key")
    t.take("alpha")
    _fails(t.done, "scenario s.toml: zeta: is not a known key")
    t.take("zeta")
    t.done()


def test_unknown_keeps_the_files_order_and_a_null_key() -> None:
    t = Table(Where("web config w.yml"), {"b": 1, None: 2, "a": 3, 1: 4})
    assert t.unknown({"a"}) == ["b", None, 1]
    assert t.unknown({"a", "b", None, 1}) == []
    assert t.fail(None, "unknown key").message == "web config w.yml: None: unknown key"
