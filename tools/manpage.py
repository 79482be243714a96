# SPDX-License-Identifier: GPL-2.0-only
"""xenprobe(1), written from the command line parser itself, so the man page's options are
exactly `--help`'s. The prose around them (what xenprobe is, files, exit status) is here.

Regenerate after changing an option:  .venv/bin/python -m tools.manpage > docs/xenprobe.1
tests/test_manpage.py fails while docs/xenprobe.1 differs from what this prints.
"""

from __future__ import annotations

import argparse
import re
import sys

from xenprobe.cli import command as cli
from xenprobe.cli import legend
from xenprobe.exporter import config as cfg
from xenprobe.support.errors import EXIT_CODES

# Fixed, so the page does not change with the day it was generated; bump with the prose.
DATE = "2026-11-27"

# The exit codes are xenprobe's own table (errors.EXIT_CODES, also every --help's).

DESCRIPTION = [
    "xenprobe issues read-only hypercalls through /dev/xen/privcmd on a Xen control "
    "domain (dom0). For each quantity it reads the hypervisor's own 64-bit result (a "
    "one-entry multicall), what the ioctl system call returns as a long, what glibc's "
    "int ioctl() returns, what libxenctrl returns, and an independent 64-bit reference "
    "(sysctl physinfo, domctl getdomaininfo or /sys/hypervisor). It then classifies every "
    "disagreement: truncated, sign_flipped, clamped, aliased_errno, lost_error, "
    "changed_error, drift (never counted as a mismatch) or other.",
    "Only the (hypercall, sub-operation) pairs on a read-only allow-list compiled into "
    "xenprobe are ever issued.",
    "Without Xen, --mock runs against a mock host: an LD_PRELOAD library below libc that "
    "models the privcmd device and the hypervisor. On Debian it is in the separate "
    "package xenprobe-mock.",
]

UNITS = "/lib/systemd/system"  # where debhelper puts Debian 12's units (tests/test_deb.py)

# Everything the Debian packages install (debian/xenprobe.install, debian/rules,
# debian/xenprobe.docs), and the one file xenprobe writes where the timer runs it.
# tests/test_deb.py checks this list against the built packages' contents.
FILES = [
    ("/usr/bin/xenprobe", "the command"),
    ("/usr/lib/python3/dist-packages/xenprobe/", "the Python package, with its compiled "
                                                "transport (_transport.abi3.so), the mock "
                                                "host scenarios (scenarios/*.toml) and the "
                                                "JSON Schema of check --json "
                                                "(schema/report.schema.json)"),
    ("/usr/lib/python3/dist-packages/xenprobe-*.dist-info/", "the package's metadata"),
    (str(cfg.DEFAULT_PATH), "configuration of xenprobe serve (TOML, a conffile); every "
                            "key is optional and has a flag of the same name"),
    (f"{UNITS}/xenprobe.service", "the exporter as a systemd service (Type=notify, "
                                  "watchdog, reload); enabled and started on install, "
                                  "skipped outside the control domain"),
    (f"{UNITS}/xenprobe-check.service", "one check writing node_exporter's textfile "
                                        "directory"),
    (f"{UNITS}/xenprobe-check.timer", "runs xenprobe-check.service every 5 minutes "
                                      "(shipped, not enabled: the alternative to the "
                                      "service)"),
    ("/usr/share/xenprobe/xenprobe-alerts.yml", "Prometheus alert rules"),
    ("/usr/share/xenprobe/xenprobe-alerts.test.yml", "their tests, for promtool test rules"),
    ("/usr/share/xenprobe/xenprobe-recording.yml", "Prometheus recording rules that roll "
                                                   "a fleet up"),
    ("/usr/share/xenprobe/xenprobe-recording.test.yml", "their tests, for promtool test "
                                                        "rules"),
    ("/usr/share/xenprobe/xenprobe-web.yml", "example exporter-toolkit web configuration "
                                             "(TLS, basic auth)"),
    ("/usr/share/xenprobe/dashboards/xenprobe.json", "the Grafana dashboard"),
    ("/usr/share/doc/xenprobe/", "README, changelog and copyright"),
    ("/usr/share/doc/xenprobe-mock/", "changelog and copyright of xenprobe-mock"),
    ("/usr/share/man/man1/xenprobe.1.gz", "this page"),
    ("/usr/lib/python3/dist-packages/xenprobe/_mockxen.*.so", "the mock host (package "
                                                             "xenprobe-mock only)"),
    ("/var/lib/prometheus/node-exporter/xenprobe.prom", "written by xenprobe-check.service "
                                                        "(not installed); node_exporter's "
                                                        "Debian package makes the "
                                                        "directory"),
]

# What xenprobe reads from its environment.
ENVIRONMENT = [
    ("NO_COLOR", "if set, check --color auto prints no colour"),
    ("XENPROBE_LIBXENCTRL", "the libxenctrl file the libxc layer loads, instead of "
                            "libxenctrl.so.4.NN of the running release found by the "
                            "dynamic linker"),
    ("XENPROBE_DEBUG", "if set, an internal error (exit 4) prints its traceback"),
    ("XENPROBE_MOCK_SCENARIO, XENPROBE_MOCK_ACTIVE, XENPROBE_MOCK_HOST, XENPROBE_MOCK_LOG",
     "set by --mock for the process it runs on the mock host (the compiled scenario, "
     "its name, which mock host, the request log); not for an operator to set: "
     "XENPROBE_MOCK_ACTIVE without the mock library is ignored with a warning"),
    ("XENPROBE_REVISION", "the source revision xenprobe_build_info reports, for a build "
                          "outside git"),
    ("NOTIFY_SOCKET, JOURNAL_STREAM", "set by systemd: serve sends READY, STATUS and "
                                      "WATCHDOG to the first, and prefixes log lines "
                                      "with their priority when stderr is the journal"),
]

METRICS_INTRO = ("xenprobe serve serves these on /metrics (default port 9723), among "
                 "others; the counting words are those of check: a probe is one quantity "
                 "read for one subject (the host, a domain, a vCPU), and each layer's "
                 "reading of it gets a verdict.")

# The families an operator queries first; README "Metrics" has them all.
METRICS = [
    ("xenprobe_mismatch_verdicts{quantity,layer,verdict}",
     "readings that got that mismatch verdict in the last sweep"),
    ("xenprobe_domain_mismatch{quantity,layer,verdict,domid}", "1 per domain in mismatch, "
                                                               "at most max_domain_series"),
    ("xenprobe_domain_info{domid,uuid,name}", "the UUID and xenstore name of each domain "
                                              "in xenprobe_domain_mismatch, to join on "
                                              "domid"),
    ("xenprobe_mismatch_onsets_total{quantity,layer,verdict}",
     "times a reading entered that mismatch verdict"),
    ("xenprobe_privcmd_consumers{verdict}", "other processes holding privcmd, by what "
                                            "their libxenctrl does to memory ops"),
    ("xenprobe_up, xenprobe_stale", "whether the last sweep succeeded and is fresh"),
]

EXAMPLES = [
    ("Check this dom0 once; exit 1 if a layer loses bits:", "xenprobe check"),
    ("The same on a machine without Xen, against the mock 12 TiB host:",
     "xenprobe check --mock large-memory"),
    ("One screen for a host with many domains:", "xenprobe check --summary"),
    ("The report for a machine:", "xenprobe check --json > report.json"),
    ("Start the exporter the package installed, and read what it serves:",
     "systemctl enable --now xenprobe.service\n"
     "curl -s http://127.0.0.1:9723/metrics | grep ^xenprobe_mismatch_verdicts"),
    ("Use the textfile collector instead of the service:",
     "systemctl disable --now xenprobe.service\n"
     "systemctl enable --now xenprobe-check.timer"),
    ("Test the shipped rules with Prometheus's promtool:",
     "promtool test rules /usr/share/xenprobe/xenprobe-alerts.test.yml"),
]

SEE_ALSO = (r"\fBprometheus-node-exporter\fR(1), \fBprometheus\fR(1), \fBsystemctl\fR(1), "
            r"\fBxl\fR(1)")


def roff(text: str) -> str:
    """Plain text as roff: backslashes and hyphens escaped, no line starting a request."""
    text = text.replace("\\", r"\e").replace("-", r"\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.MULTILINE)


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _subcommand_help(p: argparse.ArgumentParser) -> dict[str, str]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _expanded_help(p: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    return p._get_formatter()._expand_help(action)


def _options(p: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    formatter = p._get_formatter()
    for action in p._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        invocation = formatter._format_action_invocation(action)
        lines += [".TP", rf"\fB{roff(invocation)}\fR"]
        text = _expanded_help(p, action)
        if action.choices and not text:
            text = "one of " + ", ".join(str(c) for c in action.choices)
        lines.append(roff(text) if text else r"\&")
    return lines


def _usage(p: argparse.ArgumentParser) -> str:
    usage = p.format_usage().removeprefix("usage: ").strip()
    return roff(" ".join(usage.split()))


def render() -> str:
    p = cli.parser()
    out = [
        r'.\" Generated by tools/manpage.py from the command line parser of xenprobe.',
        r'.\" Do not edit: change the parser or tools/manpage.py, then regenerate.',
        f'.TH XENPROBE 1 "{DATE}" "xenprobe" "User Commands"',
        ".SH NAME",
        r"xenprobe \- find where Xen hypercall results lose bits on the way to user space",
        ".SH SYNOPSIS",
    ]
    subs = _subparsers(p)
    for parser_ in [p, *subs.values()]:
        out += [_usage(parser_), ".br"]
    out += [".SH DESCRIPTION", roff(p.description or "")]
    for paragraph in DESCRIPTION:
        out += [".PP", roff(paragraph)]
    out += [".SH OPTIONS", *_options(p), ".SH COMMANDS"]
    helps = _subcommand_help(p)
    for name, sub in subs.items():
        out += [".SS " + rf"\fB{name}\fR", roff(helps.get(name, "")) + "."]
        if sub.description:
            out += [".PP", roff(sub.description)]
        out += [".PP", _usage(sub), *_options(sub)]
    out += [".SH VERDICTS", roff(legend.MEANING_INTRO)]
    for verdict, text in legend.MEANING.items():
        out += [".TP", rf"\fB{verdict.value}\fR", roff(text)]
    out += [".PP", roff(legend.OPEN_RANGE), ".br", roff(legend.CLOSED_RANGE), ".br",
            roff(legend.BYTES)]
    out += [".SH EXIT STATUS"]
    for code, text in EXIT_CODES:
        out += [".TP", rf"\fB{int(code)}\fR", roff(text)]
    out += [".SH ENVIRONMENT"]
    for name, text in ENVIRONMENT:
        out += [".TP", rf"\fB{roff(name)}\fR", roff(text)]
    out += [".SH FILES"]
    for path, text in FILES:
        out += [".TP", rf"\fI{roff(path)}\fR", roff(text)]
    out += [".SH METRICS", roff(METRICS_INTRO)]
    for name, text in METRICS:
        out += [".TP", rf"\fB{roff(name)}\fR", roff(text)]
    out += [".SH EXAMPLES"]
    for text, command in EXAMPLES:
        out += [".PP", roff(text), ".PP", ".RS", ".nf", roff(command), ".fi", ".RE"]
    out += [".SH SEE ALSO", SEE_ALSO, ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
