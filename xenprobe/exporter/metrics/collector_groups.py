# SPDX-License-Identifier: GPL-2.0-only
"""Quantity groups an operator can leave out of the exports, as node_exporter's
collectors: `--no-collector.<group>` / `--collector.<group>` on serve, or the
`disabled_collectors` key. A disabled group's quantities are still probed (a sweep
reads every quantity in one batch); their series are left out of every family, and
their findings out of xenprobe_mismatched_readings and so out of the alerts."""

from __future__ import annotations

from collections.abc import Iterable

from xenprobe.xen.quantities import RECORDS, Quantity

# The census's groups (docs/census.md): one per hypercall family and purpose, in the
# order the flags are listed; each quantity's is in its record (Record.group).
NAMES = ("memory", "version", "debugreg", "sharing", "hypfs", "vcpu", "kexec", "platform",
         "livepatch")
GROUPS: dict[str, tuple[Quantity, ...]] = {
    g: tuple(q for q, r in RECORDS.items() if r.group == g) for g in NAMES}


def left_out(disabled: Iterable[str]) -> frozenset[str]:
    """The quantity names the disabled groups leave out of the exports."""
    groups = set(disabled)
    return frozenset(q.value for q, r in RECORDS.items() if r.group in groups)


def toggled(disabled: Iterable[str], toggles: str) -> tuple[str, ...]:
    """`disabled` after the flags' toggles, a comma list: "-G" disables G (also a bare
    "G"), "+G" enables it; later ones win."""
    out = set(disabled)
    for t in filter(None, (x.strip() for x in toggles.split(","))):
        if t.startswith("+"):
            out.discard(t[1:])
        else:
            out.add(t.removeprefix("-"))
    return tuple(sorted(out))
