# SPDX-License-Identifier: GPL-2.0-only
"""The program's entry point (console script and `python -m xenprobe`).

It loads the command line inside a guard: a failure to even import xenprobe (no memory
under a small RLIMIT_AS, Ctrl-C while starting) would otherwise be Python's traceback
and exit 1, which means "a mismatch was found". Kept free of imports for that reason.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from xenprobe.cli.command import main as run  # noqa: PLC0415 (the point of this module)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if cannot_load(e):
            _say(NO_MEMORY_TO_LOAD)
            return 3
        _say(f"xenprobe: internal error: cannot load xenprobe: {type(e).__name__}: {e}")
        return 4  # a broken installation
    code = run()
    _settle()
    return code


NO_MEMORY_TO_LOAD = ("xenprobe: error: not enough memory to load xenprobe "
                     "(is the address space limited, ulimit -v / RLIMIT_AS?)")


def cannot_load(e: Exception) -> bool:
    """Whether a failed import is the address space's limit, not a broken installation;
    cli.command asks it too, as it imports what a command needs only once it runs."""
    return isinstance(e, MemoryError) or _out_of_memory(e) or _address_space_limited()


def _settle() -> None:
    """Flush stdout and stderr now; one that cannot take its last bytes (a full or
    broken stream: every failure was already reported or counted) gets /dev/null, so the
    interpreter's own flush at exit cannot turn the exit code into 120."""
    import os  # noqa: PLC0415

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, stream.fileno())
                os.close(null)
            except Exception:  # no descriptor to redirect: nothing more to lose
                pass


def _out_of_memory(e: Exception) -> bool:
    """dlopen(3)'s words when mmap fails under RLIMIT_AS."""
    text = str(e)
    return "failed to map segment" in text or "Cannot allocate memory" in text


def _address_space_limited() -> bool:
    """Whether an address-space limit is set: then a load that fails in C code (a
    SystemError "error return without exception set" from an allocation that found no
    room, seen under a 20 MiB RLIMIT_AS) is the limit, not a broken installation."""
    try:
        import resource  # noqa: PLC0415

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except Exception:
        return False
    return soft != resource.RLIM_INFINITY


def _say(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:  # closed or full stderr: the exit code says it
        pass
