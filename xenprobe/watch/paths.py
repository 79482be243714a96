# SPDX-License-Identifier: GPL-2.0-only
"""Where the watch looks on the host. Everything is under one prefix,
XENPROBE_WATCH_ROOT (default "/"), so a test gives it a whole fake system (a mock
tracefs, a module file, a lockdown file) and never touches the machine's own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = "XENPROBE_WATCH_ROOT"
MODULE = "XENPROBE_WATCH_MODULE"  # the module file itself (skips modules.dep)
MODULE_NAME = "xen_privcmd"


@dataclass(frozen=True)
class Paths:
    root: Path

    @staticmethod
    def from_environment() -> Paths:
        return Paths(Path(os.environ.get(ROOT) or "/"))

    @property
    def prefixed(self) -> bool:
        """A test's fake system, not the machine's."""
        return self.root != Path("/")

    def tracefs_candidates(self) -> tuple[Path, Path]:
        # Documentation/trace/ftrace.rst: mounted at /sys/kernel/tracing since 4.1,
        # and still under debugfs for older setups.
        return (self.root / "sys/kernel/tracing", self.root / "sys/kernel/debug/tracing")

    @property
    def sys_module(self) -> Path:
        return self.root / "sys/module" / MODULE_NAME

    @property
    def build_id_note(self) -> Path:
        return self.sys_module / "notes/.note.gnu.build-id"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib/modules" / os.uname().release

    @property
    def kernel_log(self) -> Path:
        return self.root / "dev/kmsg"

    @property
    def lockdown(self) -> Path:
        return self.root / "sys/kernel/security/lockdown"

    @property
    def kprobes_enabled(self) -> Path:
        return self.root / "sys/kernel/debug/kprobes/enabled"

    @property
    def run_dir(self) -> Path:
        return self.root / "run/xenprobe"

    @property
    def module_override(self) -> Path | None:
        value = os.environ.get(MODULE)
        return Path(value) if value else None
