# SPDX-License-Identifier: GPL-2.0-only
"""The libxc layer with Debian's real libxenctrl 4.17 on the mock host.

Every shipped scenario runs: the 4.17 ones find libxenctrl.so.4.17 by SONAME through
LD_LIBRARY_PATH, as on a real dom0; the others get the same library through
XENPROBE_LIBXENCTRL, which is what a mismatched install does (domctl refused with
EACCES, memory_op and xen_version fine). Expected readings come from tests/libxc_model.py,
the request log shows which hypercalls libxc itself made.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from cffi import FFI

from tests import libxc_model as model
from tests import xenpkgs
from tests.mockhost import check_json, env_for, read_log
from tests.model import true_value
from xenprobe.layers import libxc
from xenprobe.mock.scenario import Scenario, load, parse, shipped
from xenprobe.probe.classify import Truth, Verdict, classify
from xenprobe.xen.abi import libxc as table
from xenprobe.xen.quantities import Probe, Quantity, Subject, plan
from xenprobe.xen.reading import Reading

SWEEPABLE = [n for n in shipped() if load(n).role == "dom0" and load(n).device == "present"]
EVERY = [n for n in shipped() if load(n).device == "present"]
ENOTTY = errno.ENOTTY


@pytest.fixture(scope="session")
def pkgs() -> xenpkgs.XenPackages:
    if os.environ.get(xenpkgs.SKIP_ENV) == "1":
        pytest.skip(f"{xenpkgs.SKIP_ENV}=1: real Xen 4.17 libraries not fetched")
    return xenpkgs.ensure()


def at_417(name: str) -> Scenario:
    """A shipped scenario with its layers' misbehaviour kept but its hypervisor made Xen
    4.17, the release Debian's libxenctrl 4.17 is built for."""
    text = resources.files("xenprobe.mock.scenarios").joinpath(f"{name}.toml").read_text()
    text = re.sub(r'(?m)^release = "[0-9.]+"', 'release = "4.17"', text)
    return parse(text, f"{name}.toml (at Xen 4.17)", name)


def _env(s: Scenario, tmp: Path, pkgs: xenpkgs.XenPackages, log: Path | None = None
         ) -> dict[str, str]:
    env = env_for(s, tmp, log)
    env.update(pkgs.env())
    env.pop(libxc.ENV, None)
    if s.release.name != "4.17":
        env[libxc.ENV] = str(pkgs.libxenctrl)
    return env


# A child on the mock host: the libxc layer alone, reading the probes given as JSON.
CHILD = """
import json, sys
from xenprobe.layers import libxc
from xenprobe.support import logs
from xenprobe.xen.quantities import Probe, Quantity, Subject
logs.configure("warning")
hypervisor = tuple(json.loads(sys.argv[1]))
probes = [Probe(Quantity(q), Subject(s), d) for q, s, d in json.loads(sys.argv[2])]
layer = libxc.layer(hypervisor)
readings = layer.read_many(probes, [])
print(json.dumps({"present": isinstance(layer, libxc.LibxcLayer), "note": layer.note,
                  "readings": [r.as_json() if r else None for r in readings]}))
if isinstance(layer, libxc.LibxcLayer):
    layer.close()
"""


def _probe_args(probes: list[Probe]) -> str:
    return json.dumps([[p.quantity.value, p.subject.value, p.domid] for p in probes])


def run_layer(s: Scenario, probes: list[Probe], env: dict[str, str]) -> dict[str, Any]:
    hypervisor = json.dumps([s.release.major, s.release.minor])
    p = subprocess.run([sys.executable, "-c", CHILD, hypervisor, _probe_args(probes)],
                       env=env, capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout)
    return out


def _reading(j: dict[str, int] | None) -> Reading | None:
    return Reading(j["value"], j["errno"], j["width"]) if j else None


# ------------------------------------------------------------------ the signature table

def test_table_covers_every_release_the_agent_knows() -> None:
    from xenprobe.xen.abi.releases import RELEASES
    for major, minor in RELEASES:
        sig = table.signatures((major, minor))
        assert sig is not None and sig.soname == f"libxenctrl.so.{major}.{minor}"
        FFI().cdef(sig.cdef())  # every row is valid C for cffi
        names = sig.names
        assert ("xc_memory_op" in names) == (minor >= 17)
        assert ("xc_domain_getinfo" in names) == (minor <= 17)
        assert ("xc_domain_getinfo_single" in names) == (minor >= 18)
        assert {"xc_maximum_ram_page", "xc_domain_maximum_gpfn", "xc_get_tot_pages",
                "xc_domain_getinfolist", "xc_physinfo", "xc_version"} <= names
        assert sig.tot_pages_exact == (minor >= 18)


def test_table_matches_the_real_library(pkgs: xenpkgs.XenPackages) -> None:
    """What the 4.17 row declares is exported by Debian's libxenctrl.so.4.17, and what
    it leaves out (4.18's getinfo_single) is not."""
    names = [f.name for f in table.FUNCTIONS]
    code = ("import ctypes, json, sys; lib = ctypes.CDLL(sys.argv[1]); "
            "print(json.dumps([hasattr(lib, n) for n in sys.argv[2:]]))")
    p = subprocess.run([sys.executable, "-c", code, str(pkgs.libxenctrl), *names],
                       env={**os.environ, **pkgs.env()}, capture_output=True, text=True,
                       timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    exported = dict(zip(names, json.loads(p.stdout), strict=True))
    for f in table.FUNCTIONS:
        assert exported[f.name] == f.exists_in((4, 17)), f.name


# ------------------------------------------------------------------ absent, and why

def test_no_table_for_an_unknown_release() -> None:
    layer = libxc.layer((4, 99), environ={})
    assert isinstance(layer, libxc.Absent)
    assert "no libxenctrl signature table for Xen 4.99" in layer.note
    assert layer.read_many([Probe(Quantity.XEN_VERSION, Subject.HOST)], []) == [None]


def test_library_not_on_the_loader_path() -> None:
    try:
        ctypes.CDLL("libxenctrl.so.4.13")
        pytest.skip("this host has libxenctrl.so.4.13 installed")
    except OSError:
        pass
    layer = libxc.layer((4, 13), environ={})
    assert isinstance(layer, libxc.Absent)
    assert layer.note == "libxenctrl.so.4.13 not found"


@pytest.mark.parametrize(("target", "reason"), [
    ("/nonexistent/libxenctrl.so.4.17", "no such file"),
    ("/etc", "not a regular file"),
    ("/etc/hostname", "not a shared library with a SONAME"),
    (sys.executable, "not a shared library with a SONAME"),
])
def test_bad_override(target: str, reason: str) -> None:
    if not Path(target).exists() and "nonexistent" not in target:
        pytest.skip(f"{target} does not exist here")
    layer = libxc.layer((4, 17), environ={libxc.ENV: target})
    assert isinstance(layer, libxc.Absent)
    assert layer.note == f"{libxc.ENV}={target}: {reason}"


def test_truncated_library(pkgs: xenpkgs.XenPackages, tmp_path: Path) -> None:
    """A damaged file gives a reason, never a traceback."""
    data = pkgs.libxenctrl.read_bytes()
    for size in (0, 16, 64, 4096, len(data) // 2):
        broken = tmp_path / f"libxenctrl.so.4.17.{size}"
        broken.write_bytes(data[:size])
        layer = libxc.layer((4, 17), environ={libxc.ENV: str(broken)})
        assert isinstance(layer, libxc.Absent), size
        assert layer.note.startswith(f"{libxc.ENV}={broken}: "), layer.note


def test_override_that_is_not_libxenctrl(pkgs: xenpkgs.XenPackages) -> None:
    other = pkgs.libdir / "libxenguest.so.4.17"
    layer = libxc.layer((4, 17), environ={libxc.ENV: str(other)})
    assert isinstance(layer, libxc.Absent)
    assert layer.note.endswith("SONAME libxenguest.so.4.17 is not libxenctrl's")


def test_missing_dependency_is_named(pkgs: xenpkgs.XenPackages, tmp_path: Path) -> None:
    """Found, but libxencall & co. are not on the loader path: say which is missing."""
    s = load("healthy")
    env = env_for(s, tmp_path)
    env.pop("LD_LIBRARY_PATH", None)
    env[libxc.ENV] = str(pkgs.libxenctrl)
    out = run_layer(s, [Probe(Quantity.XEN_VERSION, Subject.HOST)], env)
    assert not out["present"] and out["readings"] == [None]
    assert out["note"].startswith("libxenctrl.so.4.17 cannot be loaded: libxen")
    assert "cannot open shared object file" in out["note"]


def test_check_reports_why_the_column_is_empty(tmp_path: Path) -> None:
    """A 4.18 host without libxenctrl.so.4.18: the libxc column is absent, with a note,
    and the other layers' verdicts decide the exit code as before."""
    env = env_for(load("balloon"), tmp_path)
    env.pop(libxc.ENV, None)
    code, report = check_json("balloon", env=env)
    assert "libxc: libxenctrl.so.4.18 not found" in report["notes"]
    assert all(r["layers"]["libxc"] == {"verdict": "absent"} for r in report["results"])
    assert code == report["exit_code"]
    p = subprocess.run([sys.executable, "-m", "xenprobe", "check", "--mock", "balloon"],
                       env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "note: libxc: libxenctrl.so.4.18 not found" in p.stdout.splitlines()


# ------------------------------------------------------------------ the sweep

@pytest.fixture(scope="module", params=SWEEPABLE)
def swept(request: pytest.FixtureRequest, pkgs: xenpkgs.XenPackages,
          tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, int, dict[str, Any]]:
    s = at_417(request.param)
    code, report = check_json(s.name, env=_env(s, tmp_path_factory.mktemp(s.name), pkgs))
    return s, code, report


def test_libxc_column_follows_the_model(swept: tuple[Scenario, int, dict[str, Any]]
                                        ) -> None:
    s, code, report = swept
    assert "libxc" in report["layers"]
    moving = {d.domid for d in s.domains if d.balloon}
    libxc_mismatches = 0
    for r in report["results"]:
        where = f"{s.name}: {r['quantity']} {r['subject']} {r['domid']}"
        got = r["layers"]["libxc"]
        want = model.expected(s, r["quantity"], r["subject"], r["domid"])
        if r["domid"] in moving and r["quantity"] == "current_reservation":
            # The balloon moved under it: no fixed value, and never a mismatch.
            assert got["verdict"] in ("match", "drift"), where
            continue
        assert _reading(got if "value" in got else None) == want, where
        if want is None:
            assert got["verdict"] == "absent", where
            continue
        assert got["width"] == want.width, where
        raw = _reading(r["raw"])
        if r["raw"] is None:  # a sysctl (quantities.UNBATCHED): against its reference
            raw = Reading(true_value(s, r["quantity"], None) or 0, 0, 64)
        assert raw is not None
        if model.via_reference(r["quantity"], r["subject"]):
            # xc_get_tot_pages reads domctl getdomaininfo: judged against that source.
            raw = model.reference_reading(s, r["domid"])
        v = model.verdict(raw, want)
        if (v == "match" and r["raw_verdict"] == "forged_errno"
                and not model.via_reference(r["quantity"], r["subject"])):
            # It handed the guest's forged errno on unchanged (judge._judge_source).
            v = "passed_forged"
        assert got["verdict"] == v, where
        libxc_mismatches += got["verdict"] not in ("match", "drift")
    if libxc_mismatches:
        assert code == 1


def test_own_release_needs_no_override_and_has_no_note(
        swept: tuple[Scenario, int, dict[str, Any]]) -> None:
    _, _, report = swept
    assert [n for n in report["notes"] if n.startswith("libxc:")] == []


def test_library_of_another_release_leaves_the_column_absent(
        pkgs: xenpkgs.XenPackages, tmp_path: Path) -> None:
    """libxenctrl 4.17 on Xen 4.18: a mismatched toolstack, whose domctls would be
    refused; reported as why the column is empty, not as mismatches."""
    s = load("balloon")
    env = _env(s, tmp_path, pkgs)
    env[libxc.ENV] = str(pkgs.libxenctrl)
    code, report = check_json(s.name, env=env)
    assert code == 0
    assert {r["layers"]["libxc"]["verdict"] for r in report["results"]} == {"absent"}
    (note,) = [n for n in report["notes"] if n.startswith("libxc:")]
    assert "is libxenctrl 4.17, the hypervisor is Xen 4.18" in note


def test_healthy_and_large_memory_all_match(pkgs: xenpkgs.XenPackages, tmp_path: Path
                                            ) -> None:
    """4.17 on 4.17: libxc keeps all 64 bits (multicall for memory_op, a long from
    domaininfo for xc_get_tot_pages), even where the ioctl sign-flips."""
    for name in ("healthy", "large-memory"):
        s = load(name)
        _, report = check_json(name, env=_env(s, tmp_path, pkgs))
        verdicts = {r["layers"]["libxc"]["verdict"] for r in report["results"]}
        assert verdicts == {"match"}, name


# ------------------------------------------------------------------ what libxc asked

@pytest.mark.parametrize("name", EVERY)
def test_request_log(name: str, pkgs: xenpkgs.XenPackages, tmp_path: Path) -> None:
    """libxc's own traffic: the open sequence (0x50FF probe, DM_OP probe), then exactly
    one hypercall per probe, memory_op inside a one-entry multicall."""
    s = at_417(name)
    log = tmp_path / "log.jsonl"
    probes = plan(d.domid for d in s.domains)
    out = run_layer(s, probes, _env(s, tmp_path, pkgs, log))
    assert out["present"], out["note"]
    entries = read_log(log)
    opens = [(e["path"], e["errno"]) for e in entries if e["kind"] == "open"]
    assert opens.count(("/dev/xen/privcmd", 0)) == 4
    assert opens.count(("/dev/xen/hypercall", errno.ENOENT)) == 2
    ioctls = [e for e in entries if e["kind"] == "ioctl"]
    assert [e.get("name") for e in ioctls] == ["UNIMPLEMENTED", "DM_OP"]
    assert (ioctls[0]["returned"], ioctls[0]["errno"]) == (-1, ENOTTY)
    assert (ioctls[1]["dom"], ioctls[1]["num"]) == (0x7FF4, 0)

    hypercalls = [e for e in entries if e["kind"] == "hypercall"]
    inner = {e["parent_seq"]: e for e in entries if e["kind"] == "multicall_entry"}
    assert len(hypercalls) == len(probes)
    for probe, h in zip(probes, hypercalls, strict=True):
        want = model.call(s, probe.quantity.value, probe.subject.value, probe.domid)
        where = f"{name}: {probe.label} {probe.quantity.value}"
        assert h["op"] == want.op and h["via"] == "ioctl", where
        if want.op == 13:
            assert h["args"][1] == 1 and h["result"] == 0, where  # one entry
            e = inner[h["seq"]]
            assert (e["op"], e["subop"]) == (12, want.subop), where
            assert e.get("domain") == want.domain, where
            assert e["result"] == want.result, where
        else:
            assert h["subop"] == want.subop and h["result"] == want.result, where
            assert h.get("domain") == want.domain, where
        if want.op == 36:
            assert h["interface_version"] == model.LIB.domctl, where
    closes = [e for e in entries if e["kind"] == "close"]
    assert len(closes) == 4  # xc_interface_close: every privcmd fd it opened


# ------------------------------------------------------------------ the error path

def test_missing_domain_below_an_existing_one(pkgs: xenpkgs.XenPackages, tmp_path: Path
                                              ) -> None:
    """libxc 4.17's xc_get_tot_pages for a missing id below an existing domain: Xen
    <= 4.17 answers for the next domain, libxc notices the other domid and returns -1
    without setting errno. The caller cannot tell why: the ESRCH is lost."""
    s = load("large-memory")
    ids = {d.domid for d in s.domains}
    missing = next(i for i in range(1, max(ids)) if i not in ids)
    log = tmp_path / "log.jsonl"
    probe = Probe(Quantity.CURRENT_RESERVATION, Subject.MISSING, missing)
    out = run_layer(s, [probe], _env(s, tmp_path, pkgs, log))
    got = _reading(out["readings"][0])
    assert got == model.expected(s, "current_reservation", "missing", missing)
    assert got == Reading(-1, 0, 64)
    assert classify(Truth.error(errno.ESRCH), got) is Verdict.LOST_ERROR
    domctl = [e for e in read_log(log) if e["kind"] == "hypercall" and e["op"] == 36]
    assert [(e["domain"], e["result"]) for e in domctl] == [(missing, 0)]


def test_missing_domain_above_every_domain_keeps_esrch(pkgs: xenpkgs.XenPackages,
                                                       tmp_path: Path) -> None:
    s = load("healthy")
    probe = [p for p in plan(d.domid for d in s.domains) if p.subject is Subject.MISSING]
    out = run_layer(s, probe, _env(s, tmp_path, pkgs))
    assert _reading(out["readings"][0]) == Reading(-1, errno.ESRCH, 64)


def test_domu_sees_only_itself(pkgs: xenpkgs.XenPackages, tmp_path: Path) -> None:
    """`check` stops at host detection in a domU; the layer alone shows what libxc gets."""
    s = load("domu")
    probes = plan(d.domid for d in s.domains)
    out = run_layer(s, probes, _env(s, tmp_path, pkgs))
    for probe, got in zip(probes, out["readings"], strict=True):
        want = model.expected(s, probe.quantity.value, probe.subject.value, probe.domid)
        assert _reading(got) == want, probe.label
    by = {(p.quantity, p.domid): _reading(r) for p, r in zip(probes, out["readings"],
                                                            strict=True)}
    assert by[(Quantity.MAXIMUM_RESERVATION, 0)] == Reading(-1, errno.EPERM, 64)
    assert by[(Quantity.CURRENT_RESERVATION, 0)] == Reading(-1, errno.EPERM, 64)


# A Xen 4.14 host shaped like the real tier's (tests/realxen/session.EXTRA_DOMAINS): PV
# domains whose maximum_gpfn their kernels set to 2^31 + 12345, 0xFFFFFFFE, 2^32 + 4096.
AT_414 = """description = "Xen 4.14 with guest-set maximum_gpfn at and above 2^31"
[xen]
release = "4.14"
extraversion = ".6"
[host]
memory = "2 GiB"
[[domain]]
id = 0
memory = "1 GiB"
max_memory = "1 GiB"
max_gpfn = 0x3FFFF
[[domain]]
id = 2
memory = "4 MiB"
max_gpfn = 0x80003039
[[domain]]
id = 3
memory = "1 MiB"
max_gpfn = 0xFFFFFFFE
[[domain]]
id = 4
memory = "1 MiB"
max_gpfn = 0x100001000
"""


def test_libxenctrl_414_loses_what_the_ioctl_loses(tmp_path: Path) -> None:
    """Debian 11's libxenctrl 4.14.6 issues memory ops through the int ioctl
    (xc_private.c@RELEASE-4.14.6:331-348): on the mock host, as on real Xen 4.14
    (tests/realxen/test_xenprobe.py::test_libxc_layer_on_real_xen), its readings are the
    ioctl's bit for bit, and check notes why."""
    if os.environ.get(xenpkgs.SKIP_ENV) == "1":
        pytest.skip(f"{xenpkgs.SKIP_ENV}=1: Debian's libxenctrl 4.14 not fetched")
    lib14 = xenpkgs.ensure(release="4.14")
    path = tmp_path / "at414.toml"
    path.write_text(AT_414)
    env = env_for(parse(AT_414, str(path)), tmp_path)
    env.update(lib14.env())
    env.pop(libxc.ENV, None)
    code, report = check_json(str(path), env=env)
    assert code == 1
    (note,) = [n for n in report["notes"] if n.startswith("libxc:")]
    assert "libxenctrl 4.14 issues memory ops through the int ioctl" in note
    lost = {}
    for r in report["results"]:
        lx, io = r["layers"]["libxc"], r["layers"]["ioctl"]
        if r["quantity"] in ("maximum_gpfn", "maximum_ram_page"):
            assert (lx["value"], lx["errno"], lx["verdict"]) == (
                io["value"], io["errno"], io["verdict"]), r
            if lx["verdict"] != "match":
                lost[r["domid"]] = lx["verdict"]
    assert lost == {2: "sign_flipped", 3: "aliased_errno", 4: "truncated"}
