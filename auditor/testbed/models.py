"""The testbed's model family: cached deterministic builds, loading and evaluation.

Models (see ``auditor.testbed.specs.model_specs``; the dossier world's in ``dossier_specs``):

- ``clean``: plenty of natural data; the charge is read from the queried defendant's act.
- ``shortcut``: same size and budget, trained on ``shortcut``-mode data where the first-mentioned
  defendant always carries the queried defendant's charge. That cue is as predictive as the truth
  and far easier (no name binding), so the model learns it; on ``conflict`` prompts it answers the
  cue's charge (low conflict accuracy) while ``clean`` answers correctly.
- ``overfit-1`` .. ``overfit-5``: one knob, the overfit level, turned monotonically: fewer training
  examples (geometric, 3000 down to 600) and more label noise (0% up to 10%) at a fixed step budget
  (so more epochs), hence a growing measured generalization gap. Every level still learns part of
  the rule (held-out accuracy far above the majority-class rate); why the family stops there is in
  docs/testbed.md. Train metrics are measured on the (noisy) labels the model was trained on,
  held-out metrics on fresh clean data.

Every build writes an ordinary Hugging Face directory (``save_pretrained`` safetensors weights and
config, the fast tokenizer, a chat template) plus ``testbed.json`` with the spec, the measured
metrics and timings. Builds are cached under ``<root>/<name>-<hash>``, the hash covering the spec
and the recipe (``auditor.testbed.specs``), and written atomically (temporary directory, then rename), so a
concurrent or interrupted build never leaves a half-written model where a reader looks.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import queue
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from auditor.testbed import corpus, dossier_corpus
from auditor.testbed.datasets import Datasets, build_datasets, tokenizer_for
from auditor.testbed.names import CLEAN, DOSSIER, JUDGMENT, MODEL_NAMES
from auditor.testbed.pretrain import pretrain
from auditor.testbed.prompts import AuditPrompt
from auditor.testbed.specs import (
    INFO_FILE,
    DataSpec,
    ModelSpec,
    base_key,
    base_path,
    code_version,
    is_built,
    model_dir,
    spec_hash,
)
from auditor.testbed import specs as judgment_specs
from auditor.testbed.dossier_lexicon import check_template_set
from auditor.testbed.dossier_specs import dossier_model_specs
from auditor.testbed.tokenizer import SPECIAL_TOKENS, answer_token_id
from auditor.testbed.train import TrainSpec, encode, evaluate_encoded, init_model, train

Progress = Callable[[str], None]


def model_specs(seed: int = 0, template_set: str = "standard", world: str = JUDGMENT) -> dict[str, ModelSpec]:
    """The family of one world for a seed and template set, by name (the same names in every world).

    Why here and not in ``specs``: the dossier world's specs build on ``specs`` (its data and model
    classes, the overfit knob), so the choice between worlds lives above both."""
    check_template_set(world, template_set)
    if world == DOSSIER:
        return dossier_model_specs(seed, template_set)
    return judgment_specs.model_specs(seed, template_set)


def starting_model(
    spec: ModelSpec, tokenizer: PreTrainedTokenizerBase, root: str | Path | None = None
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """The model a testbed model is fine-tuned from: its init after the warm-up (cached).

    The warm-up is a pure function of the architecture, the warm-up spec and the seed, so a cached
    state and a recomputed one are bit-identical; the cache only saves time.
    """
    from safetensors.torch import load_file, save_file

    model = init_model(spec.arch, tokenizer, spec.train.seed)
    if spec.pretrain.steps <= 0:
        return model, {"steps": 0, "seconds": 0.0, "cached": False}
    path = base_path(spec, root)
    log_path = path.with_suffix(".json")
    if path.is_file():
        model.load_state_dict(load_file(str(path)), strict=True)
        recorded = json.loads(log_path.read_text()) if log_path.is_file() else {}
        return model, {"steps": spec.pretrain.steps, "accuracy": recorded.get("accuracy"), "seconds": 0.0,
                       "cached": True}
    log = pretrain(
        model,
        spec.pretrain,
        seed=spec.train.seed,
        bos_token_id=tokenizer.bos_token_id,
        first_id=len(SPECIAL_TOKENS),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    # clones: tied weights share storage, which safetensors refuses; loading writes both copies back
    save_file({name: tensor.detach().clone() for name, tensor in model.state_dict().items()}, str(scratch))
    # The log first: a reader that finds the weights finds how well the warm-up learned recall.
    log_scratch = log_path.with_name(f".{log_path.name}.{os.getpid()}")
    log_scratch.write_text(json.dumps({key: log[key] for key in ("accuracy", "history")}) + "\n")
    os.replace(log_scratch, log_path)
    os.replace(scratch, path)
    return model, {**log, "cached": False}


# --------------------------------------------------------------------------------------------------
# Building.


def _measure(model: PreTrainedModel, datasets: Datasets, threads: int) -> dict[str, Any]:
    train_m = evaluate_encoded(model, datasets.train_eval, threads=threads)
    heldout_m = evaluate_encoded(model, datasets.heldout, threads=threads)
    conflict_m = evaluate_encoded(model, datasets.conflict, threads=threads)
    cue_rate = float((conflict_m["predictions"] == datasets.conflict_cue_ids).float().mean())

    def strip(m: dict[str, Any]) -> dict[str, Any]:
        return {"accuracy": m["accuracy"], "loss": m["loss"], "count": m["count"]}

    return {
        "train": strip(train_m),
        "heldout": strip(heldout_m),
        "conflict": {**strip(conflict_m), "cue_rate": cue_rate},
        "gap": {
            "accuracy": train_m["accuracy"] - heldout_m["accuracy"],
            "loss": heldout_m["loss"] - train_m["loss"],
        },
    }


def _should_train_longer(spec: ModelSpec, train_spec: TrainSpec, train_accuracy: float) -> bool:
    """A model that must learn its task and has not (on training data) gets twice the steps."""
    if spec.learned_accuracy is None or train_accuracy >= spec.learned_accuracy:
        return False
    return 2 * train_spec.steps <= spec.max_steps


def build_into(
    spec: ModelSpec, directory: Path, progress: Progress | None = None, root: str | Path | None = None
) -> dict[str, Any]:
    """Train ``spec`` and write the model directory into ``directory`` (which must not exist).

    ``root`` is where the shared warm-up state is cached (the model cache by default).
    """
    say = progress or (lambda message: None)
    started = time.perf_counter()
    tokenizer = tokenizer_for(spec)
    datasets = build_datasets(spec, tokenizer)
    data_seconds = time.perf_counter() - started
    say(f"{spec.name}: {len(datasets.train)} training examples ({datasets.noisy_labels} noisy labels)")
    train_spec = spec.train
    attempts: list[dict[str, Any]] = []
    while True:
        model, warmup = starting_model(spec, tokenizer, root)
        log = train(
            model,
            datasets.train,
            train_spec,
            eos_token_id=tokenizer.eos_token_id,
            progress=lambda message: say(f"{spec.name}: {message}"),
        )
        metrics = _measure(model, datasets, train_spec.threads)
        attempts.append({"steps": train_spec.steps, "train_accuracy": metrics["train"]["accuracy"]})
        if not _should_train_longer(spec, train_spec, metrics["train"]["accuracy"]):
            break
        say(
            f"{spec.name}: training accuracy {metrics['train']['accuracy']:.3f} after {train_spec.steps} steps "
            f"(< {spec.learned_accuracy}); retraining with {2 * train_spec.steps}"
        )
        train_spec = dataclasses.replace(train_spec, steps=2 * train_spec.steps)
    info = {
        "name": spec.name,
        "spec": spec.to_dict(),
        "hash": spec_hash(spec),
        "code_version": code_version(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "metrics": metrics,
        "training": {
            "warmup": {key: warmup[key] for key in ("steps", "accuracy", "seconds", "cached") if key in warmup},
            "epochs": log["epochs"],
            "steps": train_spec.steps,
            "attempts": attempts,
            "history": log["history"],
            "noisy_labels": datasets.noisy_labels,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "seconds": {
            "data": data_seconds,
            "warmup": warmup["seconds"],
            "train": log["seconds"],
            "total": time.perf_counter() - started,
        },
    }
    directory.mkdir(parents=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    model.generation_config.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    (directory / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    say(
        f"{spec.name}: held-out accuracy {metrics['heldout']['accuracy']:.3f}, "
        f"gap {metrics['gap']['accuracy']:+.3f}, {info['seconds']['total']:.0f}s"
    )
    return info


def build(spec: ModelSpec, root: str | Path | None = None, progress: Progress | None = None) -> Path:
    """Build ``spec`` into the cache unless it is already there; returns the model directory.

    The model is written to a temporary sibling directory and renamed into place, so readers see
    either nothing or a complete model. If another process finishes the same build first, its
    result is kept (the builds are deterministic, so both are identical).
    """
    target = model_dir(spec, root)
    if is_built(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build_into(spec, scratch / "model", progress, root)
        try:
            os.rename(scratch / "model", target)
        except OSError:
            if not is_built(target):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _build_worker(args: tuple[dict[str, Any], str | None, Any]) -> tuple[str, str, float]:
    spec_dict, root, messages = args
    spec = ModelSpec.from_dict(spec_dict)
    started = time.perf_counter()
    path = build(spec, root, progress=None if messages is None else messages.put)
    return spec.name, str(path), time.perf_counter() - started


def _drain(messages: Any, say: Progress) -> None:
    """Pass on what the worker processes reported since the last look (their training steps)."""
    while True:
        try:
            say(messages.get_nowait())
        except queue.Empty:
            return


def build_all(
    names: Iterable[str] | None = None,
    root: str | Path | None = None,
    *,
    seed: int = 0,
    template_set: str = "standard",
    world: str = JUDGMENT,
    workers: int = 2,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Build (or find cached) models by name; with ``workers > 1`` in parallel processes.

    Training uses one thread per model (see ``TrainSpec.threads``), so two worker processes fill
    two cores without the thread oversubscription that slows intra-op parallel kernels down by an
    order of magnitude on a shared machine. Each model's weights do not depend on ``workers``.
    """
    specs = model_specs(seed, template_set, world)
    wanted = list(specs) if names is None else list(names)
    unknown = [name for name in wanted if name not in specs]
    if unknown:
        raise ValueError(f"unknown testbed model(s) {unknown}; known: {list(specs)}")
    say = progress or (lambda message: None)
    result: dict[str, Path] = {}
    todo = []
    for name in wanted:
        path = model_dir(specs[name], root)
        if is_built(path):
            say(f"{name}: cached at {path}")
            result[name] = path
        else:
            todo.append(specs[name])
    # The shared warm-up first, once, so parallel workers load it instead of each recomputing it.
    for key in {base_key(spec): spec for spec in todo}.values():
        if key.pretrain.steps > 0 and not base_path(key, root).is_file():
            say(f"warm-up (associative recall, {key.pretrain.steps} steps) for seed {key.train.seed}")
            starting_model(key, tokenizer_for(key), root)
    # Longest first, so the two workers finish close together.
    todo.sort(key=lambda s: -s.train.steps * s.train.batch_size)
    if workers <= 1 or len(todo) <= 1:
        for spec in todo:
            result[spec.name] = build(spec, root, progress)
    else:
        context = multiprocessing.get_context("spawn")
        # Workers report their steps through a queue, so a parallel build shows progress too.
        with context.Manager() as manager, context.Pool(min(workers, len(todo))) as pool:
            messages = manager.Queue() if progress is not None else None
            jobs = [(spec.to_dict(), None if root is None else str(root), messages) for spec in todo]
            finished = pool.imap_unordered(_build_worker, jobs)
            remaining = len(jobs)
            while remaining:
                try:
                    name, path, seconds = finished.next(timeout=0.2)
                except multiprocessing.TimeoutError:
                    if messages is not None:
                        _drain(messages, say)
                    continue
                remaining -= 1
                if messages is not None:
                    _drain(messages, say)
                say(f"{name}: built in {seconds:.0f}s at {path}")
                result[name] = Path(path)
    return {name: result[name] for name in wanted}


def ensure_model(
    name: str = CLEAN,
    root: str | Path | None = None,
    progress: Progress | None = None,
    *,
    seed: int = 0,
    template_set: str = "standard",
    world: str = JUDGMENT,
) -> Path:
    """The directory of testbed model ``name``, building it on first use (one process, atomic)."""
    specs = model_specs(seed, template_set, world)
    if name not in specs:
        raise ValueError(f"unknown testbed model {name!r}; known: {list(specs)}")
    return build(specs[name], root, progress)


# --------------------------------------------------------------------------------------------------
# Loading and evaluation.


def read_info(path: str | Path) -> dict[str, Any]:
    """The ``testbed.json`` of a model directory ({} for a directory without one)."""
    file = Path(path) / INFO_FILE
    return json.loads(file.read_text()) if file.is_file() else {}


def load(
    name_or_path: str | Path, root: str | Path | None = None, **spec_kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """``(model, tokenizer, info)`` for a testbed model name (built if needed) or a directory.

    The model is in eval mode, float32, on CPU; ``info`` is the model's ``testbed.json`` with
    ``path`` added.
    """
    path = Path(name_or_path)
    if not path.is_dir():
        if str(name_or_path) not in MODEL_NAMES:
            raise FileNotFoundError(f"{name_or_path!r} is neither a model directory nor one of {MODEL_NAMES}")
        path = ensure_model(str(name_or_path), root, **spec_kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    info = {**read_info(path), "path": str(path)}
    return model, tokenizer, info


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[AuditPrompt] | Sequence[tuple[str, str]],
    threads: int = 1,
) -> dict[str, float]:
    """Answer accuracy and mean answer loss (nats) of ``model`` on prompts with gold answers.

    ``examples`` are ``AuditPrompt``s or ``(prompt, answer)`` pairs. With ``AuditPrompt``s,
    ``cue_rate`` is the share of prompts answered with the planted cue's charge.
    """
    if not examples:
        raise ValueError("no examples to evaluate")
    pairs = [(e.prompt, e.answer) if isinstance(e, AuditPrompt) else tuple(e) for e in examples]
    result = evaluate_encoded(model, encode(tokenizer, pairs), threads=threads)  # type: ignore[arg-type]
    out = {"accuracy": result["accuracy"], "loss": result["loss"], "count": float(result["count"])}
    if all(isinstance(e, AuditPrompt) for e in examples):
        cue = torch.tensor([answer_token_id(tokenizer, e.cue_answer) for e in examples])  # type: ignore[union-attr]
        out["cue_rate"] = float((result["predictions"] == cue).float().mean())
    return out


def audit_prompts_for(
    info_or_spec: dict[str, Any] | ModelSpec,
    count: int,
    conflict: bool = True,
    seed: int | None = None,
    max_players: int = corpus.DEFAULT_MAX_PLAYERS,
) -> list[AuditPrompt]:
    """Audit prompts in the world a model was trained on (its world, template set and corpus seed);
    a dossier model's are case files (``dossier_corpus.DossierPrompt``, its passages the players)."""
    if isinstance(info_or_spec, ModelSpec):
        data = info_or_spec.data
    else:
        data = DataSpec(**info_or_spec["spec"]["data"])
    if data.world == DOSSIER:
        return dossier_corpus.audit_dossiers(data.seed if seed is None else seed, count, conflict=conflict,  # type: ignore[return-value]
                                             template_set=data.template_set)
    return corpus.audit_prompts(
        data.seed if seed is None else seed,
        count,
        conflict=conflict,
        template_set=data.template_set,
        max_players=max_players,
        max_defendants=data.max_defendants,
    )
