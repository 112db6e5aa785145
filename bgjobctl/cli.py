"""`bgjobctl`: drive the daemon from a terminal.

Exit codes: 0 ok; 1 the job failed (`submit --wait`) or the request failed; 2 usage error;
3 refused by the allow-list; 4 the daemon is unreachable.
"""

from __future__ import annotations

import argparse
import sys

from bgjobctl.commands import COMMANDS
from bgjobctl.context import CommandContext
from bgjobs import __version__
from bgjobs.errors import BgjobsError, ExitCode, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _add_global_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    # After the command, an option left out must not replace what came before it.
    default = argparse.SUPPRESS if after_command else None
    parser.add_argument(
        "--config", metavar="PATH", default=default, help="configuration file (bgjobs.toml)"
    )
    parser.add_argument("--socket", metavar="PATH", default=default, help="the daemon's socket")
    parser.add_argument(
        "--json",
        action="store_true",
        default=default if after_command else False,
        help="machine-readable output",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bgjobctl", description="Drive the bgjobs daemon.")
    _add_global_options(parser, after_command=False)
    parser.add_argument("--version", action="version", version=f"bgjobctl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for name, module in COMMANDS.items():
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        # The global options are taken after the command too: `bgjobctl show 3 --json`.
        _add_global_options(sub, after_command=True)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.run(CommandContext(args)))
    except BgjobsError as exc:
        print(f"bgjobctl: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.FAILED)
    except BrokenPipeError:
        return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
