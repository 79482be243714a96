"""Fixtures for the real-Xen tier: boot real Xen 4.17 / 4.20 with a Linux dom0 in QEMU.

This tier is meant to run in CI.  It is skipped only when XENPROBE_SKIP_REALXEN=1;
missing host tools (qemu-system-x86, cpio) are an error, not a skip.

Fixtures (session scope):
    realxen_assets      the cached boot assets (assets.ensure_assets)
    xen417, xen420      a RealXen for that release
    realxen             parametrized over both releases
RealXen.run(script, **kw) boots once and runs a shell script in dom0 (see boot.py);
RealXen.reader() boots once per session and returns (Dom0Run, reader JSON).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from .assets import Assets, ensure_assets
from .boot import RELEASES, Dom0Run, run_in_dom0

SKIP_ENV = "XENPROBE_SKIP_REALXEN"
READER = Path(__file__).resolve().parent / "reader.py"

_boots: list[tuple[str, str, float, int | None]] = []  # for the terminal summary


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realxen: boots a real Xen hypervisor with a Linux dom0 under QEMU"
    )


def _skipped() -> bool:
    return os.environ.get(SKIP_ENV) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _skipped():
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
        self._reader: tuple[Dom0Run, dict[str, Any]] | None = None

    def run(self, script: str, *, label: str = "run", **kwargs: Any) -> Dom0Run:
        self._count += 1
        workdir = self.root / f"{self._count:02d}-{label}"
        run = run_in_dom0(self.release, script, workdir=workdir, assets=self.assets, **kwargs)
        _boots.append((self.release, label, run.duration_s, run.exit_status))
        return run

    def reader(self) -> tuple[Dom0Run, dict[str, Any]]:
        """The independent reader's JSON from inside dom0 (one boot per session)."""
        if self._reader is None:
            run = self.run(
                f'python3 {READER} -o "$RESULTS/reader.json" >/dev/null\n', label="reader"
            ).check()
            try:
                data = json.loads((run.results_dir / "reader.json").read_text())
            except (OSError, ValueError) as exc:
                raise AssertionError(f"no reader JSON: {exc}\n{run.report()}") from exc
            self._reader = (run, data)
        return self._reader


@pytest.fixture(scope="session")
def realxen_assets() -> Assets:
    if _skipped():
        pytest.skip(f"{SKIP_ENV}=1")
    return ensure_assets()  # raises MissingHostTools naming qemu-system-x86/cpio


def _realxen(release: str, assets: Assets, factory: pytest.TempPathFactory) -> RealXen:
    return RealXen(release, assets, factory.mktemp(f"xen{release.replace('.', '')}"))


@pytest.fixture(scope="session")
def xen417(realxen_assets: Assets, tmp_path_factory: pytest.TempPathFactory) -> RealXen:
    return _realxen("4.17", realxen_assets, tmp_path_factory)


@pytest.fixture(scope="session")
def xen420(realxen_assets: Assets, tmp_path_factory: pytest.TempPathFactory) -> RealXen:
    return _realxen("4.20", realxen_assets, tmp_path_factory)


@pytest.fixture(scope="session", params=RELEASES, ids=[f"xen{r}" for r in RELEASES])
def realxen(request: pytest.FixtureRequest) -> RealXen:
    fixture = {"4.17": "xen417", "4.20": "xen420"}[request.param]
    xen: RealXen = request.getfixturevalue(fixture)
    return xen
