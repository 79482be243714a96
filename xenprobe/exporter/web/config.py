# SPDX-License-Identifier: GPL-2.0-only
"""The exporter-toolkit web configuration file (`--web.config.file` of Go exporters).

Same YAML, same keys and same meaning where Python's ssl module can do it:
`tls_server_config` (cert_file, key_file, client_auth_type, client_ca_file,
client_allowed_sans, min_version, max_version, cipher_suites for TLS 1.2,
prefer_server_cipher_suites), `http_server_config` (headers, http2), and
`basic_auth_users` with bcrypt hashes. Keys it cannot honour (inline certificates,
curve_preferences, rate_limit, RequireAnyClientCert) are refused by name rather than
silently ignored; docs/webconfig.md lists each key and why. This module reads the file
and its keys; web/tls.py builds the TLS context, web/auth.py checks passwords and
web/watcher.py re-reads the file when it changes.

Every way a file can be wrong ends in ConfigError, whatever the cause: a reload that
fails keeps the configuration in force and says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xenprobe.exporter.web.tls import TLS, server_tls
from xenprobe.support.errors import ConfigError
from xenprobe.support.keys import Table, Where

# bcrypt hashes: $2a$/$2b$/$2y$, a two-digit cost, 53 characters of bcrypt's base64.
# Go's bcrypt accepts costs 4..31, but cost 31 is about 2^21 times cost 10 (hours of
# CPU per check); htpasswd makes 4..17, so that is what xenprobe accepts.
BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_COSTS = range(4, 18)

# Bounds on the file, so that reading it stays quick (see _shape); a web config with
# 800 users is about 60 KiB.
MAX_BYTES = 64 * 1024
MAX_NESTING = 32
MAX_INDENT = 64

# How parse words a problem its checks did not foresee (the fuzz target looks for it).
UNFORESEEN = "cannot use it: "

# exporter-toolkit allows only these response headers, and checks two of their values.
HEADERS = {
    "content-security-policy": "Content-Security-Policy",
    "x-frame-options": "X-Frame-Options",
    "x-content-type-options": "X-Content-Type-Options",
    "x-xss-protection": "X-XSS-Protection",
    "strict-transport-security": "Strict-Transport-Security",
}
HEADER_VALUES = {"x-frame-options": ("deny", "sameorigin"),
                 "x-content-type-options": ("nosniff",)}

_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file",
             "client_allowed_sans", "min_version", "max_version", "cipher_suites",
             "prefer_server_cipher_suites"}
_TLS_UNSUPPORTED = {
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
    "client_ca": "an inline client CA is not supported; use client_ca_file",
    "curve_preferences": "not supported (Python's ssl module can set one curve, not a "
                         "list; OpenSSL's defaults apply); remove it",
}
_HTTP_KEYS = {"http2", "headers"}
_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TOP_UNSUPPORTED = {"rate_limit": "not supported by xenprobe; remove it"}


@dataclass(frozen=True)
class WebConfig:
    tls: TLS | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()
    files: tuple[Path, ...] = ()  # every file it was built from, to notice changes


def _mapping(where: Where, value: object) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where.fail(f"expected a mapping, got {value!r}")
    return value


def _table(where: Where, value: object) -> Table:
    return Table(where, _mapping(where, value))


def _check_keys(table: Table, known: set[str], unsupported: Mapping[str, str]) -> None:
    unknown = table.unknown(known)
    if unknown and unknown[0] in unsupported:
        raise table.fail(unknown[0], unsupported[str(unknown[0])])
    if unknown:
        raise table.fail(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")


def _headers(table: Table) -> tuple[tuple[str, str], ...]:
    _check_keys(table, _HTTP_KEYS, {})
    if not isinstance(table.peek("http2", True), bool):
        raise table.fail("http2", "expected true or false")
    out = []
    headers = _table(table.where.key("headers"), table.peek("headers"))
    for name, value in headers.mapping.items():
        lower = str(name).lower()
        if lower not in HEADERS:
            raise headers.fail(name, "not an allowed header (allowed: "
                               f"{', '.join(HEADERS.values())})")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise headers.fail(name, "expected a one-line string")
        if lower in HEADER_VALUES and value.lower() not in HEADER_VALUES[lower]:
            raise headers.fail(name, f"expected one of {', '.join(HEADER_VALUES[lower])}, "
                               f"got {value!r}")
        out.append((HEADERS[lower], value))
    return tuple(out)


def _users(table: Table) -> dict[str, bytes]:
    users = {}
    for user, hashed in table.mapping.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise table.fail(user, "a user name must be a non-empty string without ':'")
        match = BCRYPT.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None:
            raise table.fail(user, "expected a bcrypt hash ($2y$10$... as made by "
                             "`htpasswd -nBC 10 \"\" | tr -d ':\\n'`), not a password")
        cost = int(match.group(1))
        if cost not in BCRYPT_COSTS:
            raise table.fail(user, f"bcrypt cost {cost} is outside "
                             f"{BCRYPT_COSTS.start}..{BCRYPT_COSTS.stop - 1} (htpasswd's "
                             "range); each step doubles the work of every password check")
        users[user] = hashed.encode()
    return users


def parse(path: Path) -> WebConfig:
    """Read and check a web config file; ConfigError names the key at fault. Nothing
    else escapes: input the checks did not foresee is still a ConfigError."""
    try:
        return _parse(path)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"web config {path}: nested too deeply to read") from None
    except Exception as e:  # what the checks did not foresee is still the file's fault
        raise ConfigError(f"web config {path}: {UNFORESEEN}"
                          f"{' '.join(str(e).split()) or type(e).__name__}") from None


def _shape(where: Where, text: str) -> None:
    """Refuse, before PyYAML sees it, what would make it slow: its pure-Python scanner
    is quadratic in nesting (600 unclosed '[' take seconds, 2,000 half a minute), and
    the file is re-read by the server that answers scrapes."""
    depth = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise where.key("(file)").fail(f"nested more than {MAX_NESTING} levels deep")
        elif ch in "]}":
            depth = max(0, depth - 1)
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) - len(line.lstrip(" ")) > MAX_INDENT:
            raise where.key(f"(line {number})").fail(
                f"indented more than {MAX_INDENT} columns")


def _parse(path: Path) -> WebConfig:
    where = Where(f"web config {path}", base=path.parent)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read web config {path}: {e.strerror}") from None
    if len(data) > MAX_BYTES:
        raise where.key("(file)").fail(f"larger than {MAX_BYTES // 1024} KiB; a web "
                                       "config is a few lines")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise where.fail("not UTF-8 text") from None
    _shape(where, text)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise where.fail(f"not valid YAML: {' '.join(str(e).split())}") from None
    top = Table(where, _mapping(where.key("(top level)"), doc))
    _check_keys(top, _TOP_KEYS, _TOP_UNSUPPORTED)
    tls_table = _table(where.key("tls_server_config"), top.peek("tls_server_config"))
    tls: TLS | None = None
    files: list[Path] = []
    if tls_table.mapping:
        _check_keys(tls_table, _TLS_KEYS, _TLS_UNSUPPORTED)
        tls, files = server_tls(tls_table.where, tls_table.mapping)
    headers = _headers(_table(where.key("http_server_config"),
                              top.peek("http_server_config")))
    users = _users(_table(where.key("basic_auth_users"), top.peek("basic_auth_users")))
    return WebConfig(tls, users, headers, (path, *files))
