# SPDX-License-Identifier: GPL-2.0-only
"""Fetch and cache everything needed to boot real Xen + a Linux dom0 under QEMU.

Nothing is installed into the host: packages are fetched with ``apt-get download`` and
unpacked with ``dpkg -x`` into a cache directory (``$XENPROBE_CACHE`` or
``~/.cache/xenprobe``).  apt runs against *private* state directories (lists, cache,
sources, preferences, config parts) so the host's apt state is never read for
resolution nor written.  The Debian mirror is taken from the host's own apt sources at
run time, so no mirror host name is written in this repository.

Cache layout (all below the cache directory)::

    .lock                       flock()ed while resolving/downloading/building
    manifest.json               resolved package versions + paths, with a timestamp
    apt/<suite>/...             private apt state per suite family
    pkgs/<package>_<version>/   the files kept from one unpacked package version
    initramfs/<key>.cpio.gz     built by initramfs.py

Run ``python3 -m tests.realxen.assets`` (from the repository root) to fetch and print
the manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import gzip
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

# Xen release -> (apt suite family, package).  4.14 is only in bullseye, 4.20 only in trixie.
XEN_PACKAGES: dict[str, tuple[str, str]] = {
    "4.14": ("bullseye", "xen-hypervisor-4.14-amd64"),
    "4.17": ("bookworm", "xen-hypervisor-4.17-amd64"),
    "4.20": ("trixie", "xen-hypervisor-4.20-amd64"),
}
KERNEL_META_PACKAGE = "linux-image-amd64"  # per family; resolved to one linux-image-X-NN-amd64
# The Debian release whose kernel is each Xen release's own dom0 kernel (bullseye's 5.10,
# bookworm's 6.1, trixie's 6.12).  The default dom0 kernel of every boot is bookworm's.
DEFAULT_KERNEL_FAMILY = "bookworm"
OWN_KERNEL_FAMILY: dict[str, str] = {r: fam for r, (fam, _pkg) in XEN_PACKAGES.items()}
# Each family's dom0 kernel package; None: the one its linux-image-amd64 names.
# bullseye's 5.10.0-32 (5.10.223-1, kept in bullseye main by its last point release) is
# the last build before the XSA-466 rework: its privcmd calls into the hypercall page
# (`call *%rax`), where the later builds use a static call; the watch must find both.
KERNEL_PACKAGES: dict[str, str | None] = {
    "bullseye": "linux-image-5.10.0-32-amd64",
    "bookworm": None,
    "trixie": None,
}
# Where the module the watch reads lives in a kernel's tree (below lib/modules/<release>/).
PRIVCMD_MODULE = "kernel/drivers/xen/xen-privcmd.ko"
BUSYBOX_PACKAGE = "busybox-static"

# Modules the dom0 needs; their dependencies are added from each module's modinfo.
ROOT_MODULES: tuple[str, ...] = (
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "xen_privcmd",
    "xenfs",
    "overlay",
    # /dev/xen/gntdev and /dev/xen/evtchn: xenstored (and so the real xl) needs both.
    "xen_gntdev",
    "xen_evtchn",
)

# Host programs that must be installed (binary -> Debian package that provides it).
HOST_TOOLS: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "cpio": "cpio",
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
}

# Re-resolve package versions after this long (seconds); 0 forces it each time.
DEFAULT_TTL_S = 7 * 24 * 3600
MANIFEST_FORMAT = 2
# Bumped when _keep_kernel keeps other files: part of the unpacked directory's name.
KERNEL_KEEP_FORMAT = 3

_BOOKWORM_SUITES = ("bookworm", "bookworm-updates", "bookworm-security")
# bookworm suite in a host entry -> suite to use for another family's private state.
_SUITE_MAPS = {
    "trixie": {"bookworm": "trixie", "bookworm-security": "trixie-security"},
    "bullseye": {"bookworm": "bullseye", "bookworm-security": "bullseye-security"},
}
FAMILIES = ("bookworm", *_SUITE_MAPS)
_DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class AssetError(RuntimeError):
    """The boot assets could not be resolved, fetched or unpacked."""


class MissingHostTools(AssetError):
    """Host programs needed to build and boot the dom0 are not installed."""


@dataclass(frozen=True)
class DomKernel:
    """One Debian dom0 kernel: its image and the modules the dom0 loads."""

    image: Path  # vmlinuz
    release: str  # e.g. "6.1.0-28-amd64"
    modules_dir: Path  # flat directory of uncompressed .ko files
    module_order: tuple[str, ...]  # module file names, in load order
    # xen-privcmd's module file as the package ships it (.ko, or .ko.xz on trixie), at
    # its path below lib/modules/<release>/ (PRIVCMD_MODULE): what the watch reads.
    privcmd: Path

    def to_json(self) -> dict[str, object]:
        return {
            "image": str(self.image),
            "release": self.release,
            "modules_dir": str(self.modules_dir),
            "module_order": list(self.module_order),
            "privcmd": str(self.privcmd),
        }

    @classmethod
    def from_json(cls, data: object) -> DomKernel:
        assert isinstance(data, dict)
        order = data["module_order"]
        assert isinstance(order, list)
        return cls(
            image=Path(str(data["image"])),
            release=str(data["release"]),
            modules_dir=Path(str(data["modules_dir"])),
            module_order=tuple(str(m) for m in order),
            privcmd=Path(str(data["privcmd"])),
        )

    def all_paths(self) -> list[Path]:
        return [self.image, self.privcmd, *(self.modules_dir / m for m in self.module_order)]


@dataclass(frozen=True)
class Assets:
    """Paths of one resolved, unpacked set of boot assets.

    ``kernel``, ``kernel_release``, ``modules_dir`` and ``module_order`` are the dom0
    kernel boots use (by default bookworm's); ``kernels`` holds every family's, and
    ``with_kernel`` gives the same assets with another family's kernel in those fields.
    """

    cache_dir: Path
    xen: dict[str, Path]  # release ("4.17") -> uncompressed multiboot ELF
    kernel: Path  # dom0 vmlinuz
    kernel_release: str  # e.g. "6.1.0-28-amd64"
    modules_dir: Path  # flat directory of uncompressed .ko files
    module_order: tuple[str, ...]  # module file names, in load order
    busybox: Path
    versions: dict[str, str] = field(default_factory=dict)  # package -> version
    kernels: dict[str, DomKernel] = field(default_factory=dict)  # family -> kernel
    kernel_family: str = DEFAULT_KERNEL_FAMILY  # whose kernel the fields above hold

    def with_kernel(self, family: str) -> Assets:
        """These assets with ``family``'s dom0 kernel ("bullseye", "bookworm", "trixie")."""
        try:
            k = self.kernels[family]
        except KeyError:
            raise AssetError(f"no {family} kernel; known: {sorted(self.kernels)}") from None
        return replace(
            self,
            kernel=k.image,
            kernel_release=k.release,
            modules_dir=k.modules_dir,
            module_order=k.module_order,
            kernel_family=family,
        )

    def own_kernel(self, release: str) -> Assets:
        """These assets with the Debian kernel of Xen ``release``'s own Debian release."""
        try:
            return self.with_kernel(OWN_KERNEL_FAMILY[release])
        except KeyError:
            raise AssetError(f"unknown Xen release {release!r}") from None

    @property
    def privcmd_module(self) -> Path:
        """xen-privcmd's module file of the kernel in use, as its package ships it."""
        return self.kernels[self.kernel_family].privcmd

    def xen_image(self, release: str) -> Path:
        try:
            return self.xen[release]
        except KeyError:
            raise AssetError(
                f"unknown Xen release {release!r}; known: {sorted(self.xen)}"
            ) from None

    def to_json(self) -> dict[str, object]:
        return {
            "format": MANIFEST_FORMAT,
            "xen": {k: str(v) for k, v in self.xen.items()},
            "kernel": str(self.kernel),
            "kernel_release": self.kernel_release,
            "modules_dir": str(self.modules_dir),
            "module_order": list(self.module_order),
            "busybox": str(self.busybox),
            "versions": dict(self.versions),
            "kernels": {f: k.to_json() for f, k in self.kernels.items()},
        }

    @classmethod
    def from_json(cls, cache: Path, data: dict[str, object]) -> Assets:
        if data.get("format") != MANIFEST_FORMAT:
            raise AssetError("manifest format changed")
        xen = data["xen"]
        versions = data["versions"]
        order = data["module_order"]
        kernels = data["kernels"]
        assert isinstance(xen, dict) and isinstance(versions, dict)
        assert isinstance(kernels, dict)
        assert isinstance(order, list)
        return cls(
            cache_dir=cache,
            xen={str(k): Path(str(v)) for k, v in xen.items()},
            kernel=Path(str(data["kernel"])),
            kernel_release=str(data["kernel_release"]),
            modules_dir=Path(str(data["modules_dir"])),
            module_order=tuple(str(m) for m in order),
            busybox=Path(str(data["busybox"])),
            versions={str(k): str(v) for k, v in versions.items()},
            kernels={str(f): DomKernel.from_json(k) for f, k in kernels.items()},
        )

    def all_paths(self) -> list[Path]:
        mods = [self.modules_dir / m for m in self.module_order]
        own = [p for k in self.kernels.values() for p in k.all_paths()]
        return [*self.xen.values(), self.kernel, self.busybox, *mods, *own]


# --------------------------------------------------------------------------- helpers


def cache_dir() -> Path:
    env = os.environ.get("XENPROBE_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "xenprobe"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_host_tools() -> None:
    """Raise MissingHostTools naming every missing host program and its package."""
    missing = {b: p for b, p in HOST_TOOLS.items() if shutil.which(b) is None}
    if missing:
        pkgs = " ".join(sorted(set(missing.values())))
        raise MissingHostTools(
            f"missing host tools: {', '.join(sorted(missing))}. "
            f"Install them with: apt-get update && apt-get install -y {pkgs}"
        )


@contextlib.contextmanager
def cache_lock(cache: Path | None = None) -> Iterator[Path]:
    """Exclusive lock on the cache so concurrent pytest processes don't race."""
    cache = cache or cache_dir()
    with open(cache / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield cache
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssetError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
        )
    return proc.stdout


def _safe(version: str) -> str:
    # Version strings may hold ':' (epochs); keep directory names plain.
    return version.replace(":", "%3a")


# ------------------------------------------------------------- host apt sources


@dataclass
class SourceEntry:
    uris: list[str]
    suites: list[str]
    components: list[str]
    signed_by: str | None = None  # a path, or an inline key block (deb822 only)


def _parse_deb822(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key: str | None = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if cur:
                stanzas.append(cur)
            cur, key = {}, None
            continue
        if raw[0] in " \t" and key is not None:
            line = raw.strip()
            cur[key] += "\n" + ("" if line == "." else line)
            continue
        if ":" in raw:
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            cur[key] = value.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def _parse_one_line(text: str) -> list[SourceEntry]:
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        opts: dict[str, str] = {}
        m = re.match(r"deb\s+\[([^\]]*)\]\s+(.*)", line)
        rest = line[4:]
        if m:
            for opt in m.group(1).split():
                k, _, v = opt.partition("=")
                opts[k.lower()] = v
            rest = m.group(2)
        parts = rest.split()
        if len(parts) < 3:
            continue
        entries.append(SourceEntry([parts[0]], [parts[1]], parts[2:], opts.get("signed-by")))
    return entries


def host_sources(etc: Path = Path("/etc/apt")) -> list[SourceEntry]:
    """The host's enabled binary ('deb') apt source entries."""
    entries: list[SourceEntry] = []
    one_line = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for f in one_line:
        if f.is_file():
            entries += _parse_one_line(f.read_text(errors="replace"))
    for f in sorted((etc / "sources.list.d").glob("*.sources")):
        for st in _parse_deb822(f.read_text(errors="replace")):
            if st.get("enabled", "yes").lower() == "no":
                continue
            if "deb" not in st.get("types", "").split():
                continue
            entries.append(
                SourceEntry(
                    st.get("uris", "").split(),
                    st.get("suites", "").split(),
                    st.get("components", "").split(),
                    st.get("signed-by"),
                )
            )
    return entries


def _stanza(e: SourceEntry) -> str:
    lines = [
        "Types: deb",
        f"URIs: {' '.join(e.uris)}",
        f"Suites: {' '.join(e.suites)}",
        f"Components: {' '.join(e.components)}",
    ]
    if e.signed_by:
        first, *more = e.signed_by.split("\n")
        lines.append(f"Signed-By: {first}")
        lines += [f" {m}" if m else " ." for m in more]
    return "\n".join(lines) + "\n"


def sources_for(family: str, entries: list[SourceEntry]) -> str:
    """A deb822 sources file for the given suite family, derived from host entries."""
    out: list[SourceEntry] = []
    for e in entries:
        if family == "bookworm":
            suites = [s for s in e.suites if s in _BOOKWORM_SUITES]
            signed = e.signed_by
        elif family in _SUITE_MAPS:
            smap = _SUITE_MAPS[family]
            suites = [smap[s] for s in e.suites if s in smap]
            signed = e.signed_by
            # A bookworm-only keyring can't verify another suite; the full Debian one can.
            if (
                signed
                and "\n" not in signed
                and Path(signed).name.startswith("debian-archive-")
                and Path(_DEBIAN_KEYRING).exists()
            ):
                signed = _DEBIAN_KEYRING
        else:
            raise AssetError(f"unknown suite family {family!r}")
        if suites:
            out.append(SourceEntry(e.uris, suites, ["main"], signed))
    if not out:
        raise AssetError(
            "cannot derive Debian sources from the host's apt configuration: no entry "
            "with a 'bookworm' suite in /etc/apt/sources.list or "
            "/etc/apt/sources.list.d/*.sources"
        )
    return "\n".join(_stanza(e) for e in out)


# ------------------------------------------------------------- private apt state


class PrivateApt:
    """apt-get/apt-cache bound to a private state directory (host state untouched)."""

    def __init__(self, root: Path, family: str) -> None:
        self.root = root
        self.family = family

    def _opts(self) -> list[str]:
        r = self.root
        opts = [
            f"Dir::State::Lists={r}/lists",
            f"Dir::Etc::SourceList={r}/sources.list",
            f"Dir::Etc::SourceParts={r}/sources.list.d",
            f"Dir::Cache={r}/cache",
            f"Dir::Etc::Preferences={r}/preferences",
            f"Dir::Etc::PreferencesParts={r}/preferences.d",
            "APT::Architectures::=amd64",
            "Acquire::Languages=none",
        ]
        if os.geteuid() == 0:
            # Avoid the _apt sandbox user warning about unwritable download dirs.
            opts.append("APT::Sandbox::User=root")
        return [a for o in opts for a in ("-o", o)]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["APT_CONFIG"] = str(self.root / "apt.conf")
        env["LC_ALL"] = "C"
        return env

    def setup(self, entries: list[SourceEntry]) -> None:
        r = self.root
        for d in (
            "lists/partial",
            "sources.list.d",
            "preferences.d",
            "cache/archives/partial",
            "apt.conf.d",
        ):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "sources.list").write_text("")
        (r / "sources.list.d" / "xenprobe.sources").write_text(sources_for(self.family, entries))
        # Keep the host's apt.conf.d (proxies, Check-Valid-Until, ...) but drop the
        # update hooks: they would refresh host caches (appstream, packagekit).
        parts = r / "apt.conf.d"
        for old in parts.iterdir():
            old.unlink()
        for f in sorted(glob.glob("/etc/apt/apt.conf.d/*")):
            if Path(f).is_file():
                shutil.copyfile(f, parts / Path(f).name)
        (parts / "zz-xenprobe").write_text(
            "#clear APT::Update::Pre-Invoke;\n"
            "#clear APT::Update::Post-Invoke;\n"
            "#clear APT::Update::Post-Invoke-Success;\n"
            "#clear DPkg::Pre-Invoke;\n"
            "#clear DPkg::Post-Invoke;\n"
        )
        # APT_CONFIG is read before the parts dir, so it can redirect Dir::Etc::Parts.
        conf = f'Dir::Etc::Parts "{parts}";\n'
        if Path("/etc/apt/apt.conf").is_file():
            conf += '#include "/etc/apt/apt.conf";\n'
        (r / "apt.conf").write_text(conf)

    def update(self) -> None:
        _run(["apt-get", "-q", *self._opts(), "update"], env=self._env())

    def show(self, package: str) -> dict[str, str]:
        """The candidate version's control record."""
        out = _run(
            ["apt-cache", *self._opts(), "show", "--no-all-versions", package], env=self._env()
        )
        stanzas = _parse_deb822(out)
        if not stanzas:
            raise AssetError(f"apt-cache show {package}: no candidate ({self.family})")
        return stanzas[0]

    def download(self, package: str, version: str, dest: Path) -> Path:
        _run(
            ["apt-get", "-q", *self._opts(), "download", f"{package}={version}"],
            cwd=dest,
            env=self._env(),
        )
        debs = list(dest.glob(f"{package}_*.deb"))
        if len(debs) != 1:
            raise AssetError(f"apt-get download {package}={version}: got {debs}")
        return debs[0]


# ------------------------------------------------------------- kernel modules


def _elf_section(data: bytes, wanted: str) -> bytes | None:
    """Return one section of a 64-bit little-endian ELF file by name."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise AssetError("not a 64-bit little-endian ELF module")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def sect(i: int) -> tuple[int, int, int]:
        name, _t, _f, _a, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, off, size

    _, stroff, _ = sect(shstrndx)
    for i in range(shnum):
        name, off, size = sect(i)
        end = data.index(b"\0", stroff + name)
        if data[stroff + name : end].decode() == wanted:
            return data[off : off + size]
    return None


def module_depends(ko: bytes) -> list[str]:
    info = _elf_section(ko, ".modinfo") or b""
    for item in info.split(b"\0"):
        if item.startswith(b"depends="):
            return [d for d in item[8:].decode().split(",") if d]
    return []


def _read_module(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(raw)
    if path.suffix == ".gz":
        return gzip.decompress(raw)
    if path.suffix == ".zst":
        raise AssetError(f"zstd-compressed module not supported: {path}")
    return raw


def _norm(name: str) -> str:
    return name.replace("-", "_")


def _module_name(path: Path) -> str:
    return _norm(path.name.split(".ko")[0])


def select_modules(moddir: Path, roots: tuple[str, ...] = ROOT_MODULES) -> list[tuple[str, Path]]:
    """Roots plus their dependencies, dependencies first; built-in modules are skipped."""
    files = {_module_name(p): p for p in moddir.rglob("*.ko*")}
    builtin: set[str] = set()
    bfile = moddir / "modules.builtin"
    if bfile.exists():
        builtin = {_module_name(Path(line.strip())) for line in bfile.read_text().splitlines()}
    order: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = _norm(name)
        if name in seen:
            return
        if name in chain:
            raise AssetError(f"module dependency cycle: {(*chain, name)}")
        if name not in files:
            if name in builtin:
                seen.add(name)
                return
            raise AssetError(f"kernel module {name} neither a module nor built in")
        for dep in module_depends(_read_module(files[name])):
            visit(dep, (*chain, name))
        seen.add(name)
        order.append((name, files[name]))

    for root in roots:
        visit(root, ())
    return order


# ------------------------------------------------------------- unpacking packages


def _unpack(apt: PrivateApt, package: str, version: str, work: Path) -> Path:
    """Download and dpkg -x one package into a fresh directory; return that directory."""
    dl = work / "dl"
    dl.mkdir()
    deb = apt.download(package, version, dl)
    tree = work / "tree"
    _run(["dpkg-deb", "-x", str(deb), str(tree)])
    deb.unlink()  # the kernel .deb is large; its unpacked subset is all we keep
    return tree


def _find_one(tree: Path, patterns: list[str]) -> Path:
    for pat in patterns:
        hits = sorted(tree.glob(pat))
        if hits:
            return hits[0]
    raise AssetError(f"none of {patterns} in {tree}")


def _materialize(
    cache: Path,
    apt: PrivateApt,
    package: str,
    version: str,
    keep: Callable[[Path, Path], None],
    tag: str = "",
) -> Path:
    """Ensure pkgs/<package>_<version><tag>/ exists, filled by keep(tree, dest); ``tag``
    names the format of what keep() keeps."""
    final = cache / "pkgs" / f"{package}_{_safe(version)}{tag}"
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".tmp-") as tmp:
        work = Path(tmp)
        tree = _unpack(apt, package, version, work)
        dest = work / "out"
        dest.mkdir()
        keep(tree, dest)
        (dest / ".complete").write_text(f"{package} {version}\n")
        if final.exists():
            shutil.rmtree(final)  # incomplete leftover of an interrupted run
        dest.rename(final)
    return final


def _keep_xen(release: str) -> Callable[[Path, Path], None]:
    def keep(tree: Path, dest: Path) -> None:
        gz = _find_one(tree, [f"boot/xen-{release}-amd64.gz", "boot/xen-*.gz"])
        # QEMU's multiboot loader wants the plain ELF, not the gzip.
        (dest / "xen").write_bytes(gzip.decompress(gz.read_bytes()))

    return keep


def _keep_kernel(tree: Path, dest: Path) -> None:
    vmlinuz = _find_one(tree, ["boot/vmlinuz-*"])
    release = vmlinuz.name[len("vmlinuz-") :]
    moddir = _find_one(tree, [f"lib/modules/{release}", f"usr/lib/modules/{release}"])
    shutil.copyfile(vmlinuz, dest / "vmlinuz")
    mods = dest / "modules"
    mods.mkdir()
    order = []
    for name, path in select_modules(moddir):
        fname = f"{name}.ko"
        (mods / fname).write_bytes(_read_module(path))  # busybox insmod wants plain .ko
        order.append(fname)
    (dest / "release").write_text(release + "\n")
    (dest / "module-order").write_text("\n".join(order) + "\n")
    # The module file the watch reads (and checks against the loaded module's build
    # id), kept as shipped (compressed on trixie) at its place in the tree.
    shipped = _find_one(moddir, [PRIVCMD_MODULE, f"{PRIVCMD_MODULE}.xz"])
    kept = dest / "tree" / "lib" / "modules" / release / shipped.relative_to(moddir)
    kept.parent.mkdir(parents=True)
    shutil.copyfile(shipped, kept)


def _kernel(kdir: Path) -> DomKernel:
    release = (kdir / "release").read_text().strip()
    privcmd = sorted((kdir / "tree" / "lib" / "modules" / release).glob(f"{PRIVCMD_MODULE}*"))
    if len(privcmd) != 1:
        raise AssetError(f"no single xen-privcmd module file below {kdir}/tree: {privcmd}")
    return DomKernel(
        image=kdir / "vmlinuz",
        release=release,
        modules_dir=kdir / "modules",
        module_order=tuple((kdir / "module-order").read_text().split()),
        privcmd=privcmd[0],
    )


def _keep_busybox(tree: Path, dest: Path) -> None:
    bb = _find_one(tree, ["bin/busybox", "usr/bin/busybox"])
    shutil.copyfile(bb, dest / "busybox")
    (dest / "busybox").chmod(0o755)


_KERNEL_DEP = re.compile(r"\b(linux-image-[0-9][A-Za-z0-9.+~-]*-amd64)\b")


def _resolve_and_fetch(cache: Path) -> Assets:
    entries = host_sources()
    apts = {fam: PrivateApt(cache / "apt" / fam, fam) for fam in FAMILIES}
    for apt in apts.values():
        apt.setup(entries)
        apt.update()
    bookworm = apts["bookworm"]

    versions: dict[str, str] = {}

    def candidate(apt: PrivateApt, pkg: str) -> str:
        versions[pkg] = apt.show(pkg)["version"]
        return versions[pkg]

    # Each family's meta package names exactly one concrete kernel package; never glob.
    kernels: dict[str, DomKernel] = {}
    for fam, apt in apts.items():
        kpkg = KERNEL_PACKAGES.get(fam)
        if kpkg is None:
            meta = apt.show(KERNEL_META_PACKAGE)
            m = _KERNEL_DEP.search(meta.get("depends", ""))
            if not m:
                raise AssetError(
                    f"cannot resolve {fam}'s {KERNEL_META_PACKAGE}: {meta.get('depends')}"
                )
            kpkg = m.group(1)
        kdir = _materialize(
            cache, apt, kpkg, candidate(apt, kpkg), _keep_kernel, tag=f"+k{KERNEL_KEEP_FORMAT}"
        )
        kernels[fam] = _kernel(kdir)
    default = kernels[DEFAULT_KERNEL_FAMILY]
    bdir = _materialize(
        cache, bookworm, BUSYBOX_PACKAGE, candidate(bookworm, BUSYBOX_PACKAGE), _keep_busybox
    )
    xen: dict[str, Path] = {}
    for release, (fam, pkg) in XEN_PACKAGES.items():
        xdir = _materialize(cache, apts[fam], pkg, candidate(apts[fam], pkg), _keep_xen(release))
        xen[release] = xdir / "xen"
    return Assets(
        cache_dir=cache,
        xen=xen,
        kernel=default.image,
        kernel_release=default.release,
        modules_dir=default.modules_dir,
        module_order=default.module_order,
        busybox=bdir / "busybox",
        versions=versions,
        kernels=kernels,
    )


# ------------------------------------------------------------- privcmd modules

# The kernels whose xen-privcmd module the watch's probe-point finder is tested on
# (family -> package; None: the family's linux-image-amd64 meta package's kernel).
# bullseye's 5.10.0-32 is the last build before the XSA-466 hypercall rework (the
# hypercall-page call path), kept in bullseye main by its last point release.
PRIVCMD_KERNELS: dict[str, str | None] = {
    "bullseye": "linux-image-5.10.0-32-amd64",
    "bookworm": None,
    "trixie": None,
}


def _keep_privcmd(tree: Path, dest: Path) -> None:
    """The module file exactly as the package ships it (.ko, or .ko.xz on trixie)."""
    ko = _find_one(tree, ["lib/modules/*/kernel/drivers/xen/xen-privcmd.ko*",
                          "usr/lib/modules/*/kernel/drivers/xen/xen-privcmd.ko*"])
    shutil.copyfile(ko, dest / ko.name)
    (dest / "release").write_text(ko.parts[ko.parts.index("modules") + 1] + "\n")


def privcmd_modules() -> dict[str, tuple[str, str, Path]]:
    """family -> (package, version, the shipped xen-privcmd module file), fetched once
    into the shared cache (pkgs/<package>_<version>/, only the module). The same
    linux-image unpacked as a boot kernel goes to pkgs/<package>_<version>+kN/
    (ensure_assets): the two never share a directory."""
    out: dict[str, tuple[str, str, Path]] = {}
    with cache_lock() as cache:
        entries = host_sources()
        for family, named in PRIVCMD_KERNELS.items():
            apt = PrivateApt(cache / "apt" / family, family)
            if not (cache / "apt" / family / "lists").is_dir() or not any(
                    (cache / "apt" / family / "lists").glob("*Packages*")):
                apt.setup(entries)
                apt.update()
            package = named
            if package is None:
                meta = apt.show(KERNEL_META_PACKAGE)
                m = _KERNEL_DEP.search(meta.get("depends", ""))
                if not m:
                    raise AssetError(f"{family}: cannot resolve {KERNEL_META_PACKAGE}")
                package = m.group(1)
            version = apt.show(package)["version"]
            where = _materialize(cache, apt, package, version, _keep_privcmd)
            out[family] = (package, version, _find_one(where, ["xen-privcmd.ko*"]))
    return out


def _load_manifest(cache: Path) -> tuple[Assets, float] | None:
    path = cache / "manifest.json"
    try:
        data = json.loads(path.read_text())
        assets = Assets.from_json(cache, data["assets"])
        stamp = float(data["resolved_at"])
    except (OSError, ValueError, KeyError, AssertionError, AssetError):
        return None
    if not all(p.exists() for p in assets.all_paths()):
        return None
    if set(assets.xen) != set(XEN_PACKAGES):  # written by a checkout with other releases
        return None
    if set(assets.kernels) != set(FAMILIES):
        return None
    return assets, stamp


def ensure_assets(refresh: bool | None = None, *, check_tools: bool = True) -> Assets:
    """Return cached boot assets, resolving and fetching them when needed.

    Cached results are reused for XENPROBE_ASSET_TTL seconds (default a week) without
    any apt call; ``refresh=True`` or XENPROBE_REFRESH_ASSETS=1 re-resolves versions
    (new versions get their own directory).  If re-resolution fails but an older
    complete set exists, that set is used with a warning on stderr.
    """
    if check_tools:
        check_host_tools()
    if refresh is None:
        refresh = os.environ.get("XENPROBE_REFRESH_ASSETS") == "1"
    ttl = float(os.environ.get("XENPROBE_ASSET_TTL", DEFAULT_TTL_S))
    with cache_lock() as cache:
        cached = _load_manifest(cache)
        if cached and not refresh and time.time() - cached[1] < ttl:
            return cached[0]
        try:
            assets = _resolve_and_fetch(cache)
        except AssetError as exc:
            if cached is None:
                raise
            print(f"xenprobe assets: re-resolving failed, using cached set: {exc}", file=sys.stderr)
            return cached[0]
        tmp = cache / "manifest.json.tmp"
        tmp.write_text(
            json.dumps({"resolved_at": time.time(), "assets": assets.to_json()}, indent=2) + "\n"
        )
        tmp.replace(cache / "manifest.json")
        return assets


def main() -> int:
    t0 = time.monotonic()
    assets = ensure_assets(refresh=True if "--refresh" in sys.argv else None)
    out = assets.to_json()
    out["elapsed_s"] = round(time.monotonic() - t0, 2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
