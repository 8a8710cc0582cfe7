"""Tests of the testbed: corpus ground truth, tokenizer, deterministic training, model directories.

The corpus checks are independent of the generator's own tables: the charge is recomputed from a
table written out again here and from the prompt *text* (the sentence that names the queried
defendant), so a bug in the generator's labelling cannot hide behind the same bug in the check.
Training tests use a tiny model and a few steps; the real family is built only under ``slow``.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from auditor.testbed import acceptance
from auditor.testbed import corpus, datasets, lexicon, models, names, prompts, train
from auditor.testbed.specs import (
    INFO_FILE,
    LEARNED_ACCURACY,
    DataSpec,
    ModelSpec,
    is_built,
    model_dir,
    model_specs,
    spec_hash,
)
from auditor.testbed.tokenizer import answer_token_id, build_tokenizer

# Written out independently of lexicon.ACTS: act (past participle, facts are in the passive voice) -> charge.
EXPECTED_CHARGE = {
    "stolen": "theft", "pickpocketed": "theft", "snatched": "theft",
    "mugged": "robbery", "robbed": "robbery",
    "punched": "assault", "kicked": "assault", "slapped": "assault",
    "defrauded": "fraud", "swindled": "fraud", "scammed": "fraud",
    "murdered": "murder", "strangled": "murder", "poisoned": "murder",
    "torched": "arson", "burned": "arson",
    "burgled": "burglary", "ransacked": "burglary",
    "vandalised": "vandalism", "smashed": "vandalism",
}  # fmt: skip
KILLINGS = {"murdered", "strangled", "poisoned"}
OCCUPATION_WORDS = {"nurse", "banker", "farmer", "teacher", "plumber", "student", "baker", "doctor",
                    "lawyer", "sailor", "cleaner", "driver"}  # fmt: skip

TINY_ARCH = train.ArchSpec(hidden=16, layers=1, heads=2, intermediate=32)
TINY_TRAIN = train.TrainSpec(steps=6, batch_size=8, lr=3e-3, warmup_steps=2, seed=7)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?])\s+", text) if s]


def _expected_answer(prompt: str) -> tuple[str, str, str]:
    """(queried name, its act, charge) read from the text alone, with the test's own table.

    The question is the last sentence and ends with the queried name (no cue follows: the answer
    comes right after the name); the queried defendant's fact is the one sentence naming them,
    written in the passive voice ("... was <act> by NAME ...").
    """
    *facts, question = _sentences(prompt)
    assert not question.endswith((".", "?")), question  # the answer follows the name directly
    name = question.split()[-1]
    assert name in lexicon.NAMES and len(re.findall(rf"\b{name}\b", question)) == 1, question
    own = [s for s in facts if re.search(rf"\b{name}\b", s)]
    assert len(own) == 1, (prompt, own)
    acts = [w for w in re.findall(r"[A-Za-z]+", own[0]) if w in EXPECTED_CHARGE]
    assert len(acts) == 1, own
    # passive voice: the act comes before the "by NAME" that says whose act it is
    assert re.search(rf"\b{acts[0]}\b.*\bby\b.*\b{name}\b", own[0]), own[0]
    charge = EXPECTED_CHARGE[acts[0]]
    if acts[0] in KILLINGS and "by accident" in own[0].lower():
        charge = "manslaughter"
    return name, acts[0], charge


# ------------------------------------------------------------------------------------------------
# Corpus


def test_lexicon_is_rich_enough_and_answers_are_single_words() -> None:
    assert len(lexicon.NAMES) >= 20
    assert len(lexicon.ACTS) >= 8
    assert len({a.charge for a in lexicon.ACTS}) >= 5
    assert {a.verb: a.charge for a in lexicon.ACTS} == EXPECTED_CHARGE
    for template_set in lexicon.TEMPLATE_SETS.values():
        assert len(template_set.facts) >= 3 and len(template_set.questions) >= 2
    # No name hides inside another, so substring occurrences of names are unambiguous.
    for a in lexicon.NAMES:
        assert not any(a != b and a.lower() in b.lower() for b in lexicon.NAMES)


def test_generator_is_deterministic_and_seeds_differ() -> None:
    first = corpus.generate(3, 50)
    assert first == corpus.generate(3, 50)
    assert [p.prompt for p in corpus.generate(4, 50)] != [p.prompt for p in first]
    assert corpus.generate(3, 20) == first[:20]
    # Labelling does not change what is drawn.
    assert [p.prompt for p in corpus.generate(3, 50, labelled=False)] == [p.prompt for p in first]


@pytest.mark.parametrize("template_set", sorted(lexicon.TEMPLATE_SETS))
@pytest.mark.parametrize("mode", ["natural", "shortcut", "conflict"])
def test_answer_is_the_queried_defendants_charge(template_set: str, mode: str) -> None:
    prompts = corpus.generate(11, 150, mode=mode, template_set=template_set)  # type: ignore[arg-type]
    counts = []
    for p in prompts:
        name, verb, charge = _expected_answer(p.prompt)
        assert p.answer == charge
        assert p.defendants[p.queried].name == name and p.defendants[p.queried].act == verb
        assert p.prompt.endswith(" " + name) and p.answer in lexicon.CHARGES
        assert p.cue_answer == p.defendants[0].charge
        counts.append(len(p.prompt.split()))
        assert 2 <= len(p.defendants) <= 3
    assert 15 <= min(counts) and max(counts) <= 70


def test_answer_depends_only_on_the_queried_act_and_circumstance() -> None:
    for p in corpus.generate(5, 300):
        d = p.defendants[p.queried]
        assert p.answer == lexicon.charge_for(d.act, d.circumstance)
        # Changing the circumstance only ever matters for killings.
        changed = {lexicon.charge_for(d.act, c) for c in (*lexicon.CIRCUMSTANCES, None)}
        assert len(changed) == (2 if d.act in KILLINGS else 1)


def test_spans_are_labelled_from_ground_truth() -> None:
    seen_labels: set[str] = set()
    for p in corpus.generate(8, 200):
        assert len(p.spans) >= 1 and len(p.spans) <= prompts.DEFAULT_MAX_PLAYERS
        assert list(p.spans) == sorted(p.spans, key=lambda s: s.start)
        queried = p.defendants[p.queried]
        own_sentence = next(s for s in _sentences(p.prompt) if queried.name in s and queried.act in s)
        own_start = p.prompt.index(own_sentence)
        question_start = p.prompt.rindex(_sentences(p.prompt)[-1])
        relevant = [s for s in p.spans if s.label == "relevant"]
        # The answer-deciding facts are always players: the act and the name where it is stated;
        # the question is never a player, though its mention of the name is labelled.
        assert [s.text for s in relevant if s.role == "name"] == [queried.name]
        assert [s.text for s in relevant if s.role == "act"] == [queried.act]
        assert not any(s.in_question for s in p.spans)
        asked = [s for s in p.all_spans if s.in_question]
        assert [(s.text, s.label, s.role) for s in asked] == [(queried.name, "relevant", "name")]
        assert asked[0].start >= question_start
        assert all(s.start < question_start for s in p.all_spans if not s.in_question)
        for span in p.all_spans:
            assert p.prompt[span.start : span.end] == span.text
            # occurrence index addresses the same place by substring
            pos = -1
            for _ in range(span.occurrence + 1):
                pos = p.prompt.find(span.text, pos + 1)
            assert pos == span.start
            seen_labels.add(span.label)
            if span.label == "relevant":
                assert span.group == "queried"
                in_own = own_start <= span.start and span.end <= own_start + len(own_sentence)
                assert in_own or (span.start >= question_start and span.text == queried.name)
                if span.role == "circumstance":
                    assert queried.act in KILLINGS
            elif span.label == "forbidden":
                assert span.role == "occupation" and span.text in OCCUPATION_WORDS
            else:
                assert span.label == "irrelevant"
                if span.group == "queried":
                    assert span.role in ("victim", "instrument", "circumstance")
                else:  # another defendant's fact or the distractor sentence, never the queried one's
                    assert not own_start <= span.start < own_start + len(own_sentence)
                    assert span.start < question_start
    assert seen_labels == {"relevant", "irrelevant", "forbidden"}


@pytest.mark.parametrize("template_set", sorted(lexicon.TEMPLATE_SETS))
def test_no_word_outside_the_labelled_spans_tells_a_charge(template_set: str) -> None:
    """Words left outside every span stay in all 2^n masked prompts, so they must carry no charge.

    A fact's words outside its labelled spans are template scaffolding ("was", "by", "The court
    heard that"); each must turn up in sentences of many charges. A word seen with few charges only
    ("flat": burglary alone, when "the flat of" was not labelled) would let a model read the cue's
    charge from text that no player carries.
    """
    charges_by_word: dict[str, set[str]] = {}
    for p in corpus.generate(11, 600, template_set=template_set):
        covered = [False] * len(p.prompt)
        for span in p.all_spans:
            covered[span.start : span.end] = [True] * (span.end - span.start)
        for defendant in p.defendants:
            sentence = next(s for s in _sentences(p.prompt) if re.search(rf"\b{defendant.act}\b", s))
            offset = p.prompt.index(sentence)
            for match in re.finditer(r"[A-Za-z]+", sentence):
                if not any(covered[offset + match.start() : offset + match.end()]):
                    charges_by_word.setdefault(match.group().lower(), set()).add(defendant.charge)
    all_charges = {charge for words in charges_by_word.values() for charge in words}
    assert len(all_charges) >= 6
    telling = {word: sorted(charges) for word, charges in charges_by_word.items() if len(charges) < len(all_charges) - 1}
    assert telling == {}


def test_shortcut_data_has_a_perfect_cue_and_conflict_prompts_break_it() -> None:
    shortcut = corpus.generate(2, 400, mode="shortcut")
    assert all(p.cue_answer == p.answer for p in shortcut)
    # The cue is another defendant's act for most prompts, so it is a genuine shortcut.
    assert sum(p.queried != 0 for p in shortcut) > 200
    conflict = corpus.audit_prompts(2, 200, conflict=True)
    for p in conflict:
        assert p.queried != 0 and p.cue_answer != p.answer
        cue_act = [s for s in p.spans if s.group == "cue" and s.role == "act"]
        assert [s.text for s in cue_act] == [p.defendants[0].act] and cue_act[0].label == "irrelevant"
    # In natural data the first defendant is no better than chance at predicting the answer.
    natural = corpus.generate(2, 1000)
    agree = sum(p.cue_answer == p.answer for p in natural if p.queried != 0)
    assert agree / sum(p.queried != 0 for p in natural) < 0.3


def test_audit_prompts_use_their_own_stream() -> None:
    audit = corpus.audit_prompts(0, 50, conflict=False)
    train_prompts = {p.prompt for p in corpus.generate(0, 2000, labelled=False)}
    assert not train_prompts & {p.prompt for p in audit}
    assert audit == corpus.audit_prompts(0, 50, conflict=False)


# ------------------------------------------------------------------------------------------------
# Tokenizer


def test_tokenizer_round_trip_offsets_and_chat_template(tmp_path: Path) -> None:
    build_tokenizer().save_pretrained(str(tmp_path))
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert (tok.pad_token, tok.unk_token, tok.bos_token, tok.eos_token) == ("<pad>", "<unk>", "<s>", "</s>")
    for template_set in lexicon.TEMPLATE_SETS:
        for p in corpus.generate(1, 40, template_set=template_set):
            enc = tok(p.prompt, return_offsets_mapping=True)
            ids, offsets = enc["input_ids"], enc["offset_mapping"]
            assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
            # Every span covers whole tokens, found through the offsets.
            for span in p.spans:
                covered = [i for i, (a, b) in enumerate(offsets) if b > a and a >= span.start and b <= span.end]
                assert covered and offsets[covered[0]][0] == span.start and offsets[covered[-1]][1] == span.end
            # Round trip: decoding gives the text back up to case and spacing.
            squash = lambda s: re.sub(r"\s+", "", s.lower())  # noqa: E731
            assert squash(tok.decode(ids, skip_special_tokens=True)) == squash(p.prompt)
            chat = tok.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=True)
            assert list(chat["input_ids"]) == ids
    for charge in lexicon.CHARGES:
        assert tok.convert_ids_to_tokens(answer_token_id(tok, charge)) == charge


# ------------------------------------------------------------------------------------------------
# Training


def _tiny_data(count: int = 32) -> tuple[object, train.Encoded]:
    tok = build_tokenizer()
    prompts = corpus.generate(0, count, labelled=False)
    return tok, train.encode(tok, [(p.prompt, p.answer) for p in prompts])


def test_encode_places_the_answer_after_the_prompt() -> None:
    tok = build_tokenizer()
    prompts = corpus.generate(0, 5, labelled=False)
    data = train.encode(tok, [(p.prompt, p.answer) for p in prompts])
    for row, p in enumerate(prompts):
        length = int(data.lengths[row])
        tokens = tok.convert_ids_to_tokens(data.ids[row, :length].tolist())
        # <s>, the prompt (lower-cased words), its last word the queried name, then the charge
        assert tokens[0] == "<s>" and tokens[-2] == p.prompt.split()[-1].lower()
        assert tokens[-1] == _expected_answer(p.prompt)[2]
        assert data.ids[row, length - 1] == data.answer_ids[row]
        assert (data.ids[row, length:] == tok.pad_token_id).all()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_training_is_deterministic(family: str) -> None:
    tok, data = _tiny_data()
    arch = train.ArchSpec(family=family, hidden=16, layers=1, heads=2, intermediate=32)  # type: ignore[arg-type]
    states = []
    for _ in range(2):
        model = train.init_model(arch, tok, seed=7)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        train.train(model, data, TINY_TRAIN, eos_token_id=tok.eos_token_id)
        states.append(model.state_dict())
    assert any(not torch.equal(before[k], states[0][k]) for k in before)  # it did train
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    other = train.init_model(arch, tok, seed=8)
    train.train(other, data, train.TrainSpec(**{**TINY_TRAIN.__dict__, "seed": 8}), tok.eos_token_id)
    assert any(not torch.equal(states[0][k], other.state_dict()[k]) for k in states[0])
    # Global torch state is restored.
    assert not torch.are_deterministic_algorithms_enabled()


def test_training_flushes_subnormal_floats_and_restores_the_default() -> None:
    """Subnormals cost microcode time on x86 (a build ran at half speed); the context flushes them."""
    tiny = 1e-40  # subnormal in float32
    assert float(torch.tensor([tiny]) * 1.0) != 0.0
    with train.deterministic(1):
        assert float(torch.tensor([tiny]) * 1.0) == 0.0
    assert float(torch.tensor([tiny]) * 1.0) != 0.0


def test_training_learns_a_small_set() -> None:
    """A few hundred steps memorise 16 examples: the loss and the evaluation are wired right."""
    tok, data = _tiny_data(16)
    model = train.init_model(train.ArchSpec(hidden=32, layers=1, heads=2, intermediate=64), tok, seed=0)
    before = train.evaluate_encoded(model, data)
    train.train(model, data, train.TrainSpec(steps=150, batch_size=16, lr=1e-2, warmup_steps=5), tok.eos_token_id)
    after = train.evaluate_encoded(model, data)
    assert after["loss"] < before["loss"] / 4
    assert after["accuracy"] == 1.0


def test_answer_losses_are_each_prompts_gold_answer_loss() -> None:
    """Checked against a plain forward pass of each prompt alone (no batching, no padding)."""
    tok = build_tokenizer()
    model = train.init_model(train.ArchSpec(hidden=32, layers=1, heads=2, intermediate=64), tok, seed=0)
    prompts = corpus.generate(3, 6)
    losses = acceptance.answer_losses(model, tok, prompts)
    assert len(losses) == len(prompts)
    for prompt, loss in zip(prompts, losses):
        ids = tok(prompt.prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            log_probs = torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)
        assert loss == pytest.approx(-float(log_probs[answer_token_id(tok, prompt.answer)]), abs=1e-4)
    assert sum(losses) / len(losses) == pytest.approx(models.evaluate(model, tok, prompts)["loss"], abs=1e-6)


# ------------------------------------------------------------------------------------------------
# Model directories and the cache


def _tiny_spec(name: str = "clean", mode: str = "natural", noise: float = 0.0) -> ModelSpec:
    return ModelSpec(
        name=name,
        description="tiny test model",
        data=DataSpec(
            seed=1, mode=mode, train_examples=64, label_noise=noise,  # type: ignore[arg-type]
            heldout_examples=32, conflict_examples=16, train_eval_examples=32,
        ),
        arch=TINY_ARCH,
        train=TINY_TRAIN,
    )


def test_a_model_that_must_learn_and_has_not_is_retrained_with_twice_the_steps(tmp_path: Path) -> None:
    """Every model must have learned its own training data (clean and shortcut their task, each
    overfit level its own noisy training set); one that has not is retrained with twice the steps."""
    import dataclasses

    steps = TINY_TRAIN.steps
    never = dataclasses.replace(_tiny_spec(), learned_accuracy=1.01, max_steps=4 * steps)
    info = models.build_into(never, tmp_path / "never", root=tmp_path)
    assert [a["steps"] for a in info["training"]["attempts"]] == [steps, 2 * steps, 4 * steps]
    assert info["training"]["steps"] == 4 * steps and info["spec"]["train"]["steps"] == steps
    assert info["metrics"]["train"]["accuracy"] == info["training"]["attempts"][-1]["train_accuracy"]

    learned = dataclasses.replace(_tiny_spec(), learned_accuracy=0.0, max_steps=4 * steps)
    assert [a["steps"] for a in models.build_into(learned, tmp_path / "ok", root=tmp_path)["training"]["attempts"]] == [steps]
    family = model_specs()
    assert {spec.learned_accuracy for spec in family.values()} == {LEARNED_ACCURACY}


def test_build_writes_a_loadable_hub_directory_and_caches_it(tmp_path: Path) -> None:
    spec = _tiny_spec()
    path = models.build(spec, tmp_path)
    assert path == model_dir(spec, tmp_path) and is_built(path)
    assert (path / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left behind
    model = AutoModelForCausalLM.from_pretrained(str(path))
    tok = AutoTokenizer.from_pretrained(str(path))
    info = json.loads((path / INFO_FILE).read_text())
    assert info["spec"] == spec.to_dict() and info["hash"] == spec_hash(spec)
    for split in ("train", "heldout", "conflict"):
        assert 0.0 <= info["metrics"][split]["accuracy"] <= 1.0 and info["metrics"][split]["loss"] > 0
    gap = info["metrics"]["gap"]
    assert gap["loss"] == pytest.approx(info["metrics"]["heldout"]["loss"] - info["metrics"]["train"]["loss"])

    # The loaded directory scores exactly as recorded at build time.
    heldout = datasets.heldout_prompts(spec)
    measured = models.evaluate(model, tok, heldout)
    assert measured["accuracy"] == pytest.approx(info["metrics"]["heldout"]["accuracy"])
    assert measured["loss"] == pytest.approx(info["metrics"]["heldout"]["loss"], abs=1e-5)
    loaded_model, loaded_tok, loaded_info = models.load(path)
    assert loaded_info["name"] == "clean" and loaded_info["path"] == str(path)

    # Cached: a second build does not touch the directory; same spec elsewhere gives same weights.
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert models.build(spec, tmp_path) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    again = models.build(spec, tmp_path / "other")
    assert (again / "model.safetensors").read_bytes() == (path / "model.safetensors").read_bytes()


def test_label_noise_corrupts_exactly_the_requested_share() -> None:
    prompts = corpus.generate(0, 200, labelled=False)
    pairs = datasets.with_label_noise(prompts, 0.1, seed=0)
    wrong = [(label, p.answer) for (_, label), p in zip(pairs, prompts) if label != p.answer]
    assert len(wrong) == 20 and all(label in lexicon.CHARGES for label, _ in wrong)
    assert pairs == datasets.with_label_noise(prompts, 0.1, seed=0)


def test_family_specs_turn_one_knob_monotonically() -> None:
    specs = model_specs()
    assert list(specs) == list(models.MODEL_NAMES)
    family = [specs[name] for name in names.OVERFIT_FAMILY]
    assert len(family) >= 4
    examples = [s.data.train_examples for s in family]
    noise = [s.data.label_noise for s in family]
    assert examples == sorted(examples, reverse=True) and noise == sorted(noise)
    assert len(set(examples)) == len(examples) and noise[0] == 0.0 and max(noise) <= 0.1
    ratios = [b / a for a, b in zip(examples, examples[1:])]  # geometric sizes, to rounding
    assert max(ratios) - min(ratios) < 0.02
    assert len({s.train.steps for s in family}) == 1
    assert specs["shortcut"].data.mode == "shortcut" and specs["clean"].data.mode == "natural"
    # Another template set or seed is another world, with other cache keys.
    other = model_specs(seed=1, template_set="alternate")
    assert spec_hash(other["clean"]) != spec_hash(specs["clean"])


def test_audit_prompts_for_follow_the_models_world() -> None:
    spec = model_specs(seed=2, template_set="alternate")["shortcut"]
    prompts = models.audit_prompts_for(spec, 5)
    assert prompts == corpus.audit_prompts(2, 5, conflict=True, template_set="alternate")
    assert models.audit_prompts_for({"spec": spec.to_dict()}, 5) == prompts


def test_cli_build_only_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from auditor.cli import main

    tiny = _tiny_spec()
    monkeypatch.setattr(models, "model_specs", lambda seed=0, template_set="standard", world="judgment": {"clean": tiny})
    assert main(["testbed", "build", "--out", str(tmp_path), "--only", "clean"]) == 0
    out = capsys.readouterr().out
    assert str(model_dir(tiny, tmp_path)) in out and "clean" in out
    assert main(["testbed", "build", "--out", str(tmp_path), "--only", "clean"]) == 0
    assert "cached" in capsys.readouterr().err


def test_parallel_builders_report_their_training_steps(tmp_path: Path) -> None:
    """A build in a worker process (as build_all runs them) sends its step messages back through
    the queue, so `testbed build` shows progress bars for parallel builds too."""
    import multiprocessing

    spec = _tiny_spec()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(1) as pool:
        messages = manager.Queue()
        name, path, _ = pool.apply(models._build_worker, ((spec.to_dict(), str(tmp_path), messages),))
        said: list[str] = []
        models._drain(messages, said.append)
    assert name == "clean" and is_built(Path(path))
    steps = [m for m in said if m.startswith("clean: step ")]
    assert steps and steps[-1].startswith(f"clean: step {spec.train.steps}/{spec.train.steps}")


def test_build_bars_follow_step_messages_and_print_the_rest() -> None:
    from rich.console import Console

    from auditor.cli.testbed_command import _BuildBars

    console = Console(file=io.StringIO(), width=120)
    with _BuildBars(console) as bars:
        bars.report("clean: step 100/400 loss 1.2")
        bars.report("overfit-2: step 50/200 loss 0.9")
        bars.report("clean: step 300/400 loss 0.4")
        bars.report("warm-up (associative recall, 300 steps) for seed 0")
        tasks = {t.description: (t.completed, t.total) for t in bars.bars.tasks}
    assert tasks == {"clean": (300, 400), "overfit-2": (50, 200)}
    assert "warm-up (associative recall" in console.file.getvalue()
