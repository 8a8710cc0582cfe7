"""Load a causal LM and its fast tokenizer from a hub id or a local directory.

The embedded default (``testbed:NAME``, built on first use) is the runtime's business
(``auditor.runtime.model_source``): the game knows Hugging Face models, not the project's testbed.

Errors are :class:`ModelLoadError` with a message a person can act on: a missing local directory,
a hub id that cannot be fetched (offline machine, unknown id, gated model, wrong revision), a slow
tokenizer (players are located with a fast tokenizer's offsets), an unavailable device or dtype.
Nothing here talks to the network when the model is a local directory or ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelLoadError", "LoadedModel", "load_model", "resolve_device", "resolve_dtype", "context_limit"]

logger = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


class ModelLoadError(RuntimeError):
    """The model or tokenizer could not be loaded; the message says why and what to do."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    model_id: str  # what was asked for (hub id, path or testbed:NAME)
    revision: str | None  # the resolved commit when known, else the requested revision
    path: str | None  # local directory the weights came from, when known
    device: str
    dtype: str


def resolve_device(device: str) -> str:
    """``auto`` -> cuda, else mps, else cpu; an explicit device must be available."""
    import torch

    device = (device or "cpu").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} requested but CUDA is not available in this torch build "
                                 f"(torch {torch.__version__}); use device 'cpu' or install a CUDA build of torch")
        if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
            raise ModelLoadError(f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) visible")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("device 'mps' requested but MPS is not available")
    return device


def resolve_dtype(dtype: str) -> Any:
    """A torch dtype, or the string ``"auto"`` (the checkpoint's own dtype)."""
    import torch

    if dtype in (None, "", "auto"):
        return "auto"
    name = _DTYPES.get(str(dtype).lower())
    if name is None:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
    return getattr(torch, name)


def _looks_local(model: str) -> bool:
    if model.startswith(("/", "./", "../", "~")):
        return True
    try:
        return os.path.isdir(os.path.expanduser(model))
    except (OSError, ValueError):
        return False


def load_model(
    model: str,
    *,
    revision: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load ``model`` (hub id or local directory) in eval mode on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    source: str
    local_path: str | None = None
    if _looks_local(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ModelLoadError(f"model directory {str(path)!r} does not exist")
        if not (path / "config.json").exists():
            raise ModelLoadError(f"model directory {str(path)!r} has no config.json: not a Hugging Face model directory")
        local_path = str(path.resolve())
        source = local_path
    else:
        source = model
        if revision:
            kwargs["revision"] = revision

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(_explain(model, revision, "tokenizer", e)) from e
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"model {model!r} has no fast tokenizer (tokenizer.json); the auditor needs one "
                             "to map words to tokens with character offsets")
    try:
        lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(_explain(model, revision, "model", e)) from e
    try:
        lm = lm.to(dev)
    except (RuntimeError, AssertionError) as e:
        raise ModelLoadError(f"could not move model {model!r} to device {dev!r}: {e}") from e
    lm.eval()
    for p in lm.parameters():
        p.requires_grad_(False)
    resolved_revision = getattr(lm.config, "_commit_hash", None) or revision
    param_dtype = next(lm.parameters()).dtype
    return LoadedModel(
        model=lm,
        tokenizer=tokenizer,
        model_id=model,
        revision=resolved_revision,
        path=local_path,
        device=dev,
        dtype=str(param_dtype).replace("torch.", ""),
    )


def _explain(model: str, revision: str | None, what: str, error: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
    rev = f" at revision {revision!r}" if revision else ""
    hint = (
        "HF_HUB_OFFLINE is set, so only the local Hugging Face cache was searched; download the model first "
        "or point AUDITOR_MODEL at a local directory"
        if offline
        else "check the id and revision, network access to the Hugging Face hub (or set HF_HUB_OFFLINE=1 to use "
        "the local cache), and HF_TOKEN for gated models; or point AUDITOR_MODEL at a local directory"
    )
    first_line = str(error).strip().splitlines()[0].rstrip(". ") if str(error).strip() else type(error).__name__
    return f"could not load the {what} of {model!r}{rev}: {first_line}. {hint}"


def context_limit(model: Any) -> int | None:
    """The model's maximum sequence length (prompt + answer), when its config states one.

    The one place this is read: the scorer refuses a sequence past it, and the LLM service checks
    requests against it. Multimodal configs keep it in their text config.
    """
    config = getattr(model, "config", None)
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        config = get_text_config()
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
