"""``interaction-auditor records show``: read audit records as a person reads them.

Examples::

    interaction-auditor records show --store sqlite:///audits.sqlite              # the newest record
    interaction-auditor records show --store "$AUDITOR_STORE_URL" --last 5 --flagged
    interaction-auditor records show --request-id 86131540d7cc4e289616e80aed24234d --json

Why: ``export`` gives a machine the whole chain and ``stats`` counts it, but the question an
on-call engineer or a compliance officer brings to one answer is "what did its audit find?": the
answer, the players and their labels, the salient terms, misattribution and the flags, as the
record keeps them (redacted as the deployment chose: under the default ``masked`` redaction a
player is ``[p0:relevant]``, its position and label, never its text). The summary is computed from
the stored record only, so it shows exactly what the evidence holds.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from typing import Any

from auditor.cli import EXIT_BAD_INPUT, CliError
from auditor.cli.report_command import open_existing_store

PAGE = 1000


def add_parser(actions: argparse._SubParsersAction, epilog: str, store_option: Any) -> None:
    show = actions.add_parser("show", help="print audit records as people read them (the newest by default)",
                              epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    store_option(show)
    which = show.add_mutually_exclusive_group()
    which.add_argument("--last", type=int, default=1, metavar="N", help="the newest N records (default 1)")
    which.add_argument("--request-id", default=None, help="the records of one request (its X-Request-ID)")
    which.add_argument("--audit-id", default=None, help="one record by its audit id")
    show.add_argument("--flagged", action="store_true", help="only records with a flag (with --last)")
    show.add_argument("--top", type=int, default=5, metavar="K", help="salient terms shown per record (default 5)")
    show.set_defaults(handler=run_show)


def run_show(args: argparse.Namespace) -> int:
    if not 1 <= args.last <= 10_000:
        raise CliError("--last must be in 1..10000", EXIT_BAD_INPUT)
    if not 0 <= args.top <= 512:
        raise CliError("--top must be in 0..512", EXIT_BAD_INPUT)
    store = open_existing_store(args.store)
    try:
        records = _select(store, args)
    finally:
        store.close()
    if args.json:
        json.dump({"records": [summary(r.model_dump(mode="json"), args.top) for r in records]}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    if not records:
        print("no matching records")
    for i, record in enumerate(records):
        if i:
            print()
        print(render(summary(record.model_dump(mode="json"), args.top)))
    return 0


def _select(store: Any, args: argparse.Namespace) -> list[Any]:
    """The wanted records in chain order. Pages through the store (the query API reads oldest
    first), keeping only the newest ``--last``: memory stays bounded by the page size."""
    if args.audit_id is not None:
        record = store.get(args.audit_id)
        return [] if record is None else [record]
    kept: collections.deque[Any] = collections.deque(maxlen=args.last if args.request_id is None else None)
    cursor: str | None = None
    while True:
        page, cursor = store.query(flagged=True if args.flagged else None, limit=PAGE, cursor=cursor)
        kept.extend(r for r in page if args.request_id is None or r.request_id == args.request_id)
        if cursor is None:
            return list(kept)


def summary(record: dict[str, Any], top: int) -> dict[str, Any]:
    """The fields a reader needs from one record (a plain dict: ``--json`` prints it as it is)."""
    metrics = record.get("metrics") or {}
    players = record.get("players") or []
    names = [p.get("segment_id") or p.get("text") or f"p{p.get('index')}" for p in players]
    salient = sorted(record.get("salient") or [], key=lambda t: -abs(float(t.get("value", 0.0))))
    total = sum(abs(float(t.get("value", 0.0))) for t in salient)
    terms = [{"kind": str(t.get("kind", "")).upper(), "players": [names[i] if i < len(names) else f"p{i}"
                                                                  for i in t.get("players", [])],
              "value": float(t.get("value", 0.0)),
              "share_of_salient": abs(float(t.get("value", 0.0))) / total if total > 0 else 0.0}
             for t in salient[:top]]
    v_full, v_empty = metrics.get("v_full"), metrics.get("v_empty")
    refinement = metrics.get("refinement") or {}
    return {
        "audit_id": record.get("audit_id"),
        "request_id": record.get("request_id"),
        "created_at": record.get("created_at"),
        "model": record.get("model_id"),
        "outcome": record.get("outcome"),
        "error": record.get("error"),
        "redaction": record.get("redaction"),
        "answer": record.get("answer"),
        "granularity": metrics.get("granularity"),
        "players": [{"name": name, "label": p.get("label")} for name, p in zip(names, players)],
        "v_full_minus_v_empty": None if v_full is None or v_empty is None else float(v_full) - float(v_empty),
        "salient_terms": len(salient),
        "top_terms": terms,
        "misattribution": metrics.get("misattribution"),
        "overfitting": metrics.get("overfitting"),
        "cancellation": metrics.get("cancellation"),
        "refined_misattribution": refinement.get("misattribution"),
        "flags": list(record.get("flags") or []),
        "record_hash": record.get("record_hash"),
    }


def _number(value: Any, spec: str) -> str:
    return "-" if value is None else format(float(value), spec)


def render(s: dict[str, Any]) -> str:
    """A few aligned lines per record; the terms by the players' names as the record keeps them."""
    lines = [f"audit {s['audit_id']}  request {s['request_id']}",
             f"  model {s['model']}  outcome {s['outcome']}  redaction {s['redaction']}  at {s['created_at']}"]
    if s["outcome"] != "success":
        lines.append(f"  error: {s['error']}")
        return "\n".join(lines)
    players = ", ".join(p["name"] if str(p["name"]).endswith(f":{p['label']}]") else f"{p['name']} [{p['label']}]"
                        for p in s["players"])  # a masked player's placeholder already names its label
    lines += [f"  answer {s['answer']!r}   v(N) - v(empty) = {_number(s['v_full_minus_v_empty'], '+.2f')}",
              f"  players ({s['granularity']}): {players}",
              f"  salient terms {s['salient_terms']}   misattribution {_number(s['misattribution'], '.2f')}   "
              f"overfitting {_number(s['overfitting'], '.2f')}   cancellation {_number(s['cancellation'], '.2f')}"
              + ("" if s["refined_misattribution"] is None
                 else f"   refined misattribution {_number(s['refined_misattribution'], '.2f')}"),
              f"  flags: {', '.join(s['flags']) or 'none'}"]
    for term in s["top_terms"]:
        joiner = " & " if term["kind"] == "AND" else " | "
        lines.append(f"    {term['kind']}({joiner.join(term['players'])}) = {term['value']:+.2f}"
                     f"  ({term['share_of_salient']:.0%} of salient strength)")
    return "\n".join(lines)
