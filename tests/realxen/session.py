# SPDX-License-Identifier: GPL-2.0-only
"""The one boot per Xen release that this tier's tests share (the "session boot").

Booting costs 15-25 s under TCG, and a cold `xenprobe` start over 9p about as much, so
everything is done in one boot and the tests read the artifacts.  In dom0, in order:

1. mkdomains: extra paused PV domains (SESSION_DOMAINS), on 4.17 through Debian's real
   libxenctrl.so.4.17, on 4.14 and 4.20 through raw domctl / memory_op hypercalls on
   privcmd (DOMAIN_BACKENDS); Debian's libraries of the release (tests/xenpkgs.py) are
   copied into the share as ``xenlibs/`` for the check's libxc layer;
2. ``xenprobe check --json`` with the checkout's interpreter (``.venv/bin/python``);
3. the independent reader (reader.py, system python3), asked to re-read every
   (quantity, domid) that check probed;
4. ``xenprobe serve`` on loopback for a few sweeps (serve_probe.py), when this
   checkout's xenprobe has a `serve` command.

Every step's exit status and duration go to ``$RESULTS/steps``; the script's own exit
status is the reader's (so RealXen.reader() keeps its meaning for test_boot.py).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from .boot import Dom0Run
from .initramfs import SHARE_IN_CHROOT

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
READER = HERE / "reader.py"
MKDOMAINS = HERE / "mkdomains.py"
SERVE_PROBE = HERE / "serve_probe.py"
SHARE_IN_DOM0 = SHARE_IN_CHROOT  # the share's root where the script runs
XENLIBS = "xenlibs"
PYCACHE = "pycache"  # PYTHONPYCACHEPREFIX for the checkout's interpreter in dom0
SERVE_PORT = 9723
SERVE_SWEEPS = 3
# QEMU is killed after this long.  A quiet two-core machine needs 60-100 s per release
# (both releases booting side by side); the margin is for a loaded machine.
SESSION_TIMEOUT_S = 900
# One CPU per QEMU machine.  The session boots of both releases run side by side
# (conftest.py); with two vCPU threads per QEMU, four threads share two host cores,
# and a vCPU preempted while its sibling waits for it (Xen and Linux spin on IPIs and
# locks) made both boots 8x slower (measured: 786 s wall, 883 s CPU for the pair,
# against 102 s wall, 124 s CPU with one CPU each; one alone: 73 s with two, 68 with one).
SESSION_SMP = 1

PAGE_KIB = 4
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1

# Extra domains on every release, (current KiB, maximum KiB, shared_info max_pfn or
# None).  Xen keeps max_pages in an unsigned int and XEN_DOMCTL_max_mem only sets a limit
# (nothing is allocated), so a domain may be allowed more pages than any host has; and a
# PV domain's maximum_gpfn is max_pfn - 1 from its own shared_info page, which its
# kernel writes (mkdomains.py writes it as the guest would): that is how raw 64-bit
# results at and above 2^31 are produced on a small host.
EXTRA_DOMAINS: tuple[tuple[int, int, int | None], ...] = (
    (16 * 1024, 32 * 1024, None),  # ordinary: 4096 pages held, 8192 allowed
    # max_pages > INT32_MAX; maximum_gpfn 2^31 + 12345: sign-flipped by the int path
    (4 * 1024, (INT32_MAX + 1 + 12345) * PAGE_KIB, INT32_MAX + 1 + 12345 + 1),
    # max_pages = UINT32_MAX, the most Xen keeps; maximum_gpfn 0xFFFFFFFE: -1/ENOENT
    (1024, UINT32_MAX * PAGE_KIB, UINT32_MAX),
    # maximum_gpfn 2^32 + 4096: the int path keeps the low 32 bits, 4096
    (1024, 2048, UINT32_MAX + 1 + 4096 + 1),
)
# Guest-set max_pfn values whose maximum_gpfn breaks Xen's convention at the source
# (issue 24, docs/forged-errnos.md), made in the session boot only: maximum_gpfn -3
# (ESRCH, for a domain that exists), -22 (EINVAL, which maximum_gpfn never returns) and
# 0x8000000000000000 (negative as a long, and no errno).
FORGED_MAX_PFN = (0xFFFFFFFFFFFFFFFE, 0xFFFFFFFFFFFFFFEB, 0x8000000000000001)
SESSION_DOMAINS = EXTRA_DOMAINS + tuple((1024, 2048, pfn) for pfn in FORGED_MAX_PFN)
# How mkdomains.py makes them.  "libxenctrl": Debian's library of the same release
# (mkdomains.Libxc, through ctypes); "privcmd": the same domctls and memory_op as raw
# hypercalls (mkdomains.Privcmd).  4.17 keeps the library so that the real libxenctrl's
# domain calls are exercised too.  Whatever made the domains, the check step's libxc
# layer loads Debian's libxenctrl of the running release on every release (xenlibs/,
# tests/xenpkgs.py): bullseye's 4.14 (glibc 2.31), bookworm's 4.17, and trixie's 4.20,
# whose libxenctrl.so.4.20 and the libraries it needs load on bookworm's glibc 2.36
# (libxenguest, libxenlight and libxenstore, which need 2.38, are not among them).
DOMAIN_BACKENDS = {"4.14": "privcmd", "4.17": "libxenctrl", "4.20": "privcmd"}


class Booter(Protocol):
    release: str

    def run(self, script: str, *, label: str = ..., files: dict[str, Path] | None = ...,
            before_boot: Callable[[Path], object] | None = ..., **kwargs: Any
            ) -> Dom0Run: ...


@dataclass
class Step:
    rc: int
    ms: int


@dataclass
class Session:
    release: str
    run: Dom0Run
    steps: dict[str, Step]
    check: dict[str, Any] | None  # xenprobe check --json
    reader: dict[str, Any] | None
    created: dict[str, Any] | None  # mkdomains.py output; None if not attempted
    no_domains_reason: str | None  # why no extra domain was attempted
    domains_backend: str | None  # mkdomains.py --backend, if attempted
    serve: dict[str, Any] | None  # serve_probe.py output; None if not attempted
    metrics: str | None
    serve_help: str | None
    errors: dict[str, str] = field(default_factory=dict)  # step -> stderr tail

    def text(self, name: str) -> str:
        try:
            return (self.run.results_dir / name).read_text(errors="replace")
        except OSError:
            return ""

    def report(self) -> str:
        """Everything a CI log needs to diagnose a failed assertion."""
        lines = [f"steps: {self.steps}"]
        for name, err in self.errors.items():
            if err.strip():
                lines.append(f"--- {name} stderr (tail) ---\n{err[-3000:]}")
        lines.append(self.run.report(40))
        return "\n".join(lines)


@cache
def serve_help() -> str | None:
    """`xenprobe serve --help` of this checkout on the host, or None if it has no serve."""
    try:
        p = subprocess.run([str(VENV_PYTHON), "-m", "xenprobe", "serve", "--help"],
                           capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


def serve_ready(help_text: str | None) -> str | None:
    """None if serve can be run as serve_probe.py runs it, else why not."""
    if help_text is None:
        return "this checkout's xenprobe has no `serve` command (`xenprobe serve --help` fails)"
    missing = [f for f in ("--listen-address", "--interval") if f not in help_text]
    if missing:
        return f"`xenprobe serve` has no {', '.join(missing)} flag"
    return None


def _libxenctrl_dir(release: str) -> tuple[Path | None, str | None]:
    """The unpacked Debian libraries of a release (tests/xenpkgs.py), or why there are
    none."""
    from tests import xenpkgs  # the shared downloader (apt-get download + dpkg-deb -x)

    if release not in xenpkgs.RELEASES:
        return None, f"no Debian libxenctrl {release} in tests/xenpkgs.py"
    try:
        return xenpkgs.ensure(release=release).libdir, None
    except xenpkgs.PackageError as exc:
        return None, f"Debian's libxenctrl {release} could not be fetched: {exc}"


# Compiles, with the checkout's interpreter, every module that importing all of
# xenprobe loads, into the PYTHONPYCACHEPREFIX tree given as argv[1].
_PRECOMPILE = """
import importlib, importlib.util, pkgutil, py_compile, sys
import xenprobe
for info in pkgutil.walk_packages(xenprobe.__path__, "xenprobe."):
    try:
        importlib.import_module(info.name)
    except Exception:
        pass
for mod in list(sys.modules.values()):
    spec = getattr(mod, "__spec__", None)
    src = getattr(spec, "origin", None) or ""
    if src.endswith(".py"):
        try:
            py_compile.compile(src, cfile=importlib.util.cache_from_source(src), doraise=True)
        except Exception:
            pass
"""


def precompile(dest: Path) -> Path:
    """Byte-compile what `xenprobe` imports into a PYTHONPYCACHEPREFIX tree at dest.

    In dom0 the checkout and the interpreter are on a read-only 9p mount under TCG:
    there Python recompiles xenprobe's own modules (this checkout is used with
    PYTHONDONTWRITEBYTECODE, so it has no __pycache__) on every start, and reads every
    module through 9p.  With the prefix pointing into the share (writable, so anything
    missed here is added there), each start reads ready bytecode.  The prefix replaces
    __pycache__ lookups entirely, hence the standard library is compiled as well.
    Host cost: one or two seconds.
    """
    dest.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(dest)
    # A check on the mock host imports what a real check does (the libxc layer's cffi
    # parser included), and writes its bytecode into the prefix as it goes.
    for argv in (["-c", _PRECOMPILE], ["-m", "xenprobe", "check", "--json", "--mock"]):
        subprocess.run([str(VENV_PYTHON), *argv], env=env, cwd=REPO,
                       capture_output=True, timeout=300, check=False)
    return dest


def script(release: str, *, domains: str | None, serve: bool, libs: bool | None = None
           ) -> str:
    """The session's shell script.  domains: mkdomains.py's backend, None for none.
    libs: the share has ``xenlibs/`` (default: with the libxenctrl backend), which is
    then on the loader path of check: its libxc layer runs."""
    libs = domains == "libxenctrl" if libs is None else libs
    q = shlex.quote
    vpy = q(str(VENV_PYTHON))
    py = f'env PYTHONPYCACHEPREFIX="$PYC" {vpy}'
    lines = [
        'R="$RESULTS"',
        f"PYC={SHARE_IN_DOM0}/{PYCACHE}",
        "step() {",
        '    name=$1; shift',
        "    s=$(date +%s%N)",
        '    "$@"',
        "    rc=$?",
        "    e=$(date +%s%N)",
        '    echo "$name $rc $(( (e - s) / 1000000 ))" >> "$R/steps"',
        "    return $rc",
        "}",
    ]
    libdir = f"{SHARE_IN_DOM0}/{XENLIBS}"
    doms = " ".join(f"--domain {cur}:{mx}" + (f":{pfn}" if pfn is not None else "")
                    for cur, mx, pfn in SESSION_DOMAINS)
    if domains == "libxenctrl":
        lines.append(
            f"step mkdomains env LD_LIBRARY_PATH={libdir} python3 {q(str(MKDOMAINS))} "
            f"--backend libxenctrl --lib {libdir}/libxenctrl.so.{release} "
            f"--release {release} {doms} "
            '-o "$R/domains.json" >/dev/null 2>"$R/mkdomains.err"'
        )
    elif domains == "privcmd":
        lines.append(
            f"step mkdomains python3 {q(str(MKDOMAINS))} --backend privcmd "
            f"--release {release} {doms} "
            '-o "$R/domains.json" >/dev/null 2>"$R/mkdomains.err"'
        )
    elif domains is not None:
        raise ValueError(f"unknown mkdomains backend {domains!r}")
    # With Debian's libxenctrl of this release on the loader path, the libxc layer runs
    # for real (through the native guard) inside the real dom0.
    libenv = f"LD_LIBRARY_PATH={libdir} " if libs else ""
    lines += [
        f'step check env {libenv}{py.removeprefix("env ")} -m xenprobe check --json '
        '>"$R/check.json" 2>"$R/check.err"',
        f'step reader python3 {q(str(READER))} --probes-from "$R/check.json" '
        '-o "$R/reader.json" >/dev/null 2>"$R/reader.err"',
        "reader_rc=$?",
    ]
    if serve:
        lines.append(
            f"step serve env {libenv}python3 {q(str(SERVE_PROBE))} --python {vpy} "
            f'--pycache-prefix "$PYC" --port {SERVE_PORT} '
            f'--sweeps {SERVE_SWEEPS} --metrics "$R/metrics.txt" -o "$R/serve.json" '
            '>/dev/null 2>"$R/serve.err"'
        )
    lines.append('exit "$reader_rc"')
    return "\n".join(lines) + "\n"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def boot(xen: Booter) -> Session:
    files: dict[str, Path] = {}
    reason: str | None = None
    backend = DOMAIN_BACKENDS.get(xen.release)
    libdir, libs_reason = _libxenctrl_dir(xen.release)
    if libdir is not None:
        files[XENLIBS] = libdir
    if backend is None:
        reason = f"no way to create domains on Xen {xen.release} (DOMAIN_BACKENDS)"
    elif backend == "libxenctrl" and libdir is None:
        backend, reason = None, libs_reason
    help_text = serve_help()
    serve = serve_ready(help_text) is None
    text = script(xen.release, domains=backend, serve=serve, libs=libdir is not None)
    run = xen.run(text, label="session", files=files, timeout=SESSION_TIMEOUT_S,
                  smp=SESSION_SMP,
                  before_boot=lambda share: precompile(share / PYCACHE))
    res = run.results_dir
    steps: dict[str, Step] = {}
    for line in (res / "steps").read_text().splitlines() if (res / "steps").exists() else []:
        name, rc, ms = line.split()
        steps[name] = Step(int(rc), int(ms))
    errors = {}
    for name in ("mkdomains", "check", "reader", "serve"):
        p = res / f"{name}.err"
        if p.exists():
            errors[name] = p.read_text(errors="replace")
    metrics = (res / "metrics.txt").read_text() if (res / "metrics.txt").exists() else None
    return Session(
        release=xen.release,
        run=run,
        steps=steps,
        check=_load(res / "check.json"),
        reader=_load(res / "reader.json"),
        created=_load(res / "domains.json") if backend is not None else None,
        no_domains_reason=reason,
        domains_backend=backend,
        serve=_load(res / "serve.json") if serve else None,
        metrics=metrics,
        serve_help=help_text,
        errors=errors,
    )


def copy_into_share(share: Path, files: dict[str, Path]) -> None:
    """Put host files/directories into the share before boot (dom0: /tmp/xenprobe/NAME)."""
    for name, src in files.items():
        dest = share / name
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=True)
        else:
            shutil.copy2(src, dest)
