# SPDX-License-Identifier: GPL-2.0-only
"""Quantity groups an operator can leave out of the exports, as node_exporter's
collectors: `--no-collector.<group>` / `--collector.<group>` on serve, or the
`disabled_collectors` key. A disabled group's quantities are still probed (a sweep
reads every quantity in one batch); their series are left out of every family, and
their findings out of xenprobe_mismatched_readings and so out of the alerts."""

from __future__ import annotations

from collections.abc import Iterable

from xenprobe.xen.quantities import Quantity as Q  # noqa: N817 (a table of names, read as data)

# The census's groups (docs/census.md): one per hypercall family and purpose.
GROUPS: dict[str, tuple[Q, ...]] = {
    "memory": (Q.MAXIMUM_RAM_PAGE, Q.CURRENT_RESERVATION, Q.MAXIMUM_RESERVATION,
               Q.MAXIMUM_GPFN),
    "version": (Q.XEN_VERSION, Q.XEN_PAGESIZE, Q.BUILD_ID_SIZE, Q.EXTRAVERSION_LEN,
                Q.CAPABILITIES_LEN, Q.CHANGESET_LEN, Q.COMMANDLINE_LEN),
    "debugreg": (Q.DEBUG_REGISTER_6,),
    "sharing": (Q.SHARING_FREED_PAGES, Q.SHARING_SHARED_PAGES),
    "hypfs": (Q.HYPFS_VERSION,),
    "vcpu": (Q.VCPU_IS_UP,),
    "kexec": (Q.KEXEC_STATUS_DEFAULT, Q.KEXEC_STATUS_CRASH),
    "platform": (Q.DOM0_CONSOLE_SIZE, Q.RESOURCE_OP_DONE),
    "livepatch": (Q.LIVEPATCH_LISTED,),
}


def left_out(disabled: Iterable[str]) -> frozenset[str]:
    """The quantity names the disabled groups leave out of the exports."""
    return frozenset(q.value for g in disabled for q in GROUPS[g])


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
