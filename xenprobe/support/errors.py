# SPDX-License-Identifier: GPL-2.0-only
"""Errors a user can meet, each with the exit code the CLI documents.

EXIT_CODES is the one statement of what each code means: `xenprobe --help` prints it
(as the parser's epilog), and README and the man page are tested against that output.
COMMAND_CODES narrows it to what each command can return, for that command's `--help`.
"""

from __future__ import annotations

import enum
import textwrap


class ExitCode(enum.IntEnum):
    OK = 0             # no finding a consumer would read wrong (xenprobe.probe.impact)
    MISMATCH = 1       # a finding a consumer would read wrong (exposure or harmful),
                       # or a raw result wrong at the source that some consumer reads
    USAGE = 2          # usage or configuration error
    CANNOT_PROBE = 3   # no device, not root, not dom0, hypervisor refused, unknown release
    INTERNAL = 4       # a bug in xenprobe
    NOT_DELIVERED = 5  # no mismatch found, but the report did not reach its reader


EXIT_CODES: tuple[tuple[ExitCode, str], ...] = (
    (ExitCode.OK, "no mismatch that a consumer would read and use: every layer agrees, "
                  "or each finding is harmless (shown with why; drift is not a "
                  "disagreement), and the report was delivered; for serve: stopped "
                  "cleanly (SIGTERM, SIGINT); for watch: no damaged call seen"),
    (ExitCode.MISMATCH, "a mismatch of impact exposure or harmful was found (truncated, "
                        "sign_flipped, clamped, aliased_errno, lost_error, changed_error, "
                        "other, where a consumer reads it: docs/alerts.md), or a raw "
                        "result wrong at the source (forged_errno, out_of_range) of a "
                        "quantity some consumer reads; also when the report could not be "
                        "delivered in full (see 5); for watch: a damaged call was seen"),
    (ExitCode.USAGE, "usage or configuration error: bad flag (a --textfile whose "
                     "directory does not exist too: nothing is probed), unreadable or "
                     "invalid scenario, config or web config file, a port in use"),
    (ExitCode.CANNOT_PROBE, "cannot probe: no privcmd device (not a Xen dom0), permission "
                            "denied (needs root), not dom0, hypervisor refused a call, "
                            "unknown Xen release, no interface version accepted, not "
                            "enough memory; for watch: cannot watch (tracefs not mounted, "
                            "kprobes disabled, lockdown, not root, another watch holds "
                            "the group, the probe point not found with certainty)"),
    (ExitCode.INTERNAL, "internal error: a bug in xenprobe (XENPROBE_DEBUG=1 prints the "
                        "traceback)"),
    (ExitCode.NOT_DELIVERED, "no mismatch was found, but the report was not delivered: "
                             "stdout closed, full or a broken pipe, or writing the "
                             "--textfile failed after the probe (stderr says which)"),
)

# The codes each command can return, with what a code means for it when that differs
# from EXIT_CODES: `COMMAND --help` lists these only. serve reports a sweep's findings
# and failures on /metrics, never in its exit code; scenarios only lists.
COMMAND_CODES: dict[str, dict[ExitCode, str | None]] = {
    "check": {ExitCode.OK: "every layer agrees (drift is not a disagreement; without the "
                           "raw layer: no mismatch among the readings a reference could "
                           "judge), and the report was delivered",
              ExitCode.MISMATCH: None, ExitCode.USAGE: None, ExitCode.CANNOT_PROBE: None,
              ExitCode.INTERNAL: None, ExitCode.NOT_DELIVERED: None},
    "serve": {ExitCode.OK: "stopped cleanly (SIGTERM, SIGINT)", ExitCode.USAGE: None,
              ExitCode.CANNOT_PROBE: "cannot probe at start-up: no privcmd device (not a "
                                     "Xen dom0), permission denied (needs root), not dom0, "
                                     "unknown Xen release, no interface version accepted",
              ExitCode.INTERNAL: None},
    "watch": {ExitCode.OK: "no damaged call seen", ExitCode.MISMATCH: "a damaged call "
                                                                    "was seen",
              ExitCode.USAGE: None,
              ExitCode.CANNOT_PROBE: "cannot watch: tracefs not mounted, kprobes disabled "
                                     "or forbidden by lockdown, not root, another watch "
                                     "holds the group, the probe point not found with "
                                     "certainty",
              ExitCode.INTERNAL: None,
              ExitCode.NOT_DELIVERED: "no damaged call seen, but the report was not "
                                      "delivered: stdout closed, full or a broken pipe"},
    "scenarios": {ExitCode.OK: "the list was printed", ExitCode.INTERNAL: None,
                  ExitCode.NOT_DELIVERED: "the list was not delivered: stdout closed, "
                                          "full or a broken pipe"},
}


EPILOG_HEAD = "exit codes:"


def exit_codes(command: str | None = None) -> tuple[tuple[ExitCode, str], ...]:
    """The codes `command` can return and their meaning (all of them: EXIT_CODES)."""
    if command is None:
        return EXIT_CODES
    own = COMMAND_CODES[command]
    return tuple((code, own[code] or meaning) for code, meaning in EXIT_CODES
                 if code in own)


def exit_code_help(command: str | None = None) -> str:
    """exit_codes(command) as the `--help` epilog."""
    lines = [EPILOG_HEAD]
    for code, meaning in exit_codes(command):
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
