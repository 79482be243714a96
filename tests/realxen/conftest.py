# SPDX-License-Identifier: GPL-2.0-only
"""Fixtures for the real-Xen tier: boot real Xen 4.14 / 4.17 / 4.20 with a Linux dom0 in QEMU.

This tier is meant to run in CI.  It is skipped only when XENPROBE_SKIP_REALXEN=1;
missing host tools (qemu-system-x86, cpio) are an error, not a skip.

Fixtures (session scope):
    realxen_assets      the cached boot assets (assets.ensure_assets)
    xen414, xen417, xen420  a RealXen for that release
    realxen             parametrized over every release
RealXen.run(script, **kw) boots once and runs a shell script in dom0 (see boot.py);
RealXen.session() boots once per session and runs everything the tier's tests read
(extra domains, xenprobe check, the reader, serve: see session.py);
RealXen.reader() returns (Dom0Run, reader JSON) from that same boot.

The session boots of every release the selected tests use start together, in
background threads, when the first RealXen is created: each (one-CPU, see
session.SESSION_SMP) QEMU keeps about one host core busy, so on a two-core machine the
pair takes little longer than one boot.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from . import session as sessions
from .assets import Assets, ensure_assets
from .boot import RELEASES, Dom0Run, run_in_dom0

SKIP_ENV = "XENPROBE_SKIP_REALXEN"
READER = Path(__file__).resolve().parent / "reader.py"

_boots: list[tuple[str, str, float, int | None]] = []  # for the terminal summary
_FIXTURES = {"4.14": "xen414", "4.17": "xen417", "4.20": "xen420"}
_wanted: set[str] = set()  # releases the selected realxen tests use (collection)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realxen: boots a real Xen hypervisor with a Linux dom0 under QEMU"
    )


def _skipped() -> bool:
    return os.environ.get(SKIP_ENV) == "1"


def _releases_of(item: pytest.Item) -> set[str]:
    names = set(getattr(item, "fixturenames", ()))
    out = {r for r, f in _FIXTURES.items() if f in names}
    callspec = getattr(item, "callspec", None)
    if "realxen" in names and callspec is not None and "realxen" in callspec.params:
        out.add(callspec.params["realxen"])
    return out


# trylast: after -k/-m deselection, so that only the releases still selected boot.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _skipped():
        _wanted.clear()
        for item in items:
            _wanted.update(_releases_of(item))
        return
    skip = pytest.mark.skip(reason=f"{SKIP_ENV}=1: real-Xen (QEMU) tier skipped")
    for item in items:
        if item.get_closest_marker("realxen"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _boots:
        terminalreporter.section("real Xen boots")
        for xen, what, secs, status in _boots:
            terminalreporter.write_line(f"Xen {xen}: {what}: {secs:.1f}s, exit {status}")


class RealXen:
    """Boots one Xen release on demand; each run() is a fresh boot."""

    def __init__(self, release: str, assets: Assets, root: Path) -> None:
        self.release = release
        self.assets = assets
        self.root = root
        self._count = 0
        self._session: sessions.Session | None = None
        self._session_error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def run(
        self,
        script: str,
        *,
        label: str = "run",
        files: dict[str, Path] | None = None,
        before_boot: Callable[[Path], object] | None = None,
        **kwargs: Any,
    ) -> Dom0Run:
        """One boot.  ``files``: host files or directories copied into the share first,
        found in dom0 at /tmp/xenprobe/<name>; ``before_boot(share)`` may add more."""
        self._count += 1
        workdir = self.root / f"{self._count:02d}-{label}"
        if files:
            sessions.copy_into_share(workdir / "share", files)
        if before_boot is not None:
            (workdir / "share").mkdir(parents=True, exist_ok=True)
            before_boot(workdir / "share")
        run = run_in_dom0(self.release, script, workdir=workdir, assets=self.assets, **kwargs)
        _boots.append((self.release, label, run.duration_s, run.exit_status))
        return run

    def start_session(self) -> None:
        """Start the shared boot in the background (once)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._boot_session, name=f"xen{self.release}-session", daemon=True
            )
            self._thread.start()

    def _boot_session(self) -> None:
        try:
            self._session = sessions.boot(self)
        except BaseException as exc:  # re-raised in the test that asks for it
            self._session_error = exc

    def session(self) -> sessions.Session:
        """The shared boot (session.py): booted once per test session."""
        self.start_session()
        assert self._thread is not None
        self._thread.join()
        if self._session_error is not None:
            raise self._session_error
        assert self._session is not None
        return self._session

    def reader(self) -> tuple[Dom0Run, dict[str, Any]]:
        """The independent reader's JSON from inside dom0 (the shared session boot)."""
        s = self.session()
        s.run.check()  # the session script exits with the reader's status
        if s.reader is None:
            raise AssertionError(f"no reader JSON\n{s.report()}")
        return s.run, s.reader


@pytest.fixture(scope="session")
def realxen_assets() -> Assets:
    if _skipped():
        pytest.skip(f"{SKIP_ENV}=1")
    return ensure_assets()  # raises MissingHostTools naming qemu-system-x86/cpio


@pytest.fixture(scope="session")
def realxen_all(
    realxen_assets: Assets, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, RealXen]:
    """A RealXen per release; the session boots of the wanted ones start now, together."""
    out = {
        r: RealXen(r, realxen_assets, tmp_path_factory.mktemp(f"xen{r.replace('.', '')}"))
        for r in RELEASES
    }
    for r in RELEASES:
        if r in _wanted:
            out[r].start_session()
    return out


@pytest.fixture(scope="session")
def xen414(realxen_all: dict[str, RealXen]) -> RealXen:
    return realxen_all["4.14"]


@pytest.fixture(scope="session")
def xen417(realxen_all: dict[str, RealXen]) -> RealXen:
    return realxen_all["4.17"]


@pytest.fixture(scope="session")
def xen420(realxen_all: dict[str, RealXen]) -> RealXen:
    return realxen_all["4.20"]


@pytest.fixture(scope="session", params=RELEASES, ids=[f"xen{r}" for r in RELEASES])
def realxen(request: pytest.FixtureRequest) -> RealXen:
    xen: RealXen = request.getfixturevalue(_FIXTURES[request.param])
    return xen
