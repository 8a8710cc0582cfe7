"""The testbed's cache key names its recipe (``specs.RECIPE_VERSION``), not its source bytes.

A model is rebuilt only when what a build computes changes. Nothing computes that automatically, so
this test holds a fingerprint of the build code (its syntax tree without docstrings: comments,
docstrings and formatting do not count) recorded together with the recipe version. When it fails,
the build code changed: if the change alters a trained model's bytes (corpus, tokenizer, training,
warm-up, specs), bump ``RECIPE_VERSION`` in ``auditor/testbed/specs.py``; either way, record the new
fingerprint and the version below. A cold rebuild is how to tell: ``testbed build --json`` on an
empty ``AUDITOR_TESTBED_DIR`` before and after, comparing the weights' sha256.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from auditor.testbed import specs

BUILD_MODULES = ("lexicon", "prompts", "corpus", "tokenizer", "train", "pretrain", "names", "specs", "datasets", "models")
RECORDED_RECIPE = "2026-12-06"
RECORDED_FINGERPRINT = "3c7ab3d06c612de6d46c3e6b293790d7a4eaf953730e6e2ed9143f7ff30711d6"


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def build_code_fingerprint() -> str:
    package = Path(specs.__file__).parent
    digest = hashlib.sha256()
    for name in BUILD_MODULES:
        tree = _without_docstrings(ast.parse((package / f"{name}.py").read_text()))
        digest.update(name.encode())
        digest.update(ast.dump(tree, include_attributes=False).encode())
    return digest.hexdigest()


def test_the_recipe_version_is_recorded_with_the_build_code_it_names() -> None:
    fingerprint = build_code_fingerprint()
    assert (specs.RECIPE_VERSION, fingerprint) == (RECORDED_RECIPE, RECORDED_FINGERPRINT), (
        "the testbed's build code changed (see this module's docstring): decide whether the recipe "
        f"changed, then record RECORDED_RECIPE = {specs.RECIPE_VERSION!r} and "
        f"RECORDED_FINGERPRINT = {fingerprint!r}"
    )


def test_docstrings_and_comments_do_not_move_the_fingerprint(tmp_path: Path) -> None:
    code = 'def f(x):\n    """Why."""\n    return x + 1  # a comment\n'
    plain = "def f(x):\n    return x + 1\n"
    dump = lambda text: ast.dump(_without_docstrings(ast.parse(text)), include_attributes=False)  # noqa: E731
    assert dump(code) == dump(plain)
    assert dump(code) != dump(code.replace("x + 1", "x + 2"))


def test_the_cache_key_covers_the_recipe_and_the_numerics_libraries(monkeypatch) -> None:
    spec = specs.model_specs(0, "standard")["clean"]
    before = specs.spec_hash(spec)
    monkeypatch.setattr(specs, "RECIPE_VERSION", specs.RECIPE_VERSION + "-next")
    assert specs.spec_hash(spec) != before
    monkeypatch.setattr(specs, "RECIPE_VERSION", RECORDED_RECIPE)
    monkeypatch.setattr(specs.torch, "__version__", "0.0.0")
    assert specs.spec_hash(spec) != before
