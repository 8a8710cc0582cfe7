"""Every output shown in README.md and docs/ is what the code prints now (docs/examples.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _examples_module():
    spec = importlib.util.spec_from_file_location("docs_examples", REPO / "docs" / "examples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_shown_outputs_are_what_the_commands_print() -> None:
    done = subprocess.run([sys.executable, "docs/examples.py", "--check", "--cheap"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_stale_output_is_caught_and_timings_are_not(tmp_path, monkeypatch) -> None:
    examples = _examples_module()
    printed = examples.run(examples.EXAMPLES["interactions-sparse"])
    doc = tmp_path / "README.md"

    def write(body: str) -> None:
        blocks = [f"<!-- example: {name} -->\n```\n{body if name == 'interactions-sparse' else 'x'}```\n"
                  "<!-- /example -->\n" for name in examples.EXAMPLES]
        doc.write_text("\n".join(blocks))

    monkeypatch.setattr(examples, "documents", lambda: [doc])
    monkeypatch.setattr(examples, "EXAMPLES", {"interactions-sparse": examples.EXAMPLES["interactions-sparse"]})
    write(printed)
    assert examples.main(["--check"]) == 0
    retimed = examples.TIMINGS[0].sub("(123.4 ms)", printed)
    write(retimed)
    assert examples.main(["--check"]) == 0  # another machine's timing is not a difference
    write(printed.replace("+2.9306", "+2.9307"))
    assert examples.main(["--check"]) == 1  # a changed number is
    assert examples.main([]) == 0  # writing puts the printed output back
    assert examples.main(["--check"]) == 0 and "+2.9306" in doc.read_text()
