# SPDX-License-Identifier: GPL-2.0-only
"""Consumers at risk on real Xen 4.17: processes holding the real /dev/xen/privcmd in the
real dom0, each judged by the libxenctrl it really maps (Debian's 4.14 from bullseye and
4.17 from bookworm), a 32-bit program's privcmd ioctl as the real kernel answers it, and
the scan under the units' capability bounding set (setpriv, as CapabilityBoundingSet=).
A loaded host needs 5-15 minutes for it.

One boot; the script leaves its findings in $RESULTS and the tests read them.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests import xenpkgs
from tests.holders import build_hold32, build_ioctl32

from .assets import Assets
from .conftest import RealXen
from .session import VENV_PYTHON, copy_into_share

pytestmark = pytest.mark.realxen

CACHE = Path(os.environ.get("XENPROBE_CACHE", Path.home() / ".cache" / "xenprobe"))
LIBDIR = "usr/lib/x86_64-linux-gnu"
# bullseye's libxenmisc4.14 ships libxenctrl.so.4.14 (4.14.6-1); its stable-ABI
# dependencies (libxencall1, ...) are taken from the 4.17 set, as on a mixed host.
BULLSEYE = ("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bullseye\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")

# In dom0: map argv[2] (unless "-"), open argv[1], say so in argv[3], wait to be killed.
HOLDER = ("import ctypes, os, sys, time\n"
          "if sys.argv[2] != '-': ctypes.CDLL(sys.argv[2])\n"
          "fd = os.open(sys.argv[1], os.O_RDWR)\n"
          "open(sys.argv[3], 'w').write(str(os.getpid()))\n"
          "time.sleep(3600)\n")
# In dom0: the same hypercall ioctl the 32-bit program issues, from a 64-bit process.
IOCTL64 = ("import ctypes, os, struct\n"
           "fd = os.open('/dev/xen/privcmd', os.O_RDWR)\n"
           "buf = ctypes.create_string_buffer(struct.pack('6Q', 17, 0, 0, 0, 0, 0))\n"
           "libc = ctypes.CDLL(None, use_errno=True)\n"
           "libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]\n"
           "r = libc.ioctl(fd, 0x305000, buf)\n"
           "print('ioctl64', r if r >= 0 else -ctypes.get_errno())\n")
CHECK = f"{VENV_PYTHON} -m xenprobe check --json"
# The scan alone, as the units' bounding sets allow (a check's sweep each time would
# double the run under TCG for nothing this test reads).
SCAN = (f"{VENV_PYTHON} -c 'import json, os; from xenprobe.xen.consumers import scan; "
        "print(json.dumps(scan(exclude={os.getpid()}).as_json()))'")


@cache
def libxenctrl_414() -> Path:
    """The directory holding Debian's libxenctrl.so.4.14, fetched once (private apt
    state below the cache: the host's apt is untouched)."""
    base = CACHE / "consumers-4.14"
    lib = base / "root" / LIBDIR
    if (lib / "libxenctrl.so.4.14").exists():
        return lib
    state = base / "apt"
    for d in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (state / d).mkdir(parents=True, exist_ok=True)
    (state / "sources.list.d" / "bullseye.sources").write_text(BULLSEYE)
    opts = [a for o in (f"Dir::State::Lists={state}/lists",
                        f"Dir::Etc::SourceList={state}/none.list",
                        f"Dir::Etc::SourceParts={state}/sources.list.d",
                        f"Dir::Cache={state}/cache",
                        f"Dir::Etc::PreferencesParts={state}/preferences.d",
                        "APT::Architectures::=amd64", "Acquire::Languages=none",
                        "APT::Sandbox::User=root")
            for a in ("-o", o)]
    env = {**os.environ, "LC_ALL": "C"}
    subprocess.run(["apt-get", "-q", *opts, "update"], check=True, capture_output=True,
                   env=env, timeout=600)
    debs = base / "debs"
    debs.mkdir(exist_ok=True)
    subprocess.run(["apt-get", "-q", *opts, "download", "libxenmisc4.14"], cwd=debs,
                   check=True, capture_output=True, env=env, timeout=600)
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(base / "root")], check=True)
    return lib


@pytest.fixture(scope="module")
def run(realxen_assets: Assets, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One boot of its own (not through the xen417 fixture, which would start the whole
    session boot of this tier too)."""
    if os.geteuid() != 0:
        pytest.skip("the dom0 run needs root")
    try:
        lib417 = xenpkgs.ensure().libdir
        lib414 = libxenctrl_414()
    except (xenpkgs.PackageError, subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"Debian's libxenctrl 4.14 / 4.17 not available: {e}")
    bins = tmp_path_factory.mktemp("bins")
    hold32, ioctl32 = build_hold32(bins), build_ioctl32(bins)
    share = "/tmp/xenprobe"  # the share in dom0, where `files` land
    l414, l417 = f"{share}/lib414", f"{share}/lib417"
    script = f"""
cd {share}
export PYTHONDONTWRITEBYTECODE=1
holder() {{ LD_LIBRARY_PATH={l414}:{l417} python3 -c "$(cat holder.py)" "$@" & }}
holder /dev/xen/privcmd {l414}/libxenctrl.so.4.14 $RESULTS/pid-414
holder /dev/xen/privcmd {l417}/libxenctrl.so.4.17 $RESULTS/pid-417
holder /dev/xen/privcmd - $RESULTS/pid-raw
./hold32 /dev/xen/privcmd > $RESULTS/hold32.out &
echo $! > $RESULTS/pid-32
./ioctl32 /dev/xen/privcmd > $RESULTS/ioctl32.txt 2>&1
python3 -c "$(cat ioctl64.py)" > $RESULTS/ioctl64.txt 2>&1
for f in pid-414 pid-417 pid-raw; do
  n=0; while [ ! -s $RESULTS/$f ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
done
{CHECK} > $RESULTS/check.json 2> $RESULTS/check.err; echo $? > $RESULTS/check.rc
setpriv --bounding-set=-all,+ipc_lock --inh-caps=-all {SCAN} > $RESULTS/scan-ipc-lock.json 2>&1
setpriv --bounding-set=-all,+ipc_lock,+sys_ptrace --inh-caps=-all {SCAN} \\
  > $RESULTS/scan-unit.json 2>&1
kill $(jobs -p) 2>/dev/null
exit 0
"""
    (bins / "holder.py").write_text(HOLDER)
    (bins / "ioctl64.py").write_text(IOCTL64)
    files = {"hold32": hold32, "ioctl32": ioctl32, "lib414": lib414, "lib417": lib417,
             "holder.py": bins / "holder.py", "ioctl64.py": bins / "ioctl64.py"}
    xen = RealXen("4.17", realxen_assets, tmp_path_factory.mktemp("xen417-consumers"))
    # A loaded two-core host took over 600 s (three cold Python starts over 9p in TCG).
    r = xen.run(script, label="consumers", timeout=1200, smp=1,
                before_boot=lambda share: copy_into_share(share, files))
    r.check()
    out = r.results_dir

    def text(name: str) -> str:
        return (out / name).read_text()

    return {
        "pids": {k: int(text(f"pid-{k}").strip()) for k in ("414", "417", "raw", "32")},
        "ioctl32": text("ioctl32.txt"), "ioctl64": text("ioctl64.txt"),
        "check": json.loads(text("check.json")),
        "ipc_lock": json.loads(text("scan-ipc-lock.json")),
        "unit": json.loads(text("scan-unit.json")),
        "libs": {"4.14": f"{l414}/libxenctrl.so.4.14.0", "4.17": f"{l417}/libxenctrl.so.4.17.0"},
    }


def test_a_32_bit_process_gets_enotty_from_the_real_privcmd(run: dict[str, Any]) -> None:
    """No .compat_ioctl in privcmd's file_operations: the real dom0 kernel answers a
    32-bit IOCTL_PRIVCMD_HYPERCALL with ENOTTY, while the same call from a 64-bit
    process returns xen_version's 0x40011 (262161)."""
    print(f"\n{run['ioctl32'].strip()}; {run['ioctl64'].strip()}")
    assert run["ioctl32"] == "ioctl32 -25\n"
    assert run["ioctl64"] == "ioctl64 262161\n"


def test_check_judges_each_holder_by_its_real_libxenctrl(run: dict[str, Any]) -> None:
    report = run["check"]["consumers"]
    by_pid = {c["pid"]: c for c in report["processes"]}
    pids = run["pids"]
    print("\n" + "\n".join(f"{c['pid']} {c['name']} {c['libxenctrl']} {c['verdict']}"
                           for c in report["processes"]))
    assert by_pid[pids["414"]]["libxenctrl"] == {"path": run["libs"]["4.14"],
                                                 "release": "4.14"}
    assert by_pid[pids["414"]]["verdict"] == "int_path"
    assert by_pid[pids["417"]]["libxenctrl"] == {"path": run["libs"]["4.17"],
                                                 "release": "4.17"}
    assert by_pid[pids["417"]]["verdict"] == "multicall"
    assert by_pid[pids["raw"]]["libxenctrl"] is None
    assert by_pid[pids["raw"]]["verdict"] == "unknown"
    assert (by_pid[pids["32"]]["bits"], by_pid[pids["32"]]["verdict"]) == (32, "error_only")
    assert all(c["device"] == "/dev/xen/privcmd" for c in by_pid.values())
    assert report["complete"] is True


def test_the_units_bounding_set_sees_them_and_cap_ipc_lock_alone_does_not(
        run: dict[str, Any]) -> None:
    """As CapabilityBoundingSet=CAP_IPC_LOCK (the units before): nothing found, and the
    scan says it could not look. With CAP_SYS_PTRACE added (the units now): every
    holder, with the same verdicts as root with every capability."""
    blind = run["ipc_lock"]
    assert blind["processes"] == []
    assert blind["complete"] is False and blind["unreadable_processes"]["fds"] >= 4
    seeing = run["unit"]
    assert seeing["complete"] is True
    assert {c["pid"]: c["verdict"] for c in seeing["processes"]} == {
        c["pid"]: c["verdict"] for c in run["check"]["consumers"]["processes"]}
