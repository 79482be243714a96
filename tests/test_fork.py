# SPDX-License-Identifier: GPL-2.0-only
"""A forked child never frees or clears its parent's hypercall memory.

Hypercall buffers and the transport's private copies are MADV_DONTFORK (libxencall
keeps its buffers so), so a child has none of its parent's pages: whatever the child
holds at such an address later is its own. Closing or dropping a parent's Buffer
(or PlatformRequests, LivepatchList, the sweep's kexec structs) in the child, explicitly
or by the interpreter's finalisers at a normal exit, must leave that alone; a child
using such a Buffer gets an error naming the cause. The children here exit normally
(sys.exit), so their finalisers run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.mockhost import env_for, read_log
from tests.test_race import forbidden
from xenprobe.mock.scenario import load

# The parent makes every kind of hypercall memory, then forks; the child closes, drops
# and resets them, reads through the platform and livepatch requests (which make their
# own buffers in the child), and exits through sys.exit.
CHILD_EXITS = r"""
import gc, json, os, struct, sys
from xenprobe.probe.calls import KexecStatuses
from xenprobe.support.errors import CannotProbe
from xenprobe.xen.livepatch import LivepatchList
from xenprobe.xen.platform_requests import PlatformRequests
from xenprobe.xen.quantities import Quantity
from xenprobe.xen.transport import Buffer, Privcmd, args5
dev = Privcmd()
closed, dropped = Buffer(4096), Buffer(65536)
req = PlatformRequests()
lp = LivepatchList(dev, 0x15)
kexec = KexecStatuses()
kexec.address(0)  # the kexec structs, made by the parent
pid = os.fork()
if pid == 0:
    try:
        closed.address
        used = "usable"
    except CannotProbe as e:
        used = str(e)
    closed.close()
    del dropped
    gc.collect()
    req.reset()
    r = dev.ioctl(7, args5(req.address(Quantity.DOM0_CONSOLE_SIZE)))
    lr, nr = lp.read(syscall=False)
    with open(sys.argv[1], "w") as f:
        json.dump({"used": used, "console": r.value, "livepatch": [lr.value, nr],
                   "kexec": kexec.address(0) != 0}, f)
    sys.exit(0)  # the finalisers of every Buffer above run here
_, status = os.waitpid(pid, 0)
# The parent's own memory is intact and still its own.
closed.view[0:4] = b"abcd"
print(json.dumps({"status": status, "parent": bytes(closed.view[0:4]).decode()}))
"""


def run(script: str, tmp: Path, *args: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    log = tmp / "log.jsonl"
    env = env_for(load("pv-dom0"), tmp, log)
    p = subprocess.run([sys.executable, "-c", script, *args], env=env, text=True,
                       capture_output=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert "Exception ignored" not in p.stderr, p.stderr
    out: dict[str, Any] = json.loads(p.stdout.splitlines()[-1])
    return out, read_log(log)


def test_a_child_that_exits_normally_frees_nothing_of_its_parent(tmp_path: Path) -> None:
    child = tmp_path / "child.json"
    out, log = run(CHILD_EXITS, tmp_path, str(child))
    # Before, the child died of SIGSEGV (status 11) on the close, the del, the reset or
    # its exit's finalisers.
    assert out == {"status": 0, "parent": "abcd"}, out
    seen = json.loads(child.read_text())
    assert "forked child" in seen["used"], seen
    assert seen["console"] > 0 and seen["livepatch"][0] == 0, seen
    assert seen["kexec"], seen
    assert forbidden(log) == []


# A child whose own Buffer lands where its parent's was (the parent's pages are a hole
# in the child), and which then closes the parent's Buffer. Before, that unmapped the
# child's own Buffer; the private copy of its next multicall took the same addresses,
# and entry 0's XENVER_commandline answer, aimed at the child's Buffer, rewrote entries
# already judged (op 0 reached the device).
REUSE = r"""
import json, os, sys
from xenprobe._transport import ffi, lib
from xenprobe.xen.transport import Buffer, Privcmd
N = 4096

def at(b):  # where a Buffer is, in whichever process (its address is its maker's)
    return int(ffi.cast("uintptr_t", b.ptr))

parent = Buffer(N * 64)
ents = Buffer(N * 64)
pid = os.fork()
if pid == 0:
    mine = Buffer(N * 64)  # top-down: the highest hole that fits, the parent's
    same = at(mine) == at(parent)
    own = Buffer(N * 64)  # the child's own entries
    mine.view[0:4] = b"mine"
    parent.close()
    # No Buffer is used after its own close: the next multicall's entry 0 answers into
    # the child's own Buffer.
    dev = Privcmd()
    e = ffi.cast("xp_multicall_entry *", own.ptr)
    for i in range(N):
        e[i].op = 17
    e[0].args[0], e[0].args[1] = 9, mine.address + 64
    ret, err = ffi.new("int *"), ffi.new("int *")
    rc = lib.xp_multicall(dev.fd, e, N, ret, err)
    seen = {"same": same, "rc": [rc, ret[0]]}
    with open(sys.argv[1], "w") as f:
        json.dump(seen, f)
    seen["intact"] = bytes(mine.view[0:4]) == b"mine"
    with open(sys.argv[1], "w") as f:
        json.dump(seen, f)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
print(json.dumps({"status": status}))
"""


def test_a_child_closing_its_parents_buffer_keeps_its_own_at_that_address(
        tmp_path: Path) -> None:
    child = tmp_path / "child.json"
    out, log = run(REUSE, tmp_path, str(child))
    seen = json.loads(child.read_text())
    # Before: op 0 (set_trap_table) reached the device, and the child died (SIGSEGV)
    # reading its own Buffer, which its parent's close had unmapped.
    assert forbidden(log) == [], seen
    assert out == {"status": 0}, out
    assert seen["same"], "the child's Buffer did not land where its parent's was"
    assert seen["intact"] and seen["rc"] == [0, 0], seen
    assert forbidden(log) == []
    entries = [e for e in log if e["kind"] == "multicall_entry"]
    assert len(entries) == 4096 and {e["op"] for e in entries} == {17}
