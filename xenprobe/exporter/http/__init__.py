# SPDX-License-Identifier: GPL-2.0-only
"""The HTTP front: the server and request handling."""
