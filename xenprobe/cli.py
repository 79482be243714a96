"""Command line: `xenprobe check` (one-shot diagnostic), `xenprobe serve` (the daemon and
Prometheus exporter) and `xenprobe scenarios`.

Exit codes (README "Exit codes"): 0 every layer agrees (on a host without the raw layer:
no mismatch among the readings a reference could judge); 1 a truncation class was found;
2 usage or configuration error; 3 cannot probe (no device, not root, not dom0, hypervisor
refused, unknown Xen release); 4 internal error (a bug in xenprobe).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from xenprobe import __version__, consumers, logs, mock, render
from xenprobe.errors import ConfigError, ExitCode, UsageError, XenprobeError
from xenprobe.exporter import config as cfg
from xenprobe.host import Host
from xenprobe.layers import ladder
from xenprobe.scenario import load, shipped
from xenprobe.sweep import Sweep, Sweeper
from xenprobe.transport import Privcmd

INTERNAL_ERROR = 4

log = structlog.get_logger("xenprobe")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, f"see `{self.prog} --help`")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="xenprobe", description=(
        "Reads Xen hypercall results at every layer between the hypervisor and user "
        "space, and reports where a value was truncated, sign-flipped, clamped or turned "
        "into a false error."))
    p.add_argument("--version", action="version", version=f"xenprobe {__version__}")
    p.add_argument("--log-level", default="warning",
                   choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    check = sub.add_parser("check", help="probe once and report (exit 1 on a mismatch)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--mock", nargs="?", const="healthy", metavar="SCENARIO",
                       help="run against the built-in mock host (default scenario: "
                            "healthy); a shipped name or a .toml path")
    check.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    check.add_argument("--attempts", type=int, default=3,
                       help="samples per quantity before a moving value is called drift")
    check.add_argument("--textfile", metavar="PATH",
                       help="also write the results as Prometheus metrics to PATH, a "
                            "*.prom file for node_exporter's textfile collector "
                            "(atomically: temporary file and rename)")
    _serve_parser(sub)
    sub.add_parser("scenarios", help="list the mock host scenarios shipped with xenprobe")
    return p


def _serve_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    serve = sub.add_parser(
        "serve", help="sweep in the background and serve the results to Prometheus",
        description="Sweeps every --interval seconds in the background and serves the "
                    "last sweep on /metrics (scrapes never issue hypercalls). Settings "
                    f"come from --config (default {cfg.DEFAULT_PATH}, optional); each "
                    "flag overrides its key. SIGHUP re-reads the file.")
    serve.add_argument("--config", metavar="PATH",
                       help=f"TOML config file (default {cfg.DEFAULT_PATH}; a missing "
                            "default file means built-in defaults)")
    aliases = {"listen_address": ["--web.listen-address"],
               "web_config_file": ["--web.config.file"]}
    for key in cfg.KEYS:
        serve.add_argument(cfg.flag(key), *aliases.get(key, []), dest=f"config_{key}",
                           metavar=cfg.METAVARS[key], help=cfg.HELP[key])
    serve.add_argument("--mock", nargs="?", const="healthy", metavar="SCENARIO",
                       help="serve the built-in mock host (default scenario: healthy)")


def _given_before_command(argv: Sequence[str], command: str, option: str) -> bool:
    """Whether a global option was given explicitly (its parser default can't tell)."""
    head = list(argv[:argv.index(command)]) if command in argv else list(argv)
    return any(t == option or t.startswith(option + "=") for t in head)


def _serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    overrides = {key: value for key in cfg.KEYS
                 if (value := getattr(args, f"config_{key}")) is not None}
    if "log_level" not in overrides and _given_before_command(argv, "serve",
                                                              "--log-level"):
        overrides["log_level"] = args.log_level
    path = Path(args.config) if args.config else cfg.DEFAULT_PATH
    # Validate before re-executing on the mock, so a bad value fails fast and once.
    cfg.load(path, explicit=args.config is not None, overrides=overrides)
    scenario = None
    if args.mock is not None:
        if mock.active() is None:
            mock.reexec(load(args.mock), list(argv))  # does not return
        scenario = mock.active()
    # Imported here: a one-shot check should not pay for the HTTP/TLS stack at start-up
    # (seconds inside a dom0 under emulation).
    from xenprobe.exporter.daemon import Daemon  # noqa: PLC0415

    return Daemon(path, explicit=args.config is not None, overrides=overrides,
                  scenario=scenario).run()


def _write_textfile(path: Path, sweep: Sweep | None, scenario: str | None,
                    users: consumers.Consumers, retries: Mapping[tuple[str, str], int]
                    ) -> None:
    from xenprobe.exporter import textfile as textfiles  # noqa: PLC0415
    from xenprobe.exporter.collector import one_shot_registry  # noqa: PLC0415

    try:
        textfiles.write_registry(path, one_shot_registry(
            sweep, cfg.Config().max_domain_series, scenario, consumers=users,
            retries=retries))
    except OSError as e:
        raise ConfigError(f"--textfile: cannot write {path}: {e.strerror}") from None


def _scenarios() -> int:
    for name in shipped():
        s = load(name)
        first = " ".join(s.description.split())
        print(f"{name:20} Xen {s.release.name:5} {first}")
    return ExitCode.OK


def _check(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if not 1 <= args.attempts <= 100:
        raise UsageError("--attempts must be between 1 and 100")
    textfile = _textfile_path(args.textfile) if args.textfile is not None else None
    scenario = None
    if args.mock is not None:
        if mock.active() is None:
            mock.reexec(load(args.mock), list(argv))  # does not return
        scenario = mock.active()
    counted: Counter[tuple[str, str]] = Counter()
    try:
        with Privcmd() as dev:
            try:
                with contextlib.closing(Host(dev)) as host:
                    layers = ladder(dev, host.identity)
                    result = Sweeper(host, layers, attempts=args.attempts).sweep()
            finally:
                counted = dev.take_retries()  # a failed check's too, for the textfile
    except XenprobeError:
        if textfile is not None:
            try:  # xenprobe_up 0, for alerting
                _write_textfile(textfile, None, scenario, _consumers(scenario), counted)
            except ConfigError as e:
                log.warning("textfile_not_written", error=e.message)
        raise
    retries = retry_table(counted)
    users = _consumers(scenario)
    if textfile is not None:
        _write_textfile(textfile, result, scenario, users, counted)
    # Why a layer's column is empty (libxc: libxenctrl not found, wrong release...).
    notes = [f"raw: {result.raw_absent.note}"] if result.raw_absent else []
    notes += [f"{layer.name}: {note}" for layer in layers
              if (note := getattr(layer, "note", ""))]
    notes += [f"retried {call}: " + ", ".join(f"{why} {n}" for why, n in sorted(why.items()))
              for call, why in sorted(retries.items())]
    code = ExitCode.MISMATCH if result.mismatches else ExitCode.OK
    if args.json:
        json.dump(render.as_json(result, scenario=scenario, exit_code=code, notes=notes,
                                 consumers=users, retries=retries),
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                            and "NO_COLOR" not in os.environ)
        sys.stdout.write(render.human(result, colour=colour, scenario=scenario,
                                      notes=notes, consumers=users))
    return code


def _consumers(scenario: str | None) -> consumers.Consumers:
    """The other processes holding privcmd open (on the mock host: the mock's device)."""
    return consumers.scan(consumers.devices_for(scenario is not None),
                          exclude={os.getpid()})


def retry_table(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """Privcmd.retries as {call: {reason: count}}."""
    table: dict[str, dict[str, int]] = {}
    for (call, why), n in counts.items():
        table.setdefault(call, {})[why] = n
    return table


def _textfile_path(value: str) -> Path:
    path = cfg.textfile_flag(value, "--textfile")
    if path is None:
        raise UsageError("--textfile needs a path")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
        logs.configure(args.log_level)
        if args.command == "scenarios":
            return _scenarios()
        if args.command == "serve":
            return _serve(args, argv)
        return _check(args, argv)
    except XenprobeError as e:
        print(f"xenprobe: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"xenprobe: hint: {e.hint}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as e:
        print(f"xenprobe: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("xenprobe: this is a bug; please report it with the output of "
              "--log-level debug", file=sys.stderr)
        if os.environ.get("XENPROBE_DEBUG"):
            traceback.print_exc()
        return INTERNAL_ERROR
