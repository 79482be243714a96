# SPDX-License-Identifier: GPL-2.0-only
"""platform_op's structs as xenprobe writes and reads them (xen/include/public/platform.h
and xen.h; unchanged RELEASE-4.13.0 .. RELEASE-4.22.0 except where said), offsets as gdb
`ptype /o` shows them on x86-64."""

from __future__ import annotations

from xenprobe.xen.abi import census_ops as co
from xenprobe.xen.abi.layouts import Field, Layout

# struct xen_platform_op: cmd, interface_version, then a union padded to 128 bytes
# (platform.h@RELEASE-4.13.0:620-648, @RELEASE-4.22.0:670-700).
PLATFORM_OP = Layout("xen_platform_op", co.XENPF_PLATFORM_OP_SIZE, (
    Field("cmd", 0, "I"),
    Field("interface_version", 4, "I"),
    # u.resource_op (struct xenpf_resource_op, platform.h@RELEASE-4.17.0:582-586)
    Field("nr_entries", 8, "I"),
    Field("cpu", 12, "I"),
    Field("entries", 16, "Q"),         # XEN_GUEST_HANDLE: a pointer on x86-64
))

# struct xenpf_resource_entry (platform.h@RELEASE-4.17.0:570-578).
RESOURCE_ENTRY = Layout("xenpf_resource_entry", co.XENPF_RESOURCE_ENTRY_SIZE, (
    Field("cmd", 0, "I"),              # union { uint32_t cmd; int32_t ret; } u
    Field("rsvd", 4, "I"),
    Field("idx", 8, "Q"),
    Field("val", 16, "Q"),
))

# struct dom0_vga_console_info as Xen itself compiles it (__XEN_INTERFACE_VERSION__ is
# the latest inside Xen, so both #if'd tails are in): xen.h@RELEASE-4.18.0 and
# @RELEASE-4.22.0 (dom0_vga_console_info, :915-959 at 4.20). video_type, then the union
# at offset 4 (its widest member, vesa_lfb, has uint32 fields); vesa_lfb is 36 bytes.
# XENPF_get_dom0_console returns sizeof() of it (x86/platform_hypercall.c@4.18:879).
DOM0_VGA_CONSOLE_INFO = Layout("dom0_vga_console_info", 40, (
    Field("video_type", 0, "B"),
    Field("width", 4, "H"),
    Field("height", 6, "H"),
    Field("bytes_per_line", 8, "H"),
    Field("bits_per_pixel", 10, "H"),
    Field("lfb_base", 12, "I"),
    Field("lfb_size", 16, "I"),
    Field("red_pos", 20, "B"), Field("red_size", 21, "B"),
    Field("green_pos", 22, "B"), Field("green_size", 23, "B"),
    Field("blue_pos", 24, "B"), Field("blue_size", 25, "B"),
    Field("rsvd_pos", 26, "B"), Field("rsvd_size", 27, "B"),
    Field("gbl_caps", 28, "I"),        # __XEN_INTERFACE_VERSION__ >= 0x00030206
    Field("mode_attrs", 32, "H"),
    Field("pad", 34, "H"),
    Field("ext_lfb_base", 36, "I"),    # __XEN_INTERFACE_VERSION__ >= 0x00040d00
))
