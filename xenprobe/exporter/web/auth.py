# SPDX-License-Identifier: GPL-2.0-only
"""Basic auth against a web config's `basic_auth_users`: bcrypt, at bounded cost.

The hashes were checked when the file was read (web/config.py); this checks a user's
password against them, as exporter-toolkit does (web/handler.go).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping

import bcrypt


# The dummy hash compared against when the user is unknown, so a wrong user name costs
# as much as a wrong password (exporter-toolkit does the same, at cost 10).
@functools.cache
def _dummy() -> bytes:
    return bcrypt.hashpw(b"xenprobe", bcrypt.gensalt(10))


class AuthResult(enum.Enum):
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

    def check(self, users: Mapping[str, bytes], user: str, password: str) -> AuthResult:
        hashed = users.get(user)
        secret = password.encode()
        key = hashlib.sha256(b"\0".join([user.encode(), secret, hashed or b""])).digest()
        if hashed is not None:
            with self._lock:
                if key in self._ok:
                    self._ok.move_to_end(key)
                    return AuthResult.OK
        if not self._waiters.acquire(blocking=False):
            return AuthResult.BUSY
        try:
            with self._hashing:
                good = _bcrypt_check(secret, hashed or _dummy()) and hashed is not None
        finally:
            self._waiters.release()
        if not good:
            return AuthResult.DENIED
        with self._lock:
            self._ok[key] = None
            while len(self._ok) > self.CACHE:
                self._ok.popitem(last=False)
        return AuthResult.OK


def _bcrypt_check(secret: bytes, hashed: bytes) -> bool:
    try:
        # Go's bcrypt keys Blowfish with the first 72 bytes of password + NUL; so do the
        # C implementations. bcrypt >= 5 refuses longer input instead, so cut it here.
        return bool(bcrypt.checkpw(secret[:72], hashed))
    except ValueError:
        return False  # a NUL in the password (C strings), or a hash it cannot read
