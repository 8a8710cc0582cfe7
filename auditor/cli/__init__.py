"""The ``interaction-auditor`` command line.

Each sub-command lives in its own module of this package, named ``<command>_command`` (so it is never
mistaken for the library module it drives), and exposes ``register(subparsers)``; ``main`` discovers
them, so adding a command never means editing a central list. Every command has
``--help`` (with examples or an epilog), a ``--json`` mode for scripts where it prints a result, and
a progress display on stderr for long work (stdout stays machine-readable).

Exit codes (all commands):

- 0 success;
- 1 unexpected internal error (one line on stderr; ``interaction-auditor --debug ...`` shows the
  traceback);
- 2 bad input or usage (a message names the option, line or field);
- 3 a required resource (model, store) is missing or unreadable;
- 4 a check ran and missed its acceptance target (``testbed validate``);
- 130 interrupted (Ctrl-C).

A usage error (unknown option, missing required option, bad choice) is argparse's: usage and message
on stderr, exit 2, and under ``--json`` also the JSON error on stdout. A handler raises
:class:`CliError` for an error the user can fix; ``main`` prints it as
``error: ...`` on stderr (and, with ``--json``, also as ``{"error": ..., "exit_code": ...}`` on
stdout, so a script reading stdout sees why there is no result) and returns its exit code. Anything
else is caught as an internal error: a user never sees a traceback unless they ask for it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING_RESOURCE = 3
EXIT_NOT_ACCEPTED = 4
EXIT_INTERRUPTED = 130

EPILOG = """\
Run 'interaction-auditor COMMAND --help' for a command's options and examples.
exit codes: 0 ok; 1 internal error (--debug shows the traceback); 2 bad input; 3 missing model or
  store; 4 a check missed its acceptance target (testbed validate); 130 interrupted.
With --json a command prints its result as JSON on stdout, and an error as
  {"error": MESSAGE, "exit_code": CODE}."""


class CliError(Exception):
    """An error the user can fix; carries the exit code and a message that names the problem."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that remembers its usage error, so ``main`` can also report it as JSON
    under ``--json`` (argparse itself only writes usage and message on stderr). Sub-command parsers
    are of the same class (``add_subparsers`` uses the parent's class)."""

    last_error: str | None = None

    def error(self, message: str) -> NoReturn:
        _Parser.last_error = f"{self.prog}: error: {message}"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Imports only the ``auditor.cli`` modules (and the light
    ``auditor.testbed.names``/``corpus``): torch, transformers, numpy and the solver are imported by
    the handlers, so ``--help`` is instant (tests/cli/test_cli.py checks it in a fresh interpreter)."""
    parser = _Parser(
        prog="interaction-auditor",
        description="Explain a model's answers with AND-OR interactions and audit them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an internal error, print the full traceback (for bug reports)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def _fail(args: argparse.Namespace, message: str, code: int, echo: bool = True) -> int:
    """Report an error on stderr (unless ``echo`` is false: already written there) and as JSON on
    stdout under ``--json``; return its exit code."""
    if echo:
        print(message, file=sys.stderr)
    if getattr(args, "json", False):
        try:
            sys.stdout.write(json.dumps({"error": message, "exit_code": code}) + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):  # stdout closed: the stderr line is all we can do
            pass
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code. Usage errors and ``--help`` exit through argparse
    (``SystemExit`` 2 and 0), as every argparse program does."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    _Parser.last_error = None
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit:  # usage error (2) or --help (0): argparse has written to stderr/stdout
        if exit.code == EXIT_BAD_INPUT and _Parser.last_error and "--json" in arguments:
            _fail(argparse.Namespace(json=True), _Parser.last_error, EXIT_BAD_INPUT, echo=False)
        raise
    try:
        return int(args.handler(args) or 0)
    except CliError as error:
        return _fail(args, f"error: {error}", error.exit_code)
    except KeyboardInterrupt:
        return _fail(args, "interrupted", EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the last line of defence: a message, never a traceback
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug else "; run with 'interaction-auditor --debug ...' for the traceback"
        return _fail(args, f"internal error: {type(error).__name__}: {error}{hint}", EXIT_INTERNAL)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
