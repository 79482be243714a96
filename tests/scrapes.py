# SPDX-License-Identifier: GPL-2.0-only
"""A scrape of every shipped scenario: `xenprobe serve --mock NAME` after its first
sweep, and for domu (not a control domain: serve exits 3) the textfile `check` writes.
Optionally with a process holding the mock host's privcmd while mapping a stand-in
libxenctrl 4.14 (verdict int_path), so the consumer families have series too."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.exporter_util import Serve
from tests.holders import HOLD64_WITH_LIB, build_stand_in_libxenctrl, start, stop
from tests.mockhost import env_for, run_check
from xenprobe.mock import launcher as mock
from xenprobe.mock.scenario import load, shipped

NOT_DOM0 = "domu"  # the shipped scenario serve refuses (exit 3): read as a textfile


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Exposition:
    """One scrape: its samples, and each family's HELP and TYPE."""

    text: str

    @property
    def samples(self) -> list[Sample]:
        out = []
        for line in self.text.splitlines():
            if not line or line.startswith("#"):
                continue
            head, value = line.rsplit(" ", 1)
            name, _, rest = head.partition("{")
            labels = {}
            for part in _label_pairs(rest.rstrip("}")):
                k, _, v = part.partition("=")
                labels[k] = v.strip('"')
            out.append(Sample(name, labels, float(value)))
        return out

    def meta(self, kind: str) -> dict[str, str]:
        """`# HELP` or `# TYPE` text per family."""
        prefix = f"# {kind} "
        return dict(line[len(prefix):].split(" ", 1) for line in self.text.splitlines()
                    if line.startswith(prefix))


def _label_pairs(text: str) -> Iterator[str]:
    """k="v" pairs of a sample's braces (values hold no '",' in these scrapes)."""
    for part in text.split('",'):
        if part:
            yield part if part.endswith('"') else part + '"'


def own_host(name: str) -> dict[str, str]:
    """An environment whose mock host is this scenario's alone: exporters on one mock
    host see each other as privcmd holders, which would change their scrapes."""
    return {**os.environ, mock.HOST: f"{os.environ.get(mock.HOST, 'tests')}-{name}"}


@contextmanager
def int_path_holder(tmp: Path, env: dict[str, str]) -> Iterator[None]:
    """A process holding the mock privcmd of `env`'s mock host and mapping a stand-in
    libxenctrl 4.14 (tests/holders.py)."""
    lib = build_stand_in_libxenctrl(tmp / "lib", "4.14")
    on_mock = {**env_for(load("large-memory"), tmp), mock.HOST: env[mock.HOST]}
    holder = start([sys.executable, "-c", HOLD64_WITH_LIB, "/dev/xen/privcmd", str(lib)],
                   env=on_mock)
    try:
        yield
    finally:
        stop([holder])


def scrape_all(tmp: Path, *args: str, holder_on: str | None = None
               ) -> dict[str, Exposition]:
    """Every shipped scenario's exposition after its first sweep (`args` go to serve),
    each on a mock host of its own; `holder_on`: that scenario's host has an int-path
    holder."""
    out: dict[str, Exposition] = {}
    with ExitStack() as stack:
        if holder_on is not None:
            stack.enter_context(int_path_holder(tmp, own_host(holder_on)))
        serves = {name: stack.enter_context(Serve(name, "--interval", "60", *args,
                                                  env=own_host(name)))
                  for name in shipped() if name != NOT_DOM0}
        for name, serve in serves.items():
            serve.after_sweeps(1)
            status, _, body = serve.get()
            assert status == 200, (name, body)
            out[name] = Exposition(body.decode())
    target = tmp / "domu.prom"
    p = run_check(["check", "--mock", NOT_DOM0, "--textfile", str(target)])
    assert p.returncode == 3, p.stderr
    out[NOT_DOM0] = Exposition(target.read_text())
    return out
