"""The ``interaction-auditor`` command line.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``;
``main`` discovers them, so adding a command never means editing a central list.

Exit codes (all commands): 0 success, 1 unexpected internal error, 2 bad input or usage
(a message names the problem), 3 a required resource (model, store) is missing or unreadable,
4 a check ran and missed its acceptance target (``testbed validate``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING_RESOURCE = 3
EXIT_NOT_ACCEPTED = 4


class CliError(Exception):
    """An error the user can fix; carries the exit code and a message that names the problem."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interaction-auditor",
        description="Explain a model's answers with AND-OR interactions and audit them.",
        epilog="Exit codes: 0 ok, 1 internal error, 2 bad input, 3 missing model or store, "
        "4 a check missed its acceptance target.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
