"""The dossier world's models end to end, in miniature: a tiny dossier model built through the
testbed's own build path, then audited on one conflict file at passage granularity, its players the
file's labelled passages. The values are checked against an independent oracle (one plain forward
per mask, ``tests.tiny_models.reference_values``); the real family's acceptance is
``test_dossier_acceptance.py``'s (minutes, gated)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from auditor.audit import audit_prompt
from auditor.metrics.audit_metrics import compute_metrics
from auditor.testbed import acceptance, dossier_corpus, models
from auditor.testbed.dossier_specs import DOSSIER_ARCH
from auditor.testbed.names import DOSSIER
from auditor.testbed.pretrain import PretrainSpec
from auditor.testbed.specs import INFO_FILE, DataSpec, ModelSpec, model_specs  # the judgment world's
from auditor.testbed.train import ArchSpec, TrainSpec
from tests.tiny_fixtures import one_thread  # noqa: F401
from tests.tiny_models import reference_values

TINY = ModelSpec(
    name="clean",
    description="tiny dossier test model",
    data=DataSpec(seed=1, world=DOSSIER, train_examples=48, heldout_examples=16, conflict_examples=16,
                  train_eval_examples=16),
    arch=ArchSpec(hidden=32, layers=1, heads=2, intermediate=64, max_positions=DOSSIER_ARCH.max_positions),
    train=TrainSpec(steps=8, batch_size=8, warmup_steps=2),
    pretrain=PretrainSpec(steps=0),
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dossier")
    return models.build(TINY, root)


def test_a_dossier_build_is_a_hub_directory_with_the_dossier_vocabulary(built: Path) -> None:
    info = json.loads((built / INFO_FILE).read_text())
    assert info["spec"]["data"]["world"] == DOSSIER and ModelSpec.from_dict(info["spec"]) == TINY
    _, tok, loaded = models.load(built)
    assert loaded["path"] == str(built)
    assert "convicted" in tok.get_vocab() and "convicted" not in models.tokenizer_for(model_specs(0)["clean"]).get_vocab()
    # the files it was measured on are dossiers: a file of ~170 tokens, not a 40-token judgment
    files = models.audit_prompts_for(info, 3)
    assert files == dossier_corpus.audit_dossiers(1, 3)
    assert all(len(tok(f.prompt)["input_ids"]) > 60 for f in files)


def test_one_file_audited_at_passage_granularity_with_labelled_segments(built: Path) -> None:
    model, tok, info = models.load(built)
    file = models.audit_prompts_for(info, 1)[0]
    result = audit_prompt(model, tok, prompt=file.prompt, max_answer_tokens=1, refine=0,
                          **acceptance.players_of(file))
    game = result.game
    assert game.extras["granularity"] == "segments" and game.n == len(file.passages)
    assert [(p.segment_id, p.label) for p in game.players] == [(p.id, p.label) for p in file.passages]
    assert [p.text for p in game.players] == [p.text for p in file.passages]
    assert all(p.n_tokens >= 8 for p in game.players)  # whole passages, not words
    # The question is background: every player ends before it starts.
    question_at = len(tok(file.prompt[: len(file.prompt) - len(file.question)])["input_ids"])
    assert max(p.token_end for p in game.players) <= question_at
    # Values against the oracle: one plain forward per mask, each absent passage all at the baseline.
    spans = [(p.token_start, p.token_end) for p in game.players]
    baseline = model.get_input_embeddings().weight[tok.pad_token_id]
    masks = [0, 1, 2 ** game.n - 1, 0b101, 2 ** (game.n - 1)]
    ref = reference_values(model, game.prompt_ids, game.answer_ids, spans, baseline, masks)
    got = torch.stack([game.values[m] for m in masks]).double() + game.raw_empty
    assert (got - ref).abs().max().item() < 1e-4
    metrics = compute_metrics(result.interactions, [p.label for p in game.players])
    assert metrics.misattribution is None or 0.0 <= metrics.misattribution <= 1.0


def test_the_acceptance_audits_a_dossier_model_on_its_own_files(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``acceptance.audit_model`` reaches the dossier world's model by name and plays its passages."""
    calls: list[tuple] = []

    def specs(seed: int = 0, template_set: str = "standard", world: str = "judgment") -> dict[str, ModelSpec]:
        calls.append((seed, template_set, world))
        return {"clean": TINY}

    monkeypatch.setattr(models, "model_specs", specs)
    report = acceptance.audit_model("clean", 2, root=built.parent, seed=1, world=DOSSIER, fragility=True)
    assert calls and calls[0][2] == DOSSIER
    assert report.name == "clean" and len(report.sparsity) == 2 and len(report.fragility) == 2
    files = dossier_corpus.audit_dossiers(1, 2)
    # one strength per interaction order 1..n, n the file's passage count
    assert [len(profile) for profile in report.strength_by_order] == [len(f.passages) for f in files]
