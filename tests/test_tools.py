"""The guard of the external programs: a missing program skips locally and fails in CI."""

from __future__ import annotations

import pytest
from tools import require_program


def test_missing_program_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool not found.*CI must run"):
        require_program("no-such-tool", install="apt-get install x")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install x"):
        require_program("no-such-tool", install="apt-get install x")


def test_the_first_program_found_is_returned(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    program = tmp_path / "second"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert require_program("first", "second", install="-") == str(program)
