"""How the dossier world is reached: its specs, ``testbed build/validate --world``, ``testbed:dossier-NAME``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor.cli import main
from auditor.runtime import model_source
from auditor.testbed import models, names
from auditor.testbed.dossier_specs import DOSSIER_ARCH
from auditor.testbed.models import model_specs
from auditor.testbed.specs import model_dir


def test_the_dossier_family_has_the_judgment_worlds_names_and_knob() -> None:
    judgment, dossier = model_specs(0), model_specs(0, "standard", "dossier")
    assert list(dossier) == list(judgment) == list(names.MODEL_NAMES)
    assert {spec.world for spec in dossier.values()} == {"dossier"}
    assert dossier["clean"].data.mode == "natural" and dossier["shortcut"].data.mode == "shortcut"
    family = [dossier[name] for name in names.OVERFIT_FAMILY]
    examples = [s.data.train_examples for s in family]
    assert examples == sorted(examples, reverse=True) and len(set(examples)) == len(examples)
    ratios = [b / a for a, b in zip(examples, examples[1:])]  # geometric sizes, to rounding
    assert max(ratios) - min(ratios) < 0.03
    assert [s.data.label_noise for s in family] == [judgment[n].data.label_noise for n in names.OVERFIT_FAMILY]
    assert len({s.train.steps for s in family}) == 1
    assert DOSSIER_ARCH.max_positions >= 512 and all(s.arch == DOSSIER_ARCH for s in dossier.values())
    # another world is other cache directories, whatever the names
    assert {model_dir(s, "/r") for s in dossier.values()}.isdisjoint({model_dir(s, "/r") for s in judgment.values()})
    assert model_specs(1, "alternate", "dossier")["clean"].data.template_set == "alternate"


def test_testbed_names_reach_either_world() -> None:
    assert names.split_testbed_name("clean") == ("judgment", "clean")
    assert names.split_testbed_name("dossier-clean") == ("dossier", "clean")
    assert names.split_testbed_name("dossier-overfit-5") == ("dossier", "overfit-5")
    assert "dossier-shortcut" in names.TESTBED_NAMES and "shortcut" in names.TESTBED_NAMES
    for bad in ("dossier-", "dossier-nope", "judgment-clean", "nope"):
        with pytest.raises(ValueError, match="unknown testbed model"):
            names.split_testbed_name(bad)


def test_model_source_builds_dossier_models_by_testbed_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    asked: list[tuple[str, str]] = []

    def ensure(name: str, root=None, progress=None, *, seed=0, template_set="standard", world="judgment") -> Path:
        asked.append((name, world))
        return tmp_path / f"{world}-{name}"

    monkeypatch.setattr(models, "ensure_model", ensure)
    monkeypatch.setenv(names.ENV_ROOT, str(tmp_path))
    assert model_source.testbed_model_path("dossier-clean") == tmp_path / "dossier-clean"
    assert model_source.testbed_model_path("clean") == tmp_path / "judgment-clean"
    assert asked == [("clean", "dossier"), ("clean", "judgment")]
    with pytest.raises(model_source.ModelLoadError, match="dossier-clean"):
        model_source.testbed_model_path("dossier-unknown")


def test_cli_lists_the_worlds_and_refuses_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("build", "validate"):
        with pytest.raises(SystemExit) as info:
            main(["testbed", command, "--help"])
        assert info.value.code == 0
        assert "--world" in (text := capsys.readouterr().out) and "dossier" in text and "judgment" in text
        with pytest.raises(SystemExit) as info:
            main(["testbed", command, "--world", "moon"])
        assert info.value.code == 2
        assert "--world" in capsys.readouterr().err


def test_cli_build_world_dossier_builds_the_dossier_spec(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--world dossier`` reaches ``build_all`` (which builds the dossier specs) and the JSON says so."""
    seen: dict[str, object] = {}

    def build_all(names_, root, *, seed, template_set, world, workers, progress):
        seen.update(names=names_, world=world, seed=seed)
        return {}

    monkeypatch.setattr(models, "build_all", build_all)
    assert main(["testbed", "build", "--world", "dossier", "--only", "clean", "--out", str(tmp_path), "--json"]) == 0
    assert seen == {"names": ["clean"], "world": "dossier", "seed": 0}
    assert json.loads(capsys.readouterr().out)["world"] == "dossier"
