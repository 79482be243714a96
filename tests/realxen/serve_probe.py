# SPDX-License-Identifier: GPL-2.0-only
"""Run `xenprobe serve` on loopback inside dom0 for a few sweeps and fetch /metrics.

Runs with the system python3 (the client is plain urllib); the server is started with
the checkout's interpreter given by --python.  Prints one JSON object (and writes it to
-o): {"ok", "argv", "sweeps", "up", "fetches", "elapsed_s", "error", "server_stderr"};
the last /metrics text goes to --metrics.

    python3 serve_probe.py --python .venv/bin/python [--pycache-prefix DIR] \\
        --port 9723 --sweeps 3 --metrics metrics.txt -o serve.json
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up() -> None:
    """The test dom0 configures no network: bring `lo` up (ifreq: name[16], flags u16)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))
        flags = struct.unpack_from("16sH", got)[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def sample(text: str, name: str) -> float | None:
    """The value of an unlabelled sample `name` in Prometheus text format."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == name:
            return float(parts[1])
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", required=True)
    ap.add_argument("--pycache-prefix", help="PYTHONPYCACHEPREFIX for the server")
    ap.add_argument("--port", type=int, default=9723)
    ap.add_argument("--sweeps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=400)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("-o", "--output")
    args = ap.parse_args(argv)

    out: dict[str, Any] = {"ok": False, "sweeps": None, "up": None, "fetches": 0,
                           "error": None}
    url = f"http://127.0.0.1:{args.port}/metrics"
    argv_server = [args.python, "-m", "xenprobe", "serve",
                   "--listen-address", f"127.0.0.1:{args.port}", "--interval", "1"]
    out["argv"] = argv_server
    t0 = time.monotonic()
    text = ""
    try:
        loopback_up()
    except OSError as exc:
        out["error"] = f"cannot bring up lo: {exc}"
    proc = None
    if out["error"] is None:
        env = dict(os.environ)
        if args.pycache_prefix:
            env["PYTHONPYCACHEPREFIX"] = args.pycache_prefix
        proc = subprocess.Popen(argv_server, stdin=subprocess.DEVNULL, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while time.monotonic() - t0 < args.timeout:
                if proc.poll() is not None:
                    out["error"] = f"xenprobe serve exited with {proc.returncode}"
                    break
                try:
                    with urllib.request.urlopen(url, timeout=10) as resp:
                        text = resp.read().decode()
                        out["status"] = resp.status
                        out["content_type"] = resp.headers.get("Content-Type")
                    out["fetches"] += 1
                except (urllib.error.URLError, OSError):
                    time.sleep(0.5)
                    continue
                sweeps = sample(text, "xenprobe_sweeps_total")
                out["sweeps"], out["up"] = sweeps, sample(text, "xenprobe_up")
                if sweeps is not None and sweeps >= args.sweeps:
                    out["ok"] = True
                    break
                time.sleep(0.5)
            else:
                out["error"] = f"no {args.sweeps} sweeps within {args.timeout}s"
        finally:
            proc.terminate()  # the server this script started, by its own handle
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            out["server_stderr"] = err.decode(errors="replace")[-4000:]
            out["server_returncode"] = proc.returncode
    out["elapsed_s"] = round(time.monotonic() - t0, 2)
    with open(args.metrics, "w") as fh:
        fh.write(text)
    data = json.dumps(out, indent=2)
    print(data)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(data + "\n")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
