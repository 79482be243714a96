"""Present a sweep: a table per quantity for a person, JSON for a machine."""

from __future__ import annotations

import errno as errnos
from collections import Counter, defaultdict
from typing import Any

from xenprobe import __version__
from xenprobe.classify import Truth, Verdict
from xenprobe.consumers import Consumers
from xenprobe.host import MAX_FRAMES
from xenprobe.judge import RAW
from xenprobe.quantities import Quantity, Subject
from xenprobe.rawlayer import PRESENT
from xenprobe.reading import Reading
from xenprobe.sweep import Result, Sweep

# How many agreeing subjects of one quantity a person is shown before a summary line.
SHOW_AGREEING = 16

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


def _rows(r: Result, layers: list[str]) -> list[tuple[str, str, Verdict | None, str]]:
    """(layer, value, verdict, note) rows of one result."""
    rows: list[tuple[str, str, Verdict | None, str]] = []
    if r.reference is not None:
        rows.append(("reference", truth_text(r.reference), None, ""))
    risk = ", ".join(r.at_risk)
    note = (f"{r.bits} bits" + (f"; at risk: {risk}" if risk else "")
            if r.bits is not None else "no raw layer (see note)")
    if r.probe.guest_set:  # the domU sets this value itself (quantities.GUEST_SET)
        note += "; guest-set"
    raw = reading_text(r.raw) if r.raw is not None else "absent"
    rows.append((RAW, raw, r.verdicts.get(RAW), note))
    for name in layers:
        rows.append((name, reading_text(r.readings.get(name)),
                     r.verdicts.get(name, Verdict.ABSENT), ""))
    return rows


def human(sweep: Sweep, *, colour: bool = False, scenario: str | None = None,
          notes: list[str] | None = None, consumers: Consumers | None = None) -> str:
    s = Style(colour)
    ident = sweep.identity
    head = (f"Xen {ident.version} (sysctl interface {ident.sysctl:#x}, domctl interface "
            f"{ident.domctl:#x}), {sweep.domains} domain{'s' if sweep.domains != 1 else ''}")
    if scenario:
        head += f", mock host scenario {scenario!r}"
    out = [s(head, "bold")]
    out += [f"note: {n}" for n in notes or []]
    by_quantity: dict[Quantity, list[Result]] = defaultdict(list)
    for r in sweep.results:
        by_quantity[r.probe.quantity].append(r)
    widths = (18, 10, 34, 14)
    for quantity, results in by_quantity.items():
        out += ["", s(quantity.value, "bold"),
                "  " + "SUBJECT".ljust(widths[0]) + "LAYER".ljust(widths[1])
                + "VALUE".ljust(widths[2]) + "VERDICT".ljust(widths[3]) + "BITS / RISK"]
        shown = 0
        hidden = 0
        for r in results:
            calm = not r.mismatches and r.probe.subject is Subject.DOMAIN
            if calm and shown >= SHOW_AGREEING:
                hidden += 1
                continue
            shown += calm
            for i, (layer, value, verdict, note) in enumerate(_rows(r, sweep.layers)):
                subject = r.probe.label if i == 0 else ""
                vtext = s.verdict(verdict, widths[3]) if verdict else "".ljust(widths[3])
                out.append(("  " + subject.ljust(widths[0]) + layer.ljust(widths[1])
                            + value.ljust(widths[2]) + vtext + note).rstrip())
        if hidden:
            out.append(f"  ... and {hidden} more domains where every layer agrees")
    if consumers is not None:
        out += ["", *consumer_lines(consumers, s)]
    out += ["", summary_line(sweep, s)]
    return "\n".join(out) + "\n"


def consumer_lines(c: Consumers, s: Style) -> list[str]:
    """The other processes holding privcmd open; 32-bit ones read every result cut to 32
    bits (README "Consumers at risk")."""
    n = len(c.found)
    head = (f"privcmd consumers: {n} other process{'es' if n != 1 else ''} hold"
            f"{'s' if n == 1 else ''} the device open" if n
            else "privcmd consumers: no other process holds the device open")
    if c.unreadable:
        head += f" ({c.unreadable} processes could not be inspected: run as root)"
    out = [s(head, "bold")]
    if n:
        out.append("  " + "PID".ljust(9) + "BITS".ljust(6) + "PROCESS".ljust(18)
                   + "EXECUTABLE")
    for p in c.found:
        line = ("  " + str(p.pid).ljust(9) + str(p.bits or "?").ljust(6)
                + (p.name or "?").ljust(18) + (p.exe or "?"))
        if p.compat:
            line += "  " + s("compat: reads every result cut to 32 bits", "red")
        out.append(line)
    return out


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
    return style(text, "red")


def _truth_json(t: Truth | None) -> dict[str, int] | None:
    if t is None:
        return None
    return {"errno": t.errno} if t.is_error else {"lo": t.lo, "hi": t.hi}


def as_json(sweep: Sweep, *, scenario: str | None, exit_code: int,
            notes: list[str] | None = None, consumers: Consumers | None = None,
            retries: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    results = []
    for r in sweep.results:
        counts.update(v.value for v in r.verdicts.values())
        results.append({
            "quantity": r.probe.quantity.value,
            "subject": r.probe.subject.value,
            "domid": r.probe.domid,
            "raw": r.raw.as_json() if r.raw is not None else None,
            "raw_verdict": r.verdicts[RAW].value if RAW in r.verdicts else None,
            "reference": _truth_json(r.reference),
            "bits": r.bits,
            "at_risk": [k.value for k in r.at_risk],
            "guest_set": r.probe.guest_set,
            "attempts": r.attempts,
            "layers": {
                name: ({**rd.as_json(), "verdict": r.verdicts[name].value}
                       if (rd := r.readings.get(name)) is not None
                       else {"verdict": Verdict.ABSENT.value})
                for name in sweep.layers
            },
        })
    return {
        "xenprobe": __version__,
        "host": sweep.identity.as_json(),
        "mock_scenario": scenario,
        "domains": sweep.domains,
        "layers": [RAW, *sweep.layers],
        "raw_layer": sweep.raw_absent.as_json() if sweep.raw_absent else PRESENT,
        "notes": notes or [],
        "sweep_seconds": round(sweep.duration, 6),
        "results": results,
        "summary": {
            "probes": len(sweep.results),
            "mismatches": sum(len(r.mismatches) for r in sweep.results),
            "verdicts": dict(sorted(counts.items())),
        },
        "consumers": consumers.as_json() if consumers is not None else None,
        "retries": retries or {},
        "exit_code": exit_code,
    }
