# SPDX-License-Identifier: GPL-2.0-only
"""The daemon's configuration: a TOML file, every key overridable by a `serve` flag.

Validation is all-or-nothing and names the key (and where it came from) in every
message, so a bad value stops `xenprobe serve` before anything is started, and a bad
reload leaves the running configuration untouched.
"""

from __future__ import annotations

import difflib

# The codec socket.getaddrinfo and _check_host encode host names with, loaded at
# import: a process that can no longer read the standard library (a dropped user) has it.
import encodings.idna  # noqa: F401
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from xenprobe.exporter.metrics import collector_groups as collectors
from xenprobe.support import files
from xenprobe.support.errors import ConfigError
from xenprobe.support.keys import Where

DEFAULT_PATH = Path("/etc/xenprobe/xenprobe.toml")

# 9723 was marked FREE in the latest copy of the Prometheus wiki's default port
# allocations that could be read (it ends at 9745); the live page could not be checked
# and the 9100-9999 range was reported fully allocated in 2023. 9603 belongs to the
# xenlight exporter. Check the wiki (and register the port) before a release.
DEFAULT_PORT = 9723

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")


@dataclass(frozen=True)
class Listen:
    """Where to listen: host "" means every address (IPv6 and IPv4 when available)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    listen_address: Listen = Listen("", DEFAULT_PORT)
    web_config_file: Path | None = None
    telemetry_path: str = "/metrics"
    interval: float = 30.0
    attempts: int = 3
    sweep_timeout: float = 30.0
    stale_after: float = 3.0
    max_domain_series: int = 100
    textfile: Path | None = None
    log_level: str = "info"
    log_format: str = "auto"
    watch: bool = False
    disabled_collectors: tuple[str, ...] = ()  # collectors.GROUPS left out of the exports
    disable_exporter_metrics: bool = False     # no process_* and python_info

    @property
    def stale_seconds(self) -> float:
        return self.stale_after * self.interval


KEYS = tuple(f.name for f in fields(Config))

# One line per key for `--help` and the example config.
HELP = {
    "listen_address": "host:port to serve on (an empty host: every address)",
    "web_config_file": "exporter-toolkit web configuration (TLS, basic auth); YAML",
    "telemetry_path": "the URL path the metrics are served on",
    "interval": "seconds between sweeps (a number, or a duration such as 30s or 1m)",
    "attempts": "samples per quantity before a moving value is called drift",
    "sweep_timeout": "a sweep running longer is stuck: stop the systemd watchdog",
    "stale_after": "data older than this many intervals is stale (xenprobe_stale 1)",
    "max_domain_series": "cap on xenprobe_domain_mismatch series (0: none)",
    "textfile": "also write each sweep to this *.prom file (node_exporter textfile)",
    "log_level": "one of " + ", ".join(LOG_LEVELS),
    "log_format": "auto (JSON unless stderr is a terminal), json or console",
    "watch": "also watch every process's privcmd hypercalls (xenprobe watch) and export "
             "the damaged ones; needs a writable tracefs (true or false; read at start)",
    "disabled_collectors": "quantity groups left out of the exports, comma-separated "
                           "(see --no-collector.GROUP)",
    "disable_exporter_metrics": "true: leave out process_* and python_info",
}

METAVARS = {"listen_address": "HOST:PORT", "web_config_file": "FILE",
            "telemetry_path": "URLPATH", "interval": "SECONDS",
            "attempts": "N", "sweep_timeout": "SECONDS", "stale_after": "INTERVALS",
            "max_domain_series": "N", "textfile": "PATH", "log_level": "LEVEL",
            "log_format": "FORMAT", "watch": "BOOL", "disabled_collectors": "GROUPS",
            "disable_exporter_metrics": "BOOL"}


# Prometheus's and its exporters' names for the same flags, accepted beside ours.
PROMETHEUS_FLAGS = {"listen_address": ("--web.listen-address",),
                    "web_config_file": ("--web.config.file",),
                    "telemetry_path": ("--web.telemetry-path",),
                    "log_level": ("--log.level",), "log_format": ("--log.format",)}


def default_text(key: str) -> str:
    """The built-in default of `key` as `--help` shows it."""
    value = getattr(Config(), key)
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: object, where: Where, lo: float, hi: float, *, lo_open: bool = False
             ) -> float:
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise where.fail(f"expected seconds (30) or a duration (30s, 1m, 1m30s), "
                                 f"got {value!r}") from None
            seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = _float(value, where, hi)
    else:
        raise where.fail(f"expected a number of seconds, got {value!r}")
    return _in_range(seconds, where, lo, hi, lo_open=lo_open, unit=" seconds")


def _float(value: int | float, where: Where, hi: float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond a double's range
        raise where.fail(f"must be at most {hi:g}, got a number of "
                         f"{len(str(abs(int(value))))} digits") from None


def _in_range(x: float, where: Where, lo: float, hi: float, *, lo_open: bool = False,
              unit: str = "") -> float:
    if not math.isfinite(x):
        raise where.fail(f"must be a finite number, got {x}")
    if (x <= lo if lo_open else x < lo) or x > hi:
        low = f"above {lo:g}" if lo_open else f"at least {lo:g}"
        raise where.fail(f"must be {low} and at most {hi:g}{unit}, got {x:g}")
    return x


def _number(value: object, where: Where, lo: float, hi: float) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise where.fail(f"expected a number, got {value!r}") from None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise where.fail(f"expected a number, got {value!r}")
    return _in_range(_float(value, where, hi), where, lo, hi)


def _integer(value: object, where: Where, lo: int, hi: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip(), 10)
        except ValueError:
            raise where.fail(f"expected a whole number, got {value!r}") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise where.fail(f"expected a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise where.fail(f"must be between {lo} and {hi}, got {value}")
    return value


def _groups(value: object, where: Where) -> tuple[str, ...]:
    """A list of collectors.GROUPS (the file), or the flags' comma list of toggles."""
    if isinstance(value, str):
        names = collectors.toggled((), value)
    elif isinstance(value, list) and all(isinstance(x, str) for x in value):
        names = tuple(sorted(set(value)))
    else:
        raise where.fail(f"expected a list of collector groups, got {value!r}")
    unknown = [n for n in names if n not in collectors.GROUPS]
    if unknown:
        raise where.fail(f"unknown collector group {unknown[0]!r} (known: "
                         f"{', '.join(collectors.GROUPS)})")
    return names


def _boolean(value: object, where: Where) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise where.fail(f"expected true or false, got {value!r}")


def _choice(value: object, where: Where, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise where.fail(f"expected one of {', '.join(choices)}, got {value!r}")
    return value.lower()


def _path(value: object, where: Where) -> Path | None:
    if not isinstance(value, str):
        raise where.fail(f"expected a path (a string), got {value!r}")
    if not value.strip():
        return None  # "" turns the feature off, so a flag can override a file's value
    if "\0" in value:
        raise where.fail("a path cannot contain a NUL character")
    return where.resolve(Path(value)).absolute()


def parse_listen(value: object, where: Where) -> Listen:
    if not isinstance(value, str):
        raise where.fail(f"expected host:port (for example :{DEFAULT_PORT} or "
                         f"127.0.0.1:{DEFAULT_PORT}), got {value!r}")
    text = value.strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]*)\]:(\w*)|([^\[\]:\s]*):(\w*)", text)
    if m is None:
        raise where.fail(f"expected host:port (for example :{DEFAULT_PORT}, "
                         f"127.0.0.1:{DEFAULT_PORT} or [::1]:{DEFAULT_PORT}), got {value!r}")
    host = m.group(1) if m.group(1) is not None else m.group(3)
    port_text = m.group(2) if m.group(1) is not None else m.group(4)
    # ASCII digits only: str.isdigit() and int() also take Arabic-Indic or fullwidth
    # digits (a port nobody reading the flag would expect), and isdigit() takes a
    # superscript 2, which int() refuses.
    if not re.fullmatch(r"[0-9]+", port_text) or not 0 <= int(port_text) <= 65535:
        raise where.fail(f"the port must be a number from 0 to 65535, got {port_text!r}")
    _check_host(host, where)
    return Listen(host, int(port_text))


def _check_host(host: str, where: Where) -> None:
    """A host that socket.getaddrinfo can be asked about: it encodes a str host with the
    'idna' codec first, which raises UnicodeError (not gaierror) for a label longer than
    63 characters, an empty label ('a..b') or a character IDNA cannot map."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in host):
        raise where.fail(f"the host {host!r} contains a control character")
    try:
        host.encode("idna")
    except UnicodeError as e:
        why = re.search(r"\(UnicodeError: (.*)\)$", str(e))
        raise where.fail(f"the host {host!r} is not a valid host name: "
                         f"{why.group(1) if why else e}") from None


# An absolute URL path of RFC 3986 path characters (3.3: pchar and "/"), which the
# request's path is compared with as it arrives.
_URL_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
_OTHER_PAGES = ("/", "/-/healthy")  # handler.respond's other pages


def _telemetry_path(value: object, where: Where) -> str:
    if not isinstance(value, str) or not _URL_PATH.fullmatch(value):
        raise where.fail(f"expected a URL path such as /metrics, got {value!r}")
    if value in _OTHER_PAGES:
        raise where.fail(f"{value} is the path of another page")
    return value


def _textfile(value: object, where: Where) -> Path | None:
    path = _path(value, where)
    if path is None:
        return None
    if not path.name.endswith(".prom"):
        raise where.fail(f"node_exporter's textfile collector reads only *.prom files, "
                         f"got {path.name!r}")
    try:
        if not path.parent.is_dir():
            raise where.fail(f"directory {path.parent} does not exist")
        if path.is_dir():
            raise where.fail(f"{path} is a directory")
    except OSError as e:  # a name too long, a loop of links...
        raise where.fail(f"cannot use {path}: {e.strerror}") from None
    return path


def _web_config(value: object, where: Where) -> Path | None:
    path = _path(value, where)
    try:
        if path is not None and not path.exists():
            raise where.fail(f"no such file: {path}")
        if path is not None and not path.is_file():  # a FIFO would block the reader
            raise where.fail(f"{path} is not a regular file")
    except OSError as e:  # a name too long, a loop of links...
        raise where.fail(f"cannot use {path}: {e.strerror}") from None
    return path


_Validator = Callable[[object, Where], Any]

VALIDATORS: dict[str, _Validator] = {
    "listen_address": parse_listen,
    "web_config_file": _web_config,
    "telemetry_path": _telemetry_path,
    # At least a second between sweeps: each takes the hypervisor's domctl/sysctl locks.
    "interval": lambda v, w: _seconds(v, w, 1, 86400),
    "attempts": lambda v, w: _integer(v, w, 1, 100),
    "sweep_timeout": lambda v, w: _seconds(v, w, 0, 3600, lo_open=True),
    "stale_after": lambda v, w: _number(v, w, 1, 1000),
    "max_domain_series": lambda v, w: _integer(v, w, 0, 100000),
    "textfile": _textfile,
    "log_level": lambda v, w: _choice(v, w, LOG_LEVELS),
    "log_format": lambda v, w: _choice(v, w, LOG_FORMATS),
    "watch": _boolean,
    "disabled_collectors": _groups,
    "disable_exporter_metrics": _boolean,
}


def textfile_flag(value: str, label: str) -> Path | None:
    """A textfile path given on the command line, checked like the config key."""
    return _textfile(value, Where(label))


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def read_file(path: Path, *, explicit: bool) -> dict[str, Any] | None:
    """The TOML table in `path`; None when the default file does not exist."""
    try:
        data = files.read_small(path)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        return None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except ValueError as e:  # the path itself (an embedded NUL)
        raise ConfigError(f"cannot read config file {path!r}: {e}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: not valid TOML: {e}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ConfigError(f"config file {path}: not valid TOML: nested too deeply"
                          ) from None
    except ValueError as e:  # an integer beyond int's digit limit (sys.int_info)
        raise ConfigError(f"config file {path}: not valid TOML: {e}") from None


def build(table: Mapping[str, Any] | None, source: Path | None,
          overrides: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the file's keys, then flags; each value validated."""
    values: dict[str, Any] = {}
    in_file = Where(f"config file {source}", base=source.parent if source else None)
    for key, value in (table or {}).items():
        if key not in VALIDATORS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise in_file.fail(f"unknown key {key!r}{hint}", f"known keys: {', '.join(KEYS)}")
        if isinstance(value, dict):
            raise in_file.key(key).fail("expected a value, got a table")
        values[key] = VALIDATORS[key](value, in_file.key(key))
    for key, text in (overrides or {}).items():
        if key == "disabled_collectors":  # the flags toggle groups on the file's list
            _groups(text, Where(flag(key)))
            values[key] = collectors.toggled(values.get(key, ()), text)
            continue
        values[key] = VALIDATORS[key](text, Where(flag(key)))
    return replace(Config(), **values)


def load(path: Path, *, explicit: bool, overrides: Mapping[str, str] | None = None
         ) -> Config:
    table = read_file(path, explicit=explicit)
    return build(table, path if table is not None else None, overrides)
