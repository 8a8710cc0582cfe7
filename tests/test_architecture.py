"""The house: floors import downwards only (import-linter's contracts in pyproject.toml, run by
.ci/run), no module imports back into a module that imports it, no library module over 500 lines,
and the public API resolves lazily without loading torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import auditor

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_no_import_cycle_among_the_library_services_and_dashboards() -> None:
    graph = grimp.build_graph("auditor", "service", "dashboards", exclude_type_checking_imports=True)
    cycles = []
    for module in sorted(graph.modules):
        if module == "auditor":  # the lazy public API names every floor; it imports none at run time
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported != "auditor" and graph.chain_exists(importer=imported, imported=module):
                cycles.append(f"{module} <-> {imported}")
    assert cycles == []


def test_a_module_that_imported_its_importer_would_be_found() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "b"):
        graph.add_module(name)
    graph.add_import(importer="a", imported="b")
    assert not graph.chain_exists(importer="b", imported="a")
    graph.add_import(importer="b", imported="a")
    assert graph.chain_exists(importer="b", imported="a")


def test_no_library_module_is_over_500_lines() -> None:
    long = {str(path.relative_to(REPO)): n for path in (REPO / "auditor").rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 500}
    assert long == {}


def test_at_most_six_modules_sit_loose_at_the_top_of_the_library() -> None:
    loose = sorted(path.name for path in (REPO / "auditor").glob("*.py"))
    assert len(loose) <= 6, loose


def test_every_public_name_resolves_to_the_object_its_module_owns() -> None:
    import importlib

    for name in auditor.__all__:
        value = getattr(auditor, name)
        if name == "__version__":
            assert isinstance(value, str)
            continue
        owner = importlib.import_module(auditor._EXPORTS[name])
        assert value is getattr(owner, name), name
    with pytest.raises(AttributeError):
        auditor.no_such_name  # noqa: B018


def test_import_auditor_and_the_cli_help_stay_free_of_torch() -> None:
    code = ("import sys, auditor, auditor.cli; auditor.cli.build_parser(); import json; "
            "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'numba', 'scipy') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_the_readme_python_examples_import_from_the_public_api() -> None:
    blocks = [block.split("```", 1)[0] for block in README.split("```python")[1:]]
    imports = [line.strip() for block in blocks for line in block.splitlines()
               if line.strip().startswith(("from auditor", "import auditor"))]
    assert imports, "the README shows the library in Python"
    for line in imports:
        assert line.startswith("from auditor import "), line
        names = [n.strip() for n in line[len("from auditor import "):].split(",")]
        assert set(names) <= set(auditor.__all__), line
