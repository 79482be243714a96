# SPDX-License-Identifier: GPL-2.0-only
"""The read-only allow-list on libxenctrl's own path to privcmd (native/transport/guard.c).

libxenctrl does not use xenprobe's transport: libxencall, libxenforeignmemory and
libxendevicemodel issue their privcmd ioctls themselves. `protect` points the ioctl
relocations of libxenctrl and every libxen* library under it at a native guard that
applies the transport's allow-list and refuses everything else with EPERM before it
reaches the device. Python can install the guard, never remove or widen it.
"""

from __future__ import annotations

from collections.abc import Sequence

from xenprobe._transport import ffi, lib

# The libraries that open privcmd. Each must have at least one guarded ioctl slot:
# one without any reaches the device some other way, which the guard cannot see.
PRIVCMD_USERS = ("libxencall.so.1", "libxenforeignmemory.so.1", "libxendevicemodel.so.1")
_ERRLEN = 512


class NotGuarded(Exception):
    """The guard could not be installed; the message says why."""


def install(sonames: Sequence[str]) -> int:
    """Guards the loaded libraries with these SONAMEs and every libxen* library they
    need; the number of guarded ioctl slots. Raises NotGuarded."""
    names = [ffi.new("char[]", n.encode()) for n in sonames]
    array = ffi.new("const char *[]", names)
    err = ffi.new("char[]", _ERRLEN)
    n = int(lib.xp_guard_install(array, len(names), err, _ERRLEN))
    if n < 0:
        raise NotGuarded(ffi.string(err).decode(errors="replace"))
    return n


def slots(soname: str) -> int:
    """Guarded ioctl slots of the loaded library with this SONAME; -1 if not loaded."""
    return int(lib.xp_guard_slots(soname.encode()))


def refused() -> int:
    """Requests the guard refused in this process."""
    return int(lib.xp_guard_refused())


def protect(libxenctrl: str, users: Sequence[str] | None = None) -> int:
    """Guards a loaded libxenctrl (by SONAME) and the libraries under it, and checks
    that each library that opens privcmd (PRIVCMD_USERS unless given) has its ioctl
    calls guarded. Raises NotGuarded: the caller must then not call into libxenctrl."""
    users = PRIVCMD_USERS if users is None else users
    n = install([libxenctrl, *users])
    for name in users:
        if slots(name) <= 0:
            raise NotGuarded(f"{name} has no ioctl relocation to guard: it would reach "
                             "privcmd some way the guard cannot see")
    return n
