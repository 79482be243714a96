# SPDX-License-Identifier: GPL-2.0-only
"""Each way a hypercall's result reaches user space, one Layer each."""
