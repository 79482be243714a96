# SPDX-License-Identifier: GPL-2.0-only
"""The TLS context of a web config's `tls_server_config`, as exporter-toolkit builds it.

Go's names (versions, client_auth_type, cipher suites) mapped to what Python's ssl module
(OpenSSL) can do, and refused by name where it cannot; the context is built while the
table is read, because OpenSSL alone says whether a cipher suite is available. Relative
paths are relative to the file's directory, as in exporter-toolkit (web/tls_config.go).
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xenprobe.support import files as input_files
from xenprobe.support.keys import Where

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


@dataclass(frozen=True)
class TLS:
    context: ssl.SSLContext
    allowed_sans: tuple[str, ...] = ()
    # What the TLS setting was made from (its YAML and its files' identities): a
    # connection made under another fingerprint is not served once this one is in force.
    fingerprint: str = ""


def _file(where: Where, value: object) -> Path:
    if not isinstance(value, str) or not value:
        raise where.fail(f"expected a file path, got {value!r}")
    path = where.resolve(Path(value))
    try:
        if not path.is_file():
            raise where.fail(f"no such file: {path}")
    except OSError as e:  # a name too long, a loop of links...
        raise where.fail(f"cannot use {path}: {e.strerror}") from None
    return path


def _version(where: Where, value: object) -> ssl.TLSVersion:
    if value not in TLS_VERSIONS:
        raise where.fail(f"expected one of {', '.join(TLS_VERSIONS)}, got {value!r}")
    return TLS_VERSIONS[str(value)]


def _ciphers(where: Where, context: ssl.SSLContext, value: object) -> None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str)
                                                           for v in value):
        raise where.fail("expected a non-empty list of cipher suite names")
    unknown = [v for v in value if v not in CIPHERS_TLS12 and v not in CIPHERS_TLS13]
    if unknown:
        raise where.fail(f"unknown cipher suite {unknown[0]!r} (Go's names, e.g. "
                         "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
    wanted = [CIPHERS_TLS12[v] for v in value if v in CIPHERS_TLS12]
    if not wanted:
        raise where.fail("only TLS 1.3 suites are listed; they are not "
                         "configurable (in Go either), so TLS 1.2 would have no suite left; "
                         "add TLS 1.2 suites or remove cipher_suites")
    try:
        context.set_ciphers(":".join(wanted))
    except ssl.SSLError:
        raise where.fail("none of these suites is available in this OpenSSL at "
                         "its security level") from None
    have = {c["name"] for c in context.get_ciphers()}
    missing = [go for go in value if go in CIPHERS_TLS12 and CIPHERS_TLS12[go] not in have]
    if missing:
        raise where.fail(f"{missing[0]} is not available in this OpenSSL at its "
                         "security level; remove it")


def _fingerprint(raw: Mapping[str, Any], files: list[Path]) -> str:
    return repr((sorted((str(k), repr(v)) for k, v in raw.items()),
                 [(str(f), input_files.signature((f,))) for f in files]))


def server_tls(where: Where, raw: Mapping[str, Any]) -> tuple[TLS, list[Path]]:
    """The TLS setting of `raw` (a tls_server_config whose keys are known), and the
    files it was built from; ConfigError names the key at fault."""
    for name in ("cert_file", "key_file"):
        if name not in raw:
            raise where.fail(f"missing {name}")
    cert = _file(where.key("cert_file"), raw["cert_file"])
    key = _file(where.key("key_file"), raw["key_file"])
    files: list[Path] = [cert, key]
    lowest = _version(where.key("min_version"), raw.get("min_version", "TLS12"))
    highest = _version(where.key("max_version"), raw.get("max_version", "TLS13"))
    if highest < ssl.TLSVersion.TLSv1_2:
        raise where.key("max_version").fail(
            f"{raw['max_version']} would let no client in: OpenSSL 3 refuses "
            "TLS 1.0 and 1.1 at its default security level; use TLS12 or TLS13")
    if lowest > highest:
        raise where.fail("min_version is above max_version")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLS10/TLS11 are deprecated names, still honoured
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version, context.maximum_version = lowest, highest
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise where.fail(f"cannot load cert_file {cert} with key_file {key}: "
                         f"{getattr(e, 'reason', None) or e}") from None
    if "cipher_suites" in raw:
        _ciphers(where.key("cipher_suites"), context, raw["cipher_suites"])
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise where.key("prefer_server_cipher_suites").fail(
            f"expected true or false, got {prefer!r}")
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    auth = raw.get("client_auth_type", "NoClientCert")
    if auth in CLIENT_AUTH_UNSUPPORTED:
        raise where.key("client_auth_type").fail(
            f"{auth} is not supported: {CLIENT_AUTH_UNSUPPORTED[auth]}; use "
            "RequireAndVerifyClientCert (or VerifyClientCertIfGiven)")
    if auth not in CLIENT_AUTH:
        raise where.key("client_auth_type").fail(
            f"expected one of {', '.join(CLIENT_AUTH)}, got {auth!r}")
    context.verify_mode = CLIENT_AUTH[auth]
    ca = raw.get("client_ca_file")
    if ca is not None and auth == "NoClientCert":
        raise where.key("client_ca_file").fail(
            "a client CA is configured but client_auth_type is NoClientCert")
    if ca is not None:
        ca_path = _file(where.key("client_ca_file"), ca)
        files.append(ca_path)
        if context.verify_mode != ssl.CERT_NONE:
            try:
                context.load_verify_locations(cafile=ca_path)
            except (ssl.SSLError, OSError) as e:
                raise where.key("client_ca_file").fail(
                    f"cannot load {ca_path}: {getattr(e, 'reason', None) or e}") from None
    elif context.verify_mode != ssl.CERT_NONE:
        # Go verifies against the system's roots when no client CA is given.
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    sans = raw.get("client_allowed_sans", [])
    if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
        raise where.key("client_allowed_sans").fail("expected a list of strings")
    if sans and context.verify_mode == ssl.CERT_NONE:
        # Names in a certificate nobody verified prove nothing.
        raise where.key("client_allowed_sans").fail(
            "needs a client_auth_type that verifies client certificates "
            "(VerifyClientCertIfGiven or RequireAndVerifyClientCert)")
    return TLS(context, tuple(sans), _fingerprint(raw, files)), files
