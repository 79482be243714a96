# SPDX-License-Identifier: GPL-2.0-only
"""The sd_notify protocol against a real AF_UNIX datagram socket, as systemd has."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from tests.exporter_util import NotifySocket, short_tmp
from xenprobe.exporter.notify import Notifier


@pytest.fixture
def listener() -> Iterator[NotifySocket]:
    d = short_tmp()
    s = NotifySocket(d)
    yield s
    s.close()
    s.path.unlink()
    d.rmdir()


def test_messages(listener: NotifySocket) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(listener.path)})
    assert n.enabled
    n.ready("serving 127.0.0.1:9723;\nfirst sweep")
    assert listener.expect("READY", lambda m: True, 5) == {
        "READY": "1", "STATUS": "serving 127.0.0.1:9723; first sweep"}  # one line
    n.watchdog()
    assert listener.expect("WATCHDOG", lambda m: True, 5) == {"WATCHDOG": "1"}
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    m = listener.expect("RELOADING", lambda m: True, 5)
    assert m["RELOADING"] == "1" and int(m["MONOTONIC_USEC"]) >= before
    n.status("sweep 3: every layer agrees")
    assert listener.expect("STATUS", lambda m: True, 5) == {
        "STATUS": "sweep 3: every layer agrees"}
    n.stopping()
    assert listener.expect("STOPPING", lambda m: True, 5) == {"STOPPING": "1"}
    n.close()
    assert not n.send("READY=1")


def test_abstract_socket() -> None:
    name = f"xenprobe-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        Notifier({"NOTIFY_SOCKET": "@" + name}).ready("ok")
        assert s.recv(1024) == b"READY=1\nSTATUS=ok"
    finally:
        s.close()


def test_outside_systemd_nothing_happens() -> None:
    for env in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "relative/path"}):
        n = Notifier(env)
        assert not n.enabled and not n.send("READY=1")
        n.ready("x")  # no error


def test_a_vanished_systemd_is_not_an_error(listener: NotifySocket) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(listener.path)})
    listener.close()
    listener.path.unlink()
    assert not n.send("WATCHDOG=1")
    listener.path.touch()  # for the fixture's clean-up


@pytest.mark.parametrize(("env", "seconds"), [
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval(env: dict[str, str], seconds: float | None) -> None:
    assert Notifier(env).watchdog_seconds == seconds


def test_a_reader_that_does_not_read_never_blocks_the_sender(listener: NotifySocket) -> None:
    """A notify socket whose queue is full (nobody reads it): sends are dropped, never
    waited on for ever. The main thread that sends also handles SIGTERM (found by
    tests/test_soak.py, whose first version left the socket unread)."""
    import threading

    n = Notifier({"NOTIFY_SOCKET": str(listener.path)})
    sent: list[bool] = []
    t = threading.Thread(target=lambda: sent.extend(
        [n.send(f"STATUS=sweep {i}") for i in range(200)] + [n.send("READY=1",
                                                                      patience=0.1)]))
    t.start()
    t.join(60)
    assert not t.is_alive(), "a send blocked on the full queue"
    assert sent[0] and not sent[-1] and sent.count(True) < 200
    listener.drain(0.2)  # room again: the next one goes through
    assert n.send("STOPPING=1")
