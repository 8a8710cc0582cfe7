"""Tiny, deterministic causal LMs and fast tokenizers built entirely in code.

Why: the model code paths (masking, KV caches, chat templates, offsets) must be tested against real
transformers architectures without downloading anything. Everything here is built from a fixed seed
in well under a second, so any test module can import these builders.

Usage::

    from tests.tiny_models import build_tokenizer, build_model
    tok = build_tokenizer()                 # byte-level BPE with <pad>, <unk>, <s>, </s> and a chat template
    model = build_model("llama", tok)       # 2 layers, hidden 64, random init, eval mode, fp32
    save_tiny(tmp_path / "m", "qwen2")      # a from_pretrained-loadable directory (model + tokenizer)

Also: ``reference_values`` (a one-mask-at-a-time oracle of the LM game) and ``single_thread``
(a context manager; tiny models run 5-10x faster on one thread on a loaded, shared CPU).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

ARCHITECTURES = ("llama", "qwen2", "gpt2")

# A small corpus in the style of the project's testbed (defendants, acts, charges) plus some
# capitals and non-ASCII words, so that the BPE learns whole words for some and splits others.
CORPUS: tuple[str, ...] = (
    "The defendant Alice stole a bicycle from the shop and was charged with theft.",
    "The defendant Bob hit a neighbour in the street and was charged with assault.",
    "Carol forged a cheque at the bank; she was charged with fraud.",
    "The court found the defendant guilty of theft and sentenced him to two years.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "Rome is the capital of Italy, and Madrid is the capital of Spain.",
    "What is the capital of France? The capital of France is Paris.",
    "The judge asked the witness what the defendant did on the night of the crime.",
    "Zürich and Genève are cities in Switzerland; São Paulo is in Brazil.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
)

SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "eos_token": "</s>",
}
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")

# A minimal Jinja chat template: role markers are special tokens, contents are copied verbatim,
# so a test can locate every message's content in the rendered text.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@lru_cache(maxsize=None)
def _train_tokenizer_json(kind: str, vocab_size: int, corpus: tuple[str, ...]) -> str:
    """Train once per (kind, size, corpus); training is deterministic but costs ~50 ms."""
    specials = list(SPECIAL_TOKENS.values()) + list(CHAT_TOKENS)
    if kind == "bytelevel":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(corpus, trainer=trainer)
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
    elif kind == "metaspace":
        # SentencePiece-like ("▁word"), as in Llama/Mistral tokenizers: a different offset style.
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=list(string.ascii_letters + string.digits + string.punctuation),
            show_progress=False,
        )
        tok.train_from_iterator(corpus, trainer=trainer)
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; use 'bytelevel' or 'metaspace'")
    return tok.to_str()


def build_tokenizer(
    kind: str = "bytelevel",
    *,
    vocab_size: int = 400,
    with_pad: bool = True,
    with_unk: bool = True,
    chat_template: bool = True,
    corpus: Iterable[str] = CORPUS,
) -> PreTrainedTokenizerFast:
    """A fast tokenizer trained in memory on ``corpus``.

    ``with_pad`` / ``with_unk`` = False leave that special token undeclared (the token string stays in
    the vocabulary), which lets tests exercise the baseline fallbacks pad -> unk -> mean.
    """
    tok_json = _train_tokenizer_json(kind, vocab_size, tuple(corpus))
    special = dict(SPECIAL_TOKENS)
    if not with_pad:
        special.pop("pad_token")
    if not with_unk:
        special.pop("unk_token")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tok_json), **special)
    tokenizer.add_special_tokens({"additional_special_tokens": list(CHAT_TOKENS)})
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(
    arch: str,
    tokenizer: PreTrainedTokenizerFast | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_positions: int = 512,
    initializer_range: float = 0.1,
    attn_implementation: str = "sdpa",
) -> PreTrainedModel:
    """A random-init causal LM of architecture ``arch`` ("llama", "qwen2", "gpt2"), in eval mode.

    The initializer range is larger than the usual 0.02 so that outputs depend visibly on the input
    (a near-uniform model makes every masking effect vanish, and tests would pass vacuously).
    """
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    vocab_size = len(tokenizer)
    ids = {
        "pad_token_id": tokenizer.convert_tokens_to_ids("<pad>"),
        "bos_token_id": tokenizer.convert_tokens_to_ids("<s>"),
        "eos_token_id": tokenizer.convert_tokens_to_ids("</s>"),
    }
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
            max_position_embeddings=max_positions, initializer_range=initializer_range,
            tie_word_embeddings=False, **ids,
        )
        cls = LlamaForCausalLM
    elif arch == "qwen2":
        config = Qwen2Config(
            vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
            max_position_embeddings=max_positions, initializer_range=initializer_range,
            tie_word_embeddings=True, use_sliding_window=False, **ids,
        )
        cls = Qwen2ForCausalLM
    elif arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size, n_embd=hidden_size, n_layer=num_layers, n_head=num_heads,
            n_inner=intermediate_size, n_positions=max_positions, initializer_range=initializer_range,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **ids,
        )
        cls = GPT2LMHeadModel
    else:
        raise ValueError(f"unknown architecture {arch!r}; use one of {ARCHITECTURES}")
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    model = cls(config)
    return model.to(dtype).eval()


def reference_values(
    model: PreTrainedModel,
    prompt_ids: Iterable[int],
    answer_ids: Iterable[int],
    spans: Iterable[tuple[int, int]],
    baseline: torch.Tensor,
    masks: Iterable[int] | None = None,
) -> torch.Tensor:
    """Independent oracle of the LM game: raw v(T) (v(empty) *not* subtracted), float64.

    One plain forward pass per mask over the full sequence, full-vocabulary logits at every
    position, and the log-odds written the textbook way in float64 (log p - log(1 - p)); fine for
    the unconfident tiny models here, where p never approaches 1. Bit i of a mask = span i present.
    """
    prompt_ids, answer_ids, spans = list(prompt_ids), list(answer_ids), list(spans)
    seq = torch.tensor(prompt_ids + answer_ids[:-1])
    n = len(spans)
    masks = list(range(2**n)) if masks is None else list(masks)
    emb = model.get_input_embeddings().weight
    out = []
    with torch.no_grad():
        for mask in masks:
            x = emb[seq].clone()
            for i, (a, b) in enumerate(spans):
                if not (mask >> i) & 1:
                    x[a:b] = baseline
            logits = model(inputs_embeds=x[None]).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            total = 0.0
            for k, y in enumerate(answer_ids):
                lp = logp[len(prompt_ids) - 1 + k, y]
                total += float(lp - torch.log(-torch.expm1(lp)))
            out.append(total)
    return torch.tensor(out, dtype=torch.float64)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one CPU thread (restored afterwards).

    Tiny models gain nothing from intra-op parallelism, and on a shared, loaded CI machine two
    spinning OpenMP threads per process make them 5-10x slower. Use as a module-scoped fixture.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def save_tiny(path: str | Path, arch: str = "llama", *, tokenizer_kind: str = "bytelevel", seed: int = 0) -> Path:
    """Write a tiny model and its tokenizer as an ordinary Hugging Face directory (for code that
    loads with ``from_pretrained``: the CLI, the services). Returns the directory."""
    path = Path(path)
    tokenizer = build_tokenizer(tokenizer_kind)
    build_model(arch, tokenizer, seed=seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
