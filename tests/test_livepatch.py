# SPDX-License-Identifier: GPL-2.0-only
"""Census row R7, sysctl livepatch_op LIST: the request xenprobe builds, the quantity on
the mock host (probed where the build has livepatch, absent where it answers -ENOSYS),
and the mock's model of LIST itself (common/livepatch.c@RELEASE-4.13.0:989-1049,
@RELEASE-4.17.0:1159-1250), which the allow-list lets through whatever nr asks."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.mockhost import check_json, env_for, read_log
from xenprobe.mock.scenario import parse
from xenprobe.xen.abi import hypercalls as hc
from xenprobe.xen.livepatch import list_request, remaining

PV_DOM0 = (Path(__file__).resolve().parents[1] / "xenprobe" / "mock" / "scenarios"
           / "pv-dom0.toml").read_text()


def variant(tmp_path: Path, name: str, *, release: str = "4.20", extra: str = "") -> Path:
    text = PV_DOM0.replace('release = "4.20"', f'release = "{release}"').replace(
        "census = true", "census = true\n" + extra)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    parse(text, str(path), name)
    return path


def listed(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report["results"] if r["quantity"] == "livepatch_listed"]


def test_the_request_asks_for_no_entries() -> None:
    req = list_request(0x15)
    assert len(req) == hc.SYSCTL_SIZE
    # sysctl cmd 27, interface; livepatch_op cmd LIST (2), pad; version, idx, nr, pad.
    assert struct.unpack_from("<IIIIIIII", req) == (27, 0x15, 2, 0, 0, 0, 0, 0)
    assert req[32:] == bytes(hc.SYSCTL_SIZE - 32)  # every handle NULL
    answer = bytearray(req)
    struct.pack_into("<II", answer, 16, 7, 0)      # version 7
    struct.pack_into("<I", answer, 24, 3)          # nr: 3 remain
    assert remaining(bytes(answer)) == (3, 7)


@pytest.mark.parametrize("payloads", [0, 5])
def test_probed_where_the_build_has_livepatch(tmp_path: Path, payloads: int) -> None:
    """rc is the number of entries copied: 0 for nr 0, however many payloads there are;
    judged against that without a raw reading (xenprobe never puts a sysctl in a multicall)."""
    log = tmp_path / "log.jsonl"
    path = variant(tmp_path, f"lp{payloads}", extra=f"livepatch_payloads = {payloads}")
    s = parse(path.read_text(), str(path), path.stem)
    p = subprocess.run([sys.executable, "-m", "xenprobe", "check", "--json", "--mock",
                        str(path)], env=env_for(s, tmp_path, log), text=True,
                       capture_output=True, timeout=60, check=False)
    report = json.loads(p.stdout)
    (r,) = listed(report)
    assert (r["subject"], r["raw"], r["raw_verdict"]) == ("host", None, "absent")
    assert r["reference"] == {"lo": 0, "hi": 0}
    for layer in ("syscall", "ioctl"):
        got = r["layers"][layer]
        assert (got["value"], got["errno"], got["verdict"]) == (0, 0, "match")
    assert r["layers"]["libxc"]["verdict"] == "absent"
    # Every livepatch_op that reached the mock was a LIST, and none was in a multicall.
    ops = [e for e in read_log(log) if e.get("op") == 35 and e.get("subop") == 27]
    assert ops and {(e["kind"], e["inner"]) for e in ops} == {("hypercall", 2)}


def test_absent_on_a_build_without_livepatch(tmp_path: Path) -> None:
    path = variant(tmp_path, "nolp", extra="livepatch = false")
    code, report = check_json(str(path))
    assert listed(report) == []
    assert code == 0  # DR6's harmless sign flip, as on every PV dom0; nothing else
    assert {r["quantity"] for r in report["results"]
            if any(v["verdict"] not in ("match", "absent") for v in r["layers"].values())
            } == {"debug_register_6"}


# Runs on the mock: LIST with buffers, as a toolstack issues it (the allow-list judges
# the cmd, not nr), and its errors. Prints what came back.
LIST = r"""
import json, struct, sys
from xenprobe.xen.transport import Buffer, Privcmd, args5
modern = sys.argv[1] == "1"
iface = int(sys.argv[2])
dev = Privcmd(); ctl = Buffer(136); out = Buffer(1 << 16)
status, lens, mlens, names = (out.address, out.address + 8192, out.address + 12288,
                              out.address + 16384)
def issue(idx, nr, pad=0, lp_pad=0):
    ctl.view[:] = bytes(136)
    struct.pack_into("<IIIIIIII", ctl.view, 0, 27, iface, 2, lp_pad, 0, idx, nr, pad)
    if modern:   # status, name, len, metadata (NULL: no payload has any), metadata_len
        struct.pack_into("<QQQQQ", ctl.view, 40, status, names, lens, 0, mlens)
    else:        # status, name (128 bytes each), len
        struct.pack_into("<QQQ", ctl.view, 32, status, names, lens)
    r = dev.syscall(35, args5(ctl.address))
    version, _, left, _ = struct.unpack_from("<IIII", ctl.view, 16)
    got = bytes(out.view[16384:16384 + 4 * 128])
    text = [t.decode() for t in (got.split(b"\0") if modern else
            [got[i * 128:(i + 1) * 128].split(b"\0")[0] for i in range(4)]) if t]
    lengths = list(struct.unpack_from("<4I", out.view, 8192))
    states = list(struct.unpack_from("<8I", out.view, 0))
    out.view[:] = bytes(1 << 16)
    return {"rc": r.value if not r.failed else -r.errno, "nr": left, "version": version,
            "names": text, "len": lengths, "status": states}
print(json.dumps({"nr0": issue(0, 0), "two": issue(0, 2), "from3": issue(3, 4),
                  "past": issue(5, 1), "big": issue(0, 1025), "pad": issue(0, 1, pad=1),
                  "lp_pad": issue(0, 1, lp_pad=1)}))
"""


@pytest.mark.parametrize("release,modern", [("4.20", True), ("4.14", True), ("4.13", False)])
def test_the_mock_lists_as_xen_does(tmp_path: Path, release: str, modern: bool) -> None:
    path = variant(tmp_path, f"list{release}", release=release, extra="livepatch_payloads = 5")
    s = parse(path.read_text(), str(path), path.stem)
    p = subprocess.run([sys.executable, "-c", LIST, "1" if modern else "0",
                        str(s.release.sysctl)], env=env_for(s, tmp_path), text=True,
                       capture_output=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    # nr 0: nothing copied, every payload left; the version counts the 5 uploads.
    assert (got["nr0"]["rc"], got["nr0"]["nr"], got["nr0"]["version"]) == (0, 5, 6)
    assert got["nr0"]["names"] == []
    # Two from the start: rc 2, 3 left, names, their lengths with the NUL, CHECKED/0.
    two = got["two"]
    assert (two["rc"], two["nr"]) == (2, 3)
    assert two["names"] == ["xenprobe-mock-0", "xenprobe-mock-1"]
    assert two["len"][:2] == [16, 16] and two["status"][:4] == [1, 0, 1, 0]
    # From index 3, asking for 4: the 2 there are, none left.
    assert (got["from3"]["rc"], got["from3"]["nr"]) == (2, 0)
    assert got["from3"]["names"] == ["xenprobe-mock-3", "xenprobe-mock-4"]
    # idx past the list, nr past 1024, a pad set: errors, nothing copied.
    assert got["past"]["rc"] == -22 and got["past"]["names"] == []
    assert got["big"]["rc"] == -7    # E2BIG
    assert got["pad"]["rc"] == -22 and got["lp_pad"]["rc"] == -22


def test_probed_on_a_host_without_multicalls(tmp_path: Path) -> None:
    """A PVH dom0 on 4.14 has no multicall at all: the whole sweep is judged against the
    references, livepatch_listed among them, the same way."""
    text = PV_DOM0.replace('release = "4.20"', 'release = "4.14"').replace(
        "id = 0\nmemory", "id = 0\nhvm = true\nmemory")
    path = tmp_path / "pvh414.toml"
    path.write_text(text)
    s = parse(text, str(path), "pvh414")
    assert not s.multicall
    code, report = check_json(str(path))
    assert report["raw_layer"]["present"] is False
    (r,) = listed(report)
    assert (r["raw"], r["raw_verdict"], r["reference"]) == (None, "absent", {"lo": 0, "hi": 0})
    assert {layer: v["verdict"] for layer, v in r["layers"].items()} == {
        "syscall": "match", "ioctl": "match", "libxc": "absent"}
    assert code == 0
