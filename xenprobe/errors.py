"""Errors a user can meet, each with the exit code the CLI documents."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0            # every layer agrees (no raw layer: none judged disagrees)
    MISMATCH = 1      # a truncation class was found
    USAGE = 2         # usage or configuration error
    CANNOT_PROBE = 3  # no device, not root, not dom0, hypervisor refused, unknown release


class XenprobeError(Exception):
    """An error with a message meant for the operator, and an exit code."""

    exit_code = ExitCode.CANNOT_PROBE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(XenprobeError):
    exit_code = ExitCode.USAGE


class ConfigError(XenprobeError):
    exit_code = ExitCode.USAGE


class ScenarioError(XenprobeError):
    exit_code = ExitCode.USAGE


class CannotProbe(XenprobeError):
    exit_code = ExitCode.CANNOT_PROBE


class Refused(XenprobeError):
    """The native allow-list refused a request: a bug in xenprobe, never the host's fault."""

    exit_code = ExitCode.CANNOT_PROBE
