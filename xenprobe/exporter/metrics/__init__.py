# SPDX-License-Identifier: GPL-2.0-only
"""The Prometheus families, their collector and the textfile."""
