"""Every command output shown in README.md and docs/ comes from here: run it, never type it.

A shown output sits between markers in a Markdown file::

    <!-- example: NAME -->
    ```
    ...what the command printed...
    ```
    <!-- /example -->

``python docs/examples.py`` runs each example's command and writes its output between its markers;
``python docs/examples.py --check`` runs them and fails (exit 1, with a diff) where the files differ
from what the code prints now. Timings are masked in the comparison (they are the machine's, not
the code's); everything else must match to the character. ``--cheap`` keeps to the examples that
need no trained model (seconds; the test suite runs them, tests/test_docs_examples.py).

Why a script and not a test of hand-copied text: a README whose numbers nobody re-ran loses its
readers at the first command (issue 21). Commands run in a scratch directory with a fixed terminal
width, so tables wrap the same on every machine.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"(<!-- example: (?P<name>[a-z0-9-]+) -->\n```\n)(?P<body>.*?)(```\n<!-- /example -->)", re.DOTALL)
# the machine's, not the code's: "(915.5 ms)", "0.13 s on cpu"
TIMINGS = (re.compile(r"\(\d+(?:\.\d+)? m?s\)"), re.compile(r"\b\d+(?:\.\d+)? s on "))
COLUMNS = "120"


def _planted_outputs(workdir: Path) -> None:
    """The README's model-agnostic input: the engine issue's planted game on 8 players (seeded)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import json

        import games

        (workdir / "outputs.json").write_text(json.dumps(games.make_game("planted", 8).tolist()))
    finally:
        sys.path.remove(str(REPO / "bench"))


@dataclass(frozen=True)
class Example:
    """One shown output: the command a reader runs, and what it needs first."""

    command: Sequence[str]
    setup: Callable[[Path], None] | None = None
    cheap: bool = True  # needs no trained model: the test suite checks it
    env: dict[str, str] = field(default_factory=dict)


NAMES = "judge,knife,alibi,motive,a,b,c,d"
EXAMPLES: dict[str, Example] = {
    "interactions-sparse": Example(
        ["interaction-auditor", "interactions", "--values", "outputs.json", "--names", NAMES], _planted_outputs
    ),
    "interactions-shapley": Example(
        ["interaction-auditor", "interactions", "--values", "outputs.json", "--names", NAMES, "--index", "shapley"],
        _planted_outputs,
    ),
    "audit-call-it": Example(
        ["interaction-auditor", "audit", "--model", "testbed:clean", "--prompt",
         "A neighbour was murdered by Rosa at dawn. The window of a courier was smashed by Mona by accident. "
         "What is the charge against Mona", "--players", "smashed|by accident|murdered|Rosa"],
        cheap=False,  # the testbed model: built on first use, minutes on a fresh machine; weights per CPU kernel
    ),
}


def run(example: Example) -> str:
    """What the command prints on stdout, each line right-stripped (tables pad with spaces)."""
    with tempfile.TemporaryDirectory(prefix="ia-example-") as scratch:
        workdir = Path(scratch)
        if example.setup is not None:
            example.setup(workdir)
        env = {**os.environ, "COLUMNS": COLUMNS, "NO_COLOR": "1", **example.env}
        done = subprocess.run(list(example.command), cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(example.command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return "\n".join(line.rstrip() for line in done.stdout.rstrip("\n").splitlines()) + "\n"


def mask(text: str) -> str:
    for pattern in TIMINGS:
        text = pattern.sub("<time>", text)
    return text


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def shown(paths: Sequence[Path]) -> dict[str, tuple[Path, str]]:
    """Every marked example in ``paths``: name -> (file, shown output). A name may be shown once."""
    found: dict[str, tuple[Path, str]] = {}
    for path in paths:
        for match in MARKER.finditer(path.read_text()):
            name = match.group("name")
            if name in found:
                raise ValueError(f"example {name!r} is shown twice ({found[name][0].name} and {path.name})")
            found[name] = (path, match.group("body"))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    parser.add_argument("--cheap", action="store_true", help="only the examples that need no trained model")
    args = parser.parse_args(argv)

    marked = shown(documents())
    unknown = sorted(set(marked) - set(EXAMPLES))
    unshown = sorted(set(EXAMPLES) - set(marked))
    if unknown or unshown:
        print(f"examples shown but not defined: {unknown}; defined but not shown: {unshown}", file=sys.stderr)
        return 1
    failed = 0
    for name, example in EXAMPLES.items():
        if args.cheap and not example.cheap:
            continue
        path, before = marked[name]
        after = run(example)
        if args.check:
            if mask(before) != mask(after):
                failed += 1
                diff = difflib.unified_diff(mask(before).splitlines(), mask(after).splitlines(),
                                            f"{path.name}: {name} (shown)", f"{name} (printed now)", lineterm="")
                print("\n".join(diff))
            continue
        text = path.read_text()
        text = MARKER.sub(lambda m: m.group(0) if m.group("name") != name else m.group(1) + after + m.group(4), text)
        path.write_text(text)
        print(f"wrote {name} into {path}")
    if args.check:
        print(f"{len(EXAMPLES) - failed} examples match, {failed} differ" if failed else "all examples match")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
