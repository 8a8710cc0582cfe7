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
from auditor.testbed.dossier_specs import dossier_model_specs

BUILD_MODULES = ("lexicon", "prompts", "corpus", "tokenizer", "train", "pretrain", "names", "specs", "datasets", "models")
RECORDED_RECIPE = "2026-12-06"
RECORDED_FINGERPRINT = "247de27c9e7e1122bd2db29755472032b2d2dfa16d4f9b22934b65a53c83f8a2"
# The dossier world's own build code, fingerprinted with its own recipe (specs.WORLD_RECIPES): a change
# to it asks for a decision about the dossier models only.
DOSSIER_MODULES = ("dossier_lexicon", "dossier_corpus", "dossier_specs", "dossier_absence")
RECORDED_DOSSIER_RECIPE = "dossier-2026-12-06.act-absent"
RECORDED_DOSSIER_FINGERPRINT = "916a1a6e9d771886764976a0e22ac8fbd1526034a457d7741d1f56159d3889a8"


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _without_world_recipes(tree: ast.AST) -> ast.AST:
    """``specs.WORLD_RECIPES``'s values are each world's own recipe, fingerprinted with that world's
    code: bumping one must not ask for a decision about the judgment world's models."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(target, ast.Name) and target.id == "WORLD_RECIPES" for target in targets):
                node.value = ast.Constant(value=None)
    return tree


def build_code_fingerprint(modules: tuple[str, ...] = BUILD_MODULES) -> str:
    package = Path(specs.__file__).parent
    digest = hashlib.sha256()
    for name in modules:
        tree = _without_world_recipes(_without_docstrings(ast.parse((package / f"{name}.py").read_text())))
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


def test_the_dossier_recipe_is_recorded_with_the_dossier_build_code() -> None:
    fingerprint = build_code_fingerprint(DOSSIER_MODULES)
    recipe = specs.WORLD_RECIPES["dossier"]
    assert (recipe, fingerprint) == (RECORDED_DOSSIER_RECIPE, RECORDED_DOSSIER_FINGERPRINT), (
        "the dossier world's build code changed: decide whether its models change (then bump "
        f"specs.WORLD_RECIPES['dossier']), then record RECORDED_DOSSIER_RECIPE = {recipe!r} and "
        f"RECORDED_DOSSIER_FINGERPRINT = {fingerprint!r}"
    )


def test_adding_a_world_left_the_judgment_keys_alone() -> None:
    """The judgment world's specs serialise as before worlds existed (no ``world`` field), and the
    dossier world's keys differ from them and carry the dossier recipe."""
    judgment = specs.model_specs(0, "standard")
    dossier = dossier_model_specs(0, "standard")
    assert "world" not in judgment["clean"].to_dict()["data"]
    assert judgment["clean"].world == "judgment" and dossier["clean"].world == "dossier"
    assert specs.ModelSpec.from_dict(dossier["clean"].to_dict()) == dossier["clean"]
    assert specs.ModelSpec.from_dict(judgment["clean"].to_dict()) == judgment["clean"]
    assert specs.spec_hash(judgment["clean"]) != specs.spec_hash(dossier["clean"])
    assert specs.base_key(judgment["clean"]) != specs.base_key(dossier["clean"])


def test_the_dossier_recipe_moves_only_dossier_keys(monkeypatch) -> None:
    judgment = specs.model_specs(0, "standard")["clean"]
    dossier = dossier_model_specs(0, "standard")["clean"]
    before = specs.spec_hash(judgment), specs.spec_hash(dossier)
    monkeypatch.setitem(specs.WORLD_RECIPES, "dossier", "next")
    assert specs.spec_hash(judgment) == before[0]
    assert specs.spec_hash(dossier) != before[1]


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
