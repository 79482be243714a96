# SPDX-License-Identifier: GPL-2.0-only
"""Mock host scenarios with N domains for the benchmark (Xen 4.17, realistic sizes).

Most guests are ordinary: 512 MiB to 32 GiB, PV or HVM, a few vCPUs. A fixed share is
large in the way that exercises the classifier rather than the fast path:

- every 50th guest is HVM with a device BAR mapped above 8 TiB of guest-physical space,
  so its maximum_gpfn needs 32 bits (sign_flipped through the int-returning layers);
- every 500th guest has its highest frame at 0xFFFFFFFE, which glibc reads as -1/ENOENT
  (aliased_errno);
- from 100 domains up, one guest holds 10 TiB, so its tot_pages pass INT_MAX.

The host's RAM is the sum of the guests' plus dom0's, and max_page (a 4 GiB hole above
RAM) is above 2^31 from 100 domains up, as on the 12 TiB hosts the README describes.
Nothing moves (no balloons): every sweep takes one attempt, so the floor, the peer and
xenprobe read the same values and the same number of times.
"""

from __future__ import annotations

import random
from pathlib import Path

GIB_PAGES = 1 << 18  # 4 KiB pages in a GiB
SIZES_GIB = (0.5, 1, 2, 4, 8, 16, 32)
SEED = 20240601
DOM0_VCPUS = 16  # vcpu_is_up is probed once for each


def domains(n: int) -> list[dict[str, int | bool]]:
    """dom0 plus n - 1 guests, as [[domain]] tables."""
    rng = random.Random(SEED)
    out: list[dict[str, int | bool]] = [
        {"id": 0, "tot_pages": 16 * GIB_PAGES, "max_pages": 16 * GIB_PAGES,
         "vcpus": DOM0_VCPUS}]
    for i in range(1, n):
        gib = rng.choice(SIZES_GIB)
        tot = int(gib * GIB_PAGES)
        d: dict[str, int | bool] = {"id": i, "tot_pages": tot,
                                    "max_pages": tot + rng.choice((0, 0, GIB_PAGES)),
                                    "hvm": rng.random() < 0.7,
                                    "vcpus": rng.choice((1, 2, 4, 8))}
        if i == 7 and n >= 100:
            d.update(tot_pages=10 * 1024 * GIB_PAGES, max_pages=10 * 1024 * GIB_PAGES,
                     hvm=True, vcpus=384)
        if i % 500 == 250:
            d.update(hvm=True, max_gpfn=0xFFFFFFFE)
        elif i % 50 == 25:
            d.update(hvm=True, max_gpfn=0x80000000 + i)
        out.append(d)
    return out


def toml(n: int) -> str:
    """The scenario text for a host with n domains (n >= 1: dom0 alone at 1)."""
    doms = domains(n)
    total = sum(int(d["tot_pages"]) for d in doms)
    total = max(total, 64 * GIB_PAGES)
    max_page = total + 4 * GIB_PAGES  # a 4 GiB MMIO hole above RAM
    lines = [f'description = "benchmark host with {n} domains"',
             "", "[xen]", 'release = "4.17"', 'extraversion = ".7"',
             "", "[host]", f"total_pages = {total}", f"max_page = {max_page}",
             "nr_cpus = 256", "",
             # A PV dom0 with the census's other read-only calls (get_debugreg, hypfs,
             # the sharing counts, build-id size, VCPUOP_is_up per dom0 vCPU, kexec
             # status): tests/bench/floor.c issues them too.
             "[hypervisor]", "census = true", ""]
    for d in doms:
        lines.append("[[domain]]")
        lines += [f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
                  for k, v in d.items()]
        lines.append("")
    return "\n".join(lines)


def write(n: int, directory: Path) -> Path:
    path = directory / f"bench-{n}.toml"
    path.write_text(toml(n))
    return path
