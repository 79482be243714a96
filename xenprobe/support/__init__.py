# SPDX-License-Identifier: GPL-2.0-only
"""Small utilities every floor uses: errors, files, keys, logs, revision, streams."""
