# SPDX-License-Identifier: GPL-2.0-only
"""Command line: `xenprobe check` (one-shot diagnostic), `xenprobe serve` (the daemon and
Prometheus exporter), `xenprobe watch` (xenprobe/watch) and `xenprobe scenarios`.

Exit codes: xenprobe.support.errors.EXIT_CODES, printed by `xenprobe --help` (README "Exit
codes"); each command's `--help` prints those it can return (errors.COMMAND_CODES).
A report that could not be delivered (stdout closed, full, a broken pipe; a textfile not
written) is never exit 0: see xenprobe.support.streams.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xenprobe import __version__
from xenprobe.support import streams
from xenprobe.support.errors import (
    EPILOG_HEAD,
    ConfigError,
    ExitCode,
    UsageError,
    XenprobeError,
    exit_code_help,
)

# What a command needs is imported where it is used: `--version` and the first process
# of `check --mock` (it re-executes onto the mock host) must not pay for the probe, the
# report, structlog or cffi (docs/performance.md, "Start-up").
if TYPE_CHECKING:
    from xenprobe.cli import render
    from xenprobe.probe.sweep import Sweep
    from xenprobe.xen import consumers

VERSION = f"xenprobe {__version__}"


class _Formatter(argparse.HelpFormatter):
    """Wraps the description as usual; the exit code table comes pre-formatted."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        from xenprobe.cli import legend  # noqa: PLC0415 (see the imports)

        if text.startswith((EPILOG_HEAD, legend.HEAD)):
            return text
        return super()._fill_text(text, width, indent)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, f"see `{self.prog} --help`")


# check's log level when none is given; serve's is its log_level setting (default info).
CHECK_LOG_LEVEL = "warning"


def parser() -> argparse.ArgumentParser:
    from xenprobe.cli import legend  # noqa: PLC0415 (see the imports)
    from xenprobe.exporter import config as cfg  # noqa: PLC0415

    p = _Parser(prog="xenprobe", epilog=exit_code_help(),
                formatter_class=_Formatter, description=(
        "Reads Xen hypercall results at every layer between the hypervisor and user "
        "space, and reports where a value was truncated, sign-flipped, clamped or turned "
        "into a false error."))
    p.add_argument("--version", action="version", version=VERSION)
    p.add_argument("--log-level", "--log.level", choices=cfg.LOG_LEVELS,
                   help=f"how much to log on stderr (default: {CHECK_LOG_LEVEL} for check, "
                        f"{cfg.Config().log_level} for serve); also accepted after the "
                        "command")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    check = sub.add_parser("check", help="probe once and report (exit 1 on a mismatch)",
                           epilog=legend.help_text() + "\n\n" + exit_code_help("check"),
                           formatter_class=_Formatter)
    # SUPPRESS: the subcommand's default must not overwrite a global --log-level.
    check.add_argument("--log-level", "--log.level", choices=cfg.LOG_LEVELS,
                       default=argparse.SUPPRESS,
                       help=f"how much to log on stderr (default: {CHECK_LOG_LEVEL})")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--mock", nargs="?", const="healthy", metavar="SCENARIO",
                       help="run against the built-in mock host (default scenario: "
                            "healthy); a shipped name or a .toml path")
    check.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                       help="colour the table: auto (when stdout is a terminal and "
                            "NO_COLOR is not set), always or never (default: auto)")
    check.add_argument("--attempts", type=int, default=3,
                       help="samples per quantity before a moving value is called drift "
                            "(default: 3)")
    _view_arguments(check)
    check.add_argument("--textfile", metavar="PATH",
                       help="also write the results as Prometheus metrics to PATH "
                            "(default: none), a "
                            "*.prom file for node_exporter's textfile collector "
                            "(atomically; a directory that does not exist is exit 2, "
                            "before probing; if writing fails after the probe, the "
                            "report is still printed and the exit code is 5 unless a "
                            "mismatch was found)")
    _serve_parser(sub)
    _watch_parser(sub)
    sub.add_parser("scenarios", help="list the mock host scenarios shipped with xenprobe",
                   epilog=exit_code_help("scenarios"), formatter_class=_Formatter)
    return p


def _view_arguments(check: argparse.ArgumentParser) -> None:
    """What a person at a big host looks at. A view narrows the output, never the probe:
    the exit code and the closing summary are for the whole host (README "Exit codes")."""
    from xenprobe.xen.quantities import Quantity  # noqa: PLC0415 (see the imports)

    mode = check.add_mutually_exclusive_group()
    mode.add_argument("--summary", action="store_true",
                      help="one screen: verdict counts per quantity and layer, and the "
                           "domains with most mismatches")
    mode.add_argument("--mismatches", action="store_true",
                      help="only the subjects in mismatch, and only their bad layers")
    check.add_argument("--quantity", action="append", default=[], metavar="NAME",
                       choices=[q.value for q in Quantity],
                       help="show only this quantity (repeatable; default: every "
                            "quantity): " + ", ".join(q.value for q in Quantity))
    check.add_argument("--domain", action="append", default=[], metavar="ID", type=int,
                       help="show only this domain's rows (repeatable; default: every "
                            "domain)")


def _view(args: argparse.Namespace) -> render.View:
    from xenprobe.cli import render  # noqa: PLC0415 (see the imports)
    from xenprobe.xen.abi.hypercalls import DOMID_FIRST_RESERVED  # noqa: PLC0415

    for d in args.domain:
        if not 0 <= d < DOMID_FIRST_RESERVED:
            raise UsageError(f"--domain {d}: a domain id is between 0 and "
                             f"{DOMID_FIRST_RESERVED - 1}")
    return render.View(summary=args.summary, mismatches=args.mismatches,
                       quantities=frozenset(args.quantity), domains=frozenset(args.domain))


def _serve_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    from xenprobe.exporter import config as cfg  # noqa: PLC0415 (see the imports)
    from xenprobe.exporter.metrics import collector_groups as collectors  # noqa: PLC0415

    serve = sub.add_parser(
        "serve", help="sweep in the background and serve the results to Prometheus",
        description="Sweeps every --interval seconds in the background and serves the "
                    "last sweep on /metrics or --telemetry-path (scrapes never issue "
                    "hypercalls). Settings "
                    f"come from --config (default {cfg.DEFAULT_PATH}, optional); each "
                    "flag overrides its key. SIGHUP re-reads the file.",
        epilog=exit_code_help("serve"), formatter_class=_Formatter)
    serve.add_argument("--config", metavar="PATH",
                       help=f"TOML config file (default {cfg.DEFAULT_PATH}; a missing "
                            "default file means built-in defaults)")
    for key in cfg.KEYS:
        if key == "watch":  # `--watch` alone means true
            serve.add_argument(cfg.flag(key), dest=f"config_{key}", nargs="?",
                               const="true", metavar=cfg.METAVARS[key],
                               help=f"{cfg.HELP[key]} (default: {cfg.default_text(key)})")
            continue
        serve.add_argument(cfg.flag(key), *cfg.PROMETHEUS_FLAGS.get(key, ()),
                           dest=f"config_{key}", metavar=cfg.METAVARS[key],
                           help=f"{cfg.HELP[key]} (default: {cfg.default_text(key)})")
    serve.add_argument("--mock", nargs="?", const="healthy", metavar="SCENARIO",
                       help="serve the built-in mock host (default scenario: healthy)")
    # node_exporter's habits: a flag per quantity group, and no process_* metrics.
    for group, members in collectors.GROUPS.items():
        serve.add_argument(f"--collector.{group}", dest="collector_toggles",
                           action="append_const", const=f"+{group}",
                           help=f"export the {group} group (default: on): "
                                + ", ".join(q.value for q in members))
        serve.add_argument(f"--no-collector.{group}", dest="collector_toggles",
                           action="append_const", const=f"-{group}",
                           help=f"leave the {group} group out of the exports")
    serve.add_argument("--web.disable-exporter-metrics",
                       dest="config_disable_exporter_metrics", action="store_const",
                       const="true", help="leave out process_* and python_info")


def _watch_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    from xenprobe.exporter import config as cfg  # noqa: PLC0415 (see the imports)

    watch = sub.add_parser(
        "watch", help="watch every process's privcmd hypercalls (issues none)",
        description="Shows each privcmd hypercall of any process whose result the "
                    "process received damaged (truncated, sign-flipped, an errno "
                    "alias...), beside the hypervisor's own 64-bit result, read from "
                    "kprobes on the running xen_privcmd module. Issues no hypercall. "
                    "Stops on SIGINT, SIGTERM or --duration. docs/watch.md.",
        epilog=exit_code_help("watch"), formatter_class=_Formatter)
    watch.add_argument("--log-level", "--log.level", choices=cfg.LOG_LEVELS,
                       default=argparse.SUPPRESS,
                       help=f"how much to log on stderr (default: {CHECK_LOG_LEVEL})")
    watch.add_argument("--json", action="store_true",
                       help="JSON lines: ready, one per reported call, summary")
    watch.add_argument("--all", action="store_true", help="report every call, not "
                       "only damaged ones")
    watch.add_argument("--duration", type=float, metavar="SECONDS",
                       help="stop after this many seconds (default: none: until SIGINT or "
                            "SIGTERM)")
    watch.add_argument("--buffer-kb", type=int, default=1024, metavar="KB",
                       help="the trace buffer per CPU (default: 1024); events lost to a "
                            "full buffer are counted and reported")
    service = watch.add_mutually_exclusive_group()
    service.add_argument("--arm-for-service", action="store_true",
                         help="for xenprobe.service's ExecStartPre: arm the probes for "
                              "serve --watch and exit (only if the config's watch key "
                              "is true)")
    service.add_argument("--disarm-for-service", action="store_true",
                         help="for xenprobe.service's ExecStopPost: remove the probes "
                              "--arm-for-service armed")
    watch.add_argument("--config", metavar="PATH",
                       help=f"with --arm-for-service: the config file (default "
                            f"{cfg.DEFAULT_PATH})")


def _serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from xenprobe.exporter import config as cfg  # noqa: PLC0415 (see the imports)

    overrides = {key: value for key in cfg.KEYS
                 if (value := getattr(args, f"config_{key}")) is not None}
    if args.collector_toggles:  # after --disabled-collectors, on top of the file's
        overrides["disabled_collectors"] = ",".join(
            [*overrides.get("disabled_collectors", "").split(","),
             *args.collector_toggles])
    if "log_level" not in overrides and args.log_level is not None:  # before `serve`
        overrides["log_level"] = args.log_level
    path = Path(args.config) if args.config else cfg.DEFAULT_PATH
    # Validate before re-executing on the mock, so a bad value fails fast and once.
    cfg.load(path, explicit=args.config is not None, overrides=overrides)
    scenario = _on_mock(args.mock, argv)
    # Imported here: a one-shot check should not pay for the HTTP/TLS stack at start-up
    # (seconds inside a dom0 under emulation).
    from xenprobe.exporter.daemon import Daemon  # noqa: PLC0415

    return Daemon(path, explicit=args.config is not None, overrides=overrides,
                  scenario=scenario).run()


def _write_textfile(path: Path, sweep: Sweep | None, scenario: str | None,
                    users: consumers.Consumers, retries: Mapping[tuple[str, str], int]
                    ) -> None:
    from xenprobe.exporter.config import Config  # noqa: PLC0415
    from xenprobe.exporter.metrics import textfile as textfiles  # noqa: PLC0415
    from xenprobe.exporter.metrics.collector import one_shot_registry  # noqa: PLC0415

    try:
        textfiles.write_registry(path, one_shot_registry(
            sweep, Config().max_domain_series, scenario, consumers=users,
            retries=retries))
    except OSError as e:
        raise ConfigError(f"--textfile: cannot write {path}: {e.strerror}") from None


def _scenarios() -> int:
    from xenprobe.mock.scenario import load, shipped  # noqa: PLC0415 (see the imports)

    lines = []
    for name in shipped():
        s = load(name)
        first = " ".join(s.description.split())
        lines.append(f"{name:20} Xen {s.release.name:5} {first}\n")
    if (why := streams.deliver("".join(lines))) is not None:
        streams.say(f"xenprobe: error: the list was not written to stdout: {why}")
        return ExitCode.NOT_DELIVERED
    return ExitCode.OK


def _check(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from xenprobe.cli import render  # noqa: PLC0415 (see the imports)
    from xenprobe.probe import impact  # noqa: PLC0415
    from xenprobe.probe.session import Session  # noqa: PLC0415
    from xenprobe.xen.transport import Privcmd  # noqa: PLC0415

    if not 1 <= args.attempts <= 100:
        raise UsageError("--attempts must be between 1 and 100")
    view = _view(args)
    textfile = _textfile_path(args.textfile) if args.textfile is not None else None
    scenario = _on_mock(args.mock, argv)
    counted: Counter[tuple[str, str]] = Counter()
    try:
        with Privcmd() as dev:
            try:
                with Session.on(dev) as session:
                    result = session.sweep(args.attempts)
                    layer_notes = session.notes()
            finally:
                counted = dev.take_retries()  # a failed check's too, for the textfile
    except XenprobeError:
        if textfile is not None:
            try:  # xenprobe_up 0, for alerting
                _write_textfile(textfile, None, scenario, _consumers(scenario), counted)
            except ConfigError as e:
                _log().warning("textfile_not_written", error=e.message)
        raise
    retries = retry_table(counted)
    users = _consumers(scenario)
    # Why a layer's column is empty (libxc: libxenctrl not found, wrong release...).
    notes = [f"raw: {result.raw_absent.note}"] if result.raw_absent else []
    notes += layer_notes
    notes += [f"retried {call}: " + ", ".join(f"{why} {n}" for why, n in sorted(why.items()))
              for call, why in sorted(retries.items())]
    # Exit 1 only for a finding some consumer would read wrong and use (xenprobe.probe.impact):
    # a harmless one is reported all the same. A raw result wrong at the source reaches
    # every consumer of its quantity, so it counts wherever one reads it (source_impact).
    acts = (impact.acts(result.summary.verdicts)
            or impact.source_acts(r.probe.quantity for r in result.source_findings))
    code = ExitCode.MISMATCH if acts else ExitCode.OK
    if args.json:
        report = json.dumps(render.as_json(result, scenario=scenario, exit_code=code,
                                           notes=notes, consumers=users, retries=retries,
                                           view=view),
                            indent=2) + "\n"
    else:
        colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                            and "NO_COLOR" not in os.environ)
        report = render.human(result, colour=colour, scenario=scenario, notes=notes,
                              consumers=users, view=view)
    # Every destination is tried, so one failing does not cost the others the report.
    failures = []
    if (why := streams.deliver(report)) is not None:
        failures.append(f"the report was not written to stdout: {why}")
    if textfile is not None:
        try:
            _write_textfile(textfile, result, scenario, users, counted)
        except ConfigError as e:
            failures.append(e.message)
    for failure in failures:
        streams.say(f"xenprobe: error: {failure}")
    return delivered_code(code, failed=bool(failures))


def delivered_code(found: ExitCode, *, failed: bool) -> ExitCode:
    """The exit code of a check that found `found`: a mismatch is never hidden, and a
    report that did not arrive never passes for "every layer agrees"."""
    if failed and found == ExitCode.OK:
        return ExitCode.NOT_DELIVERED
    return found


def _on_mock(wanted: str | None, argv: Sequence[str]) -> str | None:
    """The mock scenario this process runs on, after re-executing onto the mock host if
    `--mock` asked for it; None on a real host (whatever the environment claims)."""
    from xenprobe.mock import launcher as mock  # noqa: PLC0415 (see the imports)
    from xenprobe.mock.scenario import load  # noqa: PLC0415

    if mock.claimed_but_absent():
        _log().warning("mock_variable_ignored", variable=mock.ACTIVE,
                    reason="the mock host library is not loaded in this process")
    scenario = mock.active()
    if wanted is not None and scenario is None:
        mock.reexec(load(wanted), list(argv))  # does not return
    return scenario


def _consumers(scenario: str | None) -> consumers.Consumers:
    """The other processes holding privcmd open (on the mock host: the mock's device)."""
    from xenprobe.xen import consumers  # noqa: PLC0415 (see the imports)

    return consumers.scan_host(scenario is not None, exclude={os.getpid()})


def retry_table(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """Privcmd.retries as {call: {reason: count}}."""
    table: dict[str, dict[str, int]] = {}
    for (call, why), n in counts.items():
        table.setdefault(call, {})[why] = n
    return table


def _textfile_path(value: str) -> Path:
    from xenprobe.exporter import config as cfg  # noqa: PLC0415 (see the imports)

    path = cfg.textfile_flag(value, "--textfile")
    if path is None:
        raise UsageError("--textfile needs a path")
    return path


def _json_error(argv: Sequence[str], code: int, message: str, hint: str = "") -> None:
    """`check --json` answers in JSON even when it fails: a script reads stdout (the
    human message stays on stderr too)."""
    if "watch" in argv and "--json" in argv[argv.index("watch"):]:
        streams.deliver(json.dumps({"event": "error", "exit_code": code,
                                    "message": message}) + "\n")
        return
    if "check" in argv and "--json" in argv[argv.index("check"):]:
        from xenprobe.cli import render  # noqa: PLC0415 (see the imports)

        streams.deliver(json.dumps(render.error_json(code, message, hint), indent=2) + "\n")


def _log() -> Any:
    import structlog  # noqa: PLC0415 (see the imports)

    return structlog.get_logger("xenprobe")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    streams.prepare()
    try:
        if argv == ["--version"]:  # what argparse would print, without building the parser
            return _deliver_help(VERSION + "\n")
        try:
            args = parser().parse_args(argv)
        except SystemExit as e:  # --help, --version: argparse printed to stdout
            if e.code not in (0, None):
                raise
            return _deliver_help("")
        from xenprobe.support import logs  # noqa: PLC0415 (see the imports)

        logs.configure(args.log_level or CHECK_LOG_LEVEL)
        if args.command == "scenarios":
            return _scenarios()
        if args.command == "serve":
            return _serve(args, argv)
        if args.command == "watch":
            from xenprobe.watch import command  # noqa: PLC0415 (check starts faster)

            if args.arm_for_service:
                return command.arm_for_service(Path(args.config) if args.config else None)
            if args.disarm_for_service:
                return command.disarm_service()
            return command.run(as_json=args.json, everything=args.all,
                               duration=args.duration, buffer_kb=args.buffer_kb)
        return _check(args, argv)
    except XenprobeError as e:
        streams.say(f"xenprobe: error: {e.message}")
        if e.hint:
            streams.say(f"xenprobe: hint: {e.hint}")
        _json_error(argv, int(e.exit_code), e.message, e.hint)
        return int(e.exit_code)
    except KeyboardInterrupt:
        return 130
    except MemoryError as e:  # the host's limit (RLIMIT_AS), not a bug
        return _out_of_memory(e)
    except Exception as e:
        from xenprobe.cli import entry  # noqa: PLC0415 (imports nothing itself)

        # What a command imports where it is used, and CPython's C code anywhere, can
        # fail under RLIMIT_AS without a MemoryError (entry.cannot_load says how).
        if entry.cannot_load(e):
            return _out_of_memory(e)
        streams.say(f"xenprobe: internal error: {type(e).__name__}: {e}")
        streams.say("xenprobe: this is a bug; please report it with the output of "
                    "--log-level debug")
        if os.environ.get("XENPROBE_DEBUG"):
            with contextlib.suppress(Exception):
                import traceback  # noqa: PLC0415 (see the imports)

                traceback.print_exc()
        _json_error(argv, ExitCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
        return ExitCode.INTERNAL


def _out_of_memory(e: BaseException) -> int:
    """Exit 3 for the host's address-space limit: a bug is not what ran out. One message
    whether a command's own import or its work ran out: CPython trims the import
    machinery's frames from a traceback (import.c remove_importlib_frames), so which it
    was cannot be told reliably, and the remedy is the same."""
    from xenprobe.cli.entry import OUT_OF_MEMORY  # noqa: PLC0415 (imports nothing itself)

    streams.say(OUT_OF_MEMORY)
    return ExitCode.CANNOT_PROBE


def _deliver_help(text: str) -> int:
    """Exit 0 once --help's or --version's text reached stdout."""
    why = streams.deliver(text)
    if why is None:
        return ExitCode.OK
    streams.say(f"xenprobe: error: the help was not written to stdout: {why}")
    return ExitCode.NOT_DELIVERED
