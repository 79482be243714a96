# SPDX-License-Identifier: GPL-2.0-only
"""The sweep's bulk path against the per-probe one it stands in for.

judge.unanimous decides, column-wise, which samples judge() would find all MATCH; the
sweep keeps those as columns (sweep.Results) and counts them without Result objects
(Sweep.summary). Each shortcut must say exactly what the per-probe path says.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.mockhost import env_for
from xenprobe.mock.scenario import load, shipped
from xenprobe.probe.classify import Truth, Verdict
from xenprobe.probe.judge import RAW, Ref, Sample, judge, unanimous
from xenprobe.xen.reading import Reading, raw_result

U64 = 1 << 64
# Values around every edge the classifier knows: small, INT_MAX, 2^32, errno range, 2^63.
EDGES = [0, 1, 2, 3, 4095, (1 << 31) - 1, 1 << 31, (1 << 32) - 4095, (1 << 32) - 2,
         (1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63, U64 - 4095, U64 - 3, U64 - 1]
unsigned = st.one_of(st.sampled_from(EDGES), st.integers(0, U64 - 1))
signed = unsigned.map(lambda u: u - U64 if u >= 1 << 63 else u)
errno = st.sampled_from([0, 0, 0, 1, 2, 3, 4, 22])
ref: st.SearchStrategy[Ref] = st.one_of(
    st.none(), unsigned, st.builds(Truth.exact, unsigned),
    st.builds(Truth.between, unsigned, unsigned), st.builds(Truth.error, st.integers(1, 4)))


@st.composite
def samples(draw: st.DrawFn) -> tuple[int, int, Ref, Ref, list[tuple[int, int, bool, int]]]:
    """One probe's sample, biased towards agreement (where unanimous says True)."""
    likely = st.sampled_from([True, True, True, True, False])
    raw = draw(signed)
    raw_after = raw if draw(likely) else draw(signed)
    ref_before = raw % U64 if draw(likely) else draw(ref)
    ref_after = ref_before if draw(likely) else draw(ref)
    layers = []
    for width in (64, 32, 64):
        same = draw(likely)
        layers.append((raw if same else draw(signed), 0 if same else draw(errno),
                       draw(st.booleans()) and not same, width))
    return raw, raw_after, ref_before, ref_after, layers


def _truth(r: Ref) -> Truth | None:
    return Truth.exact(r) if isinstance(r, int) else r


@given(st.lists(samples(), min_size=1, max_size=8), st.sets(st.integers(0, 2)))
def test_unanimous_only_where_judge_says_all_match(batch: list[tuple[
        int, int, Ref, Ref, list[tuple[int, int, bool, int]]]], via: set[int]) -> None:
    names = ["syscall", "ioctl", "libxc"]
    columns = [([s[4][k][0] for s in batch], [s[4][k][1] for s in batch],
                {i for i, s in enumerate(batch) if s[4][k][2]}) for k in range(3)]
    agree = unanimous([s[0] for s in batch], [s[1] for s in batch],
                      [s[2] for s in batch], [s[3] for s in batch], columns)
    for i, (raw, raw_after, rb, ra, layers) in enumerate(batch):
        readings: dict[str, Reading | None] = {
            names[k]: None if absent else Reading(v, e, w)
            for k, (v, e, absent, w) in enumerate(layers)}
        sample = Sample(raw_result(raw), raw_result(raw_after), _truth(rb), _truth(ra),
                        readings, frozenset(names[k] for k in via))
        verdicts = judge(sample, final=True)
        expected = {n: Verdict.ABSENT if r is None else Verdict.MATCH
                    for n, r in readings.items()}
        if rb is not None and ra is not None:
            expected[RAW] = Verdict.MATCH
        if agree[i]:
            assert verdicts == expected
        # A negative raw result is an errno or out of range at the source: never plain.
        elif (raw == raw_after and raw >= 0 and rb == ra == raw % U64
              and isinstance(rb, int)
              and all(absent or (v == raw and not e) for v, e, absent, _ in layers)):
            raise AssertionError("unanimous missed a plain agreement")


# Runs on the mock host: every result read from the columns against the same result
# rebuilt from its own readings through judge(), and the summary against a count of
# the results.
CHECK = r"""
import json
import errno
from xenprobe.xen.abi.errnos import can_return
from xenprobe.xen.host import Host
from xenprobe.probe.judge import RefSample, Sample, judge, judge_by_reference
from xenprobe.layers.protocol import ladder
from xenprobe.support.logs import configure
from xenprobe.probe.results import Results, Summary
from xenprobe.probe.sweep import Sweeper
from xenprobe.xen.transport import Privcmd
configure("warning")
dev = Privcmd(); host = Host(dev); layers = ladder(dev, host.identity)
release = host.identity.release
listed = {d.domid for d in host.domains()}  # the mock's domains stay put here


# What the sweep hands judge(): the call's errnos, less ESRCH for a subject that exists
# (Sweeper._can_return, here with the domain list instead of the references).
def errnos_of(probe):
    known = can_return(*probe.call, (release.major, release.minor))
    if known is None or errno.ESRCH not in known:
        return known
    exists = probe.subject.name == "SELF" or (
        probe.subject.name == "DOMAIN" and probe.domid in listed)
    return known - {errno.ESRCH} if exists else known


out = []
for attempts in (1, 3):
    sweep = Sweeper(host, layers, attempts).sweep()
    results = list(sweep.results)
    assert isinstance(sweep.results, Results)
    rebuilt = 0
    for r in results:
        via = frozenset(layer.name for layer in layers if layer.via_reference(r.probe))
        if r.raw is None:  # a UNBATCHED quantity: judged by the reference alone
            again = judge_by_reference(RefSample(r.reference, r.reference, r.readings),
                                       final=True)
        else:
            again = judge(Sample(r.raw, r.raw, r.reference, r.reference, r.readings, via,
                                 errnos_of(r.probe)), final=True)
        if r.attempts == 1 and not any(v.value == "drift" for v in r.verdicts.values()):
            assert dict(again) == dict(r.verdicts), (r, again)
            rebuilt += 1
    a, b = sweep.summary, Summary.of(results)
    assert (a.probes, a.bits, a.at_risk, a.verdicts) == (b.probes, b.bits, b.at_risk,
                                                         b.verdicts)
    assert [r.probe for r in a.failed] == [r.probe for r in b.failed]
    assert [r.probe for r in sweep.mismatches] == [r.probe for r in results if r.mismatches]
    assert sweep.results[0].probe == results[0].probe == sweep.results[-len(results)].probe
    out.append([len(results), rebuilt, len(sweep.mismatches)])
print(json.dumps(out))
"""


def test_columns_and_summary_agree_with_each_result(tmp_path: Path) -> None:
    ran = 0
    for name in shipped():
        s = load(name)
        if s.device != "present" or s.role != "dom0" or not s.multicall:
            continue  # without multicalls no columns are kept (tests/test_pvh.py)
        p = subprocess.run([sys.executable, "-c", CHECK], env=env_for(s, tmp_path),
                           text=True, capture_output=True, timeout=120, check=False)
        assert p.returncode == 0, (name, p.stderr[-3000:])
        counts = json.loads(p.stdout)
        assert all(n > 0 and rebuilt > 0 for n, rebuilt, _ in counts), (name, counts)
        ran += 1
    assert ran >= 5
