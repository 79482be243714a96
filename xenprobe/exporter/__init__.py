# SPDX-License-Identifier: GPL-2.0-only
"""`xenprobe serve`: a background sweep loop and a Prometheus exporter serving its results.

One idea per module: config (TOML + flags, validated), daemon (threads and signals),
state (what the sweep thread publishes), notify (systemd sd_notify), watching
(`serve --watch`: the watch in a thread, its findings as counters); metrics/ (the
families' table, the pure sweep -> families mapping, the prometheus_client collector, the
textfile for node_exporter), http/ (the HTTP(S) server and what one request gets), web/
(the exporter-toolkit web configuration: the file, TLS, basic auth, reloading).
"""
