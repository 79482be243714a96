# SPDX-License-Identifier: GPL-2.0-only
"""The web config in force, re-read when its file (or a file it names) changes.

Like exporter-toolkit, so certificates can be rotated without a restart; a change that
does not parse leaves the previous configuration in force (as Prometheus does with a
bad reload) and says so.
"""

from __future__ import annotations

import threading
from pathlib import Path

import structlog

from xenprobe.exporter.web.config import WebConfig, parse
from xenprobe.support.errors import ConfigError
from xenprobe.support.files import signature

log = structlog.get_logger("xenprobe.exporter.web.watcher")


class Watcher:
    """The web config in force, re-read when its file or a file it names changes.

    A change that does not parse is logged and leaves the previous configuration in
    force (as Prometheus does with a bad reload); `last_ok` says so for the metrics.
    """

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self.path = path
        self.config = parse(path) if path else WebConfig()
        self._seen = signature(self.config.files)
        self.last_ok = True

    def replace(self, path: Path | None, config: WebConfig) -> None:
        with self._lock:
            self.path, self.config = path, config
            self._seen = signature(config.files)
            self.last_ok = True

    def current(self) -> WebConfig:
        with self._lock:
            if self.path is None:
                return self.config
            now = signature(self.config.files)
            if now == self._seen:
                return self.config
            self._seen = now
            try:
                self.config = parse(self.path)
                self._seen = signature(self.config.files)
                self.last_ok = True
                log.info("web_config_reloaded", path=str(self.path))
            except ConfigError as e:
                self.last_ok = False
                log.error("web_config_reload_failed", error=e.message,
                          keeping="the previous web configuration")
            return self.config
