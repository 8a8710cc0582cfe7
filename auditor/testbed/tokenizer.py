"""A closed word-level tokenizer for the testbed corpus, saved as a standard fast tokenizer.

Why word level: every charge, name and act is exactly one token, so the answer is a single token
and every player maps to whole tokens; the vocabulary is small (a few hundred words), which keeps
the models tiny. The vocabulary is enumerated from the generator's lexicon and all template sets
(not learned from a sample), so it is complete and identical for every seed.

Conventions (those of Llama-style hub tokenizers): text is lower-cased by the normaliser (offsets
still point into the original text), split on whitespace and punctuation; the post-processor adds
``<s>`` in front of every sequence; the chat template starts with ``{{ bos_token }}``, so
``apply_chat_template(..., tokenize=True)`` (which tokenizes without special tokens) gives the same
ids as tokenizing the plain prompt. Render a template to text and tokenize it yourself only with
``add_special_tokens=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from auditor.testbed import corpus

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if not loop.first %} {% endif %}"
    "{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
"""Turns are plain text joined by spaces: a testbed prompt is a question ending with the queried
name, and the model's answer follows it directly, so the generation prompt adds nothing."""


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )


def build_vocabulary(texts: Sequence[str] | None = None) -> list[str]:
    """Special tokens, then every word the corpus can produce, in sorted (deterministic) order.

    ``texts``: another world's strings (the dossier world's, ``dossier_corpus.vocabulary_texts``);
    by default the judgment corpus's, so that world's vocabulary never moves when a world is added."""
    normalizer = normalizers.Lowercase()
    pre = _pre_tokenizer()
    words: set[str] = set()
    for text in corpus.vocabulary_texts() if texts is None else texts:
        words.update(piece for piece, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    return [*SPECIAL_TOKENS, *sorted(words - set(SPECIAL_TOKENS))]


def build_tokenizer(texts: Sequence[str] | None = None) -> PreTrainedTokenizerFast:
    """The testbed tokenizer as a ``PreTrainedTokenizerFast`` (loadable by ``AutoTokenizer``);
    ``texts`` as in :func:`build_vocabulary`."""
    vocab = {word: index for index, word in enumerate(build_vocabulary(texts))}
    backend = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = _pre_tokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        padding_side="right",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def answer_token_id(tokenizer: PreTrainedTokenizerFast, answer: str) -> int:
    """The single token id of an answer word; fails loudly if the word is not one known token."""
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"answer {answer!r} is not a single known token: {ids}")
    return int(ids[0])


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> None:
    tokenizer.save_pretrained(str(directory))
