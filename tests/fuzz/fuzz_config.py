# SPDX-License-Identifier: GPL-2.0-only
"""Fuzz target: the daemon's configuration, as a file (config.load) and as one flag
(config.build with an override). Either a Config or ConfigError; anything else is a
crash. The first byte picks the mode and, for a flag, the key.

    python tests/fuzz/fuzz_config.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from xenprobe.exporter import config
    from xenprobe.support.errors import ConfigError

WORK = Path(tempfile.mkdtemp(prefix="xenprobe-fuzz-config-"))
FILE = WORK / "xenprobe.toml"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    try:
        if mode % 2 == 0:
            FILE.write_bytes(rest)
            config.load(FILE, explicit=True)
        else:
            key = config.KEYS[(mode >> 1) % len(config.KEYS)]
            config.build(None, None, {key: rest.decode("utf-8", "replace")})
    except ConfigError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
