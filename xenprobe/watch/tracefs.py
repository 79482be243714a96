# SPDX-License-Identifier: GPL-2.0-only
"""A thin shell over tracefs (Documentation/trace/ftrace.rst, kprobetrace.rst): the
operations the watch performs, each one write or read of one file, nothing else.

- `kprobe_events` is only ever appended to (O_APPEND, never O_TRUNC: a truncating
  open removes every user's kprobe events, trace_kprobe.c probes_open).
- An instance is a directory under `instances/`; its events are enabled through its
  own `set_event` (`GROUP:EVENT`, ftrace_event_write), never through the top-level
  buffer, and removing the directory disables them (instance_rmdir).
- `trace_options` are shared by all instances: never written.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from pathlib import Path

# Lines of per_cpu/cpuN/stats that count events the reader never got
# (kernel/trace/trace.c tracing_stats_read): overwritten by the writer in overwrite
# mode (`overrun`), or refused by a full buffer in no-overwrite mode (`dropped events`).
LOST_KEYS = ("overrun", "dropped events")


class TracefsError(Exception):
    """A tracefs operation failed; the message names the file and the reason."""


def _write(path: Path, text: str, *, append: bool = False) -> None:
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise TracefsError(f"cannot open {path}: {e.strerror}") from None
    try:
        os.write(fd, text.encode())
    except OSError as e:
        raise TracefsError(f"writing {text.strip()!r} to {path}: {e.strerror}") from None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Instance:
    path: Path

    def set_clock(self, clock: str) -> None:
        _write(self.path / "trace_clock", clock + "\n")

    def set_buffer_kb(self, kb: int) -> None:
        _write(self.path / "buffer_size_kb", f"{kb}\n")

    def enable(self, group: str, event: str) -> None:
        _write(self.path / "set_event", f"{group}:{event}\n", append=True)

    def stop_recording(self) -> None:
        """The instance's own `tracing_on` to 0: its ring buffer records nothing more
        (kernel/trace/trace.c rb_simple_write -> tracer_tracing_off); what it holds
        can still be read."""
        _write(self.path / "tracing_on", "0\n")

    def open_pipe(self) -> int:
        """trace_pipe, non-blocking: a read of an empty buffer gives EAGAIN
        (kernel/trace/trace.c@v5.10 tracing_wait_pipe: O_NONBLOCK -> -EAGAIN), so the
        reader never has to wait for poll()'s wakeup (tracing_poll_pipe)."""
        try:
            return os.open(self.path / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            raise TracefsError(f"cannot open {self.path / 'trace_pipe'}: {e.strerror}"
                               ) from None

    def lost(self) -> int:
        """Events lost so far, summed over the instance's CPUs."""
        return self._stats_sum(LOST_KEYS)

    def queued(self) -> int:
        """Events recorded and not yet read, summed over the instance's CPUs
        (tracing_stats_read's "entries": ring_buffer_entries_cpu)."""
        return self._stats_sum(("entries",))

    def _stats_sum(self, keys: tuple[str, ...]) -> int:
        total = 0
        try:
            cpus = sorted((self.path / "per_cpu").glob("cpu*"))
        except OSError:
            return 0
        for cpu in cpus:
            try:
                text = (cpu / "stats").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(":")
                if key.strip() in keys:
                    with contextlib.suppress(ValueError, IndexError):
                        total += int(value.split()[0])
        return total


@dataclass(frozen=True)
class Tracefs:
    root: Path

    @property
    def kprobe_events(self) -> Path:
        return self.root / "kprobe_events"

    def listing(self) -> str:
        try:
            return self.kprobe_events.read_text()
        except OSError as e:
            raise TracefsError(f"cannot read {self.kprobe_events}: {e.strerror}") from None

    def define(self, line: str) -> None:
        try:
            _write(self.kprobe_events, line + "\n", append=True)
        except TracefsError as e:
            raise TracefsError(f"{e} (the kernel says why in {self.root / 'error_log'})"
                               ) from None

    def undefine(self, removal: str) -> None:
        _write(self.kprobe_events, removal + "\n", append=True)

    def instance_path(self, name: str) -> Path:
        return self.root / "instances" / name

    def has_instance(self, name: str) -> bool:
        return self.instance_path(name).is_dir()

    def make_instance(self, name: str) -> Instance:
        path = self.instance_path(name)
        try:
            os.mkdir(path)
        except OSError as e:
            raise TracefsError(f"cannot create the instance {path}: {e.strerror}") from None
        return Instance(path)

    def remove_instance(self, name: str) -> None:
        try:
            os.rmdir(self.instance_path(name))
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise TracefsError(f"{self.instance_path(name)} is busy (its trace_pipe "
                                   "is open in some process)") from None
            raise TracefsError(f"cannot remove {self.instance_path(name)}: {e.strerror}"
                               ) from None
