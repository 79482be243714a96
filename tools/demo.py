# SPDX-License-Identifier: GPL-2.0-only
"""The whole int-path story on the mock host, from a source checkout on any Debian machine:

    .venv/bin/python tools/demo.py [check options, e.g. --json]

`xenprobe check --mock int-path` alone has no libxc column (a machine that is no Debian 11
dom0 has no libxenctrl.so.4.14) and no privcmd consumer (nothing else on the machine
opens the mock host's device). This adds both, for real: it fetches Debian 11's
libxenctrl 4.14 (tests/xenpkgs.py: `apt-get download` from bullseye through a private
apt state, unpacked below ~/.cache/xenprobe, nothing installed), starts one process that
maps that library and holds the mock host's /dev/xen/privcmd open, as xl or qemu would
on a Debian 11 dom0, and runs `xenprobe check --mock int-path` with the library on the
loader path. The libxc column is then what that library really returns, and the consumer
scan really finds the process. The process is stopped when the check ends; the exit
code is the check's (2 when the library cannot be fetched).

Run with the installed xenprobe: the checkout's root goes last on sys.path, only for
tests.xenpkgs, so the package that `pip install .` built (with its mock library) is the
one imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))

from tests import xenpkgs
from xenprobe.mock import launcher
from xenprobe.mock.scenario import load

SCENARIO = "int-path"
# What a libxenctrl consumer does first: the library mapped, privcmd opened (xencall's
# osdep_xencall_open opens /dev/xen/privcmd, tools/libs/call/linux.c@RELEASE-4.14.0).
CONSUMER = ("import ctypes, os, sys; ctypes.CDLL(sys.argv[2]); "
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CLOEXEC); "
            "print('ready', flush=True); sys.stdin.read()")


def main(argv: list[str]) -> int:
    try:
        lib = xenpkgs.ensure(release="4.14")
    except xenpkgs.PackageError as e:
        print(f"demo: cannot fetch Debian 11's libxenctrl 4.14: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="xenprobe-demo-") as tmp:
        scenario = load(SCENARIO)
        compiled = launcher.write_compiled(scenario, Path(tmp) / f"{SCENARIO}.compiled")
        env = dict(os.environ)
        env.update(launcher.environment(scenario, str(compiled)))  # one mock host id
        env.update(lib.env())
        env.pop("XENPROBE_LIBXENCTRL", None)
        consumer = subprocess.Popen(
            [sys.executable, "-c", CONSUMER, "/dev/xen/privcmd", str(lib.libxenctrl)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert consumer.stdout is not None
            if consumer.stdout.readline() != "ready\n":
                print("demo: the consumer process did not start", file=sys.stderr)
                return 2
            print(f"demo: process {consumer.pid} maps {lib.libxenctrl} and holds the "
                  "mock host's privcmd", file=sys.stderr, flush=True)
            return subprocess.run([sys.executable, "-P", "-m", "xenprobe", "check",
                                   "--mock", SCENARIO, *argv], env=env,
                                  check=False).returncode
        finally:
            consumer.kill()
            consumer.communicate()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
