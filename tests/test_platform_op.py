# SPDX-License-Identifier: GPL-2.0-only
"""platform_op through the native transport: the struct, and a XENPF_resource_op's
entries behind its guest handle, are copied once, judged, issued from the copy and
handed back, on every path (ioctl, syscall, batch, multicall entry).

The refusals (XENPF_cpu_hotadd, MSR_WRITE entries, every other cmd) are in
test_readonly.py and test_allowlist.py; the races in test_race.py."""

from __future__ import annotations

import errno
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.mockhost import env_for, read_log
from xenprobe.mock.scenario import Scenario, load, parse
from xenprobe.xen.abi.platform import DOM0_VGA_CONSOLE_INFO
from xenprobe.xen.platform_requests import PlatformRequests
from xenprobe.xen.quantities import CENSUS, Quantity, offered

# Runs on the mock host (pv-dom0: Xen 4.20, census modelled).
ISSUE = r"""
import json, struct
from xenprobe.xen.transport import Buffer, Privcmd, args5
IV = 0x03000001
out = {}
with Privcmd() as dev, Buffer(4096) as b:
    entries = b.address + 2048
    def resource(msr, n=1):
        b.view[0:24] = struct.pack("<IIIIQ", 61, IV, n, 0, entries)
        for i in range(n):
            b.view[2048 + 24 * i:2072 + 24 * i] = struct.pack("<IIQQ", 0, 0, msr, 0)
    def entry(i=0):
        return list(struct.unpack("<iIQQ", bytes(b.view[2048 + 24 * i:2072 + 24 * i])))
    def handle():
        return struct.unpack("<Q", bytes(b.view[16:24]))[0]
    for path, issue in (("ioctl", lambda a: dev.ioctl(7, a)),
                        ("syscall", lambda a: dev.syscall(7, a)),
                        ("many", lambda a: dev.many([(17, args5(0)), (7, a)], syscall=False)[1]),
                        ("multicall", lambda a: dev.multicall([(17, args5(0)), (7, a)])[1])):
        resource(0x10, 3)
        r = issue(args5(b.address))
        out[f"{path} tsc"] = [r.value, r.errno, [entry(i) for i in range(3)], handle() == entries]
        resource(0x1B)  # MSR_IA32_APICBASE: not on Xen's read whitelist
        r = issue(args5(b.address))
        out[f"{path} apicbase"] = [r.value, r.errno, entry()]
        b.view[0:136] = struct.pack("<II", 64, IV) + b"\xAA" * 128
        r = issue(args5(b.address))
        out[f"{path} console"] = [r.value, r.errno, bytes(b.view[8:48]).hex(),
                                  bytes(b.view[48:136]).hex()]
print(json.dumps(out))
"""


def run(tmp_path: Path, scenario: Scenario) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    log = tmp_path / "platform.jsonl"
    env = env_for(scenario, tmp_path, log)
    p = subprocess.run([sys.executable, "-c", ISSUE], env=env, text=True,
                       capture_output=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), read_log(log)


def test_allowed_platform_ops_are_issued_from_the_copy_and_handed_back(
        tmp_path: Path) -> None:
    out, log = run(tmp_path, load("pv-dom0"))
    for path in ("ioctl", "syscall", "many", "multicall"):
        nr_done, err, entries, same_handle = out[f"{path} tsc"]
        assert (nr_done, err) == (3, 0), (path, out)
        # Xen's values reached the caller's own entries; its struct keeps its own handle.
        assert all(e[0] == 0 and e[2] == 0x10 and e[3] > 0 for e in entries), (path, entries)
        assert same_handle, path
        # A refused MSR: nothing done, entry 0's -EPERM handed back (u.ret).
        assert out[f"{path} apicbase"] == [0, 0, [-1, 0, 0x1B, 0]], (path, out)
        # get_dom0_console: sizeof(dom0_vga_console_info) and the info (the mock's is all
        # zero) over the first 40 bytes of the union; the rest untouched.
        size, err, info, rest = out[f"{path} console"]
        assert (size, err) == (40, 0), (path, out)
        assert info == "00" * 40 and rest == "aa" * 88, (path, out)
    # The device saw only the copies: resource_op entries all MSR_READ, and never the
    # caller's entries address (the handle was rewritten to the private copy).
    pf = [e for e in log if e.get("op") == 7]
    assert len(pf) == 4 * 3, pf
    assert {tuple(e["resource_cmds"]) for e in pf if e["subop"] == 61} == {(0, 0, 0), (0,)}
    assert {e["subop"] for e in pf} == {61, 64}


def test_a_release_before_4_18_has_no_dom0_console(tmp_path: Path) -> None:
    """Xen before 4.18 answers the unknown cmd with the switch's default, -ENOSYS
    (x86/platform_hypercall.c@RELEASE-4.13.0:811-813, @RELEASE-4.17.0:842-844)."""
    text = (Path(__file__).resolve().parents[1] / "xenprobe" / "mock" / "scenarios"
            / "pv-dom0.toml").read_text().replace('release = "4.20"', 'release = "4.17"')
    out, _ = run(tmp_path, parse(text, str(tmp_path / "pv-dom0-417.toml"), "pv-dom0-417"))
    for path_name in ("ioctl", "syscall"):
        assert out[f"{path_name} console"][:2] == [-1, 38], out
    assert out["multicall console"][:2] == [-38, 38], out
    assert out["ioctl tsc"][0] == 3, out


# struct dom0_vga_console_info as xen/include/public/xen.h@RELEASE-4.20.0:915-959 has it,
# compiled as Xen compiles it (the latest interface version): gcc says its size and
# offsets, which xenprobe/xen/abi/platform.py's layout (the reference of dom0_console_size)
# must equal.
CONSOLE_INFO_C = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#define __XEN_INTERFACE_VERSION__ 0x00040e00
typedef struct dom0_vga_console_info {
    uint8_t video_type;
    union {
        struct {
            uint16_t font_height;
            uint16_t cursor_x, cursor_y;
            uint16_t rows, columns;
        } text_mode_3;
        struct {
            uint16_t width, height;
            uint16_t bytes_per_line;
            uint16_t bits_per_pixel;
            uint32_t lfb_base;
            uint32_t lfb_size;
            uint8_t  red_pos, red_size;
            uint8_t  green_pos, green_size;
            uint8_t  blue_pos, blue_size;
            uint8_t  rsvd_pos, rsvd_size;
#if __XEN_INTERFACE_VERSION__ >= 0x00030206
            uint32_t gbl_caps;
            uint16_t mode_attrs;
            uint16_t pad;
#endif
#if __XEN_INTERFACE_VERSION__ >= 0x00040d00
            uint32_t ext_lfb_base;
#endif
        } vesa_lfb;
    } u;
} dom0_vga_console_info_t;
#define AT(f) printf("%s %zu\n", #f, offsetof(dom0_vga_console_info_t, u.vesa_lfb.f))
int main(void)
{
    printf("size %zu\n", sizeof(dom0_vga_console_info_t));
    printf("video_type %zu\n", offsetof(dom0_vga_console_info_t, video_type));
    AT(width); AT(height); AT(bytes_per_line); AT(bits_per_pixel); AT(lfb_base);
    AT(lfb_size); AT(red_pos); AT(red_size); AT(green_pos); AT(green_size); AT(blue_pos);
    AT(blue_size); AT(rsvd_pos); AT(rsvd_size); AT(gbl_caps); AT(mode_attrs); AT(pad);
    AT(ext_lfb_base);
    return 0;
}
"""


def test_the_console_info_layout_is_what_gcc_makes_of_xens_struct(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    assert gcc is not None, "gcc is needed"
    src, exe = tmp_path / "info.c", tmp_path / "info"
    src.write_text(CONSOLE_INFO_C)
    subprocess.run([gcc, "-std=gnu11", "-o", str(exe), str(src)], check=True, timeout=60)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=10, check=True)
    got = dict(line.split() for line in out.stdout.splitlines())
    assert int(got.pop("size")) == DOM0_VGA_CONSOLE_INFO.size == 40
    assert {f.name: f.offset for f in DOM0_VGA_CONSOLE_INFO.fields} == \
        {k: int(v) for k, v in got.items()}


def test_the_requests_are_written_afresh() -> None:
    """Xen writes into resource_op's entry (the value read; a failed entry's -errno over
    its cmd): reset() puts back what is asked, so the next read is not refused."""
    requests = PlatformRequests()
    try:
        at = requests.address(Quantity.RESOURCE_OP_DONE)
        entries = struct.unpack_from("<Q", requests.buffer.view, at - requests.buffer.address
                                     + 16)[0]
        off = entries - requests.buffer.address
        fresh = bytes(requests.buffer.view[0:requests.buffer.size])
        requests.buffer.view[off:off + 4] = struct.pack("<i", -1)  # u.ret = -EPERM
        requests.reset()
        assert bytes(requests.buffer.view[0:requests.buffer.size]) == fresh
        assert struct.unpack_from("<IIQ", requests.buffer.view, off) == (0, 0, 0x10)
    finally:
        requests.close()


def test_absent_answers_of_the_platform_op_quantities() -> None:
    """-ENOSYS for every census quantity; -EPERM (XSM) for both platform_op ones, and
    -ENODEV (4.22 without CONFIG_VIDEO) for get_dom0_console: not offered, not findings."""
    base = {q: 1 for q in CENSUS}
    for q, err, gone in ((Quantity.DOM0_CONSOLE_SIZE, errno.ENODEV, True),
                         (Quantity.DOM0_CONSOLE_SIZE, errno.EPERM, True),
                         (Quantity.RESOURCE_OP_DONE, errno.EPERM, True),
                         (Quantity.RESOURCE_OP_DONE, errno.ENODEV, False),
                         (Quantity.HYPFS_VERSION, errno.EPERM, False),
                         (Quantity.RESOURCE_OP_DONE, errno.ENOSYS, True)):
        raw = [(-err if p is q else v) for p, v in base.items()]
        assert (q not in offered(raw)) is gone, (q, err)
