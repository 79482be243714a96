# SPDX-License-Identifier: GPL-2.0-only
"""The front door: argument parsing, dispatch, the one-shot check's report."""
