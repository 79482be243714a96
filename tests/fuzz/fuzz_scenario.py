# SPDX-License-Identifier: GPL-2.0-only
"""Fuzz target: mock host scenario files (xenprobe.mock.scenario.parse, then compile_text).

Any TOML text either parses into a Scenario that compiles for the mock, or raises
ScenarioError naming the problem; anything else is a crash.

Two ways to read an input, by its first byte: even, the rest is the file's text (byte
mutations of the corpus); odd, the rest drives a FuzzedDataProvider that writes a
scenario from the known tables and keys with values of any TOML type (integers across
the whole 64-bit range, floats, strings, booleans, arrays, inline tables), which reaches
the checks behind valid syntax far more often than byte mutations do.

    python tests/fuzz/fuzz_scenario.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import atheris

with atheris.instrument_imports():
    from xenprobe.mock.scenario import compile_text, parse
    from xenprobe.support.errors import ScenarioError

TABLES = {
    "xen": ["release", "reports_version", "extraversion", "capabilities",
            "sysctl_interface", "domctl_interface"],
    "host": ["memory", "total_pages", "max_page", "max_mfn", "free_pages", "nr_cpus",
             "cpu_khz"],
    "linux": ["driver", "role", "device", "sys_hypervisor", "self_domid"],
    "hypervisor": ["bits", "compat_clamp", "hang"],
}
DOMAIN = ["id", "memory", "tot_pages", "max_memory", "max_pages", "max_gpfn", "hvm", "vcpus",
          "balloon", "vanish_after"]
BALLOON = ["step", "every", "min", "max"]
FAULT = ["op", "subop", "errno", "count", "kind", "layer", "via", "delay_ms"]
WORDS = ["4.17", "4.13", "4.22", "4.9", "16 GiB", "1 TiB", "0.5 KiB", "pvops", "xenlinux",
         "dom0", "domU", "present", "absent", "eacces", "memory_op", "sysctl", "domctl",
         "multicall", "xen_version", "any", "EINTR", "EAGAIN", "EPERM", "errno", "delay",
         "garbage", "short", "driver", "hypervisor", "ioctl", "syscall", ".7", ""]


def value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    kind = fdp.ConsumeIntInRange(0, 7 if depth < 2 else 5)
    if kind == 0:
        return fdp.ConsumeIntInRange(-(1 << 63), (1 << 63) - 1)
    if kind == 1:
        return fdp.ConsumeIntInRange(-2, 5000)
    if kind == 2:
        return fdp.PickValueInList(WORDS)
    if kind == 3:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    if kind == 4:
        return fdp.ConsumeBool()
    if kind == 5:
        return fdp.ConsumeRegularFloat()
    if kind == 6:
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    keys = BALLOON + FAULT[:2]
    return {fdp.PickValueInList(keys): value(fdp, depth + 1)
            for _ in range(fdp.ConsumeIntInRange(0, 4))}


def toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(toml(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {toml(x)}" for k, x in v.items()) + "}"


def mutated(fdp: atheris.FuzzedDataProvider, base: dict[str, Any], keys: list[str]
            ) -> dict[str, Any]:
    """A table from a valid one: each known key kept, dropped, or given any value."""
    out = dict(base)
    for k in keys:
        choice = fdp.ConsumeIntInRange(0, 7)
        if choice == 0:
            out.pop(k, None)
        elif choice == 1:
            out[k] = value(fdp)
    return out


def render(name: str, t: dict[str, Any], array: bool = False) -> str:
    head = f"[[{name}]]" if array else f"[{name}]"
    return head + "\n" + "".join(f"{k} = {toml(v)}\n" for k, v in t.items())


def structured(data: bytes) -> str:
    """A valid scenario (the healthy host's bones), then each key kept, dropped or
    replaced: most inputs get past the required keys to the checks behind them."""
    fdp = atheris.FuzzedDataProvider(data)
    bones = {"xen": {"release": "4.17"}, "host": {"memory": "16 GiB"}, "linux": {},
             "hypervisor": {}}
    text = "".join(render(name, mutated(fdp, bones[name], keys))
                   for name, keys in TABLES.items())
    for domid in range(fdp.ConsumeIntInRange(0, 4)):
        text += render("domain", mutated(fdp, {"id": domid, "memory": "1 GiB"}, DOMAIN),
                       array=True)
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        text += render("fault", mutated(fdp, {"op": "memory_op", "errno": "EINTR"},
                                        FAULT), array=True)
    return text


def text_of(data: bytes) -> str | None:
    """The scenario text an input stands for (None: not UTF-8, which the loader rejects
    before parse, tests/test_cli.py)."""
    if not data:
        return None
    if data[0] % 2:
        return structured(data[1:])
    try:
        return data[1:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_one_input(data: bytes) -> None:
    text = text_of(data)
    if text is None:
        return
    try:
        s = parse(text, "fuzz.toml", "fuzz")
    except ScenarioError:
        return
    compile_text(s)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
