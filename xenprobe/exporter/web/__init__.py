# SPDX-License-Identifier: GPL-2.0-only
"""The exporter-toolkit web configuration."""
