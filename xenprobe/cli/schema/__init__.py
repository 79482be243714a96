# SPDX-License-Identifier: GPL-2.0-only
"""JSON Schemas that ship with xenprobe (report.schema.json: `check --json`)."""
