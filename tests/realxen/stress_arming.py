# SPDX-License-Identifier: GPL-2.0-only
"""Arming and disarming the watch's probes, over and over, on a two-vCPU dom0 while
two callers issue privcmd hypercalls without pause: `python -m
tests.realxen.stress_arming RELEASE [ROUNDS] [ENTRY]`, ENTRY the entry probe's offset
("" on the ftrace call, as the watch had it; "+0x5" past it; "none").  A diagnostic,
not a test (tests/realxen/README.md): the kernel's oops and lockup reports, with the
stuck CPU's stack, land in the serial log, the rounds done in results/rounds and the kprobes
list (optimized or not) in results/kprobes.

Seen on Xen 4.17, Debian 12's 6.1.0-57, QEMU TCG, two vCPUs (docs/watch.md, "Known
limits"): with the entry probe on the ftrace call, as the watch defines it, the kernel
crashed in round 53 (a caller's int3-emulated call went to address 0); with it past
that call, it hung in round 70 (an RCU stall on vCPU 1, vCPU 0's timers dead); with
the result probe alone ("none"), 100 rounds ran clean. Those runs also had
`softlockup_all_cpu_backtrace=1`, which did not help: the stall report stopped at
"Stack dump where RCU GP kthread last ran"."""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

from xenprobe.watch.probes import CALL_ARGS, RESULT_ARGS

from .boot import LOCKUP_ARGS
from .initramfs import SHARE_IN_CHROOT
from .watch_boot import CALLERS, build_privcmd_caller, find_probe_point

GROUP = "xps"


def script(offset: int, rounds: int, entry: str) -> str:
    q = shlex.quote
    fn = "xen_privcmd:privcmd_ioctl"
    inst = f"$T/instances/{GROUP}"
    defs = {"result": f"{fn}+{offset:#x} {RESULT_ARGS}"}
    if entry != "none":
        defs = {"call": f"{fn}{entry} {CALL_ARGS}", **defs}
    return "\n".join([
        'R="$RESULTS"',
        f"C={SHARE_IN_CHROOT}/{CALLERS}",
        "T=/sys/kernel/tracing",
        '[ -e "$T/kprobe_events" ] || mount -t tracefs nodev "$T" || exit 90',
        "mountpoint -q /sys/kernel/debug || mount -t debugfs nodev /sys/kernel/debug",
        'for n in 1 2; do ( while :; do "$C/privcmd_caller" loop 500 > /dev/null; done ) &'
        " done",
        f"for i in $(seq 1 {rounds}); do",
        *(f'    echo {q(f"p:{GROUP}/{n} {d}")} >> "$T/kprobe_events" || exit 92'
          for n, d in defs.items()),
        f'    mkdir "{inst}" || exit 93',
        *(f'    echo {GROUP}:{n} >> "{inst}/set_event"' for n in defs),
        f'    dd if="{inst}/trace_pipe" of=/dev/null bs=64k iflag=nonblock 2>/dev/null',
        "    sleep 0.3",
        '    grep privcmd /sys/kernel/debug/kprobes/list >> "$R/kprobes" 2>&1',
        f'    dd if="{inst}/trace_pipe" of=/dev/null bs=64k iflag=nonblock 2>/dev/null',
        f'    echo 0 > "{inst}/tracing_on"',
        f'    rmdir "{inst}" || exit 95',
        *(f'    echo "-:{GROUP}/{n}" >> "$T/kprobe_events" || exit 96' for n in defs),
        '    echo "$i $(cut -d" " -f1 /proc/uptime)" >> "$R/rounds"',
        "done",
        "exit 0",
    ]) + "\n"


def main() -> int:
    from .assets import ensure_assets
    from .conftest import RealXen
    rel = sys.argv[1] if len(sys.argv) > 1 else "4.17"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    entry = sys.argv[3] if len(sys.argv) > 3 else ""  # "", "+0x5" or "none"
    xen = RealXen(rel, ensure_assets(), Path(tempfile.mkdtemp(prefix=f"stress{rel}-")))
    own = xen.assets.own_kernel(rel)
    point = find_probe_point(own.modules_dir / "xen_privcmd.ko")

    def fill(share: Path) -> None:
        build_privcmd_caller(share / CALLERS)

    run = xen.run(script(point.hypercall, rounds, entry), label="stress", own_kernel=True,
                  timeout=3000, smp=2, before_boot=fill, kernel_args=LOCKUP_ARGS)
    done = (run.results_dir / "rounds").read_text().splitlines() \
        if (run.results_dir / "rounds").exists() else []
    print(f"boot {run.duration_s:.0f} s, exit {run.exit_status}, rounds {len(done)} of "
          f"{rounds}, workdir {run.workdir}")
    return 0 if run.exit_status == 0 and len(done) == rounds else 1


if __name__ == "__main__":
    raise SystemExit(main())
