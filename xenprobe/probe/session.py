# SPDX-License-Identifier: GPL-2.0-only
"""One probe session: privcmd opened, the host detected, the layer ladder built, and what
sweeps learn about the host (sweep.Known) kept for the next one. `check` runs one sweep
through it, `serve` one per interval; neither opens the pieces itself."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

from xenprobe.layers.protocol import Layer, ladder
from xenprobe.probe.sweep import ATTEMPTS, Known, Sweep, Sweeper
from xenprobe.xen.host import Host
from xenprobe.xen.transport import Privcmd


@dataclass
class Session:
    dev: Privcmd
    host: Host
    layers: list[Layer]
    known: Known = field(default_factory=Known)
    owns_device: bool = False  # close() closes dev too

    @classmethod
    def open(cls) -> Session:
        """The device opened and the host detected; CannotProbe where there is no device,
        no hypervisor or no permission. What was opened before a step failed is closed."""
        with contextlib.ExitStack() as undo:
            dev = undo.enter_context(Privcmd())
            session = cls.on(dev)
            session.owns_device = True
            undo.pop_all()
        return session

    @classmethod
    def on(cls, dev: Privcmd) -> Session:
        """A session on a device the caller keeps (and closes): its retries stay
        countable after a failed detection."""
        host = Host(dev)
        try:
            return cls(dev, host, ladder(dev, host.identity))
        except BaseException:
            host.close()
            raise

    def sweep(self, attempts: int = ATTEMPTS) -> Sweep:
        return Sweeper(self.host, self.layers, attempts, self.known).sweep()

    def take_retries(self) -> Counter[tuple[str, str]]:
        """The retries counted since the last call (xenprobe_retries_total, the notes)."""
        return self.dev.take_retries()

    def notes(self) -> list[str]:
        """Why a layer's column is empty or partial (libxc: libxenctrl not found...)."""
        return [f"{layer.name}: {layer.note}" for layer in self.layers if layer.note]

    def close(self) -> None:
        self.host.close()
        if self.owns_device:
            self.dev.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
