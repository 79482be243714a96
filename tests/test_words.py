# SPDX-License-Identifier: GPL-2.0-only
"""A Xen operator's words (issue 23, item 3): domains by their UUID in the table, the
JSON and the metrics; page counts with their size in bytes; every verdict and the
reference's range notation explained at the terminal, in `check --help` and the man page.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.exporter_util import Serve
from tests.mockhost import check_json, run_check
from xenprobe.cli import legend
from xenprobe.mock.scenario import _domain_record, load
from xenprobe.probe.classify import Verdict
from xenprobe.xen.abi.releases import getdomaininfo_for_domctl

ROOT = Path(__file__).resolve().parent.parent
HEX = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def mock_uuids(name: str) -> dict[int, str]:
    """domid -> UUID of the handle the mock hypervisor holds for each domain (the record
    getdomaininfo copies out), as xl prints it: the 16 bytes in order."""
    s = load(name)
    layout = getdomaininfo_for_domctl(s.domctl_interface)
    out = {}
    for d in s.domains:
        handle = layout.decode(_domain_record(s, d), 0)["handle"]
        assert isinstance(handle, bytes)
        out[d.domid] = "-".join(handle.hex()[a:b] for a, b in
                                ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32)))
    return out


def test_the_table_names_each_shown_domain_by_uuid() -> None:
    p = run_check(["check", "--mock", "large-memory"])
    assert p.returncode == 1, p.stderr
    uuids = mock_uuids("large-memory")
    block = p.stdout[p.stdout.index("domains by UUID"):]
    for domid, text in uuids.items():
        assert re.search(rf"(^  |\s)dom{domid}\s+{text}(\s|$)", block, re.M), block


def test_the_summary_names_the_top_domains_by_uuid() -> None:
    p = run_check(["check", "--mock", "large-memory", "--summary"])
    uuids = mock_uuids("large-memory")
    assert re.search(rf"^  dom3\s+{uuids[3]}\s+6\s", p.stdout, re.M), p.stdout


def test_json_carries_each_domains_uuid() -> None:
    _, report = check_json("large-memory")
    uuids = mock_uuids("large-memory")
    domains = [r for r in report["results"] if r["subject"] == "domain"]
    assert domains
    for r in domains:
        assert r["uuid"] == uuids[r["domid"]], r
    assert all(r["uuid"] is None for r in report["results"] if r["subject"] != "domain")
    assert {t["domid"]: t["uuid"] for t in report["summary"]["top_domains"]} == \
        {3: uuids[3], 4: uuids[4]}


def test_domain_series_join_an_info_series_with_the_uuid(tmp_path: Path) -> None:
    prom = tmp_path / "x.prom"
    run_check(["check", "--mock", "large-memory", "--textfile", str(prom)])
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    info = {s.labels["domid"]: s.labels["uuid"]
            for s in families["xenprobe_domain_info"].samples}
    mismatched = {s.labels["domid"] for s in families["xenprobe_domain_mismatch"].samples}
    numbered = {d for d in mismatched if d.isdigit()}
    assert numbered == {"3", "4"}
    uuids = mock_uuids("large-memory")
    assert info == {d: uuids[int(d)] for d in numbered}  # each joins; nothing else
    assert all(HEX.match(u) for u in info.values())


def test_a_healthy_host_exports_no_domain_info(tmp_path: Path) -> None:
    prom = tmp_path / "x.prom"
    run_check(["check", "--mock", "healthy", "--textfile", str(prom)])
    assert "xenprobe_domain_info{" not in prom.read_text()


def test_page_counts_show_their_size_in_bytes() -> None:
    out = run_check(["check", "--mock", "large-memory"]).stdout
    assert "current_reservation (4 KiB pages)" in out
    # dom3 has 10 TiB (2684354560 pages): the reference and the raw value say so.
    assert re.search(r"^  dom3\s+reference 2684354560 = 10 TiB$", out, re.M), out
    assert re.search(r"^\s+raw\s+2684354560 \(0xa0000000\) = 10 TiB\s+match", out, re.M)
    # An open range keeps its notation in bytes too.
    assert re.search(r"reference 3221225472\.\. = 12 TiB\.\.$", out, re.M)
    # A wrong reading is shown as read: no size for a value no one should use.
    assert not re.search(r"-1072693248 \(0xffffffffc0100000\) =", out)
    # xen_version is no page count.
    assert "xen_version (" not in out


def test_size_text() -> None:
    assert legend.size_text(4194304) == "16 GiB"
    assert legend.size_text(0xC0100000) == "12.0 TiB"
    assert legend.size_text(1) == "4 KiB"
    assert legend.size_text(0) == "0 B"


def test_every_verdict_has_a_meaning() -> None:
    assert set(legend.MEANING) == set(Verdict)
    assert all(m and "\n" not in m for m in legend.MEANING.values())


def test_the_terminal_explains_what_it_shows() -> None:
    out = run_check(["check", "--mock", "large-memory"]).stdout
    block = out[out.index("\nwhat the verdicts on screen mean\n"):]
    for v in (Verdict.MATCH, Verdict.SIGN_FLIPPED, Verdict.ALIASED_ERRNO, Verdict.ABSENT):
        assert f"  {v.value}: {legend.MEANING[v]}" in block
    assert f"  {Verdict.TRUNCATED.value}:" not in block  # only what is on screen
    assert legend.OPEN_RANGE in block


def test_check_help_explains_every_verdict_and_the_notation() -> None:
    p = run_check(["check", "--help"], env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    words = " ".join(p.stdout.split())  # wrapped at 79 columns
    for v in Verdict:
        assert f" {v.value}: {legend.MEANING[v]}" in words
    assert legend.OPEN_RANGE in words and legend.BYTES in words


def test_the_man_page_explains_every_verdict() -> None:
    page = (ROOT / "docs" / "xenprobe.1").read_text()
    text = re.sub(r"\\f[BIR]", "", page).replace(r"\-", "-").replace(r"\e", "\\")
    for v in Verdict:
        assert legend.MEANING[v] in text, v
    assert legend.OPEN_RANGE in text


def test_uuid_text_is_libxl_s() -> None:
    from xenprobe.probe.sweep import uuid_text
    handle = bytes(range(16))
    assert uuid_text(handle) == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert uuid_text(handle) == str(uuid.UUID(bytes=handle))


# -- metric HELP texts and label values -------------------------------------------------

# Labels whose values are names the host gives (a process's comm and executable, a
# library's path): free text by nature. Every other label value is a word.
FREE_TEXT_LABELS = frozenset({"comm", "exe", "libxenctrl"})


def exposition(tmp_path: Path) -> str:
    """A real scrape of `serve --mock large-memory`, and the textfile of one check."""
    with Serve("large-memory", "--interval", "60") as serve:
        serve.after_sweeps(1)
        status, _, body = serve.get()
    assert status == 200
    prom = tmp_path / "x.prom"
    run_check(["check", "--mock", "large-memory", "--textfile", str(prom)])
    return body.decode() + prom.read_text()


def test_every_help_text_is_one_sentence_and_every_label_value_a_word(
        tmp_path: Path) -> None:
    text = exposition(tmp_path)
    helps = re.findall(r"^# HELP (xenprobe_\w+) (.*)$", text, re.M)
    assert len({name for name, _ in helps}) > 30
    for name, help_text in helps:
        # One sentence: one full stop, at the end (a clause may follow a comma).
        assert help_text.endswith(".") and not re.search(r"[.!?;]\s", help_text[:-1]), \
            (name, help_text)
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("xenprobe_"):
            continue
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label not in FREE_TEXT_LABELS:
                    assert re.fullmatch(r"[\w.:/+-]*", value), (sample.name, label, value)
