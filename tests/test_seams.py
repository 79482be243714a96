# SPDX-License-Identifier: GPL-2.0-only
"""The seams hold: a new layer is a class that speaks the Layer protocol, handed to the
Sweeper; a new quantity is its record (xenprobe.xen.quantities.RECORDS), its reference
(xenprobe.probe.references.REFERENCES) and its readers (xenprobe.probe.impact.ROWS).
The sweep, `check` and the metrics read, judge and report both without knowing what
they are: nothing in xenprobe.probe.sweep or xenprobe.cli.command is changed here.

The fake layer here reads like the kernel's syscall path but hands back only the low 16
bits (a caller storing the result in a uint16_t). Small values (a version, a domain's few
pages) survive; a host's page counts do not, and the judge must say so.

The fake quantities are real calls the mock host already models, under new names, so
they need no mock change: a per-domain one (XENMEM_maximum_reservation, against
getdomaininfo's max_pages) and a host-wide census one (XENVER_pagesize, against the dom0
kernel's page size), each with a reference of its own.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.mockhost import env_for
from xenprobe.exporter.metrics import collector_groups
from xenprobe.mock.scenario import load
from xenprobe.probe import impact
from xenprobe.probe.classify import MISMATCHES, Verdict
from xenprobe.probe.references import REFERENCES
from xenprobe.xen.quantities import RECORDS, Quantity

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


LOW_BITS = CHILD.split("class LowBits:")[1].split("configure(", maxsplit=1)[0]

# `xenprobe check` with one more layer and two more quantities, each added where its
# kind is declared: a layer is one more entry of the ladder (and its name in NAMES), a
# quantity one more record, reference and impact row. Set before the exporter's metric
# module is imported, as a source edit would be.
CHECK = r"""
import enum, sys
from array import array
from xenprobe.layers import protocol
from xenprobe.probe import impact, references, session
from xenprobe.probe.classify import Truth
from xenprobe.xen import quantities
from xenprobe.xen.abi import census_ops, hypercalls
from xenprobe.xen.quantities import Argument, Record, Scope
from xenprobe.xen.reading import Columns
from xenprobe.xen.transport import Calls


class LowBits:""" + LOW_BITS + r"""

class Fake(enum.StrEnum):
    RESERVATION_CEILING = "reservation_ceiling"
    PAGE_BYTES = "page_bytes"


def page_bytes(sources, probe):
    return Truth.exact(sources.facts.page_size) if sources.facts is not None else None


quantities.RECORDS[Fake.RESERVATION_CEILING] = Record(
    Fake.RESERVATION_CEILING, (hypercalls.MEMORY_OP, hypercalls.XENMEM_maximum_reservation),
    Scope.DOMAIN, "memory", Argument.DOMID)
references.REFERENCES[Fake.RESERVATION_CEILING] = references.max_pages
quantities.RECORDS[Fake.PAGE_BYTES] = Record(
    Fake.PAGE_BYTES, (hypercalls.XEN_VERSION, census_ops.XENVER_pagesize), Scope.CENSUS,
    "version")
references.REFERENCES[Fake.PAGE_BYTES] = page_bytes
for q in Fake:
    impact.ROWS[q] = impact.Row(q, impact.Readers.EVERY, (), "a test's quantity")

protocol.NAMES = (*protocol.NAMES, "low_bits")
ladder = session.ladder
session.ladder = lambda dev, identity=None: [*ladder(dev, identity), LowBits(dev)]

from xenprobe.cli.command import main
sys.exit(main(["check", "--json", "--textfile", sys.argv[1]]))
"""


def test_a_new_layer_and_new_quantities_reach_check_and_the_metrics(tmp_path: Path) -> None:
    prom = tmp_path / "xenprobe.prom"
    p = subprocess.run([sys.executable, "-c", CHECK, str(prom)],
                       env=env_for(load("healthy"), tmp_path), text=True,
                       capture_output=True, timeout=120, check=False)
    # 1: findings that act (the 16-bit layer's); never a usage error or a bug (2, 4).
    assert p.returncode == 1, p.stderr[-3000:]
    report = json.loads(p.stdout)
    assert report["layers"][-1] == "low_bits"
    by_quantity: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for r in report["results"]:
        by_quantity.setdefault(r["quantity"], []).append(r)
    # The census one is probed once for the host, the per-domain one for each domain
    # (dom0, 1 and 2), each judged by every layer against its own reference.
    assert [(r["subject"], r["domid"]) for r in by_quantity["page_bytes"]] == [("host", None)]
    ceiling = by_quantity["reservation_ceiling"]
    assert [(r["subject"], r["domid"]) for r in ceiling] == [("domain", d) for d in (0, 1, 2)]

    def verdicts(r: dict) -> dict[str, str]:  # type: ignore[type-arg]
        return {"raw": r["raw_verdict"], **{k: v["verdict"] for k, v in r["layers"].items()}}

    page = by_quantity["page_bytes"][0]
    assert page["reference"] is not None, page
    assert set(verdicts(page).values()) <= {"match", "absent"}, page
    assert verdicts(page)["low_bits"] == "match", page
    for r in ceiling:
        v = verdicts(r)
        assert v["raw"] == v["syscall"] == "match", r
        # Gigabytes of pages do not fit in 16 bits: the fake layer loses them.
        assert Verdict(v["low_bits"]) in MISMATCHES, r
    # Both in the metrics, the fake layer's mismatch with them.
    text = prom.read_text()
    for q in ("page_bytes", "reservation_ceiling"):
        assert re.search(rf'^xenprobe_probes\{{quantity="{q}"\}} ', text, re.M), q
    assert re.search(r'^xenprobe_mismatch_verdicts\{[^}]*layer="low_bits"[^}]*'
                     r'quantity="reservation_ceiling"', text, re.M), text[-3000:]


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


def test_every_quantity_has_its_record_reference_and_readers() -> None:
    """A quantity is one row in each table that describes it, keyed by itself."""
    assert list(RECORDS) == [r.quantity for r in RECORDS.values()]
    assert set(RECORDS) == set(Quantity) == set(REFERENCES) == set(impact.ROWS)
    assert {r.group for r in RECORDS.values()} == set(collector_groups.NAMES)
