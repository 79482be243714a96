# SPDX-License-Identifier: GPL-2.0-only
"""The exporter-toolkit web configuration file (`--web.config.file` of Go exporters).

Same YAML, same keys and same meaning where Python's ssl module can do it:
`tls_server_config` (cert_file, key_file, client_auth_type, client_ca_file,
client_allowed_sans, min_version, max_version, cipher_suites for TLS 1.2,
prefer_server_cipher_suites), `http_server_config` (headers, http2), and
`basic_auth_users` with bcrypt hashes. Keys it cannot honour (inline certificates,
curve_preferences, rate_limit, RequireAnyClientCert) are refused by name rather than
silently ignored; docs/webconfig.md lists each key and why. Relative paths are relative
to the file's directory, as in exporter-toolkit (web/tls_config.go). Like
exporter-toolkit, the file is re-read when it (or a file it names) changes, so
certificates can be rotated without a restart.

Every way a file can be wrong ends in ConfigError, whatever the cause: a reload that
fails keeps the configuration in force and says so.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import os
import re
import ssl
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import structlog
import yaml

from xenprobe.support.errors import ConfigError

log = structlog.get_logger("xenprobe.exporter.web.config")

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# exporter-toolkit's client_auth_type values (web/tls_config.go ConfigToTLSConfig) and
# what OpenSSL, through Python's ssl module, can do for each. Python's ssl verifies
# every certificate it asks for and has no verify callback, so it cannot require a
# certificate without verifying it. RequestClientCert in Go asks for a certificate
# and never checks or requires it: every client gets in, which is what CERT_NONE
# gives (xenprobe just does not ask).
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
CLIENT_AUTH_UNSUPPORTED = {
    "RequireAnyClientCert": "requires a client certificate without verifying it, which "
                            "Python's ssl module cannot do",
    "RequireClientCert": "(exporter-toolkit's old name for RequireAnyClientCert) requires "
                         "a client certificate without verifying it, which Python's ssl "
                         "module cannot do",
}

# Go's cipher suite names (crypto/tls CipherSuites(), the list exporter-toolkit accepts)
# and OpenSSL's names for the same suites (`openssl ciphers -stdname`). The TLS 1.3 ones
# are not configurable in Go either (crypto/tls ignores them in Config.CipherSuites).
CIPHERS_TLS12 = {
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
CIPHERS_TLS13 = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                 "TLS_CHACHA20_POLY1305_SHA256")

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
_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TOP_UNSUPPORTED = {"rate_limit": "not supported by xenprobe; remove it"}


@dataclass(frozen=True)
class TLS:
    context: ssl.SSLContext
    allowed_sans: tuple[str, ...] = ()
    # What the TLS setting was made from (its YAML and its files' identities): a
    # connection made under another fingerprint is not served once this one is in force.
    fingerprint: str = ""


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


def _ciphers(ctx: _Ctx, where: str, context: ssl.SSLContext, value: object) -> None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str)
                                                           for v in value):
        raise ctx.fail(where, "expected a non-empty list of cipher suite names")
    unknown = [v for v in value if v not in CIPHERS_TLS12 and v not in CIPHERS_TLS13]
    if unknown:
        raise ctx.fail(where, f"unknown cipher suite {unknown[0]!r} (Go's names, e.g. "
                       "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
    wanted = [CIPHERS_TLS12[v] for v in value if v in CIPHERS_TLS12]
    if not wanted:
        raise ctx.fail(where, "only TLS 1.3 suites are listed; they are not "
                       "configurable (in Go either), so TLS 1.2 would have no suite left; "
                       "add TLS 1.2 suites or remove cipher_suites")
    try:
        context.set_ciphers(":".join(wanted))
    except ssl.SSLError:
        raise ctx.fail(where, "none of these suites is available in this OpenSSL at "
                       "its security level") from None
    have = {c["name"] for c in context.get_ciphers()}
    missing = [go for go in value if go in CIPHERS_TLS12 and CIPHERS_TLS12[go] not in have]
    if missing:
        raise ctx.fail(where, f"{missing[0]} is not available in this OpenSSL at its "
                       "security level; remove it")


def _fingerprint(raw: Mapping[str, Any], files: list[Path]) -> str:
    return repr((sorted((str(k), repr(v)) for k, v in raw.items()),
                 [(str(f), _signature((f,))) for f in files]))


def _tls(ctx: _Ctx, raw: Mapping[str, Any]) -> tuple[TLS, list[Path]]:
    where = "tls_server_config"
    _check_keys(ctx, where, raw, _TLS_KEYS, _TLS_UNSUPPORTED)
    for name in ("cert_file", "key_file"):
        if name not in raw:
            raise ctx.fail(where, f"missing {name}")
    cert = ctx.file(f"{where}.cert_file", raw["cert_file"])
    key = ctx.file(f"{where}.key_file", raw["key_file"])
    files: list[Path] = [cert, key]
    lowest = _version(ctx, f"{where}.min_version", raw.get("min_version", "TLS12"))
    highest = _version(ctx, f"{where}.max_version", raw.get("max_version", "TLS13"))
    if highest < ssl.TLSVersion.TLSv1_2:
        raise ctx.fail(f"{where}.max_version",
                       f"{raw['max_version']} would let no client in: OpenSSL 3 refuses "
                       "TLS 1.0 and 1.1 at its default security level; use TLS12 or TLS13")
    if lowest > highest:
        raise ctx.fail(where, "min_version is above max_version")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLS10/TLS11 are deprecated names, still honoured
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version, context.maximum_version = lowest, highest
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise ctx.fail(where, f"cannot load cert_file {cert} with key_file {key}: "
                       f"{getattr(e, 'reason', None) or e}") from None
    if "cipher_suites" in raw:
        _ciphers(ctx, f"{where}.cipher_suites", context, raw["cipher_suites"])
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise ctx.fail(f"{where}.prefer_server_cipher_suites",
                       f"expected true or false, got {prefer!r}")
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    auth = raw.get("client_auth_type", "NoClientCert")
    if auth in CLIENT_AUTH_UNSUPPORTED:
        raise ctx.fail(f"{where}.client_auth_type",
                       f"{auth} is not supported: {CLIENT_AUTH_UNSUPPORTED[auth]}; use "
                       "RequireAndVerifyClientCert (or VerifyClientCertIfGiven)")
    if auth not in CLIENT_AUTH:
        raise ctx.fail(f"{where}.client_auth_type",
                       f"expected one of {', '.join(CLIENT_AUTH)}, got {auth!r}")
    context.verify_mode = CLIENT_AUTH[auth]
    ca = raw.get("client_ca_file")
    if ca is not None and auth == "NoClientCert":
        raise ctx.fail(f"{where}.client_ca_file",
                       "a client CA is configured but client_auth_type is NoClientCert")
    if ca is not None:
        ca_path = ctx.file(f"{where}.client_ca_file", ca)
        files.append(ca_path)
        if context.verify_mode != ssl.CERT_NONE:
            try:
                context.load_verify_locations(cafile=ca_path)
            except (ssl.SSLError, OSError) as e:
                raise ctx.fail(f"{where}.client_ca_file",
                               f"cannot load {ca_path}: {getattr(e, 'reason', None) or e}"
                               ) from None
    elif context.verify_mode != ssl.CERT_NONE:
        # Go verifies against the system's roots when no client CA is given.
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    sans = raw.get("client_allowed_sans", [])
    if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
        raise ctx.fail(f"{where}.client_allowed_sans", "expected a list of strings")
    if sans and context.verify_mode == ssl.CERT_NONE:
        # Names in a certificate nobody verified prove nothing.
        raise ctx.fail(f"{where}.client_allowed_sans",
                       "needs a client_auth_type that verifies client certificates "
                       "(VerifyClientCertIfGiven or RequireAndVerifyClientCert)")
    return TLS(context, tuple(sans), _fingerprint(raw, files)), files


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
        match = BCRYPT.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None:
            raise ctx.fail(where, "expected a bcrypt hash ($2y$10$... as made by "
                           "`htpasswd -nBC 10 \"\" | tr -d ':\\n'`), not a password")
        cost = int(match.group(1))
        if cost not in BCRYPT_COSTS:
            raise ctx.fail(where, f"bcrypt cost {cost} is outside "
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


def _shape(ctx: _Ctx, text: str) -> None:
    """Refuse, before PyYAML sees it, what would make it slow: its pure-Python scanner
    is quadratic in nesting (600 unclosed '[' take seconds, 2,000 half a minute), and
    the file is re-read by the server that answers scrapes."""
    depth = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise ctx.fail("(file)", f"nested more than {MAX_NESTING} levels deep")
        elif ch in "]}":
            depth = max(0, depth - 1)
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) - len(line.lstrip(" ")) > MAX_INDENT:
            raise ctx.fail(f"(line {number})",
                           f"indented more than {MAX_INDENT} columns")


def _parse(path: Path) -> WebConfig:
    ctx = _Ctx(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read web config {path}: {e.strerror}") from None
    if len(data) > MAX_BYTES:
        raise ctx.fail("(file)", f"larger than {MAX_BYTES // 1024} KiB; a web config is "
                       "a few lines")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"web config {path}: not UTF-8 text") from None
    _shape(ctx, text)
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

# The dummy hash compared against when the user is unknown, so a wrong user name costs
# as much as a wrong password (exporter-toolkit does the same, at cost 10).
@functools.cache
def _dummy() -> bytes:
    return bcrypt.hashpw(b"xenprobe", bcrypt.gensalt(10))


class Verdict(enum.Enum):
    OK = "ok"
    DENIED = "denied"
    BUSY = "busy"  # too many password checks already waiting: retry later


class BasicAuth:
    """Checks user and password against bcrypt hashes, at bounded cost.

    bcrypt is slow by design, so: successes are remembered (Prometheus sends the same
    credentials on every scrape; a changed hash is another key), one hash is checked at
    a time (as exporter-toolkit's bcryptMtx), and at most WAITERS requests may wait for
    that: the rest are told to retry (429) instead of holding the workers that answer
    scrapers. Failures are not remembered, so nobody can push the successes out.

    Passwords are cut to 72 bytes first, as Go's bcrypt (and htpasswd) use only those:
    the same password works here and in node_exporter, whatever the bcrypt version.
    """

    CACHE = 64
    WAITERS = 2

    def __init__(self) -> None:
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self._hashing = threading.Lock()
        self._waiters = threading.BoundedSemaphore(self.WAITERS)

    def check(self, users: Mapping[str, bytes], user: str, password: str) -> Verdict:
        hashed = users.get(user)
        secret = password.encode()
        key = hashlib.sha256(b"\0".join([user.encode(), secret, hashed or b""])).digest()
        if hashed is not None:
            with self._lock:
                if key in self._ok:
                    self._ok.move_to_end(key)
                    return Verdict.OK
        if not self._waiters.acquire(blocking=False):
            return Verdict.BUSY
        try:
            with self._hashing:
                good = _bcrypt_check(secret, hashed or _dummy()) and hashed is not None
        finally:
            self._waiters.release()
        if not good:
            return Verdict.DENIED
        with self._lock:
            self._ok[key] = None
            while len(self._ok) > self.CACHE:
                self._ok.popitem(last=False)
        return Verdict.OK


def _bcrypt_check(secret: bytes, hashed: bytes) -> bool:
    try:
        # Go's bcrypt keys Blowfish with the first 72 bytes of password + NUL; so do the
        # C implementations. bcrypt >= 5 refuses longer input instead, so cut it here.
        return bool(bcrypt.checkpw(secret[:72], hashed))
    except ValueError:
        return False  # a NUL in the password (C strings), or a hash it cannot read
