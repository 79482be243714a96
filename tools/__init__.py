# SPDX-License-Identifier: GPL-2.0-only
"""Developer tools: the Debian build, the man page generator, the test runner."""
