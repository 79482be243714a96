# SPDX-License-Identifier: GPL-2.0-only
"""Why a host has no raw layer, and what can still be concluded without it.

The raw layer is the hypervisor's own 64-bit result, read from a one-entry multicall.
A PVH dom0 (an HVM domain) has multicalls only from Xen 4.15.1: before, the HVM
hypercall table has no entry for it and Xen answers -ENOSYS
(xen/arch/x86/hvm/hypercall.c@RELEASE-4.14.6:127-157,220-224, @RELEASE-4.15.0:124-154,
217-221; COMPAT_CALL(multicall) at RELEASE-4.15.1:127). A PV dom0 has them on every
release. Without the raw layer, a layer's reading can be judged only against an
independent reference that names the exact value (getdomaininfo, /sys/hypervisor);
a reading inside a reference that is only a range, or of a quantity without one, is
left unjudged: it may be right, or a truncation that happens to land there.
"""

from __future__ import annotations

from dataclasses import dataclass

# Label values of xenprobe_layer_absent's `reason` and JSON's raw_layer.reason.
PVH_NO_MULTICALL = "pvh_no_multicall"
MULTICALL_ENOSYS = "multicall_enosys"

HVM_KINDS = frozenset({"PVH", "HVM"})


@dataclass(frozen=True, slots=True)
class RawAbsent:
    """The raw layer is missing from a sweep: why, in a word and in a sentence."""

    reason: str
    guest_type: str | None

    @staticmethod
    def after_enosys(guest_type: str | None) -> RawAbsent:
        """The multicall answered ENOSYS; guest_type is /sys/hypervisor/guest_type."""
        kind = PVH_NO_MULTICALL if guest_type in HVM_KINDS else MULTICALL_ENOSYS
        return RawAbsent(kind, guest_type)

    @property
    def note(self) -> str:
        if self.reason == PVH_NO_MULTICALL:
            why = (f"this dom0 is {self.guest_type} and its multicall answered ENOSYS: "
                   "an HVM/PVH dom0 has no multicall before Xen 4.15.1 "
                   "(x86/hvm/hypercall.c@RELEASE-4.15.1:127)")
        else:
            kind = self.guest_type or "of unknown type (no /sys/hypervisor/guest_type)"
            why = (f"the multicall answered ENOSYS (this dom0 is {kind}), so the "
                   "hypervisor's own 64-bit results cannot be read")
        return (f"no raw layer: {why}. The other layers are judged against getdomaininfo "
                "and /sys/hypervisor where those give the exact value; the rest is "
                "unjudged, neither clean nor a mismatch")

    def as_json(self) -> dict[str, object]:
        return {"present": False, "reason": self.reason, "guest_type": self.guest_type,
                "note": self.note}


PRESENT: dict[str, object] = {"present": True, "reason": None}
