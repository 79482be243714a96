# SPDX-License-Identifier: GPL-2.0-only
"""xenprobe: finds where Xen hypercall results lose bits on their way to user space."""

__version__ = "0.1.0"
