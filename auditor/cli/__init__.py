"""The ``interaction-auditor`` command line.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``;
``main`` discovers them, so adding a command never means editing a central list. Every command has
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

A handler raises :class:`CliError` for an error the user can fix; ``main`` prints it as
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    """Report an error on stderr (and as JSON on stdout under ``--json``); return its exit code."""
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
    args = parser.parse_args(argv)
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
