# SPDX-License-Identifier: GPL-2.0-only
"""The mock host's Python side: scenarios, their compiler, the launcher."""
