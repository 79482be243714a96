# SPDX-License-Identifier: GPL-2.0-only
"""Domain names from xenstore, read and nothing else: an I/O shell around xenstored's
wire protocol that only ever sends XS_READ.

The name is the toolstack's, not the hypervisor's: it lives at /local/domain/<id>/name
(docs/misc/xenstore-paths.pandoc). Any failure (no xenstored, a refusal, a timeout, a
reply that breaks the protocol) leaves the names it could not read absent, with the
reason logged once; it is never an error of the sweep."""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Iterable
from pathlib import Path

import structlog

log = structlog.get_logger("xenprobe.xen.xenstore")

# xen/include/public/io/xs_wire.h@RELEASE-4.17.0:14-38 (enum xsd_sockmsg_type: XS_READ
# is 2, XS_ERROR 16) and :82-90 (struct xsd_sockmsg: type, req_id, tx_id, len, each a
# uint32_t in the host's order); the same at RELEASE-4.14.0 and RELEASE-4.20.0.
XS_READ = 2
XS_ERROR = 16
HEADER = struct.Struct("=IIII")
PAYLOAD_MAX = 4096  # XENSTORE_PAYLOAD_MAX, xs_wire.h@RELEASE-4.17.0:116

# The only message type this module sends: read-only by construction (no write, watch,
# or transaction can leave `_send`).
ALLOWED = frozenset({XS_READ})

# Where libxenstore looks, in its order: xenstored's socket ($XEN_RUN_STORED/socket,
# m4/paths.m4@RELEASE-4.17.0:139; /var/run is /run on Debian), then the kernel's xenbus
# device (tools/libs/store/xs.c@RELEASE-4.17.0:318-321).
SOCKETS = (Path("/run/xenstored/socket"), Path("/var/run/xenstored/socket"))
XENBUS = Path("/dev/xen/xenbus")

NAME_MAX = 256  # bytes of a name shown; a longer one is left out (a label, a cell)
TIMEOUT = 1.0  # seconds for all the names of one sweep
RETRY_AFTER = 60.0  # seconds without a try after one ran out of time


class Refused(Exception):
    """A message this module must not send: nothing was sent."""


class Failed(Exception):
    """xenstore could not be read; the message says why."""


def request(req_id: int, path: str) -> bytes:
    """An XS_READ of `path`: header, then the path with its NUL (xenstored's onearg)."""
    body = path.encode() + b"\0"
    return HEADER.pack(XS_READ, req_id, 0, len(body)) + body


def name_text(value: bytes) -> str | None:
    """A name as shown: its bytes up to a NUL (C toolstacks stop there), bytes that are
    not UTF-8 and control characters as \\xNN (xenstore values are bytes; a label must
    be UTF-8, a terminal must not take a name for a command), None when empty or longer
    than NAME_MAX bytes."""
    value = value.split(b"\0", 1)[0]
    if not value or len(value) > NAME_MAX:
        return None
    text = value.decode("utf-8", "backslashreplace")
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c
                   for c in text)


class _Channel:
    """One connection to xenstored (a socket or the xenbus device), each operation
    bounded by the deadline."""

    def __init__(self, fd: int, where: str, deadline: float) -> None:
        self.fd, self.where, self.deadline = fd, where, deadline
        self.next_id = 1

    def _wait(self, events: int) -> None:
        left = self.deadline - time.monotonic()
        poller = select.poll()
        poller.register(self.fd, events)
        if left <= 0 or not poller.poll(left * 1000):
            raise Failed(f"{self.where}: no answer within {TIMEOUT:g} s")

    def _send(self, message: bytes) -> None:
        """The single place a message leaves: anything but XS_READ is refused here."""
        kind = HEADER.unpack_from(message)[0] if len(message) >= HEADER.size else None
        if kind not in ALLOWED:
            raise Refused(f"xenstore message type {kind} is not read-only")
        view = memoryview(message)
        while view:
            self._wait(select.POLLOUT)
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                continue

    def _receive(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._wait(select.POLLIN)
            try:
                got = os.read(self.fd, n - len(out))
            except BlockingIOError:
                continue
            if not got:
                raise Failed(f"{self.where}: connection closed")
            out += got
        return out

    def read(self, path: str) -> bytes | None:
        """The value at `path`, or None where xenstored answers ENOENT."""
        req_id, self.next_id = self.next_id, self.next_id + 1
        self._send(request(req_id, path))
        kind, got_id, _, length = HEADER.unpack(self._receive(HEADER.size))
        if length > PAYLOAD_MAX:  # the stream cannot be trusted past this
            raise Failed(f"{self.where}: a reply of {length} bytes, above "
                         f"XENSTORE_PAYLOAD_MAX")
        body = self._receive(length)
        # xenstored echoes req_id (xs_wire.h); through /dev/xen/xenbus the kernel puts
        # the caller's back (xs_send, drivers/xen/xenbus/xenbus_xs.c,
        # torvalds/linux@0755a4e3: caller_req_id).
        if got_id != req_id:
            raise Failed(f"{self.where}: reply to request {got_id}, not {req_id}")
        if kind == XS_ERROR:
            # xenstored answers an error's name with its NUL
            # (tools/xenstore/xenstored_core.c@RELEASE-4.17.0:1031-1044).
            if body == b"ENOENT\0":
                return None
            error = body.split(b"\0", 1)[0].decode("ascii", "replace")
            raise Failed(f"{self.where}: {path}: {error}")
        if kind != XS_READ:
            raise Failed(f"{self.where}: reply of type {kind} to XS_READ")
        return body


def _connect(deadline: float) -> _Channel:
    problems = []
    for path in SOCKETS:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            s.connect(str(path))
        except OSError as e:
            s.close()
            problems.append(f"{path}: {os.strerror(e.errno) if e.errno else e}")
            continue
        s.setblocking(False)
        return _Channel(s.detach(), str(path), deadline)
    try:
        fd = os.open(XENBUS, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        problems.append(f"{XENBUS}: {os.strerror(e.errno) if e.errno else e}")
        raise Failed("no xenstored: " + "; ".join(problems)) from None
    return _Channel(fd, str(XENBUS), deadline)


class Names:
    """Reads domain names for a sweep; owns the one reason last logged, so that a host
    without xenstored says so once, not at every scrape, and when a read ran out of
    time, the moment to try again: a dom0 whose xenbus device never answers (no
    xenstored yet) costs one TIMEOUT per RETRY_AFTER, not one per sweep."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.retry_at = 0.0

    def read(self, domids: Iterable[int]) -> dict[int, str]:
        """domid -> name for the domains whose name could be read and shown."""
        names: dict[int, str] = {}
        left_out = 0
        now = time.monotonic()
        if now < self.retry_at:
            return names
        deadline = now + TIMEOUT
        reason = None
        try:
            channel = _connect(deadline)
        except Failed as e:
            self._say(str(e))
            return names
        try:
            for domid in domids:
                value = channel.read(f"/local/domain/{domid}/name")
                text = name_text(value) if value is not None else None
                if text is not None:
                    names[domid] = text
                elif value:
                    left_out += 1
        except (Failed, OSError) as e:
            reason = str(e) if isinstance(e, Failed) else f"{channel.where}: {e}"
            if time.monotonic() >= deadline:
                self.retry_at = deadline + RETRY_AFTER
        finally:
            os.close(channel.fd)
        if left_out and reason is None:
            reason = f"{left_out} name(s) longer than {NAME_MAX} bytes left out"
        self._say(reason)
        return names

    def _say(self, reason: str | None) -> None:
        if reason != self.reason and reason is not None:
            log.info("domain_names_absent", reason=reason)
        self.reason = reason
