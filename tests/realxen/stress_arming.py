# SPDX-License-Identifier: GPL-2.0-only
"""Arming and disarming the watch's probes, over and over, on a two-vCPU dom0 while
two callers issue privcmd hypercalls without pause: `python -m
tests.realxen.stress_arming RELEASE [ROUNDS] [DESIGN[/norecord]]`, DESIGN one of
"watch" (the definitions `xenprobe watch` arms on this kernel: probes.definitions()),
"paired" (the entry probe on privcmd_ioctl's ftrace call plus the results, as the
watch had it before its results carried the request), "paired+0x5" (that entry probe
past the call), "result" (the HYPERCALL result probe alone, reading %rax) or "none"
(the control: the instance made, read and removed each round, no probe); "/norecord"
turns the global record-cmd option off before the rounds. A diagnostic, not a test
(tests/realxen/README.md): the kernel's oops and lockup reports, with the stuck CPU's
stack, land in the serial log, the rounds done in results/rounds and the kprobes
list (optimized or not) in results/kprobes.

Seen on Xen 4.17, Debian 12's 6.1.0-57, QEMU TCG, two vCPUs (docs/watch.md, "Known
limits"), one run each: "paired" crashed the kernel in round 53 (a caller's
int3-emulated call went to address 0); "paired+0x5" hung in round 70 (an RCU stall on
vCPU 1, vCPU 0's timers dead); "result" ran 100 rounds clean; "watch" (one probe a
call, its dm_result [OPTIMIZED] in every round) hung in round 49; the same two probes
where the optimizer leaves both int3s (commit 723c473) hung in round 41; "none" ran
100 rounds clean. The first three had
`softlockup_all_cpu_backtrace=1`, which did not help: the stall report stopped at
"Stack dump where RCU GP kthread last ran". Until commit be8fa3a the watch's finder,
whose offsets every design takes, put the result probes on the narrowing: the runs
above probed there. "watch" with the probes where the calls return (two jumps on 6.1;
run at commit 311a2cc) did 100 rounds, with a soft lockup of more than 300 s on the
way: the rmdir of the instance rewriting the sched_switch static call in __schedule
(tracing_stop_cmdline_record -> text_poke_bp) while the other CPU sat on the int3
text_poke_bp had put there; again from round 42 in a second run. "watch/norecord" ran
100 rounds clean twice."""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

from xenprobe.watch import probe_point, probes
from xenprobe.watch.probes import CALL_ARGS, RESULT_ARGS

from .boot import LOCKUP_ARGS
from .initramfs import SHARE_IN_CHROOT
from .watch_boot import CALLERS, MOUNT_DEBUGFS, build_privcmd_caller

GROUP = "xps"


DESIGNS = ("watch", "paired", "paired+0x5", "result", "none")
NO_RECORD_CMD = "norecord"  # DESIGN/norecord: the global record-cmd option off first


def definitions(points: probe_point.ProbePoints, design: str) -> dict[str, str]:
    """Event name -> what follows `p:GROUP/NAME ` in kprobe_events."""
    fn = f"{probes.MODULE}:{probe_point.FUNCTION}"
    if design == "none":
        return {}  # the control: the same rounds and callers, no code patched
    if design == "watch":
        return {d.name: d.text.split(" ", 1)[1] for d in probes.definitions(points)}
    defs = {"result": f"{fn}+{points.hypercall:#x} {RESULT_ARGS}"}
    if design.startswith("paired"):
        defs = {"call": f"{fn}{design.removeprefix('paired')} {CALL_ARGS}", **defs}
    return defs


def script(defs: dict[str, str], rounds: int, record_cmd: bool = True) -> str:
    """`record_cmd` False: the global `record-cmd` option off before the rounds, so
    that enabling an event registers no command-line recorder on sched_switch
    (docs/watch.md, "Known limits")."""
    q = shlex.quote
    inst = f"$T/instances/{GROUP}"
    return "\n".join([
        'R="$RESULTS"',
        f"C={SHARE_IN_CHROOT}/{CALLERS}",
        "T=/sys/kernel/tracing",
        '[ -e "$T/kprobe_events" ] || mount -t tracefs nodev "$T" || exit 90',
        *([] if record_cmd else ['echo 0 > "$T/options/record-cmd" || exit 91']),
        MOUNT_DEBUGFS,
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
    design, _, option = (sys.argv[3] if len(sys.argv) > 3 else "watch").partition("/")
    if design not in DESIGNS or option not in ("", NO_RECORD_CMD):
        print(f"DESIGN is one of {', '.join(DESIGNS)}, optionally with /{NO_RECORD_CMD}",
              file=sys.stderr)
        return 2
    xen = RealXen(rel, ensure_assets(), Path(tempfile.mkdtemp(prefix=f"stress{rel}-")))
    own = xen.assets.own_kernel(rel)
    points = probe_point.find((own.modules_dir / "xen_privcmd.ko").read_bytes())
    defs = definitions(points, design)
    print(f"{design}: " + "; ".join(f"{n}: {d}" for n, d in defs.items()))

    def fill(share: Path) -> None:
        build_privcmd_caller(share / CALLERS)

    run = xen.run(script(defs, rounds, record_cmd=option != NO_RECORD_CMD),
                  label="stress", own_kernel=True, timeout=3000, smp=2, before_boot=fill,
                  kernel_args=LOCKUP_ARGS)
    done = (run.results_dir / "rounds").read_text().splitlines() \
        if (run.results_dir / "rounds").exists() else []
    print(f"boot {run.duration_s:.0f} s, exit {run.exit_status}, rounds {len(done)} of "
          f"{rounds}, workdir {run.workdir}")
    return 0 if run.exit_status == 0 and len(done) == rounds else 1


if __name__ == "__main__":
    raise SystemExit(main())
