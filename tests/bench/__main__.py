# SPDX-License-Identifier: GPL-2.0-only
"""xenprobe's benchmark on the mock host: `python -m tests.bench` (see --help).

For each host size (domains), three processes run on the same mock host side by side,
driven one sweep at a time in rotating order, so the machine's noise falls on all of
them alike:

- xenprobe (tests/bench/child.py): Sweeper.sweep() with every layer ("full"), with the
  kernel layers only ("kernel"), and the read the peer makes ("info");
- the floor (tests/bench/floor.c, compiled here with gcc): the same hypercalls as a
  sweep attempt, batched the same way, from C with nothing else;
- the peer: Xen's own bindings, xen.lowlevel.xc from Debian's xen-utils-4.17, reading
  physinfo and every domain's getdomaininfo through the real libxenctrl 4.17.

Then `xenprobe serve` itself (tests/bench/daemon.py) for RSS, CPU per sweep and
/metrics latency, the daemon's sweep code in a loop (tests/bench/leak.py) for RSS
over many sweeps, and `xenprobe watch`'s reader throughput against the mock's privcmd
at paced call rates (tests/bench/watch.py). Figures are medians over the rounds;
ratios are the median of the per-round ratios. Nothing here asserts a timing.

--before TREE puts the figures of another checkout's code beside this one's, measured
in the same run: its sweep in the same rotation as the floor, its daemon, its start-up
(TREE on PYTHONPATH; built native modules in TREE/xenprobe, e.g. copied from this one
when native/ did not change). Rows "(before)" are TREE's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import daemon, scenario, startup
from tests.bench import watch as watch_bench
from tests.mockhost import env_for
from xenprobe.mock.scenario import Scenario
from xenprobe.mock.scenario import load as load_scenario
from xenprobe.xen.abi.releases import getdomaininfo_for_domctl

ROOT = Path(__file__).resolve().parents[2]
FLOOR_C = Path(__file__).with_name("floor.c")
# The census quantities a PV dom0 on Xen 4.17 answers (floor.c's census[]): page size,
# build-id size, DR6, two sharing counts, hypfs' version, two kexec image types,
# resource_op's nr_done, VCPUOP_is_up for each of dom0's vCPUs; and livepatch LIST (a
# sysctl, no multicall: floor.c's livepatch()).
CENSUS_PROBES = 10 + scenario.DOM0_VCPUS


@dataclass
class Sizes:
    """One host size: the per-round times (seconds) of every measurement."""

    domains: int
    probes: int = 0
    times: dict[str, list[float]] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)

    def median_ms(self, key: str) -> float | None:
        t = self.times.get(key)
        return statistics.median(t) * 1000 if t else None

    def ratio(self, top: str, bottom: str) -> float | None:
        a, b = self.times.get(top), self.times.get(bottom)
        if not a or not b:
            return None
        return statistics.median(x / y for x, y in zip(a, b, strict=True))


class _Proc:
    """A measuring process that answers one command per line with 'SECONDS CHECK'."""

    def __init__(self, argv: list[str], env: dict[str, str], ready: bool,
                 cwd: Path = ROOT) -> None:
        self.name = Path(argv[0]).name if argv[0] != sys.executable else argv[-1]
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.note = ""
        if ready:
            line = self._line()
            self.note = line.split(" ", 1)[1] if " " in line else ""

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            assert self.proc.stderr is not None
            raise RuntimeError(f"{self.name} exited: {self.proc.stderr.read()[-2000:]}")
        return line.strip()

    def run(self, command: str) -> tuple[float, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        seconds, check = self._line().split(" ", 1)
        return float(seconds), check

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("quit\n" if self.name != "floor" else "q\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _build_floor(tmp: Path) -> Path:
    out = tmp / "floor"
    subprocess.run(["gcc", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-o", str(out),
                    str(FLOOR_C), "-ldl"], check=True)
    return out


def _packages() -> Any:
    """Debian's libxenctrl 4.17 and xen.lowlevel.xc (tests/xenpkgs.py), or None."""
    from tests import xenpkgs
    if os.environ.get(xenpkgs.SKIP_ENV) == "1":
        return None
    try:
        return xenpkgs.ensure()
    except xenpkgs.PackageError as e:
        print(f"bench: no real libxenctrl ({e}); libxc and peer columns left out",
              file=sys.stderr)
        return None


def _host(n: int, tmp: Path, pkgs: Any) -> tuple[Scenario, Path, dict[str, str]]:
    path = scenario.write(n, tmp)
    s = load_scenario(str(path))
    env = env_for(s, tmp)
    if pkgs is not None:
        env.update(pkgs.env())
    return s, path, env


# (process, command, key): what one round measures.
PLAN = [("xenprobe", "full", "xenprobe"), ("floor", "l", "floor"),
        ("xenprobe", "kernel", "xenprobe_kernel"), ("floor", "k", "floor_kernel"),
        ("xenprobe", "info", "xenprobe_info"), ("peer", "peer", "peer")]


# With --before: the other tree's sweeps, in the same rotation.
BEFORE_PLAN = [("before", "full", "before"), ("before", "kernel", "before_kernel")]


def measure_sizes(n: int, rounds: int, tmp: Path, floor: Path, pkgs: Any,
                  before: Path | None = None) -> Sizes:
    s, _, env = _host(n, tmp, pkgs)
    out = Sizes(n, probes=3 * n + 5 + CENSUS_PROBES)
    floor_argv = [str(floor), hex(s.sysctl_interface),
                  str(getdomaininfo_for_domctl(s.domctl_interface).size)]
    if pkgs is not None:
        floor_argv.append(str(pkgs.libxenctrl))
    procs = {"xenprobe": _Proc([sys.executable, "-m", "tests.bench.child", "xenprobe"],
                               env, ready=True),
             "floor": _Proc(floor_argv, env, ready=False)}
    steps = PLAN + (BEFORE_PLAN if before is not None else [])
    plan = [step for step in steps if pkgs is not None or step[1] not in ("full", "l", "peer")]
    if before is not None:
        procs["before"] = _Proc([sys.executable, "-m", "tests.bench.child", "xenprobe"],
                                startup.tree_env(env, before), ready=True, cwd=before)
    if pkgs is not None:
        procs["peer"] = _Proc([sys.executable, "-m", "tests.bench.child", "peer",
                               str(pkgs.python_dir)], env, ready=True)
    try:
        if procs["xenprobe"].note != "-":
            out.checks["note"] = procs["xenprobe"].note
        for who, command, _ in plan:  # warm-up: plans, caches, libxc loaded
            procs[who].run(command)
        for r in range(rounds):
            shift = r % len(plan)
            for who, command, key in plan[shift:] + plan[:shift]:
                seconds, check = procs[who].run(command)
                out.times.setdefault(key, []).append(seconds)
                out.checks[key] = check
    finally:
        for p in procs.values():
            p.close()
    return out


def leak(n: int, sweeps: int, tmp: Path, pkgs: Any) -> list[tuple[int, int]]:
    _, _, env = _host(n, tmp, pkgs)
    p = subprocess.run([sys.executable, "-m", "tests.bench.leak", str(sweeps)], env=env,
                       cwd=ROOT, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"leak loop failed: {p.stderr[-2000:]}")
    return [(int(a), int(b)) for a, b in (line.split() for line in p.stdout.splitlines())]


def _f(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def table(sizes: list[Sizes], daemons: list[daemon.DaemonFigures],
          leaks: list[tuple[int, int]], leak_domains: int,
          startups: list[startup.StartupFigures] | None = None) -> str:
    lines = ["| domains | probes | xenprobe sweep (ms) | floor (ms) | xenprobe/floor "
             "| kernel layers: xenprobe (ms) | floor (ms) | xenprobe/floor "
             "| xenprobe, peer's reads (ms) | peer (ms) | xenprobe/peer "
             "| full sweep/peer |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sizes:
        lines.append(
            f"| {s.domains:,} | {s.probes:,} | {_f(s.median_ms('xenprobe'))} "
            f"| {_f(s.median_ms('floor'))} | {_f(s.ratio('xenprobe', 'floor'), '{:.2f}')} "
            f"| {_f(s.median_ms('xenprobe_kernel'))} | {_f(s.median_ms('floor_kernel'))} "
            f"| {_f(s.ratio('xenprobe_kernel', 'floor_kernel'), '{:.2f}')} "
            f"| {_f(s.median_ms('xenprobe_info'), '{:.2f}')} "
            f"| {_f(s.median_ms('peer'), '{:.2f}')} "
            f"| {_f(s.ratio('xenprobe_info', 'peer'), '{:.2f}')} "
            f"| {_f(s.ratio('xenprobe', 'peer'), '{:.2f}')} |")
        if "before" in s.times or "before_kernel" in s.times:
            lines.append(
                f"| {s.domains:,} (before) | {s.probes:,} | {_f(s.median_ms('before'))} "
                f"| {_f(s.median_ms('floor'))} | {_f(s.ratio('before', 'floor'), '{:.2f}')} "
                f"| {_f(s.median_ms('before_kernel'))} | {_f(s.median_ms('floor_kernel'))} "
                f"| {_f(s.ratio('before_kernel', 'floor_kernel'), '{:.2f}')} "
                f"| - | - | - | - |")
    if daemons:
        lines += ["", "| domains | RSS after 1st sweep (MiB) | RSS after scrapes (MiB) "
                  "| RSS sweeping (MiB) | CPU per sweep (ms) | sweep (ms) "
                  "| /metrics median (ms) | /metrics p90 (ms) | /metrics size (KiB) |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for d in daemons:
            label = f"{d.domains:,}" + (" (before)" if d.before else "")
            if d.error:
                lines.append(f"| {label} | failed: {d.error} ||||||||")
                continue
            lines.append(
                f"| {label} | {d.rss_first_mib:.1f} | {d.rss_scraped_mib:.1f} "
                f"| {d.rss_busy_mib:.1f} | {d.cpu_per_sweep_ms:.0f} | {d.sweep_ms:.0f} "
                f"| {d.scrape_median_ms:.1f} | {d.scrape_p90_ms:.1f} "
                f"| {d.scrape_bytes / 1024:.0f} |")
    if leaks:
        marks = ", ".join(f"after {i:,}: {kib / 1024:.1f} MiB" for i, kib in leaks)
        lines += ["", f"RSS over sweeps ({leak_domains:,} domains, the daemon's sweep "
                  f"loop in-process, /metrics rendered every 10 sweeps): {marks}"]
    if startups:
        lines += ["", *startup.table(startups)]
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domains", default="1,100,1000,10000",
                   help="host sizes, comma-separated (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=7,
                   help="rounds per size, each one sweep of every kind; five times as "
                        "many up to 100 domains (default: %(default)s)")
    p.add_argument("--daemon-domains", default="1000,10000",
                   help="sizes for `xenprobe serve` RSS, CPU and /metrics ('' skips)")
    p.add_argument("--scrapes", type=int, default=20, help="timed /metrics requests")
    p.add_argument("--busy-sweeps", type=int, default=10,
                   help="sweeps of the daemon's CPU-per-sweep window (default: "
                        "%(default)s; the daemon sweeps at most once a second)")
    p.add_argument("--leak-domains", type=int, default=1000)
    p.add_argument("--leak-sweeps", type=int, default=1000,
                   help="sweeps for RSS over time (0 skips)")
    p.add_argument("--startups", type=int, default=7,
                   help="rounds of the start-up figures (--version, check --mock); 0: none")
    p.add_argument("--watch-rates", default="0,100000,50000,20000,10000,5000,2000",
                   help="calls a second the mock's privcmd is paced at while `xenprobe "
                        "watch` reads, 0: unpaced ('' skips; default: %(default)s)")
    p.add_argument("--watch-seconds", type=float, default=3.0,
                   help="seconds of load per watch rate (default: %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    p.add_argument("--before", metavar="TREE", type=Path,
                   help="another checkout (e.g. `git worktree add TREE main`, its native "
                        "modules built) whose sweep, daemon and start-up are measured in "
                        "the same run and printed beside this one's as (before)")
    args = p.parse_args(argv)

    pkgs = _packages()
    started = time.time()
    sizes: list[Sizes] = []
    daemons: list[daemon.DaemonFigures] = []
    leaks: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory(prefix="xenprobe-bench-") as t:
        tmp = Path(t)
        floor = _build_floor(tmp)
        for n in _ints(args.domains):
            rounds = args.rounds * (5 if n <= 100 else 1)
            sizes.append(measure_sizes(n, rounds, tmp, floor, pkgs, args.before))
            print(f"bench: {n} domains measured", file=sys.stderr)
        for n in _ints(args.daemon_domains):
            # As an operator starts it: `serve --mock FILE` puts itself on the mock host.
            path = scenario.write(n, tmp)
            env = {**os.environ, **(pkgs.env() if pkgs is not None else {})}
            daemons.append(daemon.measure(n, path, env, scrapes=args.scrapes,
                                          busy_sweeps=args.busy_sweeps))
            if args.before is not None:
                daemons.append(daemon.measure(
                    n, path, startup.tree_env(env, args.before), scrapes=args.scrapes,
                    busy_sweeps=args.busy_sweeps, before=True))
            print(f"bench: daemon at {n} domains measured", file=sys.stderr)
        if args.leak_sweeps > 0:
            leaks = leak(args.leak_domains, args.leak_sweeps, tmp, pkgs)
        startups = (startup.measure(args.startups, {**os.environ, **(
            pkgs.env() if pkgs is not None else {})}, args.before) if args.startups > 0 else [])
        watch_runs = watch_bench.measure(tmp / "watch", _ints(args.watch_rates),
                                         args.watch_seconds) if args.watch_rates else []
    notes = sorted({s.checks["note"] for s in sizes if "note" in s.checks})
    head = (f"xenprobe benchmark, mock host (native/mock), Xen 4.17 scenario "
            f"(tests/bench/scenario.py); libxenctrl "
            f"{pkgs.version if pkgs is not None else 'absent'}; {os.cpu_count()} CPUs, "
            f"{platform.python_implementation()} {platform.python_version()}; "
            f"{args.rounds} rounds ({args.rounds * 5} up to 100 domains); medians; "
            f"{time.time() - started:.0f} s; load average at the end "
            f"{os.getloadavg()[0]:.1f}"
            + (f"; (before): {args.before}" if args.before is not None else ""))
    print(head)
    for note in notes:
        print(f"note: {note}")
    print()
    print(table(sizes, daemons, leaks, args.leak_domains, startups))
    if watch_runs:
        print()
        print(watch_bench.table(watch_runs))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "header": head, "sizes": [asdict(s) for s in sizes],
            "daemon": [asdict(d) for d in daemons], "rss_over_sweeps": leaks,
            "startup": [asdict(f) for f in startups],
            "watch": [asdict(w) for w in watch_runs]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
