# SPDX-License-Identifier: GPL-2.0-only
"""Real processes holding a privcmd device open, for the consumers-at-risk tests: a
32-bit program built here (gcc -m32, no libc) and this Python (64-bit), on a real file
standing in for the device or on the mock host's own device; Pythons that map a
libxenctrl first (Debian's real one, or a stand-in with a given SONAME); and a 32-bit
program that issues the privcmd hypercall ioctl and prints what it got."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# A 32-bit program without libc: opens argv[1], says so, and waits (int $0x80 syscalls).
HOLD32 = r"""
static long sys(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile ("int $0x80" : "=a"(r) : "a"(n), "b"(a), "c"(b), "d"(c) : "memory");
    return r;
}
__attribute__((noreturn, used)) void start_c(long *sp)
{
    char **argv = (char **)(sp + 1);
    if (sys(5, (long)argv[1], 0, 0) < 0)     /* open(path, O_RDONLY) */
        sys(1, 2, 0, 0);                     /* exit(2) */
    sys(4, 1, (long)"ready\n", 6);            /* write(1, "ready\n") */
    for (;;)
        sys(29, 0, 0, 0);                    /* pause() */
}
__asm__(".globl _start\n_start:\n  push %esp\n  call start_c\n");
"""

# A 64-bit process (this Python) that opens argv[1] and waits.
HOLD64 = ("import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
          "print('ready', flush=True); sys.stdin.read()")

# A 64-bit process that maps the library argv[2] (dlopen), then opens argv[1] and waits.
HOLD64_WITH_LIB = ("import ctypes, os, sys; ctypes.CDLL(sys.argv[2]); "
                   "fd = os.open(sys.argv[1], os.O_RDONLY); "
                   "print('ready', flush=True); sys.stdin.read()")

# A 32-bit program without libc: opens argv[1], issues IOCTL_PRIVCMD_HYPERCALL for
# xen_version(XENVER_version) on it and prints "ioctl32 <return>" (a negative errno on
# failure: the raw syscall return), then exits. struct privcmd_hypercall is 6 x __u64
# on every ABI, so the ioctl number is the 64-bit one (include/uapi/xen/privcmd.h).
IOCTL32 = r"""
static long sys(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile ("int $0x80" : "=a"(r) : "a"(n), "b"(a), "c"(b), "d"(c) : "memory");
    return r;
}
static unsigned long long call[6] = { 17, 0, 0, 0, 0, 0 };  /* xen_version, XENVER_version */
__attribute__((noreturn, used)) void start_c(long *sp)
{
    char **argv = (char **)(sp + 1);
    char buf[32], *p = buf + sizeof(buf);
    long fd = sys(5, (long)argv[1], 2, 0);       /* open(path, O_RDWR) */
    long r = fd < 0 ? fd : sys(54, fd, 0x305000, (long)call);  /* ioctl(HYPERCALL) */
    unsigned long u = r < 0 ? -r : r;
    *--p = '\n';
    do { *--p = '0' + u % 10; u /= 10; } while (u);
    if (r < 0) *--p = '-';
    *--p = ' ';
    p -= 7; __builtin_memcpy(p, fd < 0 ? "open32 " : "ioctl32", 7);
    sys(4, 1, (long)p, buf + sizeof(buf) - p);   /* write(1, ...) */
    sys(1, 0, 0, 0);                             /* exit(0) */
    for (;;) ;
}
__asm__(".globl _start\n_start:\n  push %esp\n  call start_c\n");
"""
IOCTL_PRIVCMD_HYPERCALL = 0x305000  # _IOC(_IOC_NONE, 'P', 0, 48)

# On the mock host: opens the mock's privcmd, then execs argv[1:] with it still open. A
# static 32-bit program ignores LD_PRELOAD, so it cannot open the mock's device itself.
OPEN_THEN_EXEC = ("import os, sys; fd = os.open('/dev/xen/privcmd', os.O_RDONLY); "
                  "os.set_inheritable(fd, True); os.execv(sys.argv[1], sys.argv[1:])")


def build_hold32(directory: Path) -> Path:
    """HOLD32 compiled in `directory`; skips the test where gcc cannot build it."""
    return _build32(directory, "hold32", HOLD32)


def build_ioctl32(directory: Path) -> Path:
    """IOCTL32 compiled in `directory`; skips the test where gcc cannot build it."""
    return _build32(directory, "ioctl32", IOCTL32)


def _build32(directory: Path, name: str, source: str) -> Path:
    (directory / f"{name}.c").write_text(source)
    p = subprocess.run(["gcc", "-m32", "-nostdlib", "-static", "-ffreestanding", "-fno-pic",
                        "-no-pie", "-O1", "-o", str(directory / name),
                        str(directory / f"{name}.c")],
                       capture_output=True, text=True, check=False)
    if p.returncode:
        pytest.skip(f"gcc cannot build a 32-bit program here: {p.stderr.strip()}")
    return directory / name


def build_stand_in_libxenctrl(directory: Path, release: str) -> Path:
    """An empty shared library named and SONAMEd as libxenctrl `release` builds it
    (libxenctrl.so.4.14.0, SONAME libxenctrl.so.4.14): the scanner reads only the
    mapping's path and the SONAME, so a holder mapping this one is judged as a holder
    mapping the real library of that release (tests/realxen shows the real ones)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "empty.c").write_text("int xenprobe_stand_in;\n")
    lib = directory / f"libxenctrl.so.{release}.0"
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,libxenctrl.so.{release}",
                    "-o", str(lib), str(directory / "empty.c")], check=True,
                   capture_output=True)
    return lib


def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a holder and wait for its "ready"; skips where 32-bit programs cannot run."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        _, err = proc.communicate()
        if proc.returncode == -8 or "Exec format error" in err:
            pytest.skip("this kernel does not run 32-bit programs (no IA32 emulation)")
        raise AssertionError(f"{argv} did not start: {line!r} {err}")
    return proc


def start_on_mock(hold32: Path | None, env: dict[str, str]) -> subprocess.Popen[str]:
    """A process holding the mock host's device (`env` puts it on the mock): the 32-bit
    program when given, else this Python."""
    if hold32 is None:
        return start([sys.executable, "-c", HOLD64, "/dev/xen/privcmd"], env=env)
    return start([sys.executable, "-c", OPEN_THEN_EXEC, str(hold32), "/dev/null"], env=env)


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.kill()
        p.communicate()
