# SPDX-License-Identifier: GPL-2.0-only
"""The program's entry point (console script and `python -m xenprobe`).

It loads the command line inside a guard: a failure to even import xenprobe (no memory
under a small RLIMIT_AS, Ctrl-C while starting) would otherwise be Python's traceback
and exit 1, which means "a mismatch was found". Kept free of imports for that reason.
"""

from __future__ import annotations

import sys


def main() -> int:
    _note_address_space_limit()
    try:
        from xenprobe.cli.command import main as run  # noqa: PLC0415 (the point of this module)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if cannot_load(e):
            _say(OUT_OF_MEMORY)
            return 3
        _say(f"xenprobe: internal error: cannot load xenprobe: {type(e).__name__}: {e}")
        return 4  # a broken installation
    code = run()
    _settle()
    return code


OUT_OF_MEMORY = ("xenprobe: error: out of memory "
                 "(is the address space limited, ulimit -v / RLIMIT_AS?)")


def cannot_load(e: BaseException) -> bool:
    """Whether a failure is the address space's limit, not a bug or a broken
    installation. A MemoryError says so itself. Other failures count when they come near
    the limit: CPython's C code that finds no room does not always raise MemoryError (seen
    under a small RLIMIT_AS: a SystemError "returned NULL without setting an exception", a
    SyntaxError from the parser in xenprobe's own source, a ValueError from the AST), so
    near the limit no exception can be told from one. cli.command asks it too."""
    return isinstance(e, MemoryError) or _out_of_memory(e) or _near_address_space_limit()


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


def _out_of_memory(e: BaseException) -> bool:
    """dlopen(3)'s words when mmap fails under RLIMIT_AS."""
    text = str(e)
    return "failed to map segment" in text or "Cannot allocate memory" in text


# The room an allocation may ask for at once: glibc's first malloc in a new thread maps
# twice HEAP_MAX_SIZE (2 x 64 MiB on 64-bit) to align its arena (malloc/arena.c, new_heap).
ROOM = 128 << 20

_limit: int | None = None  # RLIMIT_AS's soft limit, read at start; None: not read


def _note_address_space_limit() -> None:
    """Read RLIMIT_AS once, first: by the time a failure needs it, there may be no room
    left to load the resource module that gives it (the CI run's exit 4 at 20 MiB)."""
    global _limit  # noqa: PLW0603 (one value, set once at start)
    _limit = _read_limit()


def _read_limit() -> int | None:
    try:
        import resource  # noqa: PLC0415

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except Exception:
        return None
    return -1 if soft == resource.RLIM_INFINITY else soft


def _near_address_space_limit() -> bool:
    """Whether an address-space limit is set and the process is within ROOM of it."""
    limit = _limit if _limit is not None else _read_limit()
    if limit is None or limit < 0:
        return False
    try:
        import os  # noqa: PLC0415 (built in: no room needed)

        fd = os.open("/proc/self/statm", os.O_RDONLY)
        try:
            size = int(os.read(fd, 64).split()[0]) * os.sysconf("SC_PAGE_SIZE")
        finally:
            os.close(fd)
    except Exception:  # no /proc, or no room to read it: a limit is set, so it is that
        return True
    return size + ROOM >= limit


def _say(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:  # closed or full stderr: the exit code says it
        pass
