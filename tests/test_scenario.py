# SPDX-License-Identifier: GPL-2.0-only
"""Scenario files: every shipped one loads; bad ones are refused with the key named."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from xenprobe.mock.scenario import compile_text, load, parse, shipped
from xenprobe.support.errors import ScenarioError
from xenprobe.xen.abi.releases import by_name

MINIMAL = """
[xen]
release = "4.17"
[host]
memory = "16 GiB"
[[domain]]
id = 0
memory = "1 GiB"
"""


def test_shipped_scenarios_load_and_compile() -> None:
    names = shipped()
    assert {"healthy", "xen-default", "large-memory", "huge-address-space",
            "hotplug-below-ram", "compat-clamp", "balloon", "domu"} <= set(names)
    # Nothing that does not exist: Linux's VFS holds every ioctl result in an int (no
    # driver passes 64 bits through the syscall), and x86 Xen is 64-bit only since 4.3.
    assert not {"xenlinux-driver", "hypervisor-32bit"} & set(names)
    for name in names:  # every shipped scenario says which sources it models
        text = resources.files("xenprobe.mock.scenarios").joinpath(f"{name}.toml").read_text()
        assert re.search(r"^#.*@RELEASE-4\.\d+\.\d+:\d+", text, re.M), name
    for name in names:
        s = load(name)
        text = compile_text(s)
        assert f"xen {s.release.major} {s.release.minor}" in text
        assert s.total_pages <= s.max_page


def test_compiled_records_use_the_release_layout() -> None:
    s = parse(MINIMAL, "t.toml")
    lines = compile_text(s).splitlines()
    physinfo = next(line.split()[1] for line in lines if line.startswith("physinfo "))
    decoded = s.release.physinfo.decode(bytes.fromhex(physinfo))
    assert decoded["total_pages"] == 16 << 18
    assert decoded["max_mfn"] == (16 << 18) - 1
    domain = next(line.split() for line in lines if line.startswith("domain "))
    record = s.release.getdomaininfo.decode(bytes.fromhex(domain[5]))
    assert (record["domain"], record["tot_pages"]) == (0, 1 << 18)
    assert len(bytes.fromhex(domain[5])) == by_name("4.17").getdomaininfo.size


@pytest.mark.parametrize(("text", "message"), [
    ("[xen\n", "not valid TOML"),
    ("", "xen.release: is required"),
    ('[xen]\nrelease = "4.9"\n[host]\nmemory="1 GiB"\n[[domain]]\nid=0\nmemory="1 GiB"',
     "xen.release: Xen 4.9 is not in xenprobe's ABI tables"),
    (MINIMAL.replace('memory = "16 GiB"', 'memory = "16 GB"'),
     "host.memory: expected a size like '16 GiB'"),
    (MINIMAL.replace('memory = "16 GiB"', 'memory = "16 GiB"\ncolour = 1'),
     "host.colour: is not a known key"),
    (MINIMAL.replace("id = 0", "id = 0x7ff0"), "domain[0].id: must be below 0x7ff0"),
    (MINIMAL.replace("id = 0", 'id = "zero"'), "domain[0].id: expected an integer"),
    (MINIMAL + "[linux]\ndriver = \"bsd\"\n", "linux.driver: expected one of pvops"),
    (MINIMAL + "[linux]\ndriver = \"xenlinux\"\n",
     "linux.driver: no Linux privcmd driver passes 64 bits"),
    (MINIMAL + "[hypervisor]\nbits = 32\n", "hypervisor.bits: x86 Xen is 64-bit only"),
    (MINIMAL.replace('memory = "16 GiB"', 'memory = "16 GiB"\nmax_page = 5'),
     "host.max_page: needs total_pages <= max_page"),
    (MINIMAL + "[[fault]]\nop = \"memory_op\"\nerrno = \"EWHAT\"\n",
     "fault[0].errno: expected one of"),
    (MINIMAL + "[[domain]]\nid = 0\nmemory = \"1 GiB\"\n", "domain ids must be unique"),
    # The census model's vCPUs and kexec images.
    (MINIMAL.replace("id = 0", "id = 0\nvcpus = 4\noffline_vcpus = [0]"),
     "domain[0].offline_vcpus: expected distinct vCPU ids from 1 to vcpus-1"),
    (MINIMAL.replace("id = 0", "id = 0\nvcpus = 4\noffline_vcpus = [4]"),
     "domain[0].offline_vcpus: expected distinct vCPU ids"),
    (MINIMAL.replace("id = 0", "id = 0\nvcpus = 4\noffline_vcpus = [true]"),
     "domain[0].offline_vcpus: expected distinct vCPU ids"),
    (MINIMAL.replace("id = 0", "id = 0\nvcpus = 4\nflap_vcpu = [2, 0]"),
     "domain[0].flap_vcpu: expected [VCPU, EVERY]"),
    (MINIMAL + "[hypervisor]\ncensus = true\nkexec_loaded = [\"crash\", \"crash\"]\n",
     'hypervisor.kexec_loaded: expected a list of "default" and "crash"'),
    (MINIMAL.replace("id = 0", "id = 0\nvcpus = 4097") + "[hypervisor]\ncensus = true\n",
     "domain[0].vcpus: the census model gives the caller at most 4096 vCPUs"),
])
def test_bad_scenarios_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=None) as e:
        parse(text, "bad.toml")
    assert message in e.value.message
    assert e.value.message.startswith("scenario bad.toml: ")


def test_unknown_scenario_name() -> None:
    with pytest.raises(ScenarioError, match="no scenario named 'nope'"):
        load("nope")
