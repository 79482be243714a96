# SPDX-License-Identifier: GPL-2.0-only
"""What the words and notations of `xenprobe check` mean, said once for the terminal's
legend, `check --help` and the man page alike.

Counting words, used the same way in output, metric HELP texts and docs:
a *probe* is one quantity read for one subject; a *subject* is what it is read for (the
host, a domain, dom0 through DOMID_SELF, a missing domain, one of dom0's vCPUs); a
*reading* is what one layer returned for one probe, and each reading gets a verdict.
"""

from __future__ import annotations

import textwrap

from xenprobe.probe.classify import Verdict
from xenprobe.xen.quantities import Quantity

MEANING_INTRO = ("Each reading (what one layer returned for one probe: one quantity read "
                 "for one subject) gets one of these verdicts.")

# One sentence per verdict, for a person at a terminal.
MEANING: dict[Verdict, str] = {
    Verdict.MATCH: "the layer returned the value unchanged",
    Verdict.TRUNCATED: "the high bits were lost (the value needs 33 bits or more)",
    Verdict.SIGN_FLIPPED: "an unsigned value in [2^31, 2^32) came back negative",
    Verdict.CLAMPED: "the value was pinned to INT_MAX or INT_MIN, as Xen's compat layer "
                     "does for 32-bit guest kernels",
    Verdict.ALIASED_ERRNO: "a valid value came back as -1 with an errno (its low 32 bits "
                           "read as -4095..-1)",
    Verdict.LOST_ERROR: "the hypervisor failed, but the layer shows a value",
    Verdict.CHANGED_ERROR: "both failed, with different errnos",
    Verdict.DRIFT: "the value moved while it was being read; never counted as a mismatch",
    Verdict.ERROR: "the layer failed for a reason of its own (EINTR beyond the retries, "
                   "EACCES...), not a conversion",
    Verdict.OTHER: "a stable disagreement that no known conversion explains",
    Verdict.ABSENT: "this layer cannot read the quantity here (a `note:` line says why)",
    Verdict.UNJUDGED: "read, but nothing says what it should be (no raw layer and no exact "
                      "reference); neither a match nor a mismatch",
    Verdict.FORGED_ERRNO: "raw only: an errno this call cannot return, or ESRCH for a "
                          "domain that exists; the value aliases an error at the source "
                          "(for a value the guest sets, the guest's doing)",
    Verdict.OUT_OF_RANGE: "raw only: negative as a long but no errno, outside Xen's "
                          "convention of a negative errno or 0..LONG_MAX",
    Verdict.PASSED_FORGED: "the layer handed a forged error on unchanged: not a "
                           "conversion, but its caller takes it for a real failure",
}

HEAD = "Each reading's verdict:"

# The reference row's notation.
OPEN_RANGE = ("N..: at least N, no upper bound known (for maximum_ram_page, physinfo's "
              "total_pages is a floor, not the value)")
CLOSED_RANGE = "N..M: between N and M"

# Quantities counted in pages (or numbering page frames). Xen's page for hypercall
# interfaces is 4 KiB whatever the guest's own page size (public/io/ring.h@RELEASE-4.17.0:
# XEN_PAGE_SHIFT 12; x86 PAGE_SIZE is what XENVER_pagesize answers).
PAGES: frozenset[Quantity] = frozenset({
    Quantity.MAXIMUM_RAM_PAGE,      # one past the highest RAM frame
    Quantity.CURRENT_RESERVATION,   # pages a domain has
    Quantity.MAXIMUM_RESERVATION,   # pages a domain may have
    Quantity.MAXIMUM_GPFN,          # highest guest frame number
    Quantity.SHARING_FREED_PAGES,
    Quantity.SHARING_SHARED_PAGES,
})
PAGE_SIZE = 4096

BYTES = ("N = S: S is the page or frame count N times Xen's 4 KiB page, in binary units "
         "(maximum_ram_page: the end of RAM; maximum_gpfn: where the highest guest frame "
         "starts)")


def size_text(pages: int) -> str:
    """`pages` 4 KiB pages as bytes in binary units: 16 GiB, 12.0 TiB."""
    size = float(pages * PAGE_SIZE)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            break
        size /= 1024
    return f"{size:.0f} {unit}" if size == int(size) else f"{size:.1f} {unit}"


def verdict_lines(verdicts: list[Verdict] | None = None, indent: str = "  ") -> list[str]:
    """`verdict: meaning` lines, for `verdicts` or every verdict."""
    chosen = list(Verdict) if verdicts is None else verdicts
    return [f"{indent}{v.value}: {MEANING[v]}" for v in chosen]


def help_text(width: int = 79) -> str:
    """The legend as `check --help` prints it, after the options, wrapped."""
    def item(text: str) -> list[str]:
        return textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="    ")
    lines = [HEAD]
    for line in verdict_lines(indent=""):
        lines += item(line)
    lines += ["Notation in the reference row:", *item(OPEN_RANGE), *item(CLOSED_RANGE),
              "Sizes:", *item(BYTES)]
    return "\n".join(lines)
