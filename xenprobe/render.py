"""Present a sweep: a table per quantity for a person, JSON for a machine."""

from __future__ import annotations

import errno as errnos
from collections import Counter, defaultdict
from typing import Any

from xenprobe import __version__
from xenprobe.classify import Truth, Verdict
from xenprobe.consumers import MEANING, VERDICT_ORDER, Consumers
from xenprobe.judge import RAW
from xenprobe.quantities import Quantity, Subject
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
        if v is Verdict.DRIFT:
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
    return str(t.lo) if t.lo == t.hi else f"{t.lo}..{t.hi}"


def _rows(r: Result, layers: list[str]) -> list[tuple[str, str, Verdict | None, str]]:
    """(layer, value, verdict, note) rows of one result."""
    rows: list[tuple[str, str, Verdict | None, str]] = []
    if r.reference is not None:
        rows.append(("reference", truth_text(r.reference), None, ""))
    risk = ", ".join(r.at_risk)
    note = f"{r.bits} bits" + (f"; at risk: {risk}" if risk else "")
    rows.append((RAW, reading_text(r.raw), r.verdicts.get(RAW), note))
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
    drift = 0
    for r in sweep.results:
        for layer, v in r.verdicts.items():
            if v.is_mismatch:
                counts[v.value] += 1
                where[v.value].add(layer)
            elif v is Verdict.DRIFT:
                drift += 1
    probes = len(sweep.results)
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
            "raw": r.raw.as_json(),
            "raw_verdict": r.verdicts[RAW].value if RAW in r.verdicts else None,
            "reference": _truth_json(r.reference),
            "bits": r.bits,
            "at_risk": [k.value for k in r.at_risk],
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
