# SPDX-License-Identifier: GPL-2.0-only
"""Debian's real Xen user-space libraries, fetched once and cached, for tests.

Per release (RELEASES): libxenctrl.so.<release> (in libxenmisc<release>: Debian has no
libxenctrl package) and the stable libraries it links. For 4.17 (bookworm, the host's
own suite) also xen-utils-4.17, for the official Python bindings (xen.lowlevel.xc).
4.14 comes from bullseye and 4.20 from trixie, through a private apt state (lists,
sources, cache below the cache directory; tests/realxen/assets.PrivateApt), so the
host's apt state is neither read for resolution nor written. Nothing is installed into
the host: `apt-get download` fetches the .debs, `dpkg-deb -x` unpacks them below the
cache directory ($XENPROBE_CACHE, else ~/.cache/xenprobe), and tests point
LD_LIBRARY_PATH at the unpacked library directory.

Cache layout, below <cache>/xenpkgs/:
    .lock          flock()ed while resolving and unpacking (pytest-xdist, parallel runs)
    current        "<version> <resolved-at>" of the 4.17 set in use
    current-4.NN   the same for another release
    apt/<suite>/   private apt state for a suite other than the host's
    <version>/     the unpacked packages (a filesystem root), with a .complete marker

Run `python3 -m tests.xenpkgs [4.14|4.17|4.20]` from the repository root to fetch and
print the paths.
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
from typing import Any

RELEASE = "4.17"  # the default: the host's own suite, with the Python bindings
# libxenmisc ships libxenctrl.so (Debian has no libxenctrl package); the stable libraries
# are what `ldd` shows libxenctrl needs beyond the base system.
_LIBXC = ("libxencall1", "libxenforeignmemory1", "libxendevicemodel1", "libxentoollog1",
          "libxentoolcore1", "libxenevtchn1", "libxengnttab1")


@dataclass(frozen=True)
class Spec:
    release: str
    suite: str | None           # None: the host's apt (bookworm); else a private state
    packages: tuple[str, ...]
    bindings: bool              # xen-utils is among them: xen.lowlevel.xc is checked too


RELEASES: dict[str, Spec] = {
    "4.17": Spec("4.17", None, (
        "libxenmisc4.17", *_LIBXC, "libxenstore4",
        "libxenhypfs1", "xen-utils-4.17"), bindings=True),
    # Debian 11's Xen 4.14.6: glibc 2.31, so it loads on bookworm's userland.
    "4.14": Spec("4.14", "bullseye", ("libxenmisc4.14", *_LIBXC), bindings=False),
    # trixie's libxenctrl.so.4.20 needs glibc 2.34 at most (objdump -T); the libraries
    # that need 2.38 (libxenstore, libxenguest, libxenlight) are not among its needs.
    "4.20": Spec("4.20", "trixie", ("libxenmisc4.20", *_LIBXC), bindings=False),
}
PACKAGES: tuple[str, ...] = RELEASES[RELEASE].packages
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
    release: str = RELEASE

    @property
    def libdir(self) -> Path:
        return self.root / LIBDIR

    @property
    def libxenctrl(self) -> Path:
        return self.libdir / f"libxenctrl.so.{self.release}"

    @property
    def python_dir(self) -> Path:
        return self.root / f"usr/lib/xen-{self.release}/lib/python"

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


def _private_apt(cache: Path, suite: str) -> Any:
    """A PrivateApt for another Debian suite, its lists refreshed (tests/realxen)."""
    from tests.realxen import assets  # the private-state apt of the real-Xen tier

    apt = assets.PrivateApt(cache / "apt" / suite, suite)
    try:
        apt.setup(assets.host_sources())
        apt.update()
    except assets.AssetError as e:
        raise PackageError(str(e)) from None
    return apt


def _resolve(cache: Path, spec: Spec) -> tuple[dict[str, str], Any]:
    """(package -> version, the PrivateApt or None for the host's apt)."""
    if spec.suite is None:
        return candidates(spec.packages), None
    from tests.realxen import assets

    apt = _private_apt(cache, spec.suite)
    try:
        return {p: apt.show(p)["version"] for p in spec.packages}, apt
    except assets.AssetError as e:
        raise PackageError(str(e)) from None


def _missing_libraries(tree: Path, spec: Spec) -> list[str]:
    """Shared objects the loader cannot find for libxenctrl (and xc.so) with the tree's
    library directory on LD_LIBRARY_PATH."""
    targets = [tree / LIBDIR / f"libxenctrl.so.{spec.release}"]
    if spec.bindings:
        targets.append(tree / f"usr/lib/xen-{spec.release}/lib/python" / XC_MODULE)
    for t in targets:
        if not t.exists():
            raise PackageError(f"{t.relative_to(tree)} is not in the unpacked packages")
    env = {**os.environ, "LD_LIBRARY_PATH": str(tree / LIBDIR), "LC_ALL": "C"}
    out = _run(["ldd", *map(str, targets)], env=env)
    return sorted({line.split()[0] for line in out.splitlines()
                   if "=> not found" in line or "version `" in line})


def _fetch(cache: Path, spec: Spec, versions: dict[str, str], apt: Any) -> Path:
    version = versions[spec.packages[0]]
    final = cache / version.replace(":", "%3a")
    if (final / ".complete").exists():
        return final
    with tempfile.TemporaryDirectory(dir=cache, prefix=".tmp-") as tmp:
        work = Path(tmp)
        debs, tree = work / "debs", work / "root"
        debs.mkdir()
        if apt is None:
            _run(["apt-get", "-q", *_apt_options(), "download",
                  *(f"{p}={versions[p]}" for p in spec.packages)], cwd=debs)
        else:
            for p in spec.packages:
                apt.download(p, versions[p], debs)
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg-deb", "-x", str(deb), str(tree)])
        missing = _missing_libraries(tree, spec)
        if missing:
            raise PackageError(f"unpacked, but the loader still misses {', '.join(missing)}"
                               ": add the Debian packages that ship them to RELEASES")
        (tree / ".complete").write_text(" ".join(f"{p}={versions[p]}" for p in spec.packages))
        if final.exists():
            shutil.rmtree(final)  # an interrupted earlier run
        tree.rename(final)
    return final


def _current_file(cache: Path, release: str) -> Path:
    return cache / ("current" if release == RELEASE else f"current-{release}")


def _current(cache: Path, release: str) -> tuple[Path, str, float] | None:
    try:
        version, stamp = _current_file(cache, release).read_text().split()
        root = cache / version.replace(":", "%3a")
        return (root, version, float(stamp)) if (root / ".complete").exists() else None
    except (OSError, ValueError):
        return None


def ensure(refresh: bool = False, release: str = RELEASE) -> XenPackages:
    """The unpacked packages of one release, fetched when the cache has none (or they
    are older than a week and apt has a newer candidate). An older complete set is used
    if apt fails."""
    spec = RELEASES[release]
    cache = cache_dir()
    with _locked(cache):
        current = _current(cache, release)
        if current and not refresh and time.time() - current[2] < TTL_S:
            return XenPackages(current[0], current[1], release)
        try:
            versions, apt = _resolve(cache, spec)
            root = _fetch(cache, spec, versions, apt)
        except PackageError as e:
            if current is None:
                raise
            print(f"xenpkgs: using the cached {current[1]}: {e}", file=sys.stderr)
            return XenPackages(current[0], current[1], release)
        version = versions[spec.packages[0]]
        tmp = cache / "current.tmp"
        tmp.write_text(f"{version} {time.time()}\n")
        tmp.replace(_current_file(cache, release))
        return XenPackages(root, version, release)


def main() -> int:
    t0 = time.monotonic()
    release = next((a for a in sys.argv[1:] if a in RELEASES), RELEASE)
    pkgs = ensure(refresh="--refresh" in sys.argv, release=release)
    print(f"version     {pkgs.version}\nlibxenctrl  {pkgs.libxenctrl}\n"
          f"xc module   {pkgs.xc_module}\nelapsed     {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
