# SPDX-License-Identifier: GPL-2.0-only
"""`xenprobe serve`: a background sweep loop and a Prometheus exporter serving its results.

Modules, one idea each: config (TOML + flags, validated), metrics (names and the pure
sweep -> metric families mapping), state (what the sweep thread publishes), collector
(the prometheus_client Collector reading that state), web (exporter-toolkit web
configuration: the file, TLS, basic auth, reloading), server (HTTP(S)), notify (systemd sd_notify),
textfile (atomic writes for node_exporter's textfile collector), daemon (threads and
signals).
"""
