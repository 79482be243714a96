# SPDX-License-Identifier: GPL-2.0-only
"""systemd's sd_notify protocol: datagrams of NAME=value lines on $NOTIFY_SOCKET.

Written out rather than taken from a library: it is one socket and a few strings, see
sd_notify(3). Outside systemd (no $NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger("xenprobe.exporter.notify")

# Seconds a change of state (READY, RELOADING, STOPPING) waits for room in a full queue.
STATE_PATIENCE = 1.0


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is an abstract socket; anything else must be an absolute path.
        if address.startswith("@"):
            address = "\0" + address[1:]
        elif not address.startswith("/"):
            address = ""
        self.address = address
        self._sock: socket.socket | None = None
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_seconds = _watchdog(env)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str, patience: float = 0.0) -> bool:
        """Send without blocking: the caller is the main thread, which handles signals
        and the watchdog. A reader whose queue is full (net.unix.max_dgram_qlen, 10 by
        default, datagrams) gets `patience` seconds to make room, then the message is
        dropped; STATUS and WATCHDOG come again anyway."""
        if self._sock is None:
            return False
        data = "\n".join(lines).encode()
        deadline = time.monotonic() + patience
        while True:
            try:
                self._sock.sendto(data, socket.MSG_DONTWAIT, self.address)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    log.debug("notify_dropped", message=lines[0], reason="queue full")
                    return False
                time.sleep(0.02)
            except OSError as e:
                # systemd gone: the service keeps running regardless.
                log.debug("notify_failed", error=e.strerror)
                return False

    def ready(self, status: str) -> None:
        self.send("READY=1", _status(status), patience=STATE_PATIENCE)

    def reloading(self) -> None:
        # MONOTONIC_USEC lets Type=notify-reload (systemd 253+) match the READY=1 that
        # ends the reload; older systemd ignores it.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", patience=STATE_PATIENCE)

    def stopping(self) -> None:
        self.send("STOPPING=1", patience=STATE_PATIENCE)

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.send(_status(text))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())


def _watchdog(env: Mapping[str, str]) -> float | None:
    """Seconds between watchdog deadlines, if systemd armed one for this process."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None
