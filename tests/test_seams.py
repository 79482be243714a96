# SPDX-License-Identifier: GPL-2.0-only
"""The seams hold: a new layer is a class that speaks the Layer protocol, handed to the
Sweeper; the sweep reads it, judges it and reports it without knowing what it is.

The fake layer here reads like the kernel's syscall path but hands back only the low 16
bits (a caller storing the result in a uint16_t). Small values (a version, a domain's few
pages) survive; a host's page counts do not, and the judge must say so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.mockhost import env_for
from xenprobe.mock.scenario import load
from xenprobe.probe.classify import MISMATCHES, Verdict

CHILD = r"""
import json
from array import array
from xenprobe.xen.host import Host
from xenprobe.layers.protocol import ladder
from xenprobe.support.logs import configure
from xenprobe.xen.reading import Columns
from xenprobe.probe.sweep import Sweeper
from xenprobe.xen.transport import Calls, Privcmd


class LowBits:
    name = "low_bits"
    description = "the syscall's result kept in a uint16_t"
    note = ""

    def __init__(self, dev):
        self.dev = dev

    def read_columns(self, probes, calls, raw=None):
        values, errnos = self.dev.many_values(Calls.of(calls), syscall=True, raw=raw)
        return Columns(array("q", (v & 0xFFFF for v in values)), errnos, 32)

    def read_many(self, probes, calls):
        c = self.read_columns(probes, calls)
        return [c.reading(i) for i in range(len(c))]

    def read_request(self, probe, request):
        r = request.read(syscall=True)[0]
        return type(r)(r.value & 0xFFFF, r.errno, 32)

    def via_reference(self, probe):
        return False


configure("warning")
dev = Privcmd(); host = Host(dev)
layers = [*ladder(dev, host.identity), LowBits(dev)]
sweep = Sweeper(host, layers).sweep()
print(json.dumps({"layers": sweep.layers,
                  "verdicts": [{k: v.value for k, v in r.verdicts.items()}
                               for r in sweep.results]}))
"""


def _sweep(name: str, tmp_path: Path) -> dict[str, list]:  # type: ignore[type-arg]
    p = subprocess.run([sys.executable, "-c", CHILD], env=env_for(load(name), tmp_path),
                       text=True, capture_output=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    out: dict[str, list] = json.loads(p.stdout)  # type: ignore[type-arg]
    return out


def test_a_new_layer_is_swept_and_judged_without_touching_the_sweep(tmp_path: Path) -> None:
    out = _sweep("healthy", tmp_path)
    assert out["layers"][-1] == "low_bits"
    assert all("low_bits" in v for v in out["verdicts"])
    # Judged like every other layer: where the 64-bit kernel path reads the value right,
    # the low 16 bits match it or are a mismatch (the classifier knows no 16-bit path:
    # "other"), and this host has both.
    kernel_ok = [v["low_bits"] for v in out["verdicts"] if v.get("syscall") == "match"]
    assert "match" in kernel_ok, out["verdicts"]
    lost = [v for v in kernel_ok if v != "match"]
    assert lost and all(Verdict(v) in MISMATCHES for v in lost), out["verdicts"]
