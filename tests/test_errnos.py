# SPDX-License-Identifier: GPL-2.0-only
"""xenprobe/xen/abi/errnos.py against the census: every probed (hypercall, subop) has its
errno set for every release read, every row is cited, and the lookup guesses nothing."""

from __future__ import annotations

import errno
import re

from tests import census
from xenprobe.xen.abi import errnos
from xenprobe.xen.abi.releases import RELEASES
from xenprobe.xen.quantities import CALLS

CITE = re.compile(r"[\w/.-]+\.[ch]@4\.\d+:\d+")


def test_every_probed_pair_has_a_row_per_release_read() -> None:
    probed = set(CALLS.values())
    assert probed == set(errnos.PAIRS), "quantities.CALLS and errnos.PAIRS disagree"
    for op, subop in probed:
        for release in errnos.READ:
            assert release in RELEASES
            assert errnos.can_return(op, subop, release) is not None, (op, subop, release)


def test_every_census_row_probed_is_covered() -> None:
    for row in census.ROWS:
        if row.status is census.Status.PROBED:
            assert (row.op, row.subop) in errnos.PAIRS, row.key


def test_every_path_is_cited_and_belongs_to_a_pair() -> None:
    for p in errnos.PATHS:
        assert (p.op, p.subop) in errnos.PAIRS, p
        assert p.releases and p.releases <= set(errnos.READ), p
        assert CITE.search(p.where), f"no file@tag:line in {p.where!r}"
        assert p.errno in errno.errorcode, p


def test_the_issue_s_call() -> None:
    """XENMEM_maximum_gpfn: EFAULT from the copy, ESRCH from the lookup, the XSM
    denials; no EINVAL (start_extent's is another request) and no ENOSYS."""
    want = {errno.EFAULT, errno.ESRCH, errno.EPERM, errno.EACCES}
    for release in errnos.READ:
        assert errnos.can_return(12, 14, release) == want


def _set(op: int, subop: int, release: tuple[int, int]) -> frozenset[int]:
    found = errnos.can_return(op, subop, release)
    assert found is not None
    return found


def test_releases_differ_where_xen_does() -> None:
    # The *2 subops exist from 4.20: ENOSYS before, their own errors after.
    assert _set(17, 11, (4, 17)) == {errno.ENOSYS}
    assert errno.ENOSYS not in _set(17, 11, (4, 20))
    # get_dom0_console (4.18+) answers -ENODEV without a boot console on 4.20 only.
    assert errno.ENODEV not in _set(7, 64, (4, 17))
    assert errno.ENODEV in _set(7, 64, (4, 20))


def test_nothing_is_guessed() -> None:
    """A release not read, a pair not probed, a memory_op cmd with continuation bits:
    None, which calls nothing forged."""
    assert errnos.can_return(12, 14, (4, 18)) is None
    assert errnos.can_return(12, 14, (4, 13)) is None
    assert errnos.can_return(12, 99, (4, 17)) is None
    assert errnos.can_return(12, 14 | 1 << 6, (4, 17)) is None
