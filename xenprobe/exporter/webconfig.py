"""The exporter-toolkit web configuration file (`--web.config.file` of Go exporters).

Same YAML, same keys and same meaning where Python's ssl module can do it:
`tls_server_config` (cert_file, key_file, client_auth_type, client_ca_file,
client_allowed_sans, min_version, max_version, prefer_server_cipher_suites),
`http_server_config.headers`, and `basic_auth_users` with bcrypt hashes. Keys it cannot
honour (inline certificates, cipher_suites, curve_preferences, rate_limit, the two
client auth types that accept unverified certificates) are refused by name rather
than silently ignored. Relative paths are relative to the file's directory, as in
exporter-toolkit. Like exporter-toolkit, the file is re-read when it (or a file it
names) changes, so certificates can be rotated without a restart.
"""

from __future__ import annotations

import functools
import hashlib
import os
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import structlog
import yaml

from xenprobe.errors import ConfigError

log = structlog.get_logger("xenprobe.exporter.webconfig")

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go can ask for a client certificate without verifying it; OpenSSL through Python's
# ssl module always verifies what it asks for, so these would mean something else here.
CLIENT_AUTH_UNSUPPORTED = ("RequestClientCert", "RequireAnyClientCert")

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
             "client_allowed_sans", "min_version", "max_version",
             "prefer_server_cipher_suites"}
_TLS_UNSUPPORTED = {
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
    "client_ca": "an inline client CA is not supported; use client_ca_file",
    "cipher_suites": "not supported (Python's ssl module uses OpenSSL's suite names and "
                     "defaults); remove it",
    "curve_preferences": "not supported (OpenSSL's defaults apply); remove it",
}
_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TOP_UNSUPPORTED = {"rate_limit": "not supported by xenprobe; remove it"}


@dataclass(frozen=True)
class TLS:
    context: ssl.SSLContext
    allowed_sans: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebConfig:
    tls: TLS | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()
    files: tuple[Path, ...] = ()  # every file it was built from, to notice changes


class _Ctx:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"web config {self.path}: {where}: {problem}")

    def file(self, where: str, value: object) -> Path:
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a file path, got {value!r}")
        path = Path(value)
        path = path if path.is_absolute() else self.path.parent / path
        try:
            if not path.is_file():
                raise self.fail(where, f"no such file: {path}")
        except OSError as e:  # a name too long, a loop of links...
            raise self.fail(where, f"cannot use {path}: {e.strerror}") from None
        return path


def _table(ctx: _Ctx, where: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.fail(where, f"expected a mapping, got {value!r}")
    return value


def _check_keys(ctx: _Ctx, where: str, table: Mapping[str, Any], known: set[str],
                unsupported: Mapping[str, str]) -> None:
    for key in table:
        name = f"{where}.{key}" if where else str(key)
        if key in unsupported:
            raise ctx.fail(name, unsupported[key])
        if key not in known:
            raise ctx.fail(name, f"unknown key (known: {', '.join(sorted(known))})")


def _version(ctx: _Ctx, where: str, value: object) -> ssl.TLSVersion:
    if value not in TLS_VERSIONS:
        raise ctx.fail(where, f"expected one of {', '.join(TLS_VERSIONS)}, got {value!r}")
    return TLS_VERSIONS[str(value)]


def _tls(ctx: _Ctx, raw: Mapping[str, Any]) -> tuple[TLS, list[Path]]:
    where = "tls_server_config"
    _check_keys(ctx, where, raw, _TLS_KEYS, _TLS_UNSUPPORTED)
    for name in ("cert_file", "key_file"):
        if name not in raw:
            raise ctx.fail(where, f"missing {name}")
    cert = ctx.file(f"{where}.cert_file", raw["cert_file"])
    key = ctx.file(f"{where}.key_file", raw["key_file"])
    files: list[Path] = [cert, key]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _version(ctx, f"{where}.min_version",
                                       raw.get("min_version", "TLS12"))
    context.maximum_version = _version(ctx, f"{where}.max_version",
                                       raw.get("max_version", "TLS13"))
    if context.minimum_version > context.maximum_version:
        raise ctx.fail(where, "min_version is above max_version")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ctx.fail(where, f"cannot load cert_file {cert} with key_file {key}: "
                       f"{getattr(e, 'reason', None) or e}") from None
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise ctx.fail(f"{where}.prefer_server_cipher_suites",
                       f"expected true or false, got {prefer!r}")
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    auth = raw.get("client_auth_type", "NoClientCert")
    if auth in CLIENT_AUTH_UNSUPPORTED:
        raise ctx.fail(f"{where}.client_auth_type",
                       f"{auth} is not supported (it accepts unverified client "
                       "certificates); use VerifyClientCertIfGiven or "
                       "RequireAndVerifyClientCert")
    if auth not in CLIENT_AUTH:
        raise ctx.fail(f"{where}.client_auth_type",
                       f"expected one of {', '.join(CLIENT_AUTH)}, got {auth!r}")
    context.verify_mode = CLIENT_AUTH[auth]
    ca = raw.get("client_ca_file")
    if ca is not None and auth == "NoClientCert":
        raise ctx.fail(f"{where}.client_ca_file",
                       "a client CA is configured but client_auth_type is NoClientCert")
    if ca is None and auth != "NoClientCert":
        raise ctx.fail(f"{where}.client_auth_type", f"{auth} needs client_ca_file")
    if ca is not None:
        ca_path = ctx.file(f"{where}.client_ca_file", ca)
        files.append(ca_path)
        try:
            context.load_verify_locations(cafile=ca_path)
        except (ssl.SSLError, OSError) as e:
            raise ctx.fail(f"{where}.client_ca_file",
                           f"cannot load {ca_path}: {getattr(e, 'reason', None) or e}"
                           ) from None
    sans = raw.get("client_allowed_sans", [])
    if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
        raise ctx.fail(f"{where}.client_allowed_sans", "expected a list of strings")
    if sans and auth == "NoClientCert":
        raise ctx.fail(f"{where}.client_allowed_sans",
                       "needs a client_auth_type that verifies client certificates")
    return TLS(context, tuple(sans)), files


def _headers(ctx: _Ctx, raw: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    where = "http_server_config"
    _check_keys(ctx, where, raw, {"http2", "headers"}, {})
    if not isinstance(raw.get("http2", True), bool):
        raise ctx.fail(f"{where}.http2", "expected true or false")
    out = []
    for name, value in _table(ctx, f"{where}.headers", raw.get("headers")).items():
        lower = str(name).lower()
        if lower not in HEADERS:
            raise ctx.fail(f"{where}.headers.{name}",
                           f"not an allowed header (allowed: {', '.join(HEADERS.values())})")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise ctx.fail(f"{where}.headers.{name}", "expected a one-line string")
        if lower in HEADER_VALUES and value.lower() not in HEADER_VALUES[lower]:
            raise ctx.fail(f"{where}.headers.{name}",
                           f"expected one of {', '.join(HEADER_VALUES[lower])}, got {value!r}")
        out.append((HEADERS[lower], value))
    return tuple(out)


def _users(ctx: _Ctx, raw: Mapping[str, Any]) -> dict[str, bytes]:
    users = {}
    for user, hashed in raw.items():
        where = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise ctx.fail(where, "a user name must be a non-empty string without ':'")
        if not (isinstance(hashed, str) and len(hashed) == 60
                and hashed[:4] in ("$2a$", "$2b$", "$2y$")):
            raise ctx.fail(where, "expected a bcrypt hash ($2y$10$... as made by "
                           "`htpasswd -nBC 10 \"\" | tr -d ':\\n'`), not a password")
        users[user] = hashed.encode()
    return users


def parse(path: Path) -> WebConfig:
    """Read and check a web config file; ConfigError names the key at fault."""
    ctx = _Ctx(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read web config {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"web config {path}: not UTF-8 text") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"web config {path}: not valid YAML: "
                          f"{' '.join(str(e).split())}") from None
    top = _table(ctx, "(top level)", doc)
    _check_keys(ctx, "", top, _TOP_KEYS, _TOP_UNSUPPORTED)
    tls_raw = _table(ctx, "tls_server_config", top.get("tls_server_config"))
    tls, files = _tls(ctx, tls_raw) if tls_raw else (None, [])
    headers = _headers(ctx, _table(ctx, "http_server_config",
                                   top.get("http_server_config")))
    users = _users(ctx, _table(ctx, "basic_auth_users", top.get("basic_auth_users")))
    return WebConfig(tls, users, headers, (path, *files))


# -- reloading ------------------------------------------------------------------------

def _signature(files: tuple[Path, ...]) -> tuple[object, ...]:
    out: list[object] = []
    for f in files:
        try:
            st = os.stat(f)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


class Watcher:
    """The web config in force, re-read when its file or a file it names changes.

    A change that does not parse is logged and leaves the previous configuration in
    force (as Prometheus does with a bad reload); `last_ok` says so for the metrics.
    """

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self.path = path
        self.config = parse(path) if path else WebConfig()
        self._seen = _signature(self.config.files)
        self.last_ok = True

    def replace(self, path: Path | None, config: WebConfig) -> None:
        with self._lock:
            self.path, self.config = path, config
            self._seen = _signature(config.files)
            self.last_ok = True

    def current(self) -> WebConfig:
        with self._lock:
            if self.path is None:
                return self.config
            now = _signature(self.config.files)
            if now == self._seen:
                return self.config
            self._seen = now
            try:
                self.config = parse(self.path)
                self._seen = _signature(self.config.files)
                self.last_ok = True
                log.info("web_config_reloaded", path=str(self.path))
            except ConfigError as e:
                self.last_ok = False
                log.error("web_config_reload_failed", error=e.message,
                          keeping="the previous web configuration")
            return self.config


# -- basic auth -----------------------------------------------------------------------

@functools.cache
def _dummy() -> bytes:
    """Compared against when the user is unknown, so a wrong user name costs as much
    time as a wrong password (exporter-toolkit does the same)."""
    return bcrypt.hashpw(b"xenprobe", bcrypt.gensalt(10))


class BasicAuth:
    """Checks Authorization headers; remembers recent successes, as bcrypt is slow by
    design and Prometheus sends the same credentials on every scrape."""

    CACHE = 64

    def __init__(self) -> None:
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, users: Mapping[str, bytes], user: str, password: str) -> bool:
        hashed = users.get(user)
        secret = password.encode()
        key = hashlib.sha256(b"\0".join([user.encode(), secret, hashed or b""])).digest()
        with self._lock:
            if hashed is not None and key in self._ok:
                self._ok.move_to_end(key)
                return True
        try:
            good = bcrypt.checkpw(secret, hashed or _dummy()) and hashed is not None
        except ValueError:
            good = False  # over bcrypt's 72 bytes, or a hash it cannot read
        if good:
            with self._lock:
                self._ok[key] = None
                while len(self._ok) > self.CACHE:
                    self._ok.popitem(last=False)
        return good
