"""``interaction-auditor report``: a compliance report of the audit store for a period, as HTML or JSON.

Examples::

    interaction-auditor report --store sqlite:///./audits.sqlite --from 2025-03-01 --to 2025-04-01 \\
        --format html --out march.html
    interaction-auditor report --store ./audits.sqlite --model testbed:clean --format json --out - | jq .counts
    interaction-auditor report --store ./audits.sqlite --out march.html --json   # summary on stdout

The HTML page is self-contained (inline CSS and SVG, no scripts, no external assets); the JSON holds
the same content and validates against ``auditor.reports.ReportModel``. Reading the records shows a
progress counter on stderr, so stdout stays clean for ``--out -`` and ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from auditor.cli import EXIT_BAD_INPUT, EXIT_MISSING_RESOURCE, CliError

EPILOG = """\
times: ISO-8601 (2025-03-01, 2025-03-01T12:00:00Z, 2025-03-01T12:00:00+02:00); naive times are UTC.
  The period is from <= created_at < to; leave either out for an open end.
exit codes: 0 report written; 1 internal error; 2 bad input (times, format, store URL, output path);
  3 the store is missing or unreadable.
A failed hash-chain verification is part of the report (and of the --json summary: chain.ok), not an
error: the report is the evidence."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a compliance report (HTML or JSON) of the audits in a period",
        description="Summarise the audit store over a period: model identities, audit counts by sampling reason "
        "and outcome, score distributions, flagged audits with their top interactions drawn over the prompt, "
        "the hash-chain verification, the settings used, and the methods.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--store", default=os.environ.get("AUDITOR_STORE_URL"),
                        help="store URL (sqlite:///relative.sqlite, sqlite:////abs/path.sqlite, "
                        "postgresql://user@host:port/db) or a file path "
                        "(default: $AUDITOR_STORE_URL)")
    parser.add_argument("--from", dest="since", default=None, metavar="ISO", help="start of the period (inclusive)")
    parser.add_argument("--to", dest="until", default=None, metavar="ISO", help="end of the period (exclusive)")
    parser.add_argument("--model", default=None, help="only the audits of this model_id (e.g. testbed:clean)")
    parser.add_argument("--format", choices=["html", "json"], default=None,
                        help="html or json (default: from the --out suffix, else html)")
    parser.add_argument("--out", default="-", metavar="FILE", help="output file, '-' for stdout (default)")
    parser.add_argument("--top", type=int, default=5, help="interactions drawn per flagged audit (default 5)")
    parser.add_argument("--max-flagged", type=int, default=50,
                        help="flagged audits shown, most recent first (default 50; all are counted)")
    parser.add_argument("--bins", type=int, default=20, help="histogram bins (default 20)")
    parser.add_argument("--title", default="Interaction audit report", help="report title")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON summary (output path, counts, chain check) on stdout")
    parser.set_defaults(handler=run)


def _store_path(url: str) -> str | None:
    """The SQLite file behind ``url`` (None for an in-memory store); CliError for a bad URL."""
    from auditor.runtime.store import StoreError, sqlite_path_from_url

    try:
        path = sqlite_path_from_url(url)
    except StoreError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from error
    return None if path == ":memory:" else path


def open_existing_store(url: str | None) -> Any:
    """Open a store that must already exist (a report never creates one); exit 3 when it does not."""
    from auditor.runtime.store import StoreError, open_store

    if not url:
        raise CliError("no store given: pass --store URL or set AUDITOR_STORE_URL", EXIT_BAD_INPUT)
    from auditor.runtime.store_base import redact_url
    from auditor.runtime.store_postgres import has_audit_store, is_postgres_url

    if is_postgres_url(url):  # a server store: it must hold the audit tables already
        try:
            if not has_audit_store(url):
                raise CliError(f"{redact_url(url)!r} holds no audit store (no auditor_schema, audits or meta "
                               "table); check --store or AUDITOR_STORE_URL", EXIT_MISSING_RESOURCE)
        except StoreError as error:
            raise CliError(str(error), EXIT_MISSING_RESOURCE) from error
    path = None if is_postgres_url(url) else _store_path(url)
    if path is not None:
        file = Path(path).expanduser()
        if file.is_dir():
            raise CliError(f"{str(file)!r} is a directory, not an audit store file; check --store (given: {url!r}) "
                           "or AUDITOR_STORE_URL", EXIT_MISSING_RESOURCE)
        if not file.is_file():
            hint = "" if file.parent.is_dir() else f" (directory {str(file.parent)!r} does not exist either)"
            raise CliError(f"no audit store at {str(file)!r}{hint}; check --store (given: {url!r}) or "
                           "AUDITOR_STORE_URL", EXIT_MISSING_RESOURCE)
        _check_is_audit_store(file, url)
    try:
        store = open_store(url)
        store.count()
    except (sqlite3.DatabaseError, StoreError, OSError) as error:
        raise CliError(f"cannot read the audit store {redact_url(url)!r}: {error}", EXIT_MISSING_RESOURCE) from error
    return store


def _check_is_audit_store(file: Path, url: str) -> None:
    """Exit 3 unless ``file`` is an SQLite database holding the audit tables, checked read-only:
    ``open_store`` creates its tables in whatever file it is given, so a mistyped ``--store`` naming
    another application's database (or an empty file) would otherwise be altered and reported as
    a store with 0 audits and a verified chain."""
    try:
        connection = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise CliError(f"cannot read the audit store {url!r}: {error}", EXIT_MISSING_RESOURCE) from error
    missing = sorted({"audits", "meta"} - tables)
    if missing:
        raise CliError(f"{str(file)!r} is not an audit store (no {' or '.join(missing)} table); check --store "
                       f"(given: {url!r}) or AUDITOR_STORE_URL", EXIT_MISSING_RESOURCE)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from auditor.reports import build_report, parse_time, render_html, render_json

    for name in ("top", "max_flagged", "bins"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1", EXIT_BAD_INPUT)
    try:
        since, until = parse_time(args.since), parse_time(args.until)
    except ValueError as error:
        raise CliError(f"bad --from/--to: {error}", EXIT_BAD_INPUT) from error
    if since is not None and until is not None and since >= until:
        raise CliError(f"empty period: --from {args.since} is not before --to {args.until}", EXIT_BAD_INPUT)
    to_stdout = args.out in ("-", "")
    fmt = args.format or ("json" if not to_stdout and args.out.lower().endswith(".json") else "html")
    if to_stdout and args.json:
        raise CliError("--json prints a summary on stdout: write the report to a file with --out FILE", EXIT_BAD_INPUT)
    if not to_stdout:
        parent = Path(args.out).expanduser().resolve().parent
        if not parent.is_dir():
            raise CliError(f"cannot write {args.out!r}: directory {str(parent)!r} does not exist", EXIT_BAD_INPUT)

    store = open_existing_store(args.store)
    err = Console(stderr=True)
    try:
        with Progress(SpinnerColumn(), TextColumn("reading audit records: {task.completed} read"),
                      TimeElapsedColumn(), console=err, transient=True) as bar:
            task = bar.add_task("records", total=None)
            report = build_report(store, since, until, args.model, top_terms=args.top, max_flagged=args.max_flagged,
                                  bins=args.bins, title=args.title,
                                  progress=lambda done: bar.update(task, completed=done))
    except sqlite3.DatabaseError as error:
        raise CliError(f"cannot read the audit store {args.store!r}: {error}", EXIT_MISSING_RESOURCE) from error
    finally:
        store.close()
    text = render_html(report) if fmt == "html" else render_json(report)
    if to_stdout:
        sys.stdout.write(text)
        if not text.endswith("\n"):
            sys.stdout.write("\n")
    else:
        out = Path(args.out).expanduser()
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)

    summary = {
        "out": "-" if to_stdout else str(Path(args.out).expanduser()),
        "format": fmt,
        "period": {"from": report.period.since.isoformat() if report.period.since else None,
                   "to": report.period.until.isoformat() if report.period.until else None,
                   "model": report.period.model},
        "audits": report.counts.total,
        "flagged": report.counts.flagged,
        "by_reason": report.counts.by_reason,
        "by_outcome": report.counts.by_outcome,
        "models": [m.model_id for m in report.models],
        "chain": report.chain.model_dump(),
    }
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        chain = ("[green]hash chain verified[/green]" if report.chain.ok else
                 f"[bold red]hash chain FAILED at record {report.chain.first_bad}: {report.chain.reason}[/bold red]")
        where = "stdout" if to_stdout else summary["out"]
        err.print(f"{fmt} report -> {where}: {report.counts.total} audits, {report.counts.flagged} flagged, "
                  f"{len(report.models)} model(s); {chain} ({report.chain.checked} records)", highlight=False)
    return 0
