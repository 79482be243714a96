# SPDX-License-Identifier: GPL-2.0-only
"""The exporter-toolkit web config: what parses, what is refused (by key), basic auth,
and re-reading on change."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from pathlib import Path

import bcrypt
import pytest

from tests.exporter_util import make_ca, make_cert
from xenprobe.exporter.web import config as webconfig
from xenprobe.exporter.web import tls
from xenprobe.exporter.web.auth import AuthResult, BasicAuth
from xenprobe.exporter.web.watcher import Watcher
from xenprobe.support.errors import ConfigError

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    make_cert(d, "server", ca, "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "other", ca, "DNS:other")
    return d


def write(d: Path, text: str) -> Path:
    path = d / "web.yml"
    path.write_text(text)
    return path


def test_an_empty_file_means_plain_http(tmp_path: Path) -> None:
    c = webconfig.parse(write(tmp_path, ""))
    assert c.tls is None and not c.users and c.headers == ()


def test_a_full_config(tmp_path: Path, pki: Path) -> None:
    for f in ("server.pem", "server.key", "ca.pem"):
        shutil.copy(pki / f, tmp_path / f)
    c = webconfig.parse(write(tmp_path, f"""
tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  client_allowed_sans: [scraper]
  min_version: TLS13
  prefer_server_cipher_suites: false
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    x-content-type-options: nosniff
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: {HASH}
"""))
    assert c.tls is not None
    assert c.tls.context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert c.tls.context.verify_mode == ssl.CERT_REQUIRED
    assert c.tls.allowed_sans == ("scraper",)
    assert dict(c.headers) == {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
                               "Strict-Transport-Security": "max-age=31536000"}
    assert set(c.users) == {"prometheus"}
    assert tmp_path / "server.pem" in c.files  # relative to the file's directory


BAD = [
    ("a: [", "not valid YAML"),
    ("- a\n- b\n", "(top level): expected a mapping"),
    ("tls_config: {}\n", "tls_config: unknown key"),
    # A YAML key may be null: it is still an unknown key, named as YAML wrote it.
    ("null: 1\n", ": None: unknown key (known: basic_auth_users, "),
    ("rate_limit: {interval: 1s, burst: 5}\n", "rate_limit: not supported"),
    ("tls_server_config: {cert_file: server.pem}\n", "tls_server_config: missing key_file"),
    ("tls_server_config: {cert_file: \"a\\0b\", key_file: server.key}\n",
     "tls_server_config.cert_file: no such file"),
    ("tls_server_config: {cert_file: nope.pem, key_file: server.key}\n",
     "tls_server_config.cert_file: no such file"),
    ("tls_server_config: {cert_file: server.pem, key_file: other.key}\n",
     "cannot load cert_file"),
    ("tls_server_config: {cert_file: garbage.pem, key_file: server.key}\n",
     "cannot load cert_file"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "min_version: TLS14}\n", "tls_server_config.min_version: expected one of"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "min_version: TLS13, max_version: TLS12}\n", "min_version is above max_version"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "client_auth_type: RequireAnyClientCert, client_ca_file: ca.pem}\n",
     "RequireAnyClientCert is not supported: requires a client certificate without "
     "verifying it"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "client_auth_type: RequireClientCert, client_ca_file: ca.pem}\n",
     "RequireClientCert is not supported"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "client_auth_type: RequestClientCert, client_allowed_sans: [x]}\n",
     "client_allowed_sans: needs a client_auth_type that verifies"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "max_version: TLS11}\n", "max_version: TLS11 would let no client in"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "client_auth_type: Sometimes}\n", "client_auth_type: expected one of"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "client_ca_file: ca.pem}\n", "client_auth_type is NoClientCert"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "client_allowed_sans: [x]}\n", "client_allowed_sans: needs a client_auth_type"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "client_auth_type: VerifyClientCertIfGiven, client_ca_file: ca.pem, "
     "client_allowed_sans: x}\n", "client_allowed_sans: expected a list"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "cipher_suites: [TLS_AES_128_GCM_SHA256]}\n",
     "cipher_suites: only TLS 1.3 suites are listed"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]}\n",
     "cipher_suites: unknown cipher suite 'ECDHE-RSA-AES128-GCM-SHA256' (Go's names"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "cipher_suites: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}\n",
     "cipher_suites: expected a non-empty list"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "curve_preferences: [X25519]}\n", "curve_preferences: not supported"),
    ("tls_server_config: {cert: '-----BEGIN', key_file: server.key}\n",
     "tls_server_config.cert: inline certificates are not supported"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.key, "
     "prefer_server_cipher_suites: 'yes'}\n", "expected true or false"),
    ("tls_server_config: [cert_file]\n", "tls_server_config: expected a mapping"),
    ("http_server_config: {http2: 'yes'}\n", "http_server_config.http2: expected true"),
    ("http_server_config: {headers: {X-Powered-By: me}}\n", "not an allowed header"),
    ("http_server_config: {headers: {X-Frame-Options: allow}}\n",
     "expected one of deny, sameorigin"),
    ("http_server_config: {headers: {X-Content-Type-Options: sniff}}\n",
     "expected one of nosniff"),
    ("http_server_config: {headers: {Content-Security-Policy: \"a\\nb\"}}\n",
     "one-line string"),
    ("http_server_config: {compress: true}\n", "http_server_config.compress: unknown key"),
    ("basic_auth_users: {prometheus: secret}\n", "not a password"),
    # Go's bcrypt takes cost 31: one check would take hours. htpasswd's range is 4..17.
    ("basic_auth_users: {prometheus: '$2y$31$" + HASH[7:] + "'}\n",
     "basic_auth_users.prometheus: bcrypt cost 31 is outside 4..17"),
    ("basic_auth_users: {prometheus: '$2y$03$" + HASH[7:] + "'}\n",
     "bcrypt cost 3 is outside 4..17"),
    ("basic_auth_users: {prometheus: '" + HASH[:-1] + "!'}\n", "not a password"),
    ("basic_auth_users: {prometheus: '$2x$10$" + HASH[7:] + "'}\n", "not a password"),
    ("a: " + "[" * 33 + "]" * 33 + "\n", "(file): nested more than 32 levels deep"),
    ("a: " + "[" * 3000 + "\n", "(file): nested more than 32 levels deep"),
    ("".join(" " * i + f"k{i}:\n" for i in range(70)), "(line 66): indented more than"),
    ("# " + "x" * 70000 + "\n", "(file): larger than 64 KiB"),
    ("basic_auth_users: {'a:b': " + HASH + "}\n", "without ':'"),
    ("basic_auth_users: [prometheus]\n", "basic_auth_users: expected a mapping"),
]


@pytest.mark.parametrize(("text", "problem"), BAD)
def test_bad_web_configs_name_the_key(tmp_path: Path, pki: Path, text: str,
                                      problem: str) -> None:
    for f in ("server.pem", "server.key", "other.key", "ca.pem"):
        shutil.copy(pki / f, tmp_path / f)
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        webconfig.parse(path)
    assert e.value.message.startswith(f"web config {path}")
    assert problem in e.value.message


def test_an_unreadable_web_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read web config"):
        webconfig.parse(tmp_path / "none.yml")
    (tmp_path / "bin.yml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        webconfig.parse(tmp_path / "bin.yml")


def test_basic_auth() -> None:
    auth = BasicAuth()
    # htpasswd -B writes $2y$, which bcrypt reads like $2b$.
    users = {"prometheus": HASH.encode(), "apache": HASH.replace("$2b$", "$2y$").encode()}
    assert auth.check(users, "prometheus", "secret") is AuthResult.OK
    assert auth.check(users, "prometheus", "secret") is AuthResult.OK  # remembered
    assert auth.check(users, "apache", "secret") is AuthResult.OK
    assert auth.check(users, "prometheus", "Secret") is AuthResult.DENIED
    assert auth.check(users, "nobody", "secret") is AuthResult.DENIED
    assert auth.check(users, "prometheus", "sec\0ret") is AuthResult.DENIED
    assert auth.check({"broken": b"$2b$04$" + b"!" * 53}, "broken", "secret") \
        is AuthResult.DENIED


def test_a_changed_hash_is_not_served_from_the_remembered_successes() -> None:
    auth = BasicAuth()
    assert auth.check({"p": HASH.encode()}, "p", "secret") is AuthResult.OK
    other = bcrypt.hashpw(b"other", bcrypt.gensalt(4))
    assert auth.check({"p": other}, "p", "secret") is AuthResult.DENIED


def test_passwords_over_72_bytes_behave_as_in_go() -> None:
    # Go's bcrypt (golang.org/x/crypto bcrypt.go expensiveBlowfishSetup) keys Blowfish
    # with password + NUL and reads 72 bytes of it: only the first 72 bytes count.
    # bcrypt 3.2.2 (Debian 12) cuts to 72 itself; bcrypt >= 5 raises ValueError.
    long = "x" * 72
    hashed = bcrypt.hashpw(long.encode(), bcrypt.gensalt(4))
    auth = BasicAuth()
    assert auth.check({"p": hashed}, "p", long + "anything after") is AuthResult.OK
    assert auth.check({"p": hashed}, "p", long[:71]) is AuthResult.DENIED


@pytest.mark.skipif(shutil.which("htpasswd") is None, reason="needs htpasswd "
                    "(apache2-utils)")
def test_hashes_made_by_htpasswd(tmp_path: Path) -> None:
    auth = BasicAuth()
    for password in ("secret", "p" * 100):  # htpasswd too keeps the first 72 bytes
        out = subprocess.run(["htpasswd", "-nbBC", "5", "prometheus", password],
                             capture_output=True, text=True, check=True).stdout
        user, _, hashed = out.strip().partition(":")
        assert hashed.startswith("$2y$05$")
        path = write(tmp_path, f"basic_auth_users: {{{user}: '{hashed}'}}\n")
        users = webconfig.parse(path).users
        assert auth.check(users, "prometheus", password) is AuthResult.OK
        assert auth.check(users, "prometheus", password[:min(71, len(password) - 1)]
                          ) is AuthResult.DENIED
        if len(password) > 72:
            assert auth.check(users, "prometheus", password[:72] + "tail") is AuthResult.OK


def test_password_checks_are_bounded() -> None:
    """Uncached checks beyond WAITERS are told to retry; remembered ones never wait."""
    auth = BasicAuth()
    users = {"p": HASH.encode()}
    assert auth.check(users, "p", "secret") is AuthResult.OK
    held = [auth._waiters.acquire(blocking=False) for _ in range(BasicAuth.WAITERS)]
    try:
        assert all(held)  # as if WAITERS slow checks were under way
        assert auth.check(users, "p", "guess") is AuthResult.BUSY
        assert auth.check(users, "nobody", "guess") is AuthResult.BUSY
        assert auth.check(users, "p", "secret") is AuthResult.OK
    finally:
        for _ in held:
            auth._waiters.release()
    assert auth.check(users, "p", "guess") is AuthResult.DENIED


def test_client_auth_modes_map_to_what_ssl_can_do(tmp_path: Path, pki: Path) -> None:
    for f in ("server.pem", "server.key", "ca.pem"):
        shutil.copy(pki / f, tmp_path / f)
    modes = {"NoClientCert": ssl.CERT_NONE, "RequestClientCert": ssl.CERT_NONE,
             "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
             "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
    for mode, verify in modes.items():
        ca = "" if mode == "NoClientCert" else ", client_ca_file: ca.pem"
        c = webconfig.parse(write(tmp_path, "tls_server_config: {cert_file: server.pem, "
                                  f"key_file: server.key, client_auth_type: {mode}{ca}}}\n"))
        assert c.tls is not None and c.tls.context.verify_mode == verify, mode
    # No client CA: Go verifies against the system's roots, and so does xenprobe.
    c = webconfig.parse(write(tmp_path, "tls_server_config: {cert_file: server.pem, "
                              "key_file: server.key, client_auth_type: "
                              "RequireAndVerifyClientCert}\n"))
    assert c.tls is not None and c.tls.context.verify_mode == ssl.CERT_REQUIRED


def test_cipher_suites_take_gos_names(tmp_path: Path, pki: Path) -> None:
    for f in ("server.pem", "server.key"):
        shutil.copy(pki / f, tmp_path / f)
    c = webconfig.parse(write(tmp_path, """
tls_server_config:
  cert_file: server.pem
  key_file: server.key
  cipher_suites:
    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    - TLS_AES_128_GCM_SHA256
"""))
    assert c.tls is not None
    tls12 = {x["name"] for x in c.tls.context.get_ciphers() if x["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"}
    # The table agrees with OpenSSL's own map of standard names to its names.
    out = subprocess.run(["openssl", "ciphers", "-stdname", "ALL:@SECLEVEL=0"],
                         capture_output=True, text=True, check=True).stdout
    stdnames = {line.split()[0]: line.split()[2] for line in out.splitlines()
                if " - " in line}
    for go, openssl in tls.CIPHERS_TLS12.items():
        if go in stdnames:  # builds without 3DES do not list it at all
            assert stdnames[go] == openssl, go


def test_the_watcher_rereads_a_changed_file_and_keeps_the_last_good_one(
        tmp_path: Path) -> None:
    path = write(tmp_path, f"basic_auth_users: {{alice: {HASH}}}\n")
    watcher = Watcher(path)
    assert set(watcher.current().users) == {"alice"}
    path.write_text(f"basic_auth_users: {{bob: {HASH}}}\n# a longer file\n")
    assert set(watcher.current().users) == {"bob"} and watcher.last_ok
    path.write_text("basic_auth_users: {bob: plaintext}\n")
    assert set(watcher.current().users) == {"bob"}  # the bad change is not applied
    assert not watcher.last_ok
    path.write_text(f"basic_auth_users: {{carol: {HASH}}}\n")
    assert set(watcher.current().users) == {"carol"} and watcher.last_ok


def test_the_watcher_notices_a_rotated_certificate(tmp_path: Path, pki: Path) -> None:
    for f in ("server.pem", "server.key"):
        shutil.copy(pki / f, tmp_path / f)
    path = write(tmp_path, "tls_server_config: {cert_file: server.pem, key_file: "
                           "server.key}\n")
    watcher = Watcher(path)
    first = watcher.current().tls
    assert watcher.current().tls is first  # unchanged files: nothing re-read
    shutil.copy(pki / "other.pem", tmp_path / "new.pem")
    shutil.copy(pki / "other.key", tmp_path / "new.key")
    os.replace(tmp_path / "new.pem", tmp_path / "server.pem")
    os.replace(tmp_path / "new.key", tmp_path / "server.key")
    second = watcher.current().tls
    assert second is not None and second is not first and watcher.last_ok


def test_the_shipped_example_parses() -> None:
    example = Path(__file__).resolve().parent.parent / "contrib" / "systemd" / "xenprobe-web.yml"
    assert webconfig.parse(example).tls is None
