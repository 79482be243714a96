# SPDX-License-Identifier: GPL-2.0-only
"""This dom0 and its hypervisor: the ABI, what is probed, privcmd, the host."""
