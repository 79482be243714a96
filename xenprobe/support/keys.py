# SPDX-License-Identifier: GPL-2.0-only
"""Naming the key at fault: the one validator for keys of TOML and YAML files (and flags).

Every message about an operator's input reads `ORIGIN: PATH: problem`: ORIGIN says
which file or flag (`scenario x.toml`, `web config /etc/xenprobe/web.yml`,
`config file /etc/xenprobe/xenprobe.toml: interval`, `--interval`), PATH the keys down
to the value (`domain[1].balloon.step`), left out when the problem is the origin's own.
A Where names a value; a Table reads one TOML table or YAML mapping key by key, so that
what nobody read can be refused by name.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

from xenprobe.support.errors import ConfigError, XenprobeError


@dataclass(frozen=True)
class Where:
    """A value's name in messages: where it came from and the keys down to it."""

    origin: str
    path: str = ""
    error: type[XenprobeError] = ConfigError  # the exit code a bad value means
    base: Path | None = None  # what a relative path in the file is relative to

    def key(self, name: object) -> Where:
        """The value at key `name` (a YAML key may be a number: it is named as written)."""
        return replace(self, path=f"{self.path}.{name}" if self.path else str(name))

    def index(self, number: int) -> Where:
        """Entry `number` of the array (TOML's [[name]]) named by this."""
        return replace(self, path=f"{self.path}[{number}]")

    def fail(self, problem: str, hint: str = "") -> XenprobeError:
        named = f"{self.origin}: {self.path}" if self.path else self.origin
        return self.error(f"{named}: {problem}", hint)

    def resolve(self, path: Path) -> Path:
        """`path` as the file means it: a relative one is relative to the file's directory."""
        return path if path.is_absolute() or self.base is None else self.base / path


class Table:
    """One TOML table or YAML mapping, read key by key; every error names the key's
    full path, and `done` refuses the keys nobody read."""

    def __init__(self, where: Where, mapping: Mapping[Any, Any]) -> None:
        self.where, self.mapping = where, mapping
        self.used: set[object] = set()

    def __contains__(self, key: object) -> bool:
        return key in self.mapping

    def fail(self, key: object, problem: str) -> XenprobeError:
        return self.where.key(key).fail(problem)

    def peek(self, key: str, default: Any = None) -> Any:
        """The value as written, or `default`, without reading it: a later read checks it."""
        return self.mapping.get(key, default)

    def take(self, key: str, default: Any = None) -> Any:
        """The value as written, or `default`: the caller checks it."""
        self.used.add(key)
        return self.mapping.get(key, default)

    def get(self, key: str, kind: type, default: Any = None) -> Any:
        """The value, of type `kind`; `default` when absent, unless it is None: required."""
        self.used.add(key)
        if key not in self.mapping:
            if default is None:
                raise self.fail(key, "is required")
            return default
        value = self.mapping[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.fail(key, f"expected an integer, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(key, f"expected {kind.__name__}, got {value!r}")
        return value

    def int_in(self, key: str, lo: int, hi: int, default: int | None = None) -> int:
        """An integer in [lo, hi] (the range of the field it ends up in)."""
        value: int = self.get(key, int, default)
        if not lo <= value <= hi:
            raise self.fail(key, f"expected {lo} to {hi:#x}, got {value}")
        return value

    def line(self, key: str, default: str, limit: int) -> str:
        """One line of printable text shorter than `limit` bytes (the buffer it ends up in)."""
        value: str = self.get(key, str, default)
        if len(value.encode()) >= limit:
            raise self.fail(key, f"must be shorter than {limit} bytes")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise self.fail(key, "must be one line of printable text")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value: str = self.get(key, str, default)
        if value not in options:
            raise self.fail(key, f"expected one of {', '.join(options)}, got {value!r}")
        return value

    def table(self, key: str) -> Self:
        """The table at `key` (empty when absent), read as this one is."""
        value = self.take(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "expected a table")
        return type(self)(self.where.key(key), value)

    def unknown(self, known: Collection[object]) -> list[object]:
        """The keys not in `known`, in the file's order (a YAML key may be null)."""
        return [key for key in self.mapping if key not in known]

    def done(self) -> None:
        """Refuse a key nobody read: a misspelt key would otherwise be silently ignored."""
        extra = sorted(set(self.mapping) - self.used)
        if extra:
            raise self.fail(extra[0], "is not a known key")
