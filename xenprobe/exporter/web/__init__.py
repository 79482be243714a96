# SPDX-License-Identifier: GPL-2.0-only
"""The exporter-toolkit web configuration: the file (config), its TLS context (tls),
basic auth (auth) and reloading it when it changes (watcher)."""
