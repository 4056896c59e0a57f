"""The ``privsynth`` command line.

Each command group lives in its own module of this package and exposes
``register(subparsers)``, which adds its sub-parser(s) and sets ``func`` on them: a callable taking
the parsed ``argparse.Namespace`` and returning an exit code. Modules are imported only when the
command line is built, and heavy libraries only inside the command functions, so
``privsynth --help`` answers instantly.

Errors: a :class:`~privsynth_core.errors.PrivsynthError` is printed as one readable message (exit
code 2); anything else is a bug and keeps its traceback. A reader that closes the pipe early
(``| head``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "plugins_cmd",
    "schema_cmd",
    "data_cmd",
    "budget_cmd",
    "demo_cmd",
    "evaluate_cmd",
    "accountants_cmd",
    "generate_cmd",
    "run_cmd",
    "ui_cmd",
    "users_cmd",
    "audit_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="privsynth",
        description="Differentially private synthetic tables, with the evidence.",
    )
    from privsynth_core import __version__

    parser.add_argument("--version", action="version", version=f"privsynth {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    from privsynth_core.errors import PrivsynthError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return code
    except PrivsynthError as exc:
        print(f"privsynth: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("privsynth: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`privsynth budget show | head -1`): not an error. Point stdout at
        # /dev/null so the interpreter's final flush of what is left does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


if __name__ == "__main__":
    sys.exit(main())
