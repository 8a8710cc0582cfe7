"""``interaction-auditor records``: verify, export, copy and count the audit records of a store.

Examples::

    interaction-auditor records verify --store postgresql://auditor@db:5432/audits
    interaction-auditor records export --store sqlite:///audits.sqlite --out audits.jsonl --from 2025-03-01
    interaction-auditor records copy --from sqlite:///audits.sqlite --to postgresql://auditor@db:5432/audits
    interaction-auditor records stats --store "$AUDITOR_STORE_URL" --json
    interaction-auditor records show --store sqlite:///audits.sqlite --last 3   # as people read them

Why a command of its own: the fleet's PostgreSQL store is evidence that outlives any replica. An
operator must be able to check its chain, hand an export to an auditor, and move an embedded SQLite
store into the fleet store without starting a service. ``copy`` verifies the source chain before
it writes anything and the target chain after, and compares the two record by record (when the
source starts at the genesis hash, the copied chain is hash-for-hash the same; a source cut by
retention starts at its anchor, so the copy gets a new chain over the same records).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from auditor.cli import EXIT_BAD_INPUT, EXIT_MISSING_RESOURCE, EXIT_NOT_ACCEPTED, CliError
from auditor.cli.report_command import open_existing_store

EPILOG = """\
store URLs: sqlite:///relative.sqlite, sqlite:////abs/path.sqlite, a file path, or
  postgresql://user[:password]@host:port/db (default for --store: $AUDITOR_STORE_URL).
exit codes: 0 ok; 1 internal error; 2 bad input (URL, times, output path, a non-empty copy target);
  3 a store is missing, unreachable or unreadable; 4 a hash chain failed verification (verify, copy)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "records", help="verify, export, copy, count or show the audit records of a store",
        description="Work on the hash-chained audit record store directly (SQLite or PostgreSQL).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def store_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", default=os.environ.get("AUDITOR_STORE_URL"),
                       help="store URL (default: $AUDITOR_STORE_URL)")
        p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")

    verify = actions.add_parser("verify", help="check every hash, link and the chain head (exit 4 on a break)",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    store_option(verify)
    verify.set_defaults(handler=run_verify)

    export = actions.add_parser("export", help="write the records as JSON lines (chain order, hashes included)",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    store_option(export)
    export.add_argument("--out", default="-", metavar="FILE", help="output file, '-' for stdout (default)")
    export.add_argument("--from", dest="since", default=None, metavar="ISO", help="first created_at (inclusive)")
    export.add_argument("--to", dest="until", default=None, metavar="ISO", help="last created_at (exclusive)")
    export.set_defaults(handler=run_export)

    copy = actions.add_parser("copy", help="copy every record into an empty store, verifying both chains",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    copy.add_argument("--from", dest="source", required=True, metavar="URL", help="the store to copy from")
    copy.add_argument("--to", dest="target", required=True, metavar="URL",
                      help="the store to copy into (created if missing; must hold no records)")
    copy.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    copy.set_defaults(handler=run_copy)

    stats = actions.add_parser("stats", help="count the records by model, outcome, sampling reason and flag",
                               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    store_option(stats)
    stats.set_defaults(handler=run_stats)

    from auditor.cli.records_show import add_parser as add_show_parser

    add_show_parser(actions, EPILOG, store_option)


def _emit(args: argparse.Namespace, result: dict[str, Any], line: str) -> None:
    if args.json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(line, file=sys.stderr if getattr(args, "out", None) in ("-", "") else sys.stdout)


def _url(store: Any) -> str:
    return str(getattr(store, "url", ""))


def _chain_line(report: Any) -> str:
    if report.ok:
        return f"hash chain verified: {report.checked} records"
    return (f"hash chain FAILED at record {report.first_bad}: {report.reason} "
            f"({report.checked} records before it verified)")


def run_verify(args: argparse.Namespace) -> int:
    store = open_existing_store(args.store)
    try:
        report = store.verify_chain()
        result = {"store": _url(store), "chain": report.model_dump()}
    finally:
        store.close()
    _emit(args, result, _chain_line(report))
    return 0 if report.ok else EXIT_NOT_ACCEPTED


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from auditor.reports import parse_time

    try:
        since, until = parse_time(args.since), parse_time(args.until)
    except ValueError as error:
        raise CliError(f"bad --from/--to: {error}", EXIT_BAD_INPUT) from error
    to_stdout = args.out in ("-", "")
    if to_stdout and args.json:
        raise CliError("--json prints a summary on stdout: write the records to a file with --out FILE", EXIT_BAD_INPUT)
    if not to_stdout and not Path(args.out).expanduser().resolve().parent.is_dir():
        raise CliError(f"cannot write {args.out!r}: its directory does not exist", EXIT_BAD_INPUT)
    store = open_existing_store(args.store)
    try:
        if to_stdout:
            n = store.export_jsonl(sys.stdout, since=since, until=until)
        else:
            n = store.export_jsonl(Path(args.out).expanduser(), since=since, until=until)
        result = {"store": _url(store), "out": args.out, "records": n}
    finally:
        store.close()
    _emit(args, result, f"exported {n} records to {'stdout' if to_stdout else args.out}")
    return 0


def _open_target(url: str) -> Any:
    from auditor.runtime.store import open_store
    from auditor.runtime.store_base import StoreError, StoreUnavailable, redact_url

    try:
        return open_store(url)
    except StoreUnavailable as error:
        raise CliError(str(error), EXIT_MISSING_RESOURCE) from error
    except (StoreError, OSError) as error:
        raise CliError(f"cannot open the target store {redact_url(url)!r}: {error}", EXIT_BAD_INPUT) from error


def run_copy(args: argparse.Namespace) -> int:
    from auditor.runtime.store_base import GENESIS_HASH

    source = open_existing_store(args.source)
    target = None
    try:
        before = source.verify_chain()
        if not before.ok:
            _emit(args, {"source": _url(source), "source_chain": before.model_dump(), "copied": 0},
                  f"source {_chain_line(before)}; nothing copied")
            return EXIT_NOT_ACCEPTED
        target = _open_target(args.target)
        if target.count():
            raise CliError(f"the target store {_url(target)!r} already holds {target.count()} records; copy "
                           "needs an empty one", EXIT_BAD_INPUT)
        copied, same_hashes, cursor, first_prev = 0, True, None, None
        while True:
            page, cursor = source.query(limit=1000, cursor=cursor)
            for record in page:
                first_prev = record.prev_hash if copied == 0 else first_prev
                stored = target.append(record.model_copy(update={"prev_hash": None, "record_hash": None}))
                same_hashes = same_hashes and stored.record_hash == record.record_hash
                copied += 1
            if cursor is None:
                break
        after = target.verify_chain()
        result = {"source": _url(source), "target": _url(target), "copied": copied,
                  "source_chain": before.model_dump(), "target_chain": after.model_dump(),
                  "identical_hashes": same_hashes}
    finally:
        source.close()
        if target is not None:
            target.close()
    ok = after.ok and after.checked == before.checked == copied
    line = f"copied {copied} records; source {_chain_line(before)}; target {_chain_line(after)}"
    if ok and not same_hashes and first_prev not in (None, GENESIS_HASH):
        line += " (the source starts at a retention anchor: the copy is a new chain over the same records)"
    _emit(args, result, line)
    return 0 if ok else EXIT_NOT_ACCEPTED


def run_stats(args: argparse.Namespace) -> int:
    store = open_existing_store(args.store)
    try:
        result = {"store": _url(store), "records": store.count(),
                  **{f"by_{field}": store.count_by(field) for field in ("model_id", "outcome", "sampling_reason",
                                                                         "flags")}}
        first, _ = store.query(limit=1)
    finally:
        store.close()
    line = (f"{result['records']} records; by model {result['by_model_id']}; by outcome {result['by_outcome']}; "
            f"by sampling reason {result['by_sampling_reason']}; flags {result['by_flags']}"
            + (f"; oldest {first[0].created_at.isoformat()}" if first else ""))
    _emit(args, result, line)
    return 0
