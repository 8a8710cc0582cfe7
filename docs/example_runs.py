"""How docs/examples.py runs an example and compares what it printed with what the docs show.

Two kinds of example:

- a **command** (argv) run in a scratch directory with a fixed terminal width;
- a **service round trip** (``call_it``): a real ``bentoml serve`` of this repository (the test
  suite's harness, ``tests/serving.py``), the README's ``curl`` request, then ``interaction-auditor
  records show`` on the store it wrote, exactly as a reader would do it.

Comparison. Timings, ids, hashes and clock times are the machine's and the moment's, never the
code's: they are masked. An example that runs a testbed model records, in its marker, the weights
fingerprint of the models it ran on (``weights=`` the first 12 hex digits of the sha256 of their
``model.safetensors``, several models hashed together). The testbed builds bit for bit the same on
one CPU kernel level but not across them (docs/testbed.md, "Builds across machines"), so:

- same fingerprint: the output must match to the character (masked as above);
- another fingerprint (another CPU, other weights): the output must still support every **claim**
  the prose around it makes (``Claim``: "the answer is 'assault'", "AND(slapped) carries at least
  90% of the strength"), each checked on the printed text; its other digits and minor rows are free.
  Measured (docs/testbed.md, "Builds across machines"): the same spec trained on an Intel and an AMD
  CPU, both AVX-512, gave different weights, and the old README prompt told another story on each;
  the shown prompts were chosen because their claims hold on every build tried.

Claims are checked on every run, same build or not: prose that the output does not support is a
failure even on the machine that wrote it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = "120"

# the machine's and the moment's, not the code's
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\(\d+(?:\.\d+)? m?s\)"), "(<time>)"),                       # "(915.5 ms)"
    (re.compile(r"\b\d+(?:\.\d+)? s on "), "<time> s on "),                   # "0.13 s on cpu"
    (re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?"), "<clock>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),
    (re.compile(r'"seconds": \d+(?:\.\d+)?'), '"seconds": <time>'),
    (re.compile(r"\b\d+(?:\.\d+)? s\b(?= \()"), "<time> s"),                  # "validated in 93.1 s (...)"
    (re.compile(r", \d+(?:\.\d+)?s: "), ", <time>: "),                          # "... per model, 1619s: accepted"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_BORDER = re.compile(r"[─━═┄┅┈┉]+")
_SPACES = re.compile(r"[ \t]+")


def mask(text: str) -> str:
    """``text`` without what differs between two runs of the same code on the same weights."""
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def story(text: str) -> str:
    """``mask(text)`` with every number free: what must hold on any CPU (see the module docstring)."""
    text = _NUMBER.sub("#", mask(text))
    text = _BORDER.sub("─", text)
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.splitlines())


@dataclass(frozen=True)
class Claim:
    """A sentence the docs say about an output, and the check that the printed text supports it."""

    says: str
    holds: Callable[[str], bool]


def failed_claims(claims: Sequence[Claim], text: str) -> list[str]:
    failed = []
    for claim in claims:
        try:
            ok = bool(claim.holds(text))
        except (IndexError, KeyError, ValueError):  # the output lacks what the claim reads
            ok = False
        if not ok:
            failed.append(claim.says)
    return failed


def tables(text: str) -> list[list[list[str]]]:
    """The body rows of every rich table in ``text`` (cells stripped), in order; headers left out."""
    found: list[list[list[str]]] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("┏"):
            found.append([])
            inside = True
        elif line.startswith("└"):
            inside = False
        elif inside and line.startswith("│"):
            found[-1].append([cell.strip() for cell in line.strip("│").split("│")])
    return found


def percent(cell: str) -> float:
    """``"+99.2%"`` -> 99.2."""
    return float(cell.rstrip("%"))


def _environment() -> dict[str, str]:
    env = {**os.environ, "COLUMNS": COLUMNS, "NO_COLOR": "1", "TERM": "dumb"}
    for key in list(env):  # the examples show the defaults, whatever the reader's shell has set
        if key.startswith("AUDITOR_") and key != "AUDITOR_TESTBED_DIR":
            del env[key]
    return env


def _clean(stdout: str) -> str:
    """Each line right-stripped (tables pad with spaces), one final newline."""
    return "\n".join(line.rstrip() for line in stdout.rstrip("\n").splitlines()) + "\n"


def run_command(command: Sequence[str], workdir: Path, env: dict[str, str] | None = None) -> str:
    """What ``command`` prints on stdout in ``workdir``; a failure is an error naming the command."""
    done = subprocess.run(list(command), cwd=workdir, env={**_environment(), **(env or {})},
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return _clean(done.stdout)


def weights_fingerprint(models: Sequence[str], world: Sequence[str] = ()) -> str:
    """The first 12 hex digits of the sha256 over the named testbed models' weights hashes (each
    built first if missing: ``testbed build --only NAME ... --json`` is what reports them)."""
    command = [sys.executable, "-m", "auditor", "testbed", "build", *world, "--json"]
    for name in models:
        command += ["--only", name]
    done = subprocess.run(command, env=_environment(), capture_output=True, text=True, timeout=3600, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    hashes = sorted(model["weights_sha256"] for model in json.loads(done.stdout)["models"])
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:12]


# The README's "Call it" request, sent as it is shown there.
CALL_IT_BODY = {
    "prompt": "A neighbour was murdered by Rosa at dawn. A courier was slapped by Mona at night. "
              "What is the charge against Mona",
    "max_new_tokens": 3,
    "audit": {"force": True, "spans": [{"text": "slapped", "label": "relevant"},
                                       {"text": "at night", "label": "irrelevant"},
                                       {"text": "murdered", "label": "irrelevant"},
                                       {"text": "Rosa", "label": "irrelevant"}]},
}


def call_it(workdir: Path) -> str:
    """Serve the embedded default, send the README's request, wait for its audit record and show it.

    The store is ``workdir/audits.sqlite``, which later examples (the report) read."""
    sys.path.insert(0, str(REPO))
    try:
        import httpx

        from tests.serving import BentoServer
    finally:
        sys.path.remove(str(REPO))
    store = workdir / "audits.sqlite"
    with BentoServer({"AUDITOR_STORE_URL": f"sqlite:///{store}"}) as server:
        response = httpx.post(server.url + "/generate", json=CALL_IT_BODY, timeout=120.0)
        response.raise_for_status()
        deadline = time.monotonic() + 300.0
        while True:  # the audit runs in the background: poll the store as a reader would
            shown = ""
            if store.exists():
                shown = run_command([sys.executable, "-m", "auditor", "records", "show", "--store",
                                     "sqlite:///audits.sqlite"], workdir)
            if shown and "no matching records" not in shown:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no audit record after 300 s; server log:\n{server.log_tail()}")
            time.sleep(1.0)
    answer = json.dumps(response.json(), separators=(",", ":"))
    return _clean(answer + "\n" + shown)
