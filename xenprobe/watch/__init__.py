# SPDX-License-Identifier: GPL-2.0-only
"""`xenprobe watch`: every privcmd hypercall of every process, the hypervisor's result
beside the value the process received, from the kernel's own tracing. It issues no
hypercall. docs/watch.md says how, and what it cannot see.
"""
