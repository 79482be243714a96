# SPDX-License-Identifier: GPL-2.0-only
"""Fuzz target: the exporter-toolkit web config file (webconfig.parse). Either a
WebConfig or ConfigError naming the key; anything else is a crash, and so is the
catch-all ConfigError ("cannot use it: ...") that parse gives for input its checks did
not foresee: the daemon survives it, but each one is a check to write. A certificate and key
are made next to the file at start (openssl, if present), so TLS sections that name
server.pem / server.key get as far as loading them.

    python tests/fuzz/fuzz_webconfig.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from xenprobe.exporter.web import config as webconfig
    from xenprobe.support.errors import ConfigError

WORK = Path(tempfile.mkdtemp(prefix="xenprobe-fuzz-web-"))
FILE = WORK / "web.yml"


def _certificates() -> None:
    if shutil.which("openssl") is None:
        return
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key",
                    "-out", "server.pem", "-days", "2", "-subj", "/CN=fuzz"],
                   cwd=WORK, capture_output=True, check=False)
    shutil.copy(WORK / "server.pem", WORK / "ca.pem")


def test_one_input(data: bytes) -> None:
    FILE.write_bytes(data)
    try:
        webconfig.parse(FILE)
    except ConfigError as e:
        if webconfig.UNFORESEEN in e.message:
            raise AssertionError(f"an input the checks did not foresee: {e.message}"
                                 ) from None


if __name__ == "__main__":
    _certificates()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
