"""Debian's real Xen 4.17 user-space libraries, fetched once and cached, for tests.

libxenctrl.so.4.17 (in libxenmisc4.17), the stable libraries it links, and xen-utils-4.17
for the official Python bindings (xen.lowlevel.xc). Nothing is installed into the host:
`apt-get download` fetches the .debs with the host's apt configuration and package
lists, `dpkg-deb -x` unpacks them below the cache directory ($XENPROBE_CACHE, else
~/.cache/xenprobe), and tests point LD_LIBRARY_PATH at the unpacked library directory.

Cache layout, below <cache>/xenpkgs/:
    .lock          flock()ed while resolving and unpacking (pytest-xdist, parallel runs)
    current        "<version> <resolved-at>" of the set in use
    <version>/     the unpacked packages (a filesystem root), with a .complete marker

The tests/realxen tier has its own cache for the hypervisor and kernel (assets.py); this
one only needs the host's package lists (`apt-get update` if apt knows no candidate).

Run `python3 -m tests.xenpkgs` from the repository root to fetch and print the paths.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RELEASE = "4.17"
# libxenmisc4.17 ships libxenctrl.so.4.17 (Debian has no libxenctrl4.17 package); the
# rest are what `ldd` shows it and xen.lowlevel.xc need beyond the base system.
PACKAGES: tuple[str, ...] = (
    f"libxenmisc{RELEASE}",
    "libxencall1",
    "libxenforeignmemory1",
    "libxendevicemodel1",
    "libxentoollog1",
    "libxentoolcore1",
    "libxenevtchn1",
    "libxengnttab1",
    "libxenstore4",
    "libxenhypfs1",
    f"xen-utils-{RELEASE}",
)
LIBDIR = "usr/lib/x86_64-linux-gnu"
PYTHON_DIR = f"usr/lib/xen-{RELEASE}/lib/python"
XC_MODULE = "xen/lowlevel/xc.cpython-311-x86_64-linux-gnu.so"
TTL_S = 7 * 24 * 3600  # re-resolve the candidate version after this long
SKIP_ENV = "XENPROBE_SKIP_XENPKGS"


class PackageError(RuntimeError):
    """The packages could not be resolved, fetched or unpacked."""


@dataclass(frozen=True)
class XenPackages:
    root: Path      # the unpacked filesystem tree
    version: str    # the Debian version of every package in it

    @property
    def libdir(self) -> Path:
        return self.root / LIBDIR

    @property
    def libxenctrl(self) -> Path:
        return self.libdir / f"libxenctrl.so.{RELEASE}"

    @property
    def python_dir(self) -> Path:
        return self.root / PYTHON_DIR

    @property
    def xc_module(self) -> Path:
        return self.python_dir / XC_MODULE

    def env(self) -> dict[str, str]:
        """Variables that let the loader find the unpacked libraries."""
        old = os.environ.get("LD_LIBRARY_PATH", "")
        return {"LD_LIBRARY_PATH": f"{self.libdir}:{old}" if old else str(self.libdir)}


def cache_dir() -> Path:
    env = os.environ.get("XENPROBE_CACHE")
    path = (Path(env) if env else Path.home() / ".cache" / "xenprobe") / "xenpkgs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    with open(cache / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                           check=False, timeout=600)
    except FileNotFoundError:
        raise PackageError(f"{cmd[0]} is not installed (it comes with Debian's apt/dpkg)"
                           ) from None
    if p.returncode != 0:
        raise PackageError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout


def _apt_options() -> list[str]:
    opts = ["-o", "Acquire::Languages=none"]
    if os.geteuid() == 0:
        # apt's _apt sandbox user cannot write into the cache directory.
        opts += ["-o", "APT::Sandbox::User=root"]
    return opts


def candidates(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """The version apt would install of each package (host package lists, read only)."""
    out = _run(["apt-cache", "policy", *packages], env={**os.environ, "LC_ALL": "C"})
    found: dict[str, str] = {}
    current = ""
    for line in out.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
        m = re.match(r"\s+Candidate:\s+(\S+)", line)
        if m and current and m.group(1) != "(none)":
            found[current] = m.group(1)
    missing = [p for p in packages if p not in found]
    if missing:
        raise PackageError(f"apt knows no candidate for {', '.join(missing)}: run "
                           "`apt-get update` (the host needs Debian bookworm sources)")
    return found


def _missing_libraries(tree: Path) -> list[str]:
    """Shared objects the loader cannot find for libxenctrl and xc.so with the tree's
    library directory on LD_LIBRARY_PATH."""
    targets = [tree / LIBDIR / f"libxenctrl.so.{RELEASE}", tree / PYTHON_DIR / XC_MODULE]
    for t in targets:
        if not t.exists():
            raise PackageError(f"{t.relative_to(tree)} is not in the unpacked packages")
    env = {**os.environ, "LD_LIBRARY_PATH": str(tree / LIBDIR), "LC_ALL": "C"}
    out = _run(["ldd", *map(str, targets)], env=env)
    return sorted({line.split()[0] for line in out.splitlines() if "=> not found" in line})


def _fetch(cache: Path, versions: dict[str, str]) -> Path:
    version = versions[PACKAGES[0]]
    final = cache / version.replace(":", "%3a")
    if (final / ".complete").exists():
        return final
    with tempfile.TemporaryDirectory(dir=cache, prefix=".tmp-") as tmp:
        work = Path(tmp)
        debs, tree = work / "debs", work / "root"
        debs.mkdir()
        _run(["apt-get", "-q", *_apt_options(), "download",
              *(f"{p}={versions[p]}" for p in PACKAGES)], cwd=debs)
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(tree)])
        missing = _missing_libraries(tree)
        if missing:
            raise PackageError(f"unpacked, but the loader still misses {', '.join(missing)}"
                               ": add the Debian packages that ship them to PACKAGES")
        (tree / ".complete").write_text(" ".join(f"{p}={versions[p]}" for p in PACKAGES))
        if final.exists():
            shutil.rmtree(final)  # an interrupted earlier run
        tree.rename(final)
    return final


def _current(cache: Path) -> tuple[Path, str, float] | None:
    try:
        version, stamp = (cache / "current").read_text().split()
        root = cache / version.replace(":", "%3a")
        return (root, version, float(stamp)) if (root / ".complete").exists() else None
    except (OSError, ValueError):
        return None


def ensure(refresh: bool = False) -> XenPackages:
    """The unpacked packages, fetched when the cache has none (or they are older than a
    week and apt has a newer candidate). An older complete set is used if apt fails."""
    cache = cache_dir()
    with _locked(cache):
        current = _current(cache)
        if current and not refresh and time.time() - current[2] < TTL_S:
            return XenPackages(current[0], current[1])
        try:
            versions = candidates()
            root = _fetch(cache, versions)
        except PackageError as e:
            if current is None:
                raise
            print(f"xenpkgs: using the cached {current[1]}: {e}", file=sys.stderr)
            return XenPackages(current[0], current[1])
        version = versions[PACKAGES[0]]
        tmp = cache / "current.tmp"
        tmp.write_text(f"{version} {time.time()}\n")
        tmp.replace(cache / "current")
        return XenPackages(root, version)


def main() -> int:
    t0 = time.monotonic()
    pkgs = ensure(refresh="--refresh" in sys.argv)
    print(f"version     {pkgs.version}\nlibxenctrl  {pkgs.libxenctrl}\n"
          f"xc module   {pkgs.xc_module}\nelapsed     {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
