# SPDX-License-Identifier: GPL-2.0-only
"""Present a sweep: a table per quantity for a person, JSON for a machine.

A person at a big host picks a view (View): the summary only, the mismatches only, some
quantities or some domains. A view narrows what is shown, never what was probed: the
closing summary line, the JSON `summary` and the exit code always describe the whole host.
"""

from __future__ import annotations

import errno as errnos
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from xenprobe import __version__
from xenprobe.cli import legend
from xenprobe.layers.raw_absent import PRESENT
from xenprobe.probe import impact
from xenprobe.probe.classify import Truth, Verdict
from xenprobe.probe.judge import RAW
from xenprobe.probe.results import Result
from xenprobe.probe.sweep import Sweep
from xenprobe.xen.consumers import MEANING, VERDICT_ORDER, Consumers
from xenprobe.xen.host import MAX_FRAMES
from xenprobe.xen.quantities import RECORDS, Quantity, Scope, Subject
from xenprobe.xen.reading import Reading

# The JSON report's format: bumped when a key changes meaning or goes away (adding a key
# is not a change of format). docs/json.md documents every key; xenprobe/cli/schema/ holds
# the JSON Schema that tests validate every output against.
FORMAT = "xenprobe.check/1"

# How many agreeing subjects of one quantity a person is shown before a summary line.
SHOW_AGREEING = 16
# How many subjects in mismatch per quantity the default view shows: at 10,000 domains
# a quantity can have hundreds (--mismatches or --quantity shows every one).
SHOW_MISMATCHING = 16
# On a host with more domains than SHOW_AGREEING, the default view opens with the
# summary table and shows this many agreeing domains per quantity, as examples.
SHOW_AGREEING_BIG_HOST = 2
# Domains named by the summary view, most mismatched readings first.
TOP_DOMAINS = 10


@dataclass(frozen=True)
class View:
    """What a person asked to see. Empty `quantities` or `domains` means all."""

    summary: bool = False            # the verdict counts and top domains, no rows
    mismatches: bool = False         # only subjects in mismatch, only their bad layers
    quantities: frozenset[str] = field(default_factory=frozenset)
    domains: frozenset[int] = field(default_factory=frozenset)

    @property
    def narrowed(self) -> bool:
        return self.summary or self.mismatches or bool(self.quantities or self.domains)

    def shows(self, r: Result) -> bool:
        if self.quantities and r.probe.quantity.value not in self.quantities:
            return False
        if self.domains and not (r.probe.subject is Subject.DOMAIN
                                 and r.probe.domid in self.domains):
            return False
        return not (self.mismatches and not r.mismatches)

    def as_json(self) -> dict[str, Any]:
        return {"summary": self.summary, "mismatches": self.mismatches,
                "quantities": sorted(self.quantities), "domains": sorted(self.domains)}

_COLOURS = {"red": "31", "green": "32", "yellow": "33", "dim": "2", "bold": "1"}


class Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, name: str) -> str:
        if not self.colour:
            return text
        return f"\x1b[{_COLOURS[name]}m{text}\x1b[0m"

    def verdict(self, v: Verdict, width: int) -> str:
        text = v.value.ljust(width)
        if v is Verdict.MATCH:
            return self(text, "green")
        if v in (Verdict.DRIFT, Verdict.UNJUDGED):
            return self(text, "yellow")
        if v is Verdict.ABSENT:
            return self(text, "dim")
        return self(text, "red")


def _errname(e: int) -> str:
    return errnos.errorcode.get(e, str(e))


def reading_text(r: Reading | None) -> str:
    if r is None:
        return "-"
    if r.failed:
        return f"{r.value} ({_errname(r.errno)})"
    return f"{r.value}" if -4096 < r.value < 4096 else f"{r.value} ({r.value % (1 << 64):#x})"


def truth_text(t: Truth | None) -> str:
    if t is None:
        return "-"
    if t.is_error:
        return f"-{_errname(t.errno)}"
    if t.hi >= MAX_FRAMES:  # bounded only by the address space: an open range
        return f"{t.lo}.."
    return str(t.lo) if t.lo == t.hi else f"{t.lo}..{t.hi}"


def _sized(text: str, r: Result, value: int | None) -> str:
    """A page count's row with its size in bytes beside it (legend.PAGES)."""
    if value is None or value < 0 or r.probe.quantity not in legend.PAGES:
        return text
    return f"{text} = {legend.size_text(value)}"


def _reference_text(r: Result) -> str:
    """The reference, a page count's with its size: `N = S`, `N.. = S..`, `N..M = S..T`."""
    t = r.reference
    text = truth_text(t)
    if t is None or t.is_error or r.probe.quantity not in legend.PAGES:
        return text
    size = legend.size_text
    if t.hi >= MAX_FRAMES:
        return f"{text} = {size(t.lo)}.."
    return f"{text} = {size(t.lo)}" if t.lo == t.hi else f"{text} = {size(t.lo)}..{size(t.hi)}"


def _rows(r: Result, layers: list[str]) -> list[tuple[str, str, Verdict | None, str]]:
    """(layer, value, verdict, note) rows of one result."""
    rows: list[tuple[str, str, Verdict | None, str]] = []
    if r.reference is not None:
        rows.append(("reference", _reference_text(r), None, ""))
    risk = ", ".join(r.at_risk)
    note = (f"{r.bits} bits" + (f"; at risk: {risk}" if risk else "")
            if r.bits is not None else "no raw layer (see note)")
    if r.raw is None and not RECORDS[r.probe.quantity].batched:
        note = "no raw reading: xenprobe never puts a sysctl in a multicall"
    if r.probe.guest_set:  # the domU sets this value itself (Record.guest_set)
        note += "; guest-set"
    found = source_note(r)
    if found:
        note += f"; {found}"
    raw = (_sized(reading_text(r.raw), r, None if r.raw.failed else r.raw.value)
           if r.raw is not None else "absent")
    rows.append((RAW, raw, r.verdicts.get(RAW), note))
    for name in layers:
        v = r.verdicts.get(name, Verdict.ABSENT)
        rows.append((name, reading_text(r.readings.get(name)), v,
                     "passed on a forged error" if v is Verdict.PASSED_FORGED else ""))
    return rows


def source_note(r: Result) -> str | None:
    """What a raw result wrong at the source means, worded by who set it: a value the
    guest sets is the guest's doing, not the hypervisor's fault (Record.guest_set),
    and it misleads the dom0 tools that read it (Record.misleads)."""
    v = r.verdicts.get(RAW)
    if v is Verdict.FORGED_ERRNO:
        what = "forged errno: this call cannot return it"
    elif v is Verdict.OUT_OF_RANGE:
        what = "out of range at the source: negative as a long, and not an errno"
    else:
        return None
    if not r.probe.guest_set:
        return what
    text = f"{what}; the guest's doing (it sets this value), not the hypervisor's fault"
    misled = RECORDS[r.probe.quantity].misleads
    return text + (f"; would mislead {misled}" if misled else "")


def human(sweep: Sweep, *, colour: bool = False, scenario: str | None = None,
          notes: list[str] | None = None, consumers: Consumers | None = None,
          view: View | None = None) -> str:
    v = view or View()
    s = Style(colour)
    ident = sweep.identity
    head = (f"Xen {ident.version} (sysctl interface {ident.sysctl:#x}, domctl interface "
            f"{ident.domctl:#x}), {sweep.domains} domain{'s' if sweep.domains != 1 else ''}")
    if scenario:
        head += f", mock host scenario {scenario!r}"
    out = [s(head, "bold")]
    out += [f"note: {n}" for n in notes or []]
    out += [f"note: no domain {d} on this host" for d in sorted(v.domains - _domids(sweep))]
    big = sweep.domains > SHOW_AGREEING
    shown = _Shown()
    if v.summary:
        out += ["", *summary_table(sweep, s), "", *top_domain_lines(sweep, s)]
    else:
        if big and not v.narrowed:
            out += ["", *summary_table(sweep, s)]
        out += _detail(sweep, v, s, SHOW_AGREEING_BIG_HOST if big else SHOW_AGREEING,
                       fold_calm_host=big and not v.narrowed, shown=shown)
        if shown.domids:
            out += ["", *domain_lines(sweep, sorted(shown.domids), s)]
        if shown.verdicts:
            out += ["", *legend_lines(shown, s)]
    found = impact.findings(sweep.summary.verdicts)
    if found:
        # The summary view fits a screen, and a big host's default view opens with the
        # counts like it: one line there, the reasons a narrower view away.
        if v.summary:
            out += ["", impact_brief(found, s, "leave out --summary")]
        elif big and not v.narrowed:
            out += ["", impact_brief(found, s, "--quantity NAME, or --json")]
        else:
            out += ["", *impact_lines(found, s)]
    if consumers is not None:
        out += ["", *consumer_lines(consumers, s)]
    out += ["", summary_line(sweep, s)]
    if v.narrowed and not v.summary:
        out.append("(this view leaves rows out; the line above and the exit code are "
                   "for the whole host)")
    return "\n".join(out) + "\n"


def _domids(sweep: Sweep) -> set[int]:
    return {r.probe.domid for r in sweep.results
            if r.probe.subject is Subject.DOMAIN and r.probe.domid is not None}


# The caller's own vCPUs are host-wide to a person reading the table (dom0's), and many.
_HOST_WIDE = frozenset({Subject.HOST, Subject.VCPU})
_MANY = frozenset({Subject.DOMAIN, Subject.VCPU})


@dataclass
class _Shown:
    """What the detail tables showed, for the lines that explain them."""

    domids: set[int] = field(default_factory=set)
    verdicts: set[Verdict] = field(default_factory=set)
    open_range: bool = False


def _detail(sweep: Sweep, v: View, s: Style, calm_cap: int, *,
            fold_calm_host: bool = False, shown: _Shown | None = None) -> list[str]:
    """The table per quantity: each shown subject, one row per layer. With
    `fold_calm_host` (a big host's default view, which opens with the summary table), a
    host-wide quantity every layer agrees on is named on one line instead of a table."""
    out: list[str] = []
    folded: list[str] = []
    by_quantity: dict[Quantity, list[Result]] = defaultdict(list)
    for r in sweep.results:
        if v.shows(r):
            by_quantity[r.probe.quantity].append(r)
    # A person who named quantities or domains, or asked for the mismatches, wants every
    # one of those; the default view keeps a big host's quantity to a screenful.
    mismatch_cap = None if v.narrowed else SHOW_MISMATCHING
    widths = (18, 10, 46, 14)  # VALUE: a 64-bit value, its hex and its size in bytes
    for quantity, results in by_quantity.items():
        if fold_calm_host and all(r.probe.subject in _HOST_WIDE and not r.mismatches
                                  for r in results):
            folded.append(quantity.value)
            continue
        unit = " (4 KiB pages)" if quantity in legend.PAGES else ""
        out += ["", s(quantity.value, "bold") + unit,
                "  " + "SUBJECT".ljust(widths[0]) + "LAYER".ljust(widths[1])
                + "VALUE".ljust(widths[2]) + "VERDICT".ljust(widths[3]) + "BITS / RISK"]
        shown_calm = shown_bad = hidden_calm = hidden_bad = 0
        for r in results:
            # Capped like a domain's rows: a big dom0 has hundreds of vCPUs.
            per_domain = r.probe.subject in _MANY and not v.domains
            if not r.mismatches:
                if per_domain and shown_calm >= calm_cap:
                    hidden_calm += 1
                    continue
                shown_calm += per_domain
            else:
                if per_domain and mismatch_cap is not None and shown_bad >= mismatch_cap:
                    hidden_bad += 1
                    continue
                shown_bad += per_domain
            if shown is not None and r.probe.subject is Subject.DOMAIN \
                    and r.probe.domid is not None:
                shown.domids.add(r.probe.domid)
            for i, (layer, value, verdict, note) in enumerate(_rows(r, sweep.layers)):
                if v.mismatches and layer in sweep.layers \
                        and not r.verdicts.get(layer, Verdict.ABSENT).is_mismatch:
                    continue  # the bad layers, with reference and raw for context
                if shown is not None:
                    if verdict is not None:
                        shown.verdicts.add(verdict)
                    shown.open_range |= layer == "reference" and value.endswith("..")
                subject = r.probe.label if i == 0 else ""
                vtext = s.verdict(verdict, widths[3]) if verdict else "".ljust(widths[3])
                # A value wider than its column still leaves a blank before the verdict.
                out.append(("  " + subject.ljust(widths[0]) + layer.ljust(widths[1])
                            + (value + " ").ljust(widths[2]) + vtext + note).rstrip())
        what = "vCPUs" if RECORDS[quantity].scope is Scope.PER_VCPU else "domains"
        if hidden_bad:
            out.append(s(f"  ... and {hidden_bad} more {what} in mismatch (see them all: "
                         f"--mismatches --quantity {quantity.value})", "red"))
        if hidden_calm:
            out.append(f"  ... and {hidden_calm} more {what} where every layer agrees")
    if folded:
        out += ["", f"every layer agrees on the host-wide {', '.join(folded)} (counts in the "
                    "table above; see them: --quantity NAME)"]
    if not by_quantity:
        out += ["", "Nothing to show in this view."]
    return out


def domain_lines(sweep: Sweep, domids: list[int], s: Style) -> list[str]:
    """The domains in the tables by UUID: a domain id is handed out afresh each time a
    domain is created (a reboot of the guest, a migration, a restore), its UUID stays.
    Beside it the name xenstore holds, where it could be read (docs/check.md, "Domain
    names"): then one a line."""
    out = [s("domains by UUID (a domain id changes when the domain is created again)",
             "bold")]
    cells = [f"dom{d}".ljust(10) + (sweep.uuid(d) or "- (gone)").ljust(38)
             + _name_cell(sweep, d) for d in domids]
    per_line = 1 if sweep.names else 2  # two a line: a big host shows dozens
    for i in range(0, len(cells), per_line):
        out.append(("  " + "".join(cells[i:i + per_line])).rstrip())
    return out


NAME_WIDTH = 24  # a longer name is cut in the table; the JSON carries it whole


def _name_cell(sweep: Sweep, domid: int) -> str:
    """The domain's name, cut to NAME_WIDTH, and a column's gap; "" on a host where no
    name could be read (the column is left out)."""
    if not sweep.names:
        return ""
    name = sweep.name(domid) or "-"
    if len(name) > NAME_WIDTH:
        name = name[:NAME_WIDTH - 1] + "\u2026"
    return name.ljust(NAME_WIDTH + 2)


def legend_lines(shown: _Shown, s: Style) -> list[str]:
    """What the verdicts on screen (and the reference's open range) mean: legend.py."""
    out = [s("what the verdicts on screen mean", "bold")]
    out += legend.verdict_lines([v for v in Verdict if v in shown.verdicts])
    if shown.open_range:
        out.append("  " + legend.OPEN_RANGE)
    return out


def summary_table(sweep: Sweep, s: Style | None = None) -> list[str]:
    """Verdict counts per quantity and layer, from the sweep's summary (a screen
    whatever the number of domains). A quantity on which every layer only matched (or
    was absent) is named on one line after the table rather than given its rows."""
    style = s or Style(False)
    counts = breakdown(sweep)
    calm = {Verdict.MATCH.value, Verdict.ABSENT.value}
    troubled = {q for (q, _), c in counts.items() if set(c) - calm}
    shown = {k: c for k, c in counts.items() if k[0] in troubled}
    verdicts = [v for v in Verdict if any(v.value in c for c in shown.values())]
    width = max([len(v.value) for v in verdicts] + [5]) + 2
    out = [style("verdicts by quantity and layer (subjects)", "bold"),
           "  " + "QUANTITY".ljust(21) + "LAYER".ljust(10)
           + "".join(v.value.rjust(width) for v in verdicts)]
    for (quantity, layer), c in shown.items():
        cells = "".join(
            style(str(c[v.value]).rjust(width), "red" if v.is_mismatch else "dim")
            if c.get(v.value) else "-".rjust(width) for v in verdicts)
        out.append("  " + quantity.ljust(21) + layer.ljust(10) + cells)
    agreed = list(dict.fromkeys(q for q, _ in counts if q not in troubled))
    if agreed:
        out.append(f"  every layer matches on: {', '.join(agreed)}")
    return out


def breakdown(sweep: Sweep) -> dict[tuple[str, str], dict[str, int]]:
    """(quantity, layer) -> {verdict: subjects}, in probe and layer order."""
    order = {name: i for i, name in enumerate([RAW, *sweep.layers])}
    quantities = {q: i for i, q in enumerate(Quantity)}
    out: dict[tuple[str, str], dict[str, int]] = {}
    # A quantity the enum does not list (a test's record) after those it does.
    for (q, layer, v), n in sorted(sweep.summary.verdicts.items(),
                                   key=lambda kv: (quantities.get(kv[0][0], len(quantities)),
                                                   kv[0][0].value, order.get(kv[0][1], 99),
                                                   kv[0][2].value)):
        if n:
            out.setdefault((q.value, layer), {})[v.value] = n
    return out


def top_domains(sweep: Sweep, n: int = TOP_DOMAINS) -> list[tuple[int, int, list[str]]]:
    """The domains with the most mismatched readings: (domid, readings, quantities)."""
    readings: Counter[int] = Counter()
    quantities: dict[int, set[str]] = defaultdict(set)
    for r in sweep.mismatches:
        if r.probe.subject is Subject.DOMAIN and r.probe.domid is not None:
            readings[r.probe.domid] += len(r.mismatches)
            quantities[r.probe.domid].add(r.probe.quantity.value)
    ranked = sorted(readings.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [(d, k, sorted(quantities[d])) for d, k in ranked]


def top_domain_lines(sweep: Sweep, s: Style) -> list[str]:
    top = top_domains(sweep)
    if not top:
        return ["no domain has a mismatch"]
    total = len({r.probe.domid for r in sweep.mismatches
                 if r.probe.subject is Subject.DOMAIN})
    head = f"domains in mismatch: {total}"
    if total > len(top):
        head += f", the {len(top)} with most mismatched readings"
    out = [s(head, "bold"), "  " + "DOMAIN".ljust(10) + "UUID".ljust(38)
           + ("NAME".ljust(NAME_WIDTH + 2) if sweep.names else "")
           + "READINGS".ljust(10) + "QUANTITIES"]
    out += ["  " + f"dom{d}".ljust(10) + (sweep.uuid(d) or "-").ljust(38)
            + _name_cell(sweep, d) + str(k).ljust(10) + ", ".join(qs) for d, k, qs in top]
    return out


def consumer_lines(c: Consumers, s: Style) -> list[str]:
    """The other processes holding privcmd open, most at risk first, each with the
    libxenctrl it maps and what that means for its memory ops (README "Consumers at
    risk", docs/consumers.md). "None found" is said only when every process was read."""
    n = len(c.found)
    if n:
        head = (f"privcmd consumers: {n} other process{'es' if n != 1 else ''} hold"
                f"{'s' if n == 1 else ''} the device open")
    elif c.complete:
        head = "privcmd consumers: no other process holds the device open"
    else:
        head = "privcmd consumers: none found, but the scan could not look everywhere"
    out = [s(head, "bold")]
    if not c.complete:
        out.append("  " + s(incomplete_note(c), "yellow"))
    if n:
        out.append("  " + "PID".ljust(9) + "BITS".ljust(6) + "PROCESS".ljust(18)
                   + "LIBXENCTRL".ljust(12) + "VERDICT".ljust(12) + "EXECUTABLE")
    for p in c.ordered():
        lib = p.libxenctrl
        libtext = ("?" if not p.maps_read else "-" if lib is None
                   else lib.release or lib.path.rsplit("/", 1)[-1])
        v = p.verdict
        vtext = s(v.value.ljust(12), "red") if v.exposed else v.value.ljust(12)
        out.append("  " + str(p.pid).ljust(9) + str(p.bits or "?").ljust(6)
                   + (p.name or "?").ljust(18) + libtext.ljust(12) + vtext + (p.exe or "?"))
    for v in VERDICT_ORDER:
        if any(p.verdict is v for p in c.found):
            out.append(f"  {v.value}: {MEANING[v]}")
    return out


def incomplete_note(c: Consumers) -> str:
    """What the scan could not read, and what it takes (docs/consumers.md)."""
    parts = []
    if c.unreadable:
        parts.append(f"{c.unreadable} processes' descriptors could not be read")
    if c.maps_unreadable:
        parts.append(f"{c.maps_unreadable} holders' libraries could not be read")
    if c.hidden:
        parts.append("procfs hides processes from this scan")
    return "; ".join(parts) + " (needs root with CAP_SYS_PTRACE)"


def summary_line(sweep: Sweep, s: Style | None = None) -> str:
    style = s or Style(False)
    counts: Counter[str] = Counter()
    where: dict[str, set[str]] = defaultdict(set)
    drift = unjudged = 0
    for r in sweep.results:
        for layer, v in r.verdicts.items():
            if v.is_mismatch:
                counts[v.value] += 1
                where[v.value].add(layer)
            elif v is Verdict.DRIFT:
                drift += 1
            elif v is Verdict.UNJUDGED:
                unjudged += 1
    probes = len(sweep.results)
    source = _source_text(sweep)
    if source and not counts:
        return style(f"No mismatch in {probes} probes; {source}", "red")
    if not counts and sweep.raw_absent is not None:
        # Not "all agree": without the raw layer only what a reference pins was judged.
        text = (f"No mismatch among the readings judged against a reference in {probes} "
                f"probes; {unjudged} readings unjudged: no raw layer "
                f"({sweep.raw_absent.reason}).")
        if drift:
            text += f" {drift} readings drifted while being read."
        return style(text, "yellow")
    if not counts:
        text = f"All layers agree on {probes} probes"
        text += f" ({drift} readings drifted while being read)." if drift else "."
        return style(text, "green")
    parts = [f"{v} {n} ({', '.join(sorted(where[v]))})" for v, n in sorted(counts.items())]
    bad = len(sweep.mismatches)
    text = (f"{sum(counts.values())} mismatched readings in {bad} of {probes} probes: "
            + "; ".join(parts))
    if drift:
        text += f"; {drift} readings drifted (not counted)"
    if unjudged:
        text += f"; {unjudged} readings unjudged: no raw layer"
    if source:
        text += f"; {source}"
    return style(text, "red")


def _source_text(sweep: Sweep) -> str:
    """The raw results wrong at the source, counted by verdict ("" for none)."""
    found = sweep.source_findings
    if not found:
        return ""
    counts = Counter(v for r in found for v in r.source_findings.values())
    passed = counts.pop(Verdict.PASSED_FORGED, 0)
    guest = sum(1 for r in found if r.probe.guest_set)
    parts = ", ".join(f"{v.value} {n}" for v, n in sorted(counts.items()))
    text = f"{len(found)} raw results wrong at the source ({parts})"
    if guest:
        text += f", {guest} of them values the guest sets (its doing, not Xen's)"
    if passed:
        text += f"; {passed} readings passed a forged error on"
    by_impact: dict[impact.Impact, set[str]] = defaultdict(set)
    for r in found:
        q = r.probe.quantity
        by_impact[impact.source_impact(q)].add(q.value)
    text += "; impact " + ", ".join(f"{i.value} ({', '.join(sorted(qs))})"
                                    for i, qs in sorted(by_impact.items()))
    return text + "."


_IMPACT_STYLE = {impact.Impact.HARMLESS: "green", impact.Impact.EXPOSURE: "yellow",
                 impact.Impact.HARMFUL: "red"}


def impact_lines(found: list[impact.Finding], s: Style) -> list[str]:
    """One line per quantity and assessment: its layers, the impact, why, what to do
    (xenprobe.probe.impact). Only a finding other than harmless makes the exit code 1."""
    grouped: dict[tuple[str, impact.Assessment], list[str]] = defaultdict(list)
    for f in found:
        grouped[(f.quantity.value, f.assessment)].append(f.layer)
    out = [s("impact (what each mismatch means for the host's consumers)", "bold")]
    for (q, a), layers in grouped.items():
        out.append(f"  {q} ({', '.join(sorted(layers))}): "
                   + s(a.impact.value, _IMPACT_STYLE[a.impact]) + f": {a.reason}")
        out.append(f"    what to do: {a.action}")
    return out


def impact_brief(found: list[impact.Finding], s: Style, where: str) -> str:
    """The findings' impacts on one line: each impact, its readings and quantities, and
    `where` the reasons are."""
    parts = []
    for which in impact.Impact:
        these = [f for f in found if f.assessment.impact is which]
        if these:
            names = sorted({f.quantity.value for f in these})
            parts.append(s(which.value, _IMPACT_STYLE[which])
                         + f" {sum(f.readings for f in these)} ({', '.join(names)})")
    return "impact: " + "; ".join(parts) + f" (reasons: {where})"


def _truth_json(t: Truth | None) -> dict[str, int] | None:
    if t is None:
        return None
    return {"errno": t.errno} if t.is_error else {"lo": t.lo, "hi": t.hi}


def as_json(sweep: Sweep, *, scenario: str | None, exit_code: int,
            notes: list[str] | None = None, consumers: Consumers | None = None,
            retries: dict[str, dict[str, int]] | None = None,
            view: View | None = None) -> dict[str, Any]:
    """The report for a machine (docs/json.md; xenprobe/cli/schema/report.schema.json)."""
    v = view or View()
    counts: Counter[str] = Counter()
    for (_, _, verdict), n in sweep.summary.verdicts.items():
        counts[verdict.value] += n
    results = [] if v.summary else [_result_json(r, sweep.layers, sweep)
                                    for r in sweep.results if v.shows(r)]
    return {
        "format": FORMAT,
        "xenprobe": __version__,
        "host": sweep.identity.as_json(),
        "mock_scenario": scenario,
        "domains": sweep.domains,
        "layers": [RAW, *sweep.layers],
        "raw_layer": sweep.raw_absent.as_json() if sweep.raw_absent else PRESENT,
        "notes": notes or [],
        "sweep_seconds": round(sweep.duration, 6),
        "view": v.as_json(),
        "results": results,
        "summary": {
            "probes": len(sweep.results),
            "mismatches": sum(len(r.mismatches) for r in sweep.mismatches),
            "source_findings": sum(len(r.source_findings) for r in sweep.source_findings),
            "verdicts": {k: n for k, n in sorted(counts.items()) if n},
            "by_quantity": [{"quantity": q, "layer": layer, "verdicts": c}
                            for (q, layer), c in breakdown(sweep).items()],
            "top_domains": [{"domid": d, "uuid": sweep.uuid(d), "name": sweep.name(d),
                             "mismatches": k, "quantities": qs}
                            for d, k, qs in top_domains(sweep)],
        },
        "findings": [f.as_json() for f in impact.findings(sweep.summary.verdicts)],
        "consumers": consumers.as_json() if consumers is not None else None,
        "retries": retries or {},
        "exit_code": exit_code,
    }


def _result_json(r: Result, layers: list[str], sweep: Sweep) -> dict[str, Any]:
    # The domain's UUID (getdomaininfo's handle) and xenstore name, for a numbered
    # domain only.
    numbered = r.probe.subject is Subject.DOMAIN
    return {
        "quantity": r.probe.quantity.value,
        "subject": r.probe.subject.value,
        "domid": r.probe.domid,
        "uuid": sweep.uuid(r.probe.domid) if numbered else None,
        "name": sweep.name(r.probe.domid) if numbered else None,
        "vcpu": r.probe.vcpu,
        "raw": r.raw.as_json() if r.raw is not None else None,
        "raw_verdict": r.verdicts[RAW].value if RAW in r.verdicts else None,
        "reference": _truth_json(r.reference),
        "bits": r.bits,
        "at_risk": [k.value for k in r.at_risk],
        "guest_set": r.probe.guest_set,
        "source_note": source_note(r),
        "attempts": r.attempts,
        "layers": {
            name: ({**rd.as_json(), "verdict": r.verdicts[name].value}
                   if (rd := r.readings.get(name)) is not None
                   else {"verdict": Verdict.ABSENT.value})
            for name in layers
        },
    }


def error_json(exit_code: int, message: str, hint: str = "") -> dict[str, Any]:
    """What `check --json` prints when it cannot report (usage, config, cannot probe, a
    bug): same format, an `error` instead of the report, the same exit code."""
    error: dict[str, Any] = {"code": exit_code, "message": message}
    if hint:
        error["hint"] = hint
    return {"format": FORMAT, "xenprobe": __version__, "error": error,
            "exit_code": exit_code}
