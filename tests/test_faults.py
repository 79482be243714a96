# SPDX-License-Identifier: GPL-2.0-only
"""Fault injection: each fault kind of the mock host on its own (a ctypes client, as in
test_mock_device.py), then what the agent makes of it (`xenprobe check --json` on the
healthy host with the fault added), then random fault sequences (hypothesis).

What the agent promises (README "Faults"): EINTR and EAGAIN are retried, up to
transport.RETRIES times, and counted; an answer that cannot be right (garbage, a short
struct) is read again and counted; everything else a layer fails with is that layer's
reading, counted by errno; and no fault ever turns into a truncation-class verdict.
"""

from __future__ import annotations

import errno
import json
import os
import re
import struct
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mockhost import env_for, read_log, run_check
from tests.test_mock_device import DOMAINS, MOCK_SRC, run, s32, scenario
from xenprobe.mock.scenario import parse
from xenprobe.xen.transport import RETRIES

HEALTHY = resources.files("xenprobe.mock.scenarios").joinpath("healthy.toml").read_text()
TRUNCATION = {"truncated", "sign_flipped", "clamped", "aliased_errno", "lost_error",
              "changed_error", "other"}
MAX_PAGE = 0x1040000  # test_mock_device.scenario()'s default


# ---------------------------------------------------------------- the mock, kind by kind

@pytest.fixture(scope="module")
def mock_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mock built from the sources, as test_mock_device.py builds it."""
    out = tmp_path_factory.mktemp("mock") / "libxenprobe_mock.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
                    "-std=gnu11", "-o", str(out), *sorted(map(str, MOCK_SRC.glob("*.c")))],
                   check=True)
    return out


def test_ioctl_fault_hits_only_the_path_it_names(mock_lib, tmp_path):
    r = run(mock_lib, tmp_path, scenario("ioctl_fault 12 3 4 2 ioctl\n"
                                         "ioctl_fault -1 -1 11 1 syscall\n"), '''
        fd = privcmd()
        out["syscall"] = [memop(fd, 3, 0, via="syscall") for _ in range(2)]
        out["multicall"] = multicall(fd, [(12, 3, domid_ptr(0))])[:2]
        out["other_subop"] = memop(fd, 4, 0)
        out["ioctl"] = [memop(fd, 3, 0) for _ in range(3)]
    ''')
    o, tot = r.out, DOMAINS[0][1]
    assert o["syscall"] == [[-1, errno.EAGAIN], [tot, 0]]     # the any-op rule, once
    assert o["multicall"] == [[0, 0], [tot]]                   # op 13, not 12
    assert o["other_subop"] == [DOMAINS[0][2], 0]
    assert o["ioctl"] == [[-1, errno.EINTR], [-1, errno.EINTR], [tot, 0]]
    injected = [e for e in r.log if e.get("injected") == "ioctl_fault"]
    assert [(e["via"], e["op"], e["subop"], e["result"], e["errno"]) for e in injected] == [
        ("syscall", 12, 3, None, errno.EAGAIN),
        ("ioctl", 12, 3, None, errno.EINTR), ("ioctl", 12, 3, None, errno.EINTR)]
    # The hypervisor never saw them: no multicall entry or result for those requests.
    assert all("result" in e and e["result"] is None for e in injected)


def test_garbage_replaces_a_successful_answer(mock_lib, tmp_path):
    physinfo = bytes(range(112))
    r = run(mock_lib, tmp_path, scenario("physinfo %s\ngarbage 12 2 1\ngarbage 35 3 1\n"
                                         "fault 12 4 22 1\ngarbage 12 4 1\n"
                                         % physinfo.hex()), '''
        fd = privcmd()
        out["memop2"] = [memop(fd, 2) for _ in range(2)]
        out["physinfo"] = [[r, b.hex()] for r, b in (sysctl(fd, 3, 0x15) for _ in range(2))]
        out["memop4"] = [memop(fd, 4, 0) for _ in range(3)]
    ''')
    o = r.out
    first, second = o["memop2"]
    assert first != [MAX_PAGE, 0] and second == [MAX_PAGE, 0]
    (r1, b1), (r2, b2) = ([r, bytes.fromhex(b)] for r, b in o["physinfo"])
    assert r1 == r2 == [0, 0]
    assert b1[:8] == b2[:8] == struct.pack("<II", 3, 0x15)   # the header is kept
    assert b2[8:8 + 112] == physinfo and b1[8:8 + 112] != physinfo
    # An error is not mangled: the garbage rule waits for a successful answer.
    assert o["memop4"][0] == [-1, errno.EINVAL]
    assert o["memop4"][1] != [DOMAINS[0][2], 0] and o["memop4"][2] == [DOMAINS[0][2], 0]


def test_short_answers(mock_lib, tmp_path):
    physinfo = bytes(range(1, 113))
    r = run(mock_lib, tmp_path, scenario("physinfo %s\nshort 35 6 1\nshort 35 3 1\n"
                                         % physinfo.hex()), '''
        fd = privcmd()
        buf = Buf(bytes(3 * 112))
        lists = []
        for _ in range(2):
            r, b = sysctl(fd, 6, 0x15, struct.pack("<H2xIQ", 0, 3, buf.addr))
            lists.append([r, struct.unpack_from("<I", b, 24)[0]])
        out["lists"] = lists
        out["physinfo"] = [sysctl(fd, 3, 0x15)[1][8:8 + 112].hex() for _ in range(2)]
    ''')
    assert r.out["lists"] == [[[0, 0], len(DOMAINS) - 1], [[0, 0], len(DOMAINS)]]
    short, full = (bytes.fromhex(h) for h in r.out["physinfo"])
    assert full == physinfo
    assert short[:64] == physinfo[:64] and short[64:112] == bytes(48)


def test_delay_makes_a_call_slower(mock_lib, tmp_path):
    # Only a lower bound, which the sleep guarantees; nothing timed above it.
    r = run(mock_lib, tmp_path, scenario("delay 17 0 200000 1\n"), '''
        import time
        fd = privcmd()
        t = time.monotonic()
        out["version"] = hypercall(fd, 17, 0)
        out["seconds"] = time.monotonic() - t
        out["again"] = hypercall(fd, 17, 0)
    ''')
    assert r.out["version"] == r.out["again"] == [(4 << 16) | 17, 0]
    assert r.out["seconds"] >= 0.2


def test_a_domain_vanishes_after_its_lookups(mock_lib, tmp_path):
    # Domain 3 answers two lookups (a memory_op, a listing), then is gone everywhere.
    r = run(mock_lib, tmp_path, scenario("vanish 3 2\n"), '''
        fd = privcmd()
        buf = Buf(bytes(3 * 112))
        def listed():
            r, b = sysctl(fd, 6, 0x15, struct.pack("<H2xIQ", 0, 3, buf.addr))
            n = struct.unpack_from("<I", b, 24)[0]
            return [struct.unpack_from("<H", buf.b, 112 * i)[0] for i in range(n)]
        out["memop"] = memop(fd, 3, 3)
        out["listed"] = listed()
        out["memop_after"] = memop(fd, 3, 3)
        out["listed_after"] = listed()
        r, b = domctl(fd, 5, 0x15, 3)
        out["getdomaininfo"] = [r, struct.unpack_from("<H", b, 8)[0]]
    ''')
    o = r.out
    assert o["memop"] == [s32(DOMAINS[1][1]), 0]  # pvops: an int
    assert o["listed"] == [0, 3, 7]
    assert o["memop_after"] == [-1, errno.ESRCH]
    assert o["listed_after"] == [0, 7]
    # Xen <= 4.17 answers getdomaininfo with the next domain: 7, now that 3 is gone.
    assert o["getdomaininfo"] == [[0, 0], 7]


@pytest.mark.parametrize(("text", "fragment"), [
    ("ioctl_fault 12 3 4 0 ioctl\n", "COUNT must be positive"),
    ("ioctl_fault 12 3 4 1 sideways\n", "expected any, ioctl or syscall"),
    ("ioctl_fault 12 3 5000 1 any\n", "ioctl_fault ERRNO"),
    ("garbage 12\n", "garbage: wrong number of arguments"),
    ("delay 12 -1 x 1\n", "delay USEC"),
    ("vanish 32752 1\n", "vanish DOMID"),
])
def test_invalid_fault_directives(mock_lib, tmp_path, text, fragment):
    r = run(mock_lib, tmp_path, scenario(text), '''
        out["open"] = try_open("/dev/xen/privcmd", os.O_RDWR)
    ''')
    assert r.out["open"] == [-1, errno.EIO]
    assert fragment in r.stderr, r.stderr


# ---------------------------------------------------------------- the agent, kind by kind

def with_faults(faults: list[dict[str, Any]], domains: dict[int, str] | None = None) -> str:
    """The healthy host's TOML plus [[fault]] tables, and extra keys for some domains."""
    text = HEALTHY
    for domid, keys in (domains or {}).items():
        text, n = re.subn(rf"(?m)^id = {domid}$", f"id = {domid}\n{keys}", text)
        assert n == 1
    for f in faults:
        text += "\n[[fault]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in f.items())
    return text


def check(tmp: Path, text: str, *, log: bool = False
          ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None,
                     list[dict[str, Any]]]:
    """`xenprobe check --json` on the mock host `text` describes (no libxc: the property
    is about xenprobe's own handling)."""
    s = parse(text, "faults.toml", "faults")
    log_path = tmp / "requests.jsonl"
    if log_path.exists():
        log_path.unlink()
    env = env_for(s, tmp, log_path if log else None)
    env.pop("XENPROBE_LIBXENCTRL", None)
    p = run_check(["check", "--json", "--mock", "faults"], env=env)
    report = json.loads(p.stdout) if p.returncode in (0, 1) else None
    return p, report, read_log(log_path)


def verdicts(report: dict[str, Any]) -> list[tuple[str, str, int | None, str, str]]:
    out = []
    for r in report["results"]:
        where = (r["quantity"], r["subject"], r["domid"])
        if r["raw_verdict"] is not None:
            out.append((*where, "raw", r["raw_verdict"]))
        out += [(*where, name, got["verdict"]) for name, got in r["layers"].items()]
    return out


def test_a_driver_eintr_is_retried_on_its_path_only(tmp_path: Path) -> None:
    p, report, log = check(tmp_path, with_faults([
        {"layer": "driver", "op": "memory_op", "subop": 3, "errno": "EINTR", "count": 2,
         "via": "ioctl"}]), log=True)
    assert p.returncode == 0, p.stderr
    assert report is not None
    assert report["retries"] == {"ioctl": {"EINTR": 2}}
    assert "retried ioctl: EINTR 2" in report["notes"]
    assert {v for *_, layer, v in verdicts(report) if layer != "libxc"} == {"match"}
    injected = [e for e in log if e.get("injected")]
    assert len(injected) == 2
    assert {(e["via"], e["op"], e["subop"]) for e in injected} == {("ioctl", 12, 3)}


def test_a_layer_that_keeps_failing_is_an_error_not_a_mismatch(tmp_path: Path) -> None:
    # ENOMEM on every syscall-path maximum_ram_page: not retryable, so it is the syscall
    # layer's reading, with verdict error (counted by errno), and nothing else moves.
    p, report, _ = check(tmp_path, with_faults([
        {"layer": "driver", "op": "memory_op", "subop": 2, "errno": "ENOMEM", "count": -1,
         "via": "syscall"}]))
    assert p.returncode == 0, p.stderr
    assert report is not None
    assert report["retries"] == {}
    (r,) = [r for r in report["results"] if r["quantity"] == "maximum_ram_page"]
    assert r["layers"]["syscall"] == {"value": -1, "errno": errno.ENOMEM, "width": 64,
                                      "verdict": "error"}
    assert r["layers"]["ioctl"]["verdict"] == "match"
    assert r["attempts"] == 3  # looked at again each time, in case it passed
    assert report["summary"]["mismatches"] == 0


def test_eintr_inside_a_multicall_and_of_the_whole_multicall(tmp_path: Path) -> None:
    p, report, _ = check(tmp_path, with_faults([
        {"op": "memory_op", "subop": 4, "errno": "EINTR", "count": 2},
        {"layer": "driver", "op": "multicall", "errno": "EAGAIN", "count": 1}]))
    assert p.returncode == 0, p.stderr
    assert report is not None
    # The whole first multicall failed once (EAGAIN); in its repeat, the first two
    # maximum_reservation entries answered -EINTR and were asked again.
    assert report["retries"] == {"multicall": {"EAGAIN": 1, "EINTR": 2}}
    assert {v for *_, layer, v in verdicts(report) if layer != "libxc"} == {"match"}


def test_eintr_that_never_passes_is_a_clean_exit_3(tmp_path: Path) -> None:
    p, _, _ = check(tmp_path, with_faults([
        {"layer": "driver", "op": "any", "errno": "EINTR", "count": -1}]))
    assert p.returncode == 3
    assert "Traceback" not in p.stderr
    assert f"still failed with EINTR (Interrupted system call) after {RETRIES} retries" \
        in p.stderr
    # Under --json the error is JSON on stdout too (docs/json.md), with the same code.
    error = json.loads(p.stdout)
    assert error["exit_code"] == 3 and "still failed with EINTR" in error["error"]["message"]


@pytest.mark.parametrize(("fault", "call"), [
    ({"kind": "garbage", "op": "sysctl", "subop": 6, "count": 2}, "getdomaininfolist"),
    ({"kind": "garbage", "op": "sysctl", "subop": 3, "count": 3}, "physinfo"),
    ({"kind": "short", "op": "sysctl", "subop": 3, "count": 3}, "physinfo"),
    ({"kind": "garbage", "op": "xen_version", "subop": 0, "count": 1}, "xen_version"),
])
def test_an_impossible_answer_is_read_again(tmp_path: Path, fault: dict[str, Any],
                                            call: str) -> None:
    p, report, _ = check(tmp_path, with_faults([fault]))
    assert p.returncode == 0, p.stderr
    assert report is not None
    assert report["retries"].get(call, {}).get("invalid", 0) >= 1, report["retries"]
    assert report["domains"] == 3
    assert {v for *_, layer, v in verdicts(report) if layer != "libxc"} == {"match"}


def test_an_impossible_answer_every_time_is_a_clean_exit_3(tmp_path: Path) -> None:
    p, _, _ = check(tmp_path, with_faults([
        {"kind": "garbage", "op": "sysctl", "subop": 6, "count": -1}]))
    assert p.returncode == 3
    assert "answered getdomaininfolist with an invalid result" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_short_domain_list_leaves_a_domain_out_and_nothing_wrong(tmp_path: Path) -> None:
    p, report, _ = check(tmp_path, with_faults([
        {"kind": "short", "op": "sysctl", "subop": 6, "count": 1}]))
    assert p.returncode == 0, p.stderr
    assert report is not None
    # The first listing (the sweep's plan) missed the last domain: it is not probed.
    assert report["domains"] == 2
    assert not {r["domid"] for r in report["results"]} & {2}
    assert report["summary"]["mismatches"] == 0


def test_a_garbage_raw_value_is_looked_at_again(tmp_path: Path) -> None:
    p, report, _ = check(tmp_path, with_faults([
        {"kind": "garbage", "op": "memory_op", "subop": 2, "count": 1}]))
    assert p.returncode == 0, p.stderr
    assert report is not None
    (r,) = [r for r in report["results"] if r["quantity"] == "maximum_ram_page"]
    assert r["attempts"] == 2 and r["raw_verdict"] == "match"


def test_a_delay_changes_nothing_but_time(tmp_path: Path) -> None:
    p, report, _ = check(tmp_path, with_faults([
        {"kind": "delay", "op": "memory_op", "subop": 3, "delay_ms": 20, "count": 5}]))
    assert p.returncode == 0, p.stderr
    assert report is not None
    assert report["sweep_seconds"] >= 5 * 0.020  # the lower bound the sleeps guarantee
    assert {v for *_, layer, v in verdicts(report) if layer != "libxc"} == {"match"}


@pytest.mark.parametrize("after", range(0, 14, 3))
def test_a_domain_that_vanishes_is_never_a_mismatch(tmp_path: Path, after: int) -> None:
    # Domain 1 disappears after `after` lookups: before the sweep lists it, between the
    # listing and its probes, or between two reads of a probe.
    p, report, _ = check(tmp_path, with_faults([], {1: f"vanish_after = {after}"}))
    assert p.returncode == 0, p.stderr
    assert report is not None
    assert not {v for *_, v in verdicts(report)} & TRUNCATION
    if after == 0:
        assert report["domains"] == 2


# ---------------------------------------------------------------- random fault sequences

# What the agent issues on the healthy host: (op, subop), -1 = any.
TARGETS = [("memory_op", 2), ("memory_op", 3), ("memory_op", 4), ("memory_op", 14),
           ("memory_op", -1), ("xen_version", 0), ("xen_version", 1), ("xen_version", 8),
           ("xen_version", -1), ("sysctl", 3), ("sysctl", 6), ("sysctl", -1),
           ("domctl", 5), ("multicall", -1)]
STRUCTS = [("sysctl", 3), ("sysctl", 6), ("domctl", 5)]
ERRNOS = ["EINTR", "EAGAIN", "EFAULT", "ENOMEM", "EACCES", "ENOSYS", "EPERM"]
# CI runs the same examples every time; XENPROBE_FAULT_EXAMPLES=N runs N fresh ones.
EXAMPLES = int(os.environ.get("XENPROBE_FAULT_EXAMPLES", "20"))
FIXED = "XENPROBE_FAULT_EXAMPLES" not in os.environ


def _rule(target: tuple[str, int], **keys: Any) -> dict[str, Any]:
    op, subop = target
    rule = {"op": op, **keys}
    if subop != -1:
        rule["subop"] = subop
    return rule


@st.composite
def errno_rule(draw: st.DrawFn, errnos: list[str] = ERRNOS,
               vias: tuple[str, ...] = ("any", "ioctl", "syscall")) -> dict[str, Any]:
    name = draw(st.sampled_from(errnos))
    # A fault that never passes is a steady state, not a sequence; only for EINTR and
    # EAGAIN, which are never an answer (a driver failing everything with EACCES does
    # change the error path's errno, and is reported as changed_error, rightly).
    counts = st.integers(1, 3) | (st.just(-1) if name in ("EINTR", "EAGAIN") else
                                  st.nothing())
    layer = draw(st.sampled_from(["hypervisor", "driver"]))
    keys: dict[str, Any] = {"errno": name, "count": draw(counts), "layer": layer}
    if layer == "driver":
        keys["via"] = draw(st.sampled_from(vias))
    return _rule(draw(st.sampled_from(TARGETS)), **keys)


@st.composite
def other_rule(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["delay", "garbage", "short"]))
    count = draw(st.integers(1, 3))
    if kind == "delay":
        return _rule(draw(st.sampled_from(TARGETS)), kind=kind, count=count,
                     delay_ms=draw(st.integers(0, 3)))
    targets = STRUCTS if kind == "short" else [t for t in TARGETS if t[0] != "multicall"]
    return _rule(draw(st.sampled_from(targets)), kind=kind, count=count)


@st.composite
def domain_knobs(draw: st.DrawFn) -> dict[int, str]:
    knobs: dict[int, list[str]] = {}
    if draw(st.booleans()):  # memory that moves between reads
        knobs.setdefault(1, []).append(
            "balloon = { step = %d, every = %d, min = 786432, max = 1310720 }"
            % (draw(st.sampled_from([-4096, 1, 4096])), draw(st.integers(1, 3))))
    if draw(st.booleans()):  # a domain that vanishes between listing and probing
        knobs.setdefault(draw(st.sampled_from([1, 2])), []).append(
            f"vanish_after = {draw(st.integers(0, 20))}")
    return {d: "\n".join(keys) for d, keys in knobs.items()}


@settings(max_examples=EXAMPLES, deadline=None, derandomize=FIXED,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(faults=st.lists(errno_rule() | other_rule(), max_size=3), domains=domain_knobs())
def test_random_fault_sequences_never_make_a_truncation(
        tmp_path: Path, faults: list[dict[str, Any]], domains: dict[int, str]) -> None:
    p, report, _ = check(tmp_path, with_faults(faults, domains))
    assert "Traceback" not in p.stderr, p.stderr
    if p.returncode == 3:  # a fault the agent cannot probe through: said so, cleanly
        assert p.stderr.startswith("xenprobe: error: "), p.stderr
        assert json.loads(p.stdout)["exit_code"] == 3  # under --json, the error as JSON
        return
    assert p.returncode == 0, (p.returncode, p.stderr, faults, domains)
    assert report is not None
    bad = [v for v in verdicts(report) if v[-1] in TRUNCATION]
    assert not bad, (bad, faults, domains)


@settings(max_examples=max(EXAMPLES // 2, 1), deadline=None, derandomize=FIXED,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(st.lists(errno_rule(["EINTR", "EAGAIN"], ("any", "ioctl")), min_size=1,
                max_size=3).filter(lambda rules: all(r["count"] > 0 for r in rules) and
                                   sum(r["count"] for r in rules) <= RETRIES))
def test_retryable_faults_are_absorbed_and_counted(tmp_path: Path,
                                                   faults: list[dict[str, Any]]) -> None:
    """EINTR/EAGAIN, at most RETRIES of them in all: every request gets its answer in
    its retries, every verdict is match, and each fault is one counted retry. (Every
    target is issued through glibc's ioctl(), so each rule is used up.)"""
    p, report, _ = check(tmp_path, with_faults(faults))
    assert p.returncode == 0, (p.stderr, faults)
    assert report is not None
    assert {v for *_, layer, v in verdicts(report) if layer != "libxc"} == {"match"}
    counted = sum(n for why in report["retries"].values() for n in why.values())
    assert counted == sum(r["count"] for r in faults), (report["retries"], faults)
