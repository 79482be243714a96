# SPDX-License-Identifier: GPL-2.0-only
"""Boot real Xen + a Linux dom0 under QEMU (TCG) and run one shell script in dom0.

The script runs as root in ``chroot /host`` where /host is the *host's* root file system
shared read-only over 9p, so it can use the host's python3 and this checkout by their
host paths.  Writable places inside the chroot: /tmp (a tmpfs) and ``$RESULTS``.

``$RESULTS`` (= /tmp/xenprobe/results inside the chroot) is a directory on a second,
read-write 9p share; whatever the script writes there is found on the host in
``Dom0Run.results_dir`` after the run.  The script's stdout/stderr/exit status are
captured through the same share.  The script's environment has PATH, HOME=/root,
LANG=C.UTF-8, RESULTS, XENPROBE_XEN (the release) and XENPROBE_IN_DOM0=1, plus ``env``.

KVM can't run Xen on these machines (nested KVM fails on Xen's early CET code), hence
TCG with SMAP/SMEP/PKU/LA57 masked (dom0 faults in Xen's bounce-frame code with them).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .assets import Assets, ensure_assets
from .initramfs import MARKER, RESULTS_IN_CHROOT, build_initramfs

QEMU = "qemu-system-x86_64"
CPU = "max,-smap,-smep,-pku,-la57"
RELEASES = ("4.14", "4.17", "4.20")
EXPECTED_XEN_VERSION = {"4.14": 0x4000E, "4.17": 0x40011, "4.20": 0x40014}


@dataclass
class Dom0Run:
    """Outcome of one boot.  ``exit_status`` is None if the script never finished."""

    xen: str
    exit_status: int | None
    stdout: str
    stderr: str
    results_dir: Path  # host path of $RESULTS
    serial_log: Path
    workdir: Path
    duration_s: float
    timed_out: bool
    qemu_returncode: int | None
    qemu_stderr: str = ""
    command: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def serial_text(self) -> str:
        try:
            raw = self.serial_log.read_bytes()
        except OSError:
            return ""
        return raw.decode("utf-8", errors="replace").replace("\r", "")

    def markers(self) -> list[str]:
        """The init's progress markers seen on the console, in order."""
        return [
            line.split(MARKER, 1)[1].strip()
            for line in self.serial_text().splitlines()
            if MARKER in line
        ]

    def tail(self, n: int = 60) -> str:
        """The last n lines of the serial log (Xen + dom0 console)."""
        return "\n".join(self.serial_text().splitlines()[-n:])

    def report(self, n: int = 60) -> str:
        """A multi-line description for assertion messages."""
        state = "timed out" if self.timed_out else f"qemu rc={self.qemu_returncode}"
        parts = [
            f"Xen {self.xen} dom0 run: exit_status={self.exit_status}, {state}, "
            f"{self.duration_s:.1f}s, workdir={self.workdir}",
        ]
        if self.stderr.strip():
            parts.append(
                "--- script stderr (tail) ---\n" + "\n".join(self.stderr.splitlines()[-30:])
            )
        if self.qemu_stderr.strip():
            parts.append("--- qemu stderr ---\n" + self.qemu_stderr[-2000:])
        parts.append(f"--- serial log tail ({self.serial_log}) ---\n" + self.tail(n))
        return "\n".join(parts)

    def check(self) -> Dom0Run:
        """Raise AssertionError (with the serial log tail) unless the script exited 0."""
        if not self.ok:
            raise AssertionError(self.report())
        return self


# Dom0 kernel arguments that put a lockup's stack in the serial log: `quiet` keeps
# KERN_DEFAULT lines (the backtraces) off the console.
LOCKUP_ARGS = "loglevel=5"


def _q(value: str | Path) -> str:
    # QEMU option values escape ',' by doubling it.
    return str(value).replace(",", ",,")


def qemu_command(
    xen_image: Path,
    kernel: Path,
    initrd: Path,
    share: Path,
    serial_log: Path,
    *,
    dom0_mem_mib: int = 1024,
    extra_xen_args: str = "",
    kernel_args: str = "",
    memory_mib: int = 2048,
    smp: int = 2,
) -> list[str]:
    for p in (kernel, initrd):
        if "," in str(p):  # multiboot modules are comma-separated with no escape
            raise ValueError(f"path may not contain ',': {p}")
    xen_args = f"console=com1 com1=115200,8n1 dom0_mem={dom0_mem_mib}M,max:{dom0_mem_mib}M"
    dom0_args = f"console=hvc0 quiet {kernel_args}".strip()
    return [
        QEMU,
        "-accel",
        "tcg",
        "-cpu",
        CPU,
        "-m",
        str(memory_mib),
        "-smp",
        str(smp),
        "-nodefaults",
        "-nographic",
        "-no-reboot",
        "-monitor",
        "none",
        "-serial",
        f"file:{_q(serial_log)}",
        "-kernel",
        str(xen_image),
        "-append",
        f"{xen_args} {extra_xen_args}".strip(),
        "-initrd",
        f"{kernel} {dom0_args},{initrd}",
        "-virtfs",
        "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
        "-virtfs",
        f"local,path={_q(share)},mount_tag=results,security_model=none",
    ]


def _env_sh(xen: str, env: dict[str, str] | None) -> str:
    base = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "RESULTS": RESULTS_IN_CHROOT,
        "XENPROBE_XEN": xen,
        "XENPROBE_IN_DOM0": "1",
    }
    base.update(env or {})
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in base.items())


def run_in_dom0(
    xen: str,
    script: str,
    timeout: float = 240,
    dom0_mem_mib: int = 1024,
    extra_xen_args: str = "",
    *,
    env: dict[str, str] | None = None,
    workdir: Path | None = None,
    kernel_args: str = "",
    assets: Assets | None = None,
    smp: int = 2,
    own_kernel: bool = False,
) -> Dom0Run:
    """Boot Xen ``xen`` ("4.17"|"4.20"), run ``script`` (POSIX sh) in dom0, power off.

    QEMU is killed after ``timeout`` seconds.  ``workdir`` (default: a new temporary
    directory, kept) receives serial.log and the results share (share/).  ``smp``:
    CPUs of the QEMU machine (Xen's pCPUs; dom0 gets as many vCPUs).  ``own_kernel``:
    the dom0 runs the Debian kernel of the release's own Debian release (bullseye's
    5.10 with 4.14, bookworm's 6.1 with 4.17, trixie's 6.12 with 4.20) instead of the
    assets' (bookworm's 6.1).
    """
    assets = assets or ensure_assets()
    if own_kernel:
        assets = assets.own_kernel(xen)
    xen_image = assets.xen_image(xen)
    initrd = build_initramfs(assets)
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"xenprobe-dom0-{xen}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    share = workdir / "share"
    results = share / "results"
    if results.exists():  # a reused workdir must not show a previous run's files
        shutil.rmtree(results)
    results.mkdir(parents=True)
    for name in ("stdout", "stderr", "exit_status", "init.log"):
        (share / name).unlink(missing_ok=True)
    (share / "script.sh").write_text(script)
    (share / "env.sh").write_text(_env_sh(xen, env))
    # A checkout under /tmp would be hidden by the chroot's tmpfs: keep it visible.
    checkout = Path(__file__).resolve().parents[2]
    (share / "keep").write_text(f"{checkout}\n" if checkout.is_relative_to("/tmp") else "")
    serial_log = workdir / "serial.log"
    cmd = qemu_command(
        xen_image,
        assets.kernel,
        initrd,
        share,
        serial_log,
        dom0_mem_mib=dom0_mem_mib,
        extra_xen_args=extra_xen_args,
        kernel_args=kernel_args,
        smp=smp,
    )
    return boot(xen, cmd, share, results, workdir, timeout)


def boot(
    xen: str, cmd: list[str], share: Path, results: Path, workdir: Path, timeout: float
) -> Dom0Run:
    """Run QEMU's ``cmd`` until it exits (the dom0 powered off) or ``timeout``; collect
    what the dom0 left in ``share`` (stdout, stderr, exit_status, init.log)."""
    t0 = time.monotonic()
    timed_out = False
    with open(workdir / "qemu.stderr", "w+b") as qerr:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qerr, stderr=qerr)
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()  # a hung dom0 (or Xen) never powers off by itself
            proc.wait()
            rc = None
        qerr.seek(0)
        qemu_stderr = qerr.read().decode(errors="replace")
    duration = time.monotonic() - t0

    def read(name: str) -> str:
        try:
            return (share / name).read_text(errors="replace")
        except OSError:
            return ""

    status_text = read("exit_status").strip()
    return Dom0Run(
        xen=xen,
        exit_status=int(status_text) if status_text.lstrip("-").isdigit() else None,
        stdout=read("stdout"),
        stderr=read("stderr") + read("init.log"),
        results_dir=results,
        serial_log=workdir / "serial.log",
        workdir=workdir,
        duration_s=duration,
        timed_out=timed_out,
        qemu_returncode=rc,
        qemu_stderr=qemu_stderr,
        command=cmd,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description="Run a shell command in a real Xen dom0")
    ap.add_argument("xen", choices=RELEASES)
    ap.add_argument("command", help="shell script text")
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--own-kernel", action="store_true",
                    help="boot the release's own Debian kernel, not bookworm's")
    args = ap.parse_args()
    run = run_in_dom0(args.xen, args.command, timeout=args.timeout, own_kernel=args.own_kernel)
    print(run.stdout, end="")
    print(run.report(20), file=sys.stderr)
    return 0 if run.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
