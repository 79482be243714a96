# SPDX-License-Identifier: GPL-2.0-only
"""The watch boot: one boot per Xen release, with that release's own Debian dom0 kernel
(bullseye's 5.10 with 4.14, bookworm's 6.1 with 4.17, trixie's 6.12 with 4.20), in
which real consumers of /dev/xen/privcmd run while the kernel's tracing watches them.

In dom0, in order:

1. tracefs is mounted and its state recorded (``kprobe_events``, ``instances/``);
2. paused PV domains (WATCH_DOMAINS, ``mkdomains.py --backend privcmd``) whose
   shared_info ``max_pfn`` makes XENMEM_maximum_gpfn 0, 0x80000000, 0x100000004 and
   0xFFFFFFFE: values that need more than 31 bits, and one that looks like -ENOENT
   once narrowed;
3. three kprobe events armed by hand in group ``xpt``, enabled only in
   ``instances/xpt`` (privcmd-watch.md section 3): the entry of privcmd_ioctl with
   the request read from user memory, the instruction after the hypercall returns
   (offset found on the host from the module file, probe_point.py) reading ``%ax``,
   and privcmd_ioctl's return value;
4. the consumers (CALLERS): ``privcmd_caller`` (raw IOCTL_PRIVCMD_HYPERCALLs:
   maximum_gpfn of every domain, get_debugreg of DR6 and DR7), ``xc414_caller`` and
   ``xc417_caller`` (the same maximum_gpfn through Debian's real libxenctrl 4.14, int
   path, and 4.17, multicall path), ``intact_caller`` (xen_version only);
5. the instance's trace and per-CPU stats saved, the events disabled, the instance
   removed and the events deleted; tracefs' state recorded again.

Every step's exit status and duration go to ``$RESULTS/steps``, as in session.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import xenpkgs
from xenprobe.watch import probes
from xenprobe.watch.probe_point import find as watch_probe_point
from xenprobe.watch.probes import CALL_ARGS, RESULT_ARGS

from .boot import Dom0Run
from .initramfs import SHARE_IN_CHROOT
from .probe_point import find as find_probe_point
from .session import FORGED_MAX_PFN, MKDOMAINS, SESSION_SMP, Booter, Step, precompile

HERE = Path(__file__).resolve().parent
CALLERS = "callers"
GROUP = "xpt"  # the test's own kprobe group and instance (the watch has its own)
# QEMU is killed after this long.  Seen on a two-core host shared with five other QEMU
# runs: each cold start of the checkout's Python in dom0 took about 2 minutes, and the
# whole boot did not finish in 900 s.
WATCH_TIMEOUT_S = 2400
UINT32 = 2**32
# (current KiB, maximum KiB, shared_info max_pfn or None): XENMEM_maximum_gpfn is
# (max_pfn ?: 1) - 1 (xen/arch/x86/mm.c@RELEASE-4.17.0:489, see mkdomains.py).
WATCH_DOMAINS: tuple[tuple[int, int, int | None], ...] = (
    (1024, 2048, None),  # 0: fits an int, intact on every path
    (1024, 2048, 0x80000000 + 1),  # 2^31: narrowed to INT_MIN
    (1024, 2048, UINT32 + 4 + 1),  # 2^32 + 4: narrowed to 4
    (1024, 2048, UINT32 - 1),  # 0xFFFFFFFE: narrowed to -2, read as -1/ENOENT by glibc
)
# get_debugreg(6): DR6 as Xen keeps it for a vCPU that never touched it, 0xffff0ff0
# (X86_DR6_DEFAULT, xen/arch/x86/include/asm/debugreg.h@RELEASE-4.17.0), narrowed to
# -61456; DR7 (0x400 at reset) fits.
DEBUGREGS = (6, 7)
# Guest-forged maximum_gpfn (issue 24): -3 (ESRCH, which the call can return: the watch
# cannot tell it from a missing domain's), -22 (EINVAL, never returned: forged_errno) and
# 0x8000000000000000 (out_of_range), read under the watch by privcmd_caller under
# another name (comm), so that the other checks of the watch's output can leave them out.
FORGED_DOMAINS = tuple((1024, 2048, pfn) for pfn in FORGED_MAX_PFN)
FORGED_COMM = "forged_reader"
LIBXC_CALLERS = {"4.14": "xc414_caller", "4.17": "xc417_caller"}


def maximum_gpfn(max_pfn: int | None) -> int:
    return (max_pfn or 1) - 1


def narrowed(raw: int) -> int:
    """(long)(int)raw: what privcmd_ioctl's ``int ret`` makes of a 64-bit result."""
    low = raw & 0xFFFFFFFF
    return low - UINT32 if low & 0x80000000 else low


CC = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror"]


def build_privcmd_caller(dest: Path) -> Path:
    """Compile privcmd_caller.c on the host into ``dest``; returns the program."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([*CC, "-pthread", "-o", str(dest / "privcmd_caller"),
                    str(HERE / "privcmd_caller.c")], check=True)
    return dest / "privcmd_caller"


def build_callers(dest: Path) -> dict[str, Path]:
    """Compile the consumers on the host into ``dest``; returns the libxenctrl library
    directory of each libxc caller's release (for the share's ``xenlibs<NNN>/``)."""
    build_privcmd_caller(dest)
    # The same program under another name: a process whose calls are all intact.
    shutil.copy2(dest / "privcmd_caller", dest / "intact_caller")
    libs: dict[str, Path] = {}
    for release, name in LIBXC_CALLERS.items():
        libdir = xenpkgs.ensure(release=release).libdir
        subprocess.run([*CC, "-o", str(dest / name), str(HERE / "libxc_caller.c"),
                        f"-L{libdir}", f"-Wl,-rpath-link,{libdir}",
                        f"-l:libxenctrl.so.{release}"], check=True)
        libs[release] = libdir
    return libs


def yajl_dir() -> Path:
    """bookworm's libyajl2 (xl links it; the host has no reason to), unpacked into the
    boot assets' cache with their private apt state."""
    from .assets import PrivateApt, _materialize, cache_lock

    def keep(tree: Path, dest: Path) -> None:
        for lib in tree.glob("usr/lib/x86_64-linux-gnu/libyajl.so.2*"):
            shutil.copy2(lib, dest / lib.name, follow_symlinks=False)

    with cache_lock() as cache:
        apt = PrivateApt(cache / "apt" / "bookworm", "bookworm")
        return _materialize(cache, apt, "libyajl2", apt.show("libyajl2")["version"], keep)


def xl_lines(xen_root: Path) -> tuple[list[str], list[str]]:
    """Debian's real xl 4.17 (xen-utils-4.17, from tests/xenpkgs.py's unpacked tree,
    which the dom0 sees at its host path): xenstored first (libxl needs a store; its
    state and socket in /tmp), then `xl info` and `xl list` while the probes watch."""
    q = shlex.quote
    bin_ = q(str(xen_root / "usr/lib/xen-4.17/bin"))
    libs = f"{q(str(xen_root / 'usr/lib/x86_64-linux-gnu'))}:{SHARE_IN_CHROOT}/yajl"
    return [
        "mkdir -p /tmp/xs",
        # xenstored and libxenstore put and look for the socket in XENSTORED_RUNDIR
        # (default /var/run/xenstored: read-only here); the store is in memory.
        f"XL_ENV='env LD_LIBRARY_PATH={libs} XENSTORED_RUNDIR=/tmp/xs'",
        f'step xenstored $XL_ENV {bin_}/xenstored --pid-file /tmp/xs/pid'
        ' > "$R/xenstored.out" 2>&1',
        "sleep 2",
    ], [
        # Bounded: without a store, libxl waits for one.
        f'step xl_info timeout 120 $XL_ENV {bin_}/xl info > "$R/xl_info.out"'
        ' 2>"$R/xl_info.err"',
        f'step xl_list timeout 120 $XL_ENV {bin_}/xl list > "$R/xl_list.out"'
        ' 2>"$R/xl_list.err"',
    ]


# debugfs, mounted where a boot reads the kprobes list (kernel/kprobes.c
# show_kprobe_addr: each probe's place, [OPTIMIZED] for one the optimizer made a jump),
# and how long after enabling a probe its jump is in place (OPTIMIZE_DELAY, a few
# jiffies, then an RCU-tasks grace period: kprobe_optimizer).
MOUNT_DEBUGFS = "mountpoint -q /sys/kernel/debug || mount -t debugfs nodev /sys/kernel/debug"
KPROBES_LIST = "/sys/kernel/debug/kprobes/list"
OPTIMIZER_WAIT_S = 2


# The watch's HYPERCALL result event in its own instance (arming.py, probes.py).
WATCH_RESULT = f"$T/instances/{probes.INSTANCE}/events/{probes.GROUP}/{probes.RESULT}"


def kprobe_lines(offset: int) -> list[str]:
    """The three probes of privcmd-watch.md section 3, in group GROUP.  ``dom``: the
    domid a memory_op's second argument points at (meaningless for other ops); ``comm``
    on ``raw``, as the watch's result probe has it, so that the differential test holds
    the mock's string format to the kernel's."""
    fn = "xen_privcmd:privcmd_ioctl"
    return [
        f"p:{GROUP}/hc {fn} cmd=%si:x32 op=+u0(%dx):u64 a0=+u8(%dx):u64 a1=+u16(%dx):u64 "
        "dom=+u0(+u16(%dx)):u16",
        f"p:{GROUP}/raw {fn}+{offset:#x} rax=%ax:x64 comm=$comm",
        f"r:{GROUP}/ret {fn} ret=$retval:x64",
    ]


def script(release: str, offset: int, xen_root: Path | None = None,
           request: int | None = None, watch_probe: int | None = None) -> str:
    """``xen_root``: the unpacked xen-utils-4.17 tree when xl runs (on 4.17 only: its
    domctl and sysctl interface versions are compiled in); ``request`` and ``watch_probe``:
    the watch finder's slot and probe offset (cost_definitions())."""
    q = shlex.quote
    s = SHARE_IN_CHROOT
    doms = " ".join(f"--domain {cur}:{mx}" + (f":{pfn:#x}" if pfn is not None else "")
                    for cur, mx, pfn in WATCH_DOMAINS + FORGED_DOMAINS)
    inst = f"$T/instances/{GROUP}"
    lines = [
        'R="$RESULTS"',
        f"C={s}/{CALLERS}",
        "step() {",
        '    name=$1; shift',
        "    s=$(date +%s%N)",
        '    "$@"',
        "    rc=$?",
        "    e=$(date +%s%N)",
        '    echo "$name $rc $(( (e - s) / 1000000 ))" >> "$R/steps"',
        "    return $rc",
        "}",
        "T=/sys/kernel/tracing",
        '[ -e "$T/kprobe_events" ] || mount -t tracefs nodev "$T" || exit 90',
        'cp "$T/kprobe_events" "$R/kprobe_events.before"',
        'ls "$T/instances" > "$R/instances.before"',
        'uname -r > "$R/uname"',
        'cat /sys/module/xen_privcmd/notes/.note.gnu.build-id | od -An -tx1 | tr -d " \\n"'
        ' > "$R/privcmd.build-id"',
        f"step mkdomains python3 {q(str(MKDOMAINS))} --backend privcmd --release {release} "
        f'{doms} -o "$R/domains.json" >/dev/null 2>"$R/mkdomains.err" || exit 91',
        "DOMS=$(python3 -c 'import json, sys; print(\" \".join(str(d[\"domid\"]) for d in "
        f'json.load(open(sys.argv[1]))["domains"][:{len(WATCH_DOMAINS)}]))\' "$R/domains.json")',
        'echo "$DOMS" > "$R/domids"',
        # The guest-forged ones are read only under the watch (FORGED_COMM).
        "FORGED=$(python3 -c 'import json, sys; print(\" \".join(str(d[\"domid\"]) for d in "
        f'json.load(open(sys.argv[1]))["domains"][{len(WATCH_DOMAINS)}:]))\' "$R/domains.json")',
    ]
    xl_before, xl_while = xl_lines(xen_root) if xen_root is not None else ([], [])
    lines += xl_before
    for line in kprobe_lines(offset):
        lines.append(f'echo {q(line)} >> "$T/kprobe_events" || exit 92')
    lines += [
        f'mkdir "{inst}" || exit 93',
        f'echo global > "{inst}/trace_clock"',
        f'echo 4096 > "{inst}/buffer_size_kb"',
        f'echo 1 > "{inst}/events/{GROUP}/enable" || exit 94',
        'step privcmd_caller "$C/privcmd_caller" gpfn $DOMS > "$R/privcmd_caller.out"',
        'step debugreg "$C/privcmd_caller" debugreg '
        + " ".join(map(str, DEBUGREGS)) + ' >> "$R/privcmd_caller.out"',
    ]
    for rel, name in LIBXC_CALLERS.items():
        lines.append(f'step {name} env LD_LIBRARY_PATH={s}/xenlibs{rel.replace(".", "")} '
                     f'"$C/{name}" $DOMS > "$R/{name}.out" 2>"$R/{name}.err"')
    lines += [
        'step intact_caller "$C/intact_caller" version 3 > "$R/intact_caller.out"',
        *xl_while,
        f'echo 0 > "{inst}/events/{GROUP}/enable"',
        f'cat "{inst}/trace" > "$R/trace.txt"',
        f'for c in "{inst}"/per_cpu/cpu*; do echo "${{c##*/}}"; cat "$c/stats"; done'
        ' > "$R/stats.txt"',
        f'rmdir "{inst}" || exit 95',
    ]
    for event in ("hc", "raw", "ret"):
        lines.append(f'echo "-:{GROUP}/{event}" >> "$T/kprobe_events" || exit 96')
    lines += [
        'cp "$T/kprobe_events" "$R/kprobe_events.after"',
        'ls "$T/instances" > "$R/instances.after"',
    ]
    lines += watch_lines(xl_while)
    lines += cost_lines(offset, release, request, skip=COST_SETTLED, watch_probe=watch_probe)
    lines += bench_lines(offset, release)
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


VENV_PYTHON = HERE.parents[1] / ".venv" / "bin" / "python"
PYCACHE = "pycache"
PRIVCMD = "privcmd"  # the share's copy of the module file the watch reads
# A cold start of the checkout's Python under TCG took up to about 2 minutes on a loaded
# host; on 4.14 (5.10.0-32) a second start of the watch once never got ready: bounded.
READY_WAIT_S = 300
REAP_S = 120  # how long a signalled watch may take to exit before the boot goes on


def snapshot(name: str) -> str:
    """Save tracefs' kprobe_events and instance list as <file>.<name>."""
    return (f'cp "$T/kprobe_events" "$R/kprobe_events.{name}"; '
            f'ls "$T/instances" > "$R/instances.{name}"')


def watch_lines(xl_while: list[str]) -> list[str]:
    """`xenprobe watch --json` (this checkout) while the consumers run again; then a
    watch killed with SIGKILL once armed, and a fresh start that must clear what it
    left.  The dom0 gets a tmpfs /run (the watch's lock and state live in
    /run/xenprobe; the host's /run is read-only here), as any dom0 has."""
    q = shlex.quote
    s = SHARE_IN_CHROOT
    watch = (f"env PYTHONPYCACHEPREFIX={s}/{PYCACHE} "
             f'XENPROBE_WATCH_MODULE="$(ls {s}/{PRIVCMD}/*)" '
             f"{q(str(VENV_PYTHON))} -m xenprobe watch --json")
    return [
        "mount -t tmpfs -o mode=0755 tmpfs /run || exit 97",
        "reap() {  # PID SECONDS: until PID has exited, at most SECONDS",
        "    i=0",
        '    while kill -0 "$1" 2>/dev/null; do',
        '        i=$((i + 1)); [ "$i" -gt "$2" ] && return 1',
        "        sleep 1",
        "    done",
        "}",
        "wait_enabled() {  # PID: until the watch's result probe is enabled, or it dies",
        "    i=0",
        f'    until [ "$(cat "{WATCH_RESULT}/enable" 2>/dev/null)" = 1 ]; do',
        '        kill -0 "$1" 2>/dev/null || return 1',
        f'        i=$((i + 1)); [ "$i" -gt {READY_WAIT_S * 2} ] && return 1',
        "        sleep 0.5",
        "    done",
        "}",
        "wait_ready() {  # FILE PID: until the watch says it is armed, or dies",
        "    i=0",
        "    until grep -q '\"event\": *\"ready\"' \"$1\" 2>/dev/null; do",
        '        kill -0 "$2" 2>/dev/null || return 1',
        f'        i=$((i + 1)); [ "$i" -gt {READY_WAIT_S * 2} ] && return 1',
        "        sleep 0.5",
        "    done",
        "}",
        f'{watch} > "$R/watch.jsonl" 2> "$R/watch.err" & WPID=$!',
        'step watch_ready wait_ready "$R/watch.jsonl" "$WPID"',
        snapshot("armed"),
        # What the optimizer made a jump of, once it has (OPTIMIZER_WAIT_S).
        MOUNT_DEBUGFS,
        f'sleep {OPTIMIZER_WAIT_S}; grep privcmd_ioctl {KPROBES_LIST} > "$R/watch.kprobes"',
        'grep VmRSS /proc/"$WPID"/status > "$R/watch.rss"',
        'step w_privcmd_caller "$C/privcmd_caller" gpfn $DOMS > "$R/w_privcmd_caller.out"',
        'step w_debugreg "$C/privcmd_caller" debugreg '
        + " ".join(map(str, DEBUGREGS)) + ' >> "$R/w_privcmd_caller.out"',
        *(f'step w_{name} env LD_LIBRARY_PATH={s}/xenlibs{rel.replace(".", "")} '
          f'"$C/{name}" $DOMS > "$R/w_{name}.out" 2>"$R/w_{name}.err"'
          for rel, name in LIBXC_CALLERS.items()),
        'step w_intact_caller "$C/intact_caller" version 3 > "$R/w_intact_caller.out"',
        f'ln -s "$C/privcmd_caller" /run/{FORGED_COMM}',
        f'step w_forged /run/{FORGED_COMM} gpfn $FORGED > "$R/w_forged.out"',
        *(x.replace("step xl_", "step w_xl_").replace('"$R/xl_', '"$R/w_xl_')
          for x in xl_while),
        "sleep 5",  # the watch reads the last events
        'grep VmRSS /proc/"$WPID"/status >> "$R/watch.rss"',
        f'kill -TERM "$WPID"; if reap "$WPID" {REAP_S}; then wait "$WPID";'
        ' echo $? > "$R/watch.rc"; else echo "not reaped" > "$R/watch.rc"; fi',
        snapshot("watch"),
        # SIGKILL once armed: its group and instance stay behind ...
        f'{watch} > "$R/watch9.jsonl" 2> "$R/watch9.err" & WPID=$!',
        'step watch9_ready wait_ready "$R/watch9.jsonl" "$WPID"',
        f'kill -KILL "$WPID"; reap "$WPID" {REAP_S} || echo watch9 >> "$R/not-reaped"',
        snapshot("killed"),
        # ... until the next start removes them, watches, and removes its own.
        f'step watch_restart timeout {READY_WAIT_S + 60} {watch} --duration 5'
        ' > "$R/watch_restart.jsonl"'
        ' 2> "$R/watch_restart.err"',
        snapshot("restart"),
    ]


# The cost benchmark (issue 22 item 5).  The same C loop of xen_version ioctls bare, with
# the three probes armed by hand while `cat` drains the instance (the kernel's share of
# the cost), and under `xenprobe watch` (the whole watch); then a burst of maximum_gpfn
# calls from BURST_PROCS processes of BURST_THREADS threads, each thread asking for one
# domain, under the watch, its JSON lines folded in dom0 into counts per (tid, pid,
# domid, raw, delivered, verdict, comm): 750,000 damaged calls would be some 300 MB of
# JSON.  Sizes per release: trixie's 6.12 makes each ioctl about 15x slower under TCG
# than 6.1 (measured: 247 us against 16 us a call), so its runs are smaller.
BENCH_CALLS = {"4.14": 100_000, "4.17": 100_000, "4.20": 10_000}
BURST_PROCS, BURST_THREADS = 4, 2
BURST_CALLS = {"4.14": 125_000, "4.17": 125_000, "4.20": 12_500}  # per thread
# A loaded development machine may run fewer (the figures say how many); CI does not.
BURST_CALLS_ENV = "XENPROBE_REALXEN_BURST_CALLS"
BENCH_CALLS_ENV = "XENPROBE_REALXEN_BENCH_CALLS"
BENCH_BUFFER_KB = 16384
_FOLD_AWK = r"""
function num(k,    v) {
    if (!match($0, "\"" k "\": *-?[0-9]+")) return "null"
    v = substr($0, RSTART, RLENGTH); sub(/^"[^"]*": */, "", v); return v
}
function str(k,    v) {
    if (!match($0, "\"" k "\": *\"[^\"]*\"")) return "null"
    v = substr($0, RSTART, RLENGTH); sub(/^"[^"]*": *"/, "", v); sub(/"$/, "", v); return v
}
/"event": *"ready"/ { print > ready; close(ready); next }
/"event": *"call"/ {
    n[num("tid") " " num("pid") " " num("domid") " " num("raw") " " num("delivered") " " \
      str("verdict") " " str("comm")]++
    next
}
/"event": *"summary"/ { print > summary; next }
END { for (k in n) print k, n[k] }
"""


def bench_lines(offset: int, release: str) -> list[str]:
    q = shlex.quote
    s = SHARE_IN_CHROOT
    inst = f"$T/instances/{GROUP}"
    calls = int(os.environ.get(BENCH_CALLS_ENV) or BENCH_CALLS[release])
    burst = int(os.environ.get(BURST_CALLS_ENV) or BURST_CALLS[release])
    watch = (f"env PYTHONPYCACHEPREFIX={s}/{PYCACHE} "
             f'XENPROBE_WATCH_MODULE="$(ls {s}/{PRIVCMD}/*)" '
             f"{q(str(VENV_PYTHON))} -m xenprobe watch --json --buffer-kb {BENCH_BUFFER_KB}")
    arm = [f'echo {q(line)} >> "$T/kprobe_events"' for line in kprobe_lines(offset)] + [
        f'mkdir "{inst}"',
        f'echo global > "{inst}/trace_clock"',
        f'echo {BENCH_BUFFER_KB} > "{inst}/buffer_size_kb"',
        f'echo 1 > "{inst}/events/{GROUP}/enable"',
    ]
    disarm = [
        f'echo 0 > "{inst}/events/{GROUP}/enable"',
        f'for c in "{inst}"/per_cpu/cpu*; do cat "$c/stats"; done > "$R/$1.stats"',
        "sleep 1",  # the reader drains what is left
        'kill "$(cat /tmp/reader.pid)"; wait "$READER"',
        f'rmdir "{inst}"',
        *(f'echo "-:{GROUP}/{e}" >> "$T/kprobe_events"' for e in ("hc", "raw", "ret")),
    ]
    return [
        "arm() {", *(f"    {x}" for x in arm), "}",
        "disarm() {", *(f"    {x}" for x in disarm), "}",
        # Cold first run, then the measured ones.
        f'"$C/privcmd_caller" loop {calls // 10} > /dev/null',
        f'step bench_bare "$C/privcmd_caller" loop {calls} > "$R/bench_bare.out"',
        "arm",
        f'{{ cat "{inst}/trace_pipe" & echo $! > /tmp/reader.pid; wait; }}'
        ' | wc -l > "$R/bench_armed.lines" & READER=$!',
        f'step bench_armed "$C/privcmd_caller" loop {calls} > "$R/bench_armed.out"',
        "sleep 2",
        "disarm bench_armed",
        f'step bench_bare2 "$C/privcmd_caller" loop {calls} > "$R/bench_bare2.out"',
        snapshot("bench"),
        # Under the watch (one start: the loop, then the burst), its JSON lines folded.
        f'{{ {watch} 2> "$R/burst_watch.err" & echo $! > /tmp/watch.pid; wait; }}'
        ' | awk -v summary="$R/burst_watch.summary" -v ready="$R/burst_watch.ready"'
        f' {q(_FOLD_AWK)} > "$R/burst_watch.fold" & FOLD=$!',
        "sleep 1",
        # Its ready line is in the pipe, where mawk reads in blocks: wait for the
        # result probe to be enabled in the watch's instance instead.
        'step burst_watch_ready wait_enabled "$(cat /tmp/watch.pid)"',
        # The burst first: the watch reads the oldest events first, and under TCG it
        # judges a few hundred calls a second, so with the loop first it never reached
        # the burst before its stop (2026-12-06: 3,316 loop calls judged, the rest of
        # 220,000 events counted unread); the loop's figure is then taken while the
        # watch still reads the burst's backlog, as on a busy dom0.
        f'step burst "$C/privcmd_caller" burst {BURST_PROCS} {BURST_THREADS} {burst} '
        '$DOMS > "$R/burst.out"',
        'grep VmRSS /proc/"$(cat /tmp/watch.pid)"/status > "$R/bench_watch.rss"',
        f'step bench_watch "$C/privcmd_caller" loop {calls} > "$R/bench_watch.out"',
        'grep VmRSS /proc/"$(cat /tmp/watch.pid)"/status >> "$R/bench_watch.rss"',
        "sleep 10",
        f'kill -TERM "$(cat /tmp/watch.pid)"; reap "$(cat /tmp/watch.pid)" {REAP_S}'
        ' || echo burst_watch >> "$R/not-reaped"; reap "$FOLD" 30 && wait "$FOLD"',
        snapshot("burst"),
        # The loop under a fresh watch (no backlog, unlike bench_watch's), then under
        # another with COST_FILTER written by hand into its instance's result event:
        # what the watch would cost if the kernel dropped the clean calls
        # (docs/watch.md, "Cost").
        "fresh() {  # NAME [FILTER]",
        f'    {watch} > "$R/$1_watch.jsonl" 2> "$R/$1_watch.err" & echo $! > /tmp/watch.pid',
        '    step "$1_watch_ready" wait_enabled "$(cat /tmp/watch.pid)"',
        f'    if [ -n "$2" ]; then echo "$2" > "{WATCH_RESULT}/filter" || '
        'echo "$1" >> "$R/bench_refused"; fi',
        f'    step "bench_$1" "$C/privcmd_caller" loop {calls} > "$R/bench_$1.out"',
        f'    kill -TERM "$(cat /tmp/watch.pid)"; reap "$(cat /tmp/watch.pid)" {REAP_S}'
        ' || echo "$1_watch" >> "$R/not-reaped"',
        "}",
        "fresh unfiltered",
        f"fresh filtered {q(COST_FILTER)}",
        snapshot("filtered"),
    ]


# Where the watch's cost comes from (issue 22 item 5): the same C loop of xen_version
# ioctls under each piece of the watch's kernel side alone, in group and instance
# COST_GROUP, each variant in a fresh instance: (name, trace_clock, reader, events).
# Events: "call" is the watch's entry probe (CALL_ARGS: the request read from user
# memory, three of its fetches nested), "flat" the same without the nested ones, "bare"
# with only %si, "result" the offset probe (%ax); "stack" and "stack_user" the offset
# probe reading the request from the kernel's own copy on the stack (the slot
# probe_point.request_slot finds), without and with the nested user fetches;
# "returns_user" is stack_user where the watch puts it, on the instruction the call
# returns to, which the kprobe optimizer can turn into a jump (probe_point.py);
# "filtered" is stack_user where the watch puts it, with COST_FILTER as the event's
# filter in the instance, so the kernel drops the calls the judge would call clean.
# Readers: "text" is `cat trace_pipe` (blocks: woken for every event), "batch" reads
# trace_pipe non-blocking every 0.2 s (as the watch does), "raw" is `cat
# per_cpu/cpu0/trace_pipe_raw`. The dom0 has one vCPU: a reader's work is the loop's
# wall time too.
COST_GROUP = "xpc"
COST_EVENTS = ("call", "flat", "bare", "result", "stack", "stack_user", "returns_user",
               "filtered")
# A result in 0..INT_MAX reaches the process unchanged and is no errno: judge.py calls
# it clean, whatever the call. The field is x64, unsigned, so a negative long is above
# the bound and kept (Documentation/trace/events.rst, "Event filtering"). With a filter
# set, an event is usually written to a per-CPU scratch event first and copied to the
# ring buffer only if it passes (kernel/trace/trace.c trace_event_buffer_lock_reserve,
# trace_buffered_event): a dropped call costs its probe hit, its fetches and the
# filter, and the reader nothing.
COST_FILTER = "rax > 0x7fffffff"
COST_VARIANTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("defined", "global", "none", ()),
    ("entry", "global", "none", ("call",)),
    ("entry_flat", "global", "none", ("flat",)),
    ("entry_nofetch", "global", "none", ("bare",)),
    ("offset", "global", "none", ("result",)),
    ("both", "global", "none", ("call", "result")),
    ("both_local", "local", "none", ("call", "result")),
    ("both_mono", "mono", "none", ("call", "result")),
    ("both_cat", "global", "text", ("call", "result")),
    ("both_batch", "global", "batch", ("call", "result")),
    ("both_raw", "global", "raw", ("call", "result")),
    ("offset_stack", "global", "none", ("stack",)),
    ("offset_stack_user", "global", "none", ("stack_user",)),
    ("returns_stack_user", "global", "none", ("returns_user",)),
    ("stack_user_batch", "global", "batch", ("stack_user",)),
    ("stack_user_cat", "global", "text", ("stack_user",)),
    ("watch_filtered", "global", "none", ("filtered",)),
    ("filtered_batch", "global", "batch", ("filtered",)),
)
# Per variant; 6.12 under TCG is about 15x slower a call (see BENCH_CALLS).
COST_CALLS = {"4.14": 20_000, "4.17": 20_000, "4.20": 2_000}
COST_ROUNDS = 5
# The whole run's boot (script()) leaves out what the breakdown boots settled (the trace
# clocks made no difference above the noise; trace_pipe_raw was no cheaper than text;
# the stack-only probe is stack_user without its nested fetches): the CI run's wall time
# stays in its bound. `python -m tests.realxen.watch_boot RELEASE` runs every variant.
COST_SETTLED = ("both_local", "both_mono", "both_raw", "offset_stack")


def cost_definitions(offset: int, request: int | None, watch_probe: int | None = None
                     ) -> dict[str, str]:
    fn = "xen_privcmd:privcmd_ioctl"
    out = {"call": f"p:{COST_GROUP}/call {fn} {CALL_ARGS}",
           "flat": f"p:{COST_GROUP}/flat {fn} cmd=%si:x32 op=+u0(%dx):x64 a0=+u8(%dx):x64 "
                   "a1=+u16(%dx):x64",
           "bare": f"p:{COST_GROUP}/bare {fn} cmd=%si:x32",
           "result": f"p:{COST_GROUP}/result {fn}+{offset:#x} {RESULT_ARGS}"}
    if request is not None:
        op, a0, a1 = (f"+{request + 8 * i:#x}(%sp)" for i in range(3))
        kernel = f"{RESULT_ARGS} op={op}:x64 a0={a0}:x64 a1={a1}:x64"
        out["stack"] = f"p:{COST_GROUP}/stack {fn}+{offset:#x} {kernel}"
        user = f"sub=+u0({a0}):u32 dom=+u0({a1}):u16 ddom=+u8({a0}):u16"
        out["stack_user"] = f"p:{COST_GROUP}/stack_user {fn}+{offset:#x} {kernel} {user}"
        if watch_probe is not None and watch_probe != offset:
            out["returns_user"] = (f"p:{COST_GROUP}/returns_user {fn}+{watch_probe:#x} "
                                   f"{kernel} {user}")
        at = offset if watch_probe is None else watch_probe
        out["filtered"] = f"p:{COST_GROUP}/filtered {fn}+{at:#x} {kernel} {user}"
    return out


def cost_lines(offset: int, release: str, request: int | None = None,
               skip: tuple[str, ...] = (), watch_probe: int | None = None) -> list[str]:
    q = shlex.quote
    calls = int(os.environ.get(BENCH_CALLS_ENV) or COST_CALLS[release])
    defs = cost_definitions(offset, request, watch_probe)
    inst = f"$T/instances/{COST_GROUP}"
    out = [
        "cost() {  # NAME CLOCK READER EVENT...: one variant, the loop timed",
        '    v=$1; clock=$2; reader=$3; shift 3',
        f'    mkdir "{inst}" || return 1',
        f'    echo "$clock" > "{inst}/trace_clock" || {{ rmdir "{inst}"; return 1; }}',
        f'    echo {BENCH_BUFFER_KB} > "{inst}/buffer_size_kb"',
        f'    case " $* " in *" filtered "*) echo {q(COST_FILTER)} > '
        f'"{inst}/events/{COST_GROUP}/filtered/filter" || {{ rmdir "{inst}"; return 1; }} ;; '
        'esac',
        '    RD=',
        f'    case $reader in text) cat "{inst}/trace_pipe" > /dev/null & RD=$! ;;',
        # (stopped through a file: a killed shell loop would leave its dd holding
        # trace_pipe open, and the instance busy)
        f'        batch) rm -f /tmp/cost.stop; while [ ! -e /tmp/cost.stop ]; do dd '
        f'if="{inst}/trace_pipe" of=/dev/null bs=1M iflag=nonblock 2>/dev/null; '
        'sleep 0.2; done & RD=$! ;;',
        f'        raw) cat "{inst}/per_cpu/cpu0/trace_pipe_raw" > /dev/null & RD=$! ;;',
        "    esac",
        # Rounds of bare and armed loops, alternating: the host's load drifts within
        # seconds, so each armed figure has its own floor right before it.
        '    rc=0; : > "$R/cost_$v.floor"; : > "$R/cost_$v.out"',
        f'    for r in {" ".join(str(i) for i in range(COST_ROUNDS))}; do',
        f'        "$C/privcmd_caller" loop {calls // COST_ROUNDS} >> "$R/cost_$v.floor"',
        f'        for e in "$@"; do echo 1 > "{inst}/events/{COST_GROUP}/$e/enable" || '
        'rc=1; done',
        # Timed once the optimizer's jumps are in place, every variant alike.
        f"        sleep {OPTIMIZER_WAIT_S}",
        f'        "$C/privcmd_caller" loop {calls // COST_ROUNDS} >> "$R/cost_$v.out" || rc=1',
        # Whether the kprobe optimizer made a jump of the probes (debugfs' list).
        f'        grep -s privcmd_ioctl {KPROBES_LIST} > "$R/cost_$v.kprobes"',
        f'        for e in "$@"; do echo 0 > "{inst}/events/{COST_GROUP}/$e/enable"; done',
        "    done",
        f'    for c in "{inst}"/per_cpu/cpu*; do cat "$c/stats"; done > "$R/cost_$v.stats"',
        '    if [ -n "$RD" ]; then sleep 1; touch /tmp/cost.stop; [ "$reader" = batch ] '
        '|| kill "$RD"; wait "$RD"; fi',
        f'    rmdir "{inst}"',
        "    return $rc",
        "}",
        MOUNT_DEBUGFS,
        f'"$C/privcmd_caller" loop {calls // 10} > /dev/null',  # cold
        f'step cost_floor "$C/privcmd_caller" loop {calls} > "$R/cost_floor.out"',
        *(f'echo {q(d)} >> "$T/kprobe_events" || echo {q(e)} >> "$R/cost_refused"'
          for e, d in defs.items()),
    ]
    for name, clock, reader, events in COST_VARIANTS:
        if all(e in defs for e in events) and name not in skip:
            out.append(f"step cost_{name} cost {name} {clock} {reader} {' '.join(events)}")
    if request is not None:
        # The two designs side by side on calls whose arguments point somewhere: the
        # entry probe's reading of the caller's memory and the offset probe's reading of
        # the kernel's copy must agree, call by call (cost_agreement()).
        out += [
            f'mkdir "{inst}"',
            f'echo 1 > "{inst}/events/{COST_GROUP}/call/enable"',
            f'echo 1 > "{inst}/events/{COST_GROUP}/stack_user/enable"',
            '"$C/privcmd_caller" gpfn 0 > /dev/null',
            '"$C/privcmd_caller" debugreg 6 7 > /dev/null',
            '"$C/privcmd_caller" loop 3 > /dev/null',
            f'echo 0 > "{inst}/events/{COST_GROUP}/call/enable"',
            f'echo 0 > "{inst}/events/{COST_GROUP}/stack_user/enable"',
            f'cat "{inst}/trace" > "$R/cost_agree.trace"',
            f'rmdir "{inst}"',
        ]
    out += [f'echo "-:{COST_GROUP}/{e}" >> "$T/kprobe_events"' for e in defs]
    out.append(f'step cost_floor2 "$C/privcmd_caller" loop {calls} > "$R/cost_floor2.out"')
    out.append(snapshot("cost"))
    return out


# One line of a trace file: "<comm>-<pid> [cpu] <flags> <secs>: <event>: (<where>) args".
# The flags column has 4 characters on 5.10 and 5 on 6.x (kernel/trace/trace_output.c).
TRACE_LINE = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<flags>\S+)\s+"
    r"(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s+\((?P<where>[^)]*)\)\s*(?P<args>.*)$"
)


@dataclass(frozen=True)
class TraceLine:
    comm: str
    pid: int
    cpu: int
    flags: str
    ts: float
    event: str
    where: str
    args: dict[str, str]


def parse_trace(text: str) -> list[TraceLine]:
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = TRACE_LINE.match(line)
        if not m:
            raise ValueError(f"not a trace line: {line!r}")
        args = dict(a.split("=", 1) for a in m.group("args").split())
        out.append(TraceLine(m.group("comm"), int(m.group("pid")), int(m.group("cpu")),
                             m.group("flags"), float(m.group("ts")), m.group("event"),
                             m.group("where"), args))
    return out


@dataclass(frozen=True)
class Call:
    """One IOCTL_PRIVCMD_HYPERCALL as the three probes saw it, paired per task."""

    comm: str
    pid: int
    op: int
    a0: int
    dom: int | None
    raw: int | None  # %rax after the hypercall (signed), None: no hypercall was made
    ret: int  # privcmd_ioctl's return value (signed)


def _s64(text: str) -> int:
    v = int(text, 0)
    return v - 2**64 if v >= 2**63 else v


def pair(lines: list[TraceLine]) -> list[Call]:
    """Entry, narrowing and return of each task's privcmd ioctls, in order; raises if a
    task's events do not follow one another as one ioctl at a time allows."""
    open_: dict[int, tuple[TraceLine, TraceLine | None]] = {}
    calls = []
    for ln in lines:
        if ln.event == "hc":
            if ln.pid in open_:
                raise ValueError(f"task {ln.pid}: entry before the last call returned")
            open_[ln.pid] = (ln, None)
        elif ln.event == "raw":
            entry, raw = open_.get(ln.pid, (None, None))
            if entry is None or raw is not None:
                raise ValueError(f"task {ln.pid}: hypercall result outside a call: {ln}")
            open_[ln.pid] = (entry, ln)
        elif ln.event == "ret":
            entry, raw = open_.pop(ln.pid, (None, None))
            if entry is None:
                raise ValueError(f"task {ln.pid}: return without entry: {ln}")
            if int(entry.args["cmd"], 16) != 0x305000:
                continue  # not IOCTL_PRIVCMD_HYPERCALL (mmapbatch, ...)
            dom = entry.args.get("dom", "")  # "(fault)" where a1 points nowhere
            calls.append(Call(entry.comm, entry.pid, int(entry.args["op"], 0),
                              int(entry.args["a0"], 0),
                              int(dom, 0) if dom[:1].isdigit() else None,
                              _s64(raw.args["rax"]) if raw is not None else None,
                              _s64(ln.args["ret"])))
    return calls


@dataclass
class WatchBoot:
    release: str
    run: Dom0Run
    steps: dict[str, Step]
    offset: int
    kernel_release: str
    module_build_id: str
    module_file: Path  # the uncompressed xen_privcmd.ko the dom0 loaded
    results: dict[str, str] = field(default_factory=dict)

    def text(self, name: str) -> str:
        try:
            return (self.run.results_dir / name).read_text(errors="replace")
        except OSError:
            return ""

    def jsonl(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.text(name).splitlines() if x.strip()]

    def report(self) -> str:
        return f"steps: {self.steps}\n{self.run.report(40)}"


def build_id(ko: Path) -> str:
    """The module's NT_GNU_BUILD_ID note as hex (readelf -n)."""
    out = subprocess.run(["readelf", "-n", str(ko)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Build ID:\s*([0-9a-f]+)", out)
    if not m:
        raise ValueError(f"no build id in {ko}")
    return m.group(1)


def boot(xen: Booter, assets: Any) -> WatchBoot:
    own = assets.own_kernel(xen.release)
    ko = own.modules_dir / "xen_privcmd.ko"
    point = find_probe_point(ko)

    xen_root = xenpkgs.ensure(release="4.17").root if xen.release == "4.17" else None

    def fill(share: Path) -> None:
        precompile(share / PYCACHE)
        (share / PRIVCMD).mkdir()
        shutil.copy2(own.privcmd_module, share / PRIVCMD / own.privcmd_module.name)
        libs = build_callers(share / CALLERS)
        for rel, libdir in libs.items():
            shutil.copytree(libdir, share / f"xenlibs{rel.replace('.', '')}", symlinks=True)
        if xen_root is not None:
            shutil.copytree(yajl_dir(), share / "yajl", symlinks=True)

    # The request's slot for the cost breakdown's one-probe variants: the watch's own
    # finder (the independent one above reads only the offsets).
    watch = watch_probe_point(ko.read_bytes())
    text = script(xen.release, point.hypercall, xen_root, watch.request, watch.hypercall)
    run = xen.run(text, label="watch", own_kernel=True,
                  timeout=WATCH_TIMEOUT_S, smp=SESSION_SMP, before_boot=fill)
    steps: dict[str, Step] = {}
    res = run.results_dir
    for line in (res / "steps").read_text().splitlines() if (res / "steps").exists() else []:
        name, rc, ms = line.split()
        steps[name] = Step(int(rc), int(ms))
    return WatchBoot(xen.release, run, steps, point.hypercall, own.kernel_release,
                     build_id(ko), ko)


def cost_script(offset: int, release: str, request: int | None,
                watch_probe: int | None = None) -> str:
    """Only the cost breakdown (cost_lines), for a quick boot of one release:
    `python -m tests.realxen.watch_boot RELEASE`."""
    head = script(release, offset).split("\n")
    # The prologue of script(): results, callers, step(), tracefs mounted.
    prologue = head[:head.index('cp "$T/kprobe_events" "$R/kprobe_events.before"')]
    return "\n".join([*prologue, snapshot("before"),
                      *cost_lines(offset, release, request, watch_probe=watch_probe),
                      "exit 0"]) + "\n"


def cost_boot(xen: Booter, assets: Any) -> WatchBoot:
    own = assets.own_kernel(xen.release)
    ko = own.modules_dir / "xen_privcmd.ko"
    point = find_probe_point(ko)

    def fill(share: Path) -> None:
        build_privcmd_caller(share / CALLERS)

    watch = watch_probe_point(ko.read_bytes())
    run = xen.run(cost_script(point.hypercall, xen.release, watch.request, watch.hypercall),
                  label="cost",
                  own_kernel=True, timeout=WATCH_TIMEOUT_S, smp=SESSION_SMP,
                  before_boot=fill)
    res = run.results_dir
    steps = {name: Step(int(rc), int(ms)) for name, rc, ms in
             (line.split() for line in (res / "steps").read_text().splitlines())
             } if (res / "steps").exists() else {}
    return WatchBoot(xen.release, run, steps, point.hypercall, own.kernel_release,
                     build_id(ko), ko)


def stats_counters(text: str) -> dict[str, int]:
    """Per-CPU stats files summed (kernel/trace/trace.c tracing_stats_read)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if val.strip().isdigit():
            out[key.strip()] = out.get(key.strip(), 0) + int(val)
    return out


def cost_report(wb: WatchBoot) -> str:
    """The breakdown, one line a variant: the median over the rounds of armed us a call,
    of the floor's right before each, and of the per-round ratio."""
    def ns(name: str) -> list[float]:
        return [float(x["ns_per_call"]) for x in wb.jsonl(name)]

    floors = ns("cost_floor.out") + ns("cost_floor2.out")
    rows = [f"[watch cost breakdown, Xen {wb.release}, dom0 {wb.kernel_release}, QEMU TCG, "
            f"1 vCPU] floor {' / '.join(f'{x / 1000:.1f}' for x in floors)} us a call "
            f"(first and last); each variant, {COST_ROUNDS} rounds of bare then armed "
            "loops, medians: armed us a call, floor, ratio (range)"]
    for name, clock, reader, events in COST_VARIANTS:
        if f"cost_{name}" not in wb.steps:
            continue  # not run in this boot (COST_SETTLED)
        got, floor = ns(f"cost_{name}.out"), ns(f"cost_{name}.floor")
        st = stats_counters(wb.text(f"cost_{name}.stats"))
        what = f"{'+'.join(events) or 'nothing enabled'}, clock {clock}, reader {reader}"
        if not got or len(got) != len(floor):
            rows.append(f"  {name:17} {what:46} no figure")
            continue
        ratios = sorted(a / b for a, b in zip(got, floor, strict=True))
        rows.append(
            f"  {name:17} {what:46} {statistics.median(got) / 1000:7.1f} us "
            f"{statistics.median(floor) / 1000:6.1f} us {statistics.median(ratios):5.2f}x "
            f"({ratios[0]:.2f}-{ratios[-1]:.2f})  entries {st.get('entries', 0):,} "
            f"read {st.get('read events', 0):,} overrun {st.get('overrun', 0):,}"
            + ("  [OPTIMIZED]" if "[OPTIMIZED]" in wb.text(f"cost_{name}.kprobes") else ""))
    refused = wb.text("cost_refused").split()
    if refused:
        rows.append(f"  definitions the kernel refused: {', '.join(refused)}")
    try:
        same, differ = cost_agreement(wb)
        rows.append(f"  the request, entry probe (caller's memory) vs offset probe (kernel's "
                    f"copy): {same} calls alike, {differ} differ")
    except ValueError as e:
        rows.append(f"  agreement trace unreadable: {e}")
    return "\n".join(rows)


def cost_agreement(wb: WatchBoot) -> tuple[int, int]:
    """The entry probe's request (the caller's memory) against the offset probe's (the
    kernel's copy on the stack), call by call, per task: (alike, differing)."""
    entry: dict[int, TraceLine] = {}
    same = differ = 0
    for ln in parse_trace(wb.text("cost_agree.trace")):
        if ln.event == "call":
            entry[ln.pid] = ln
        elif ln.event == "stack_user":
            e = entry.pop(ln.pid, None)
            keys = ("op", "a0", "a1", "sub", "dom", "ddom")
            if e is not None and all(e.args.get(k) == ln.args.get(k) for k in keys):
                same += 1
            else:
                differ += 1
    return same, differ


if __name__ == "__main__":
    import sys
    import tempfile

    from .assets import ensure_assets
    from .conftest import RealXen
    rel = sys.argv[1] if len(sys.argv) > 1 else "4.17"
    xen = RealXen(rel, ensure_assets(), Path(tempfile.mkdtemp(prefix=f"cost{rel}-")))
    wb = cost_boot(xen, xen.assets)
    print(f"boot {wb.run.duration_s:.0f} s, exit {wb.run.exit_status}, results "
          f"{wb.run.results_dir}")
    print(cost_report(wb))
