# SPDX-License-Identifier: GPL-2.0-only
"""Fuzz target: decoding what the hypervisor writes back. Every struct layout of every
release decodes any bytes (ValueError only when there are too few); a decoded
getdomaininfo record becomes a DomainInfo; a decoded physinfo gets its sanity check; a
run of records gets the domain list's sanity check and the sweep's fast unpacking,
which must agree with the layout. The first byte picks the layout.

    python tests/fuzz/fuzz_structs.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import atheris

with atheris.instrument_imports():
    from xenprobe.xen.abi.layouts import (
        GETDOMAININFO_4_11,
        GETDOMAININFO_4_15,
        GETDOMAININFO_4_16,
        GETDOMAININFOLIST,
        PHYSINFO_4_10,
        PHYSINFO_4_17,
    )
    from xenprobe.xen.host import Host, _domain, invalid_physinfo

LAYOUTS = [PHYSINFO_4_10, PHYSINFO_4_17, GETDOMAININFO_4_11, GETDOMAININFO_4_15,
           GETDOMAININFO_4_16, GETDOMAININFOLIST]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    layout = LAYOUTS[data[0] % len(LAYOUTS)]
    buf = data[1:]
    try:
        decoded = layout.decode(buf)
    except ValueError:
        if len(buf) >= layout.size:
            raise
        return
    if layout.name.startswith("xen_sysctl_physinfo"):
        invalid_physinfo(decoded)
    elif layout.name.startswith("xen_domctl_getdomaininfo"):
        _domain(decoded)
        fake = SimpleNamespace(identity=SimpleNamespace(getdomaininfo=layout))
        fake._pages = Host._pages.func(fake)  # type: ignore[attr-defined]
        raw = buf[:len(buf) // layout.size * layout.size]
        fast = list(fake._pages.iter_unpack(raw))
        slow = [layout.decode(raw, at) for at in range(0, len(raw), layout.size)]
        assert fast == [(d["domain"], d["tot_pages"], d["max_pages"]) for d in slow]
        Host._invalid_list(fake, data[0], len(fast), raw)  # type: ignore[arg-type]


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
