# SPDX-License-Identifier: GPL-2.0-only
"""Domain names from xenstore (issue 23, item 3): shown beside the UUID in the table, in
the JSON and in xenprobe_domain_info, read with XS_READ and nothing else; absent, with a
reason logged once and no change to the exit code, wherever xenstore cannot be read."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests.exporter_util import Serve
from tests.mockhost import env_for, read_log, run_check
from tests.report_schema import validate
from xenprobe.mock.scenario import compile_text, parse
from xenprobe.support.errors import ScenarioError
from xenprobe.xen import xenstore

NAMES = {0: "Domain-0", 3: "hana-prod-01"}  # dom4 has none: xenstored answers ENOENT


def named(tmp: Path, names: dict[int, str], extra: str = "") -> Path:
    """large-memory with a `name` in the domains given, written to tmp."""
    text = resources.files("xenprobe.mock.scenarios").joinpath("large-memory.toml").read_text()
    for domid, name in names.items():
        assert f"\nid = {domid}\n" in text
        text = text.replace(f"\nid = {domid}\n", f"\nid = {domid}\nname = {json.dumps(name)}\n")
    path = tmp / "named.toml"
    path.write_text(text.replace("[linux]\n", "[linux]\n" + extra) if "[linux]" in text
                    else text + ("\n[linux]\n" + extra if extra else ""))
    return path


def report(args: list[str], env: dict[str, str] | None = None) -> tuple[int, dict]:
    p = run_check(["check", "--json", *args], env=env)
    assert p.returncode in (0, 1), p.stderr
    out = json.loads(p.stdout)
    validate(out)
    return p.returncode, out


def test_the_table_shows_each_name_beside_the_uuid(tmp_path: Path) -> None:
    p = run_check(["check", "--mock", str(named(tmp_path, NAMES))])
    assert p.returncode == 1, p.stderr
    block = p.stdout[p.stdout.index("domains by UUID"):].split("\n\n")[0]
    lines = block.splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["dom0", "dom3", "dom4"], block
    assert [line.split()[2] for line in lines] == ["Domain-0", "hana-prod-01", "-"], block
    summary = run_check(["check", "--mock", str(named(tmp_path, NAMES)), "--summary"]).stdout
    assert any(line.split()[:1] == ["dom3"] and line.split()[2] == "hana-prod-01"
               for line in summary.splitlines()), summary


def test_json_and_the_info_series_carry_the_names(tmp_path: Path) -> None:
    scenario = str(named(tmp_path, NAMES))
    _, out = report(["--mock", scenario])
    domains = [r for r in out["results"] if r["subject"] == "domain"]
    assert {r["domid"] for r in domains} == {0, 3, 4}
    for r in domains:
        assert r["name"] == NAMES.get(r["domid"]), r
    assert all(r["name"] is None for r in out["results"] if r["subject"] != "domain")
    assert {t["domid"]: t["name"] for t in out["summary"]["top_domains"]} == \
        {3: "hana-prod-01", 4: None}
    prom = tmp_path / "x.prom"
    run_check(["check", "--mock", scenario, "--textfile", str(prom)])
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    info = {s.labels["domid"]: s.labels.get("name")
            for s in families["xenprobe_domain_info"].samples}
    assert info == {"3": "hana-prod-01", "4": None}  # joins on domid, as before


def test_only_xs_read_reaches_xenstored(tmp_path: Path) -> None:
    """The mock's xenstored logs every message it receives, whatever its type."""
    log = tmp_path / "mock.log"
    env = dict(os.environ, XENPROBE_MOCK_LOG=str(log))
    p = run_check(["check", "--mock", str(named(tmp_path, NAMES))], env=env)
    assert p.returncode == 1, p.stderr
    messages = [e for e in read_log(log) if e["kind"] == "xenstore"]
    assert [(e["type"], e["tx_id"], e["path"]) for e in messages] == \
        [(xenstore.XS_READ, 0, f"/local/domain/{d}/name") for d in (0, 3, 4)]
    assert [e["answer"] for e in messages] == ["value", "value", "ENOENT"]


@pytest.mark.parametrize("kind", [0, 1, 3, 4, 6, 7, 11, 12, 13, 14, 0xFFFF])
def test_the_single_sender_refuses_every_other_message(kind: int) -> None:
    """XS_DEBUG, XS_DIRECTORY, XS_GET_PERMS, XS_WATCH, XS_TRANSACTION_START/END, XS_WRITE,
    XS_MKDIR, XS_RM, XS_SET_PERMS, XS_INVALID (xs_wire.h): refused, nothing sent."""
    ours, peer = socket.socketpair()
    try:
        ours.setblocking(False)
        channel = xenstore._Channel(ours.fileno(), "test", time.monotonic() + 1)
        message = xenstore.HEADER.pack(kind, 1, 0, 2) + b"x\0"
        with pytest.raises(xenstore.Refused):
            channel._send(message)
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(1)
        channel._send(xenstore.request(1, "/local/domain/0/name"))  # XS_READ passes
        assert peer.recv(64)[:4] == xenstore.XS_READ.to_bytes(4, sys.byteorder)
    finally:
        ours.close()
        peer.close()


def test_without_xenstored_names_are_absent_and_the_exit_code_is_unchanged(
        tmp_path: Path) -> None:
    scenario = str(named(tmp_path, NAMES, "xenstored = false\n"))
    p = run_check(["check", "--mock", scenario, "--log-level", "info"])
    assert p.returncode == 1, p.stderr  # as large-memory without names: its mismatches
    assert "Traceback" not in p.stderr
    assert p.stderr.count("domain_names_absent") == 1, p.stderr
    assert "no xenstored" in p.stderr and "/dev/xen/xenbus" in p.stderr, p.stderr
    block = p.stdout[p.stdout.index("domains by UUID"):]
    assert "Domain-0" not in block and "hana-prod-01" not in block
    code, out = report(["--mock", scenario])
    assert code == 1
    assert {r["name"] for r in out["results"]} == {None}


def test_the_reason_is_logged_once_until_it_changes(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xenstore, "SOCKETS", (tmp_path / "none.socket",))
    monkeypatch.setattr(xenstore, "XENBUS", tmp_path / "no-xenbus")
    names = xenstore.Names()
    with capture_logs() as logs:
        for _ in range(3):
            assert names.read([0, 1]) == {}
    assert [e["event"] for e in logs] == ["domain_names_absent"]
    assert "none.socket" in logs[0]["reason"]


def test_a_silent_xenstored_costs_one_timeout(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket that accepts and never answers (as /dev/xen/xenbus may in a dom0 before
    xenstored starts): the names are absent after TIMEOUT, and the next sweeps do not
    wait again for RETRY_AFTER."""
    path = tmp_path / "silent.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    held: list[socket.socket] = []
    accepting = threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True)
    accepting.start()
    monkeypatch.setattr(xenstore, "SOCKETS", (path,))
    monkeypatch.setattr(xenstore, "TIMEOUT", 0.3)
    names = xenstore.Names()
    try:
        with capture_logs() as logs:
            t0 = time.monotonic()
            assert names.read([0]) == {}
            first = time.monotonic() - t0
            t0 = time.monotonic()
            assert names.read([0]) == {}
            second = time.monotonic() - t0
        print(f"silent xenstored: first read {first:.3f} s, next {second:.6f} s")
        assert "no answer" in logs[0]["reason"]
        assert len(logs) == 1
        assert names.retry_at > time.monotonic()  # the next try waits for RETRY_AFTER
    finally:
        server.close()
        for s in held:
            s.close()


def test_names_as_shown() -> None:
    assert xenstore.name_text(b"web1") == "web1"
    assert xenstore.name_text("naïve".encode()) == "naïve"
    assert xenstore.name_text(b"web\xff1") == "web\\xff1"  # not UTF-8
    assert xenstore.name_text(b"a\x1b[2Jb") == "a\\x1b[2Jb"  # no terminal escapes
    assert xenstore.name_text(b"vm\0rest") == "vm"
    assert xenstore.name_text(b"") is None
    assert xenstore.name_text(b"x" * xenstore.NAME_MAX) == "x" * xenstore.NAME_MAX
    assert xenstore.name_text(b"x" * (xenstore.NAME_MAX + 1)) is None


def test_bytes_that_are_not_utf8_and_a_long_name_through_the_mock(tmp_path: Path) -> None:
    """xenstore values are bytes: the mock's xenstored holds what the scenario's
    directives say, here bytes a TOML string cannot hold."""
    s = parse("[xen]\nrelease = \"4.17\"\n[host]\nmemory = \"64 GiB\"\n"
              "[[domain]]\nid = 0\nmemory = \"4 GiB\"\n", "raw.toml", "raw")
    env = env_for(s, tmp_path)
    directives = tmp_path / "raw-names.compiled"
    not_utf8, long = b"web\xff".hex(), (b"y" * 300).hex()
    directives.write_text(compile_text(s) + f"xenstore_name 0 {not_utf8}\n"
                          f"xenstore_name 5 {long}\n")
    env["XENPROBE_MOCK_SCENARIO"] = str(directives)
    code = ("import json; from structlog.testing import capture_logs; "
            "from xenprobe.xen.xenstore import Names\n"
            "with capture_logs() as logs: names = Names().read([0, 5, 6])\n"
            "print(json.dumps([names, [e['reason'] for e in logs]]))")
    p = subprocess.run([sys.executable, "-c", code], env=env, text=True,
                       capture_output=True, timeout=30, check=False)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [{"0": "web\\xff"},
                                    ["1 name(s) longer than 256 bytes left out"]]


@pytest.mark.parametrize("name, problem", [
    ('""', "expected 1 to 2048 bytes"),
    ('"a\\u0000b"', "without NUL"),
    (json.dumps("z" * 2049), "expected 1 to 2048 bytes"),
    ("7", "expected str"),
])
def test_a_scenario_name_is_validated(name: str, problem: str) -> None:
    text = (f"[xen]\nrelease = \"4.17\"\n[host]\nmemory = \"64 GiB\"\n"
            f"[[domain]]\nid = 0\nmemory = \"4 GiB\"\nname = {name}\n")
    with pytest.raises(ScenarioError, match=r"domain\[0\]\.name: .*" + problem):
        parse(text, "bad.toml", "bad")


def test_serve_sends_xenstored_only_xs_read_and_exports_the_names(tmp_path: Path) -> None:
    """Three sweeps of the daemon: each reads the names again, with XS_READ alone."""
    log = tmp_path / "mock.log"
    env = dict(os.environ, XENPROBE_MOCK_LOG=str(log))
    with Serve(str(named(tmp_path, NAMES)), "--interval", "1", env=env) as serve:
        parsed = serve.after_sweeps(3)
    info = {dict(labels)["domid"]: dict(labels).get("name")
            for name, labels in parsed if name == "xenprobe_domain_info"}
    assert info == {"3": "hana-prod-01", "4": None}
    messages = [e for e in read_log(log) if e["kind"] == "xenstore"]
    assert len(messages) >= 9, messages  # three sweeps of three domains
    assert {(e["type"], e["tx_id"]) for e in messages} == {(xenstore.XS_READ, 0)}
