# SPDX-License-Identifier: GPL-2.0-only
"""Boot real Xen with a dom0 whose PID 1 is the host's systemd (the "systemd boot").

The plain boot (boot.py) chroots into the host root and runs one shell script as PID
1's child.  This variant makes the dom0 an ordinary systemd machine, so that unit files
can be tested where they run: Type=notify, the watchdog, the sandbox against the real
privcmd device, journald, reload, stop, timers.  initramfs.py's ``systemd`` variant
describes what /init does before it hands over to systemd.

systemd starts the unit named by ``systemd.unit=`` on the dom0 kernel's command line;
that unit does the test, writes ``exit_status`` into the share and powers the dom0
off, which ends QEMU.

Share layout (host side)::

    units/          unit files copied into /etc/systemd/system before systemd starts
    rootfs.tar      optional: files to install in the dom0's own (tmpfs) layer
    ...             anything else the test puts there (SHARE_IN_DOM0/... in dom0)
    exit_status     written by the test's unit in dom0 (125: /init failed)
    init.log        /init's fatal error, if any
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .assets import Assets, ensure_assets
from .boot import Dom0Run, boot, qemu_command
from .initramfs import SHARE_AT, build_initramfs

SHARE_IN_DOM0 = SHARE_AT["systemd"]


def run_systemd_dom0(
    xen: str,
    share: Path,
    *,
    unit: str,
    timeout: float,
    workdir: Path,
    dom0_mem_mib: int = 1024,
    kernel_args: str = "",
    assets: Assets | None = None,
    smp: int = 2,
) -> Dom0Run:
    """Boot Xen ``xen`` with systemd as the dom0's PID 1, starting ``unit``.

    ``share`` (normally ``workdir/share``) must already hold ``units/`` with ``unit``
    and whatever it runs; it is ``SHARE_IN_DOM0`` in dom0.  The unit writes
    ``exit_status`` into the share and powers off.  QEMU is killed after ``timeout``.
    """
    assets = assets or ensure_assets()
    if not (share / "units" / unit).is_file():
        raise ValueError(f"{share}/units/{unit} does not exist")
    xen_image = assets.xen_image(xen)
    initrd = build_initramfs(assets, variant="systemd")
    for name in ("exit_status", "init.log"):
        (share / name).unlink(missing_ok=True)
    cmd = qemu_command(
        xen_image,
        assets.kernel,
        initrd,
        share,
        workdir / "serial.log",
        dom0_mem_mib=dom0_mem_mib,
        kernel_args=f"systemd.unit={unit} systemd.show_status=1 {kernel_args}".strip(),
        smp=smp,
    )
    return boot(xen, cmd, share, share / "results", workdir, timeout)


def fresh_share(workdir: Path) -> Path:
    """An empty share directory (with units/ and results/) under ``workdir``."""
    share = workdir / "share"
    if share.exists():
        shutil.rmtree(share)
    (share / "units").mkdir(parents=True)
    (share / "results").mkdir()
    return share
