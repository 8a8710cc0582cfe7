"""Every command output shown in README.md and docs/ comes from here: run it, never type it.

A shown output sits between markers in a Markdown file::

    <!-- example: NAME -->                       (or <!-- example: NAME weights=0123456789ab -->)
    ```
    ...what the command printed...
    ```
    <!-- /example -->

``python docs/examples.py`` runs each example and writes its output between its markers (and, for
an example that runs testbed models, their weights fingerprint into the marker);
``python docs/examples.py --check`` runs them and fails (exit 1, with a diff) where the files differ
from what the code prints now. ``--cheap`` keeps to the examples that need no trained model
(seconds); ``--only NAME`` to one. The test suite runs ``--check`` on all of them
(tests/test_docs_examples.py). What is compared, and why numbers may differ on another CPU but
the story may not: ``docs/example_runs.py``.

Why a script and not a test of hand-copied text: a README whose numbers nobody re-ran loses its
readers at the first command (issue 21).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import example_runs  # noqa: E402  (docs/ is not a package: the runner sits beside this script)
from example_runs import REPO, Claim, failed_claims, mask, percent, tables  # noqa: E402

MARKER = re.compile(r"(<!-- example: (?P<name>[a-z0-9-]+)(?: weights=(?P<weights>[0-9a-f]+))? -->\n```\n)"
                    r"(?P<body>.*?)(```\n<!-- /example -->)", re.DOTALL)


def _planted_outputs(workdir: Path) -> None:
    """The README's model-agnostic input: the engine issue's planted game on 8 players (seeded)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import games

        (workdir / "outputs.json").write_text(json.dumps(games.make_game("planted", 8).tolist()))
    finally:
        sys.path.remove(str(REPO / "bench"))


# The README's RAG example: two passages of the testbed's world, one relevant and one not.
PASSAGES = [
    {"id": "doc-1", "text": "A neighbour was murdered by Rosa at dawn.", "label": "irrelevant"},
    {"id": "doc-2", "text": "A courier was slapped by Mona at night.", "label": "relevant"},
]


def _passages(workdir: Path) -> None:
    (workdir / "passages.json").write_text(json.dumps(PASSAGES, indent=1) + "\n")


@dataclass(frozen=True)
class Example:
    """One shown output: the command a reader runs (or a runner doing what the reader does), what it
    needs first, and the testbed models its output depends on (their fingerprint goes in the marker)."""

    command: Sequence[str] = ()
    setup: Callable[[Path], None] | None = None
    runner: Callable[[Path], str] | None = None
    models: Sequence[str] = ()          # testbed model names; empty: needs no trained model (cheap)
    world: Sequence[str] = ()           # ``testbed build`` options naming the models' world
    env: dict[str, str] = field(default_factory=dict)
    needs: Sequence[str] = ()           # examples whose files this one reads (run first, in the same directory)
    claims: Sequence[Claim] = ()        # what the prose around the output says of it: holds on any build

    @property
    def cheap(self) -> bool:
        return not self.models


NAMES = "judge,knife,alibi,motive,a,b,c,d"
CALL_IT_PROMPT = example_runs.CALL_IT_BODY["prompt"]  # the README's audit and its "Call it" request
ALTERNATE_WORLD = ("--seed", "1", "--template-set", "alternate")

def _misattribution(text: str) -> float:
    return float(re.search(r"misattribution (\d+\.\d+)", text).group(1))


def _top_record_term(text: str) -> tuple[str, float]:
    """The first salient term of ``records show``: ``("AND([p0:relevant])", 99.0)``."""
    term = re.search(r"^    (\w+\(.*?\)) = [-+][\d.]+  \((\d+)% of salient strength\)", text, re.MULTILINE)
    return term.group(1), float(term.group(2))


IRRELEVANT_WORDS = ("at night", "murdered", "Rosa")
AUDIT_CLAIMS = (
    Claim("the answer is 'assault'", lambda text: "answer: 'assault'" in text),
    Claim("AND(slapped) is the top term, with at least half of the interaction strength",
          lambda text: tables(text)[0][0][1:3] == ["AND", "slapped"] and percent(tables(text)[0][0][5]) >= 50),
    Claim("the terms with an irrelevant player carry less than a quarter of the strength in all",
          lambda text: sum(abs(percent(row[5])) for row in tables(text)[0]
                           if any(word in row[2] for word in IRRELEVANT_WORDS)) < 25),
)
CALL_IT_CLAIMS = (
    Claim("the service answers 'assault'", lambda text: '"text":"assault"' in text),
    Claim("the record's top term is AND of player 0 (slapped), with at least half of the salient strength",
          lambda text: _top_record_term(text)[0] == "AND([p0:relevant])" and _top_record_term(text)[1] >= 50),
    Claim("the record's misattribution is under the flag threshold (0.3), so no flag",
          lambda text: _misattribution(text) < 0.3 and "flags: none" in text),
)
RAG_CLAIMS = (
    Claim("the answer is 'assault'", lambda text: "answer: 'assault'" in text),
    Claim("AND(doc-2), the relevant passage, is the top passage term, with at least half the strength",
          lambda text: tables(text)[0][0][1:3] == ["AND", "doc-2"] and percent(tables(text)[0][0][5]) >= 50),
    Claim("the passages are refined into words, and the top word term holds 'slapped'",
          lambda text: "refined into words:" in text and "slapped" in tables(text)[1][0][2]),
)
REPORT_CLAIMS = (
    Claim("the report counts the one audit, unflagged, on a verified chain",
          lambda text: (lambda r: (r["audits"], r["flagged"], r["chain"]["ok"]) == (1, 0, True))(json.loads(text))),
)
VALIDATE_CLAIMS = (
    Claim("misattribution and overfitting both pass", lambda text: text.count("pass") >= 2 and "FAIL" not in text),
)

EXAMPLES: dict[str, Example] = {
    "interactions-sparse": Example(
        ["interaction-auditor", "interactions", "--values", "outputs.json", "--names", NAMES], _planted_outputs
    ),
    "interactions-shapley": Example(
        ["interaction-auditor", "interactions", "--values", "outputs.json", "--names", NAMES, "--index", "shapley"],
        _planted_outputs,
    ),
    "audit-call-it": Example(
        ["interaction-auditor", "audit", "--model", "testbed:clean", "--prompt", CALL_IT_PROMPT,
         "--players", "slapped|at night|murdered|Rosa"], models=("clean",), claims=AUDIT_CLAIMS),
    # a real server, the README's curl request, then its record: the store stays for the report below
    "call-it": Example(runner=example_runs.call_it, models=("clean",), claims=CALL_IT_CLAIMS),
    "report-summary": Example(
        ["interaction-auditor", "report", "--store", "sqlite:///audits.sqlite", "--out", "report.html", "--json"],
        models=("clean",), needs=("call-it",), claims=REPORT_CLAIMS),
    "rag-segments": Example(
        ["sh", "-c", "cat passages.json && interaction-auditor audit --model testbed:clean --players segments "
         "--segments passages.json --prompt \"$(cat prompt.txt)\""],
        lambda workdir: (_passages(workdir), (workdir / "prompt.txt").write_text(CALL_IT_PROMPT)),
        models=("clean",), claims=RAG_CLAIMS),
    "validate-alternate": Example(
        ["interaction-auditor", "testbed", "validate", *ALTERNATE_WORLD, "--reference-prompts", "2"], models=(
            "clean", "shortcut", "overfit-1", "overfit-2", "overfit-3", "overfit-4", "overfit-5"),
        world=ALTERNATE_WORLD, claims=VALIDATE_CLAIMS, env={"COLUMNS": "200"}),  # its table has 14 columns
}


def run(example: Example, workdir: Path) -> str:
    """What the example prints, run in ``workdir`` (shared by the examples of one run, in order:
    the report reads the store that "call-it" wrote)."""
    if example.setup is not None:
        example.setup(workdir)
    if example.runner is not None:
        return example.runner(workdir)
    return example_runs.run_command(example.command, workdir, example.env)


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Shown:
    path: Path
    body: str
    weights: str | None


def shown(paths: Sequence[Path]) -> dict[str, Shown]:
    """Every marked example in ``paths`` by name. A name may be shown once."""
    found: dict[str, Shown] = {}
    for path in paths:
        for match in MARKER.finditer(path.read_text()):
            name = match.group("name")
            if name in found:
                raise ValueError(f"example {name!r} is shown twice ({found[name].path.name} and {path.name})")
            found[name] = Shown(path, match.group("body"), match.group("weights"))
    return found


def compare(name: str, before: Shown, after: str, weights: str | None) -> list[str]:
    """What is wrong with the shown output (empty: nothing). Same weights (or none): it must be
    what was printed, to the character, masked; other weights: the printed output must support
    every claim. The claims must hold on the printed output in both cases."""
    problems = [f"{name}: the output no longer supports the claim: {says}"
                for says in failed_claims(EXAMPLES[name].claims, after)]
    if weights is not None and before.weights != weights:
        print(f"{name}: weights {weights} here, {before.weights} shown: other weights (another CPU), "
              f"so the claims are checked, not the digits")
        return problems
    if mask(before.body) != mask(after):
        problems += difflib.unified_diff(mask(before.body).splitlines(), mask(after).splitlines(),
                                         f"{before.path.name}: {name} (shown)", f"{name} (printed now)", lineterm="")
    return problems


def write(name: str, before: Shown, after: str, weights: str | None) -> None:
    text = before.path.read_text()
    tag = f"<!-- example: {name}" + (f" weights={weights}" if weights else "") + " -->\n```\n"
    text = MARKER.sub(lambda m: m.group(0) if m.group("name") != name else tag + after + m.group(5), text)
    before.path.write_text(text)
    print(f"wrote {name} into {before.path}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    parser.add_argument("--cheap", action="store_true", help="only the examples that need no trained model")
    parser.add_argument("--only", action="append", default=None, metavar="NAME", help="only this example (repeatable)")
    args = parser.parse_args(argv)

    marked = shown(documents())
    unknown = sorted(set(marked) - set(EXAMPLES))
    unshown = sorted(set(EXAMPLES) - set(marked))
    if unknown or unshown:
        print(f"examples shown but not defined: {unknown}; defined but not shown: {unshown}", file=sys.stderr)
        return 1
    if args.only and not set(args.only) <= set(EXAMPLES):
        print(f"unknown example(s) {sorted(set(args.only) - set(EXAMPLES))}; known: {sorted(EXAMPLES)}",
              file=sys.stderr)
        return 2
    wanted = {name for name, example in EXAMPLES.items()
              if not (args.cheap and not example.cheap) and not (args.only and name not in args.only)}
    needed = {need for name in wanted for need in EXAMPLES[name].needs} - wanted
    failed = checked = 0
    with tempfile.TemporaryDirectory(prefix="ia-examples-") as scratch:
        for name, example in EXAMPLES.items():
            if name in needed:  # run for the files it leaves, neither compared nor written
                run(example, Path(scratch))
            if name not in wanted:
                continue
            weights = example_runs.weights_fingerprint(example.models, example.world) if example.models else None
            after = run(example, Path(scratch))
            checked += 1
            if args.check:
                diff = compare(name, marked[name], after, weights)
                if diff:
                    failed += 1
                    print("\n".join(diff))
            else:
                unsupported = failed_claims(example.claims, after)
                if unsupported:  # never write prose's evidence that contradicts it
                    print(f"{name}: not written, the output does not support: {unsupported}", file=sys.stderr)
                    failed += 1
                    continue
                write(name, marked[name], after, weights)
    if args.check:
        print(f"{checked - failed} examples match, {failed} differ" if failed else f"all {checked} examples match")
    elif failed:
        print(f"{failed} examples not written", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
