# SPDX-License-Identifier: GPL-2.0-only
"""Xen's hypercall ABI as data: numbers, struct layouts and per-release interface versions.

Read these modules like the Xen public headers they describe; nothing else in xenprobe
spells a hypercall number or a struct offset.
"""
