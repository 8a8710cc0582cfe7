"""Every output shown in README.md and docs/ is what the code prints now (docs/examples.py).

The cheap examples (no trained model) are checked in every run; the whole set, testbed models and
a real server included, in the slow run (CI). What "the same" means across CPUs: docs/example_runs.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts import load_script

REPO = Path(__file__).resolve().parents[1]


def _examples_module():
    return load_script("docs/examples.py", "docs_examples")


def test_the_shown_outputs_are_what_the_commands_print() -> None:
    done = subprocess.run([sys.executable, "docs/examples.py", "--check", "--cheap"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_every_shown_output_reproduces_testbed_models_and_server_included() -> None:
    """The issue's bar: ``python docs/examples.py --check`` passes (builds what it needs first)."""
    done = subprocess.run([sys.executable, "docs/examples.py", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]


def _one_example_doc(examples, tmp_path, monkeypatch, name: str, body: str, weights: str | None = None):
    doc = tmp_path / "README.md"
    tag = f"<!-- example: {name}" + (f" weights={weights}" if weights else "") + " -->"
    doc.write_text(f"{tag}\n```\n{body}```\n<!-- /example -->\n")
    monkeypatch.setattr(examples, "documents", lambda: [doc])
    monkeypatch.setattr(examples, "EXAMPLES", {name: examples.EXAMPLES[name]})
    return doc


def test_a_stale_output_is_caught_and_timings_are_not(tmp_path, monkeypatch) -> None:
    examples = _examples_module()
    printed = examples.run(examples.EXAMPLES["interactions-sparse"], tmp_path)
    doc = _one_example_doc(examples, tmp_path, monkeypatch, "interactions-sparse", printed)
    assert examples.main(["--check"]) == 0
    doc.write_text(doc.read_text().replace(re.search(r"\(\d+(\.\d+)? ms\)", printed).group(0), "(123.4 ms)"))
    assert examples.main(["--check"]) == 0  # another machine's timing is not a difference
    doc.write_text(doc.read_text().replace("+2.9306", "+2.9307"))
    assert examples.main(["--check"]) == 1  # a changed number is
    assert examples.main([]) == 0  # writing puts the printed output back
    assert examples.main(["--check"]) == 0 and "+2.9306" in doc.read_text()


AUDIT_TABLE = """answer: 'assault'   v(N) = 6.8366   v(empty) = -9.5416   baseline = pad
players (spans): 0:slapped, 1:at night, 2:murdered, 3:Rosa
scoring: 208 tokens, 4 forward calls, 3.99 s on cpu (auto); LP gap 0.0e+00
               top 10 interactions
┏━━━┳━━━━━━┳━━━━━━━━━┳━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┓
┃ # ┃ kind ┃ words   ┃ order ┃    value ┃  share ┃
┡━━━╇━━━━━━╇━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━╇━━━━━━━━┩
│ 1 │ AND  │ slapped │     1 │ +15.6878 │ +99.2% │
{extra}└───┴──────┴─────────┴───────┴──────────┴────────┘
"""


def test_other_weights_are_held_to_the_claims_not_the_digits(tmp_path, monkeypatch) -> None:
    """On another CPU's build the digits may move, the claims may not; on the same build both hold."""
    examples = _examples_module()
    shown = AUDIT_TABLE.format(extra="")
    doc = _one_example_doc(examples, tmp_path, monkeypatch, "audit-call-it", shown, weights="aaaaaaaaaaaa")
    marked = examples.shown([doc])["audit-call-it"]
    other_digits = shown.replace("+15.6878", "+12.0001").replace("+99.2%", "+97.0%")
    assert examples.compare("audit-call-it", marked, other_digits, "bbbbbbbbbbbb") == []
    assert examples.compare("audit-call-it", marked, other_digits, "aaaaaaaaaaaa") != []  # same build: digits too
    leaning = shown.replace(
        "│ 1 │ AND  │ slapped │     1 │ +15.6878 │ +99.2% │\n",
        "│ 1 │ AND  │ slapped │     1 │ +15.6878 │ +45.0% │\n│ 2 │ AND  │ Rosa    │     1 │  +9.1000 │ -30.0% │\n")
    problems = examples.compare("audit-call-it", marked, leaning, "bbbbbbbbbbbb")
    assert any("at least half" in p for p in problems) and any("irrelevant player" in p for p in problems)
    assert len(problems) == 2  # the answer claim still holds


def test_the_readme_sends_the_request_the_example_sends() -> None:
    """The README's "Call it" curl body is the one docs/example_runs.py posts to a real server."""
    examples = _examples_module()
    readme = (REPO / "README.md").read_text()
    curl = re.search(r"curl -s localhost:3000/generate .*?-d '(?P<body>\{.*?\})'\n", readme, re.DOTALL)
    assert curl is not None
    assert json.loads(curl.group("body")) == examples.example_runs.CALL_IT_BODY
    audit = re.search(r"^interaction-auditor audit --model testbed:clean --prompt (.*)$", readme, re.MULTILINE)
    argv = ["interaction-auditor", "audit", "--model", "testbed:clean", "--prompt",
            *shlex.split(audit.group(1))]
    assert argv == list(examples.EXAMPLES["audit-call-it"].command)
