# SPDX-License-Identifier: GPL-2.0-only
"""Errors a user can meet, each with the exit code the CLI documents.

EXIT_CODES is the one statement of what each code means: `--help` prints it (as the
parsers' epilog), and README and the man page are tested against that output.
"""

from __future__ import annotations

import enum
import textwrap


class ExitCode(enum.IntEnum):
    OK = 0             # every layer agrees (no raw layer: none judged disagrees)
    MISMATCH = 1       # a truncation class was found
    USAGE = 2          # usage or configuration error
    CANNOT_PROBE = 3   # no device, not root, not dom0, hypervisor refused, unknown release
    INTERNAL = 4       # a bug in xenprobe
    NOT_DELIVERED = 5  # no mismatch found, but the report did not reach its reader


EXIT_CODES: tuple[tuple[ExitCode, str], ...] = (
    (ExitCode.OK, "every layer agrees (drift is not a disagreement; without the raw "
                  "layer: no mismatch among the readings a reference could judge), and "
                  "the report was delivered; for serve: stopped cleanly (SIGTERM, "
                  "SIGINT); for watch: no damaged call seen"),
    (ExitCode.MISMATCH, "a truncation class was found (truncated, sign_flipped, clamped, "
                        "aliased_errno, lost_error, changed_error, other); also when the "
                        "report could not be delivered in full (see 5); for watch: a "
                        "damaged call was seen"),
    (ExitCode.USAGE, "usage or configuration error: bad flag, unreadable or invalid "
                     "scenario, config or web config file"),
    (ExitCode.CANNOT_PROBE, "cannot probe: no privcmd device (not a Xen dom0), permission "
                            "denied (needs root), not dom0, hypervisor refused a call, "
                            "unknown Xen release, no interface version accepted, not "
                            "enough memory; for watch: cannot watch (tracefs not mounted, "
                            "kprobes disabled, lockdown, not root, another watch holds "
                            "the group, the probe point not found with certainty)"),
    (ExitCode.INTERNAL, "internal error: a bug in xenprobe (XENPROBE_DEBUG=1 prints the "
                        "traceback)"),
    (ExitCode.NOT_DELIVERED, "no mismatch was found, but the report was not delivered: "
                             "stdout closed, full or a broken pipe, or the --textfile "
                             "could not be written (stderr says which)"),
)


EPILOG_HEAD = "exit codes:"


def exit_code_help() -> str:
    """EXIT_CODES as the `--help` epilog."""
    lines = [EPILOG_HEAD]
    for code, meaning in EXIT_CODES:
        lines += textwrap.wrap(meaning, width=79, initial_indent=f"  {int(code)}  ",
                               subsequent_indent="     ")
    return "\n".join(lines)


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
