"""Benchmark of the causal-LM game: one mask at a time vs batched vs shared prefix vs trie.

Scores all 2^n masks of one request (n players spread evenly over a random prompt, a fixed random
answer) with every strategy of :func:`auditor.game.scoring.score_masks` on a random-init model, and prints
wall time, tokens computed, forward calls and ratios (``--json``: one JSON object, keys in
bench/README.md).

Why some rows are extrapolated: on a shared 2-core CPU, one-mask-at-a-time and plain batching of a
20M-parameter model take minutes each. Their forward calls all have the same shape, so the script
times the first ``--sample-calls`` calls of those strategies (through the library's progress
callback), stops, and extrapolates linearly over the planned number of calls; the row says so.
``--full`` runs everything to the end. The trie and auto strategies (the product) always run fully,
and their values are checked against a naive full-logits forward on a sample of masks.

``--layout passages`` is the long-prompt (RAG, case-file) layout of ``bench/long_prompt.py``: a
short instruction, n contiguous labelled passages filling the prompt (each one player of many tokens,
i.e. one trie level, passed as segments), and a short question at the end. Besides the strategy
table it times one audit end to end through the library's own entry point (``audit_prompt`` at
segment granularity, refinement and metrics included; ``--no-audit`` skips it). Its default model is
the dossier testbed's shape with random weights (``--preset dossier``); ``--model PATH|testbed:NAME``
with ``--prompt-file FILE.json`` (or ``--case-file dossier``: the dossier world's longest audit file)
runs a real model on a real case file; ``--plan-only`` counts tokens and FLOPs without a forward pass.

Examples::

    python bench/scoring.py                      # CPU, ~20M Llama, n = 10, 128 + 16 tokens
    python bench/scoring.py --layout passages    # CPU, dossier shape, ~400-token case file, 10 passages
    python bench/scoring.py --layout passages --model testbed:NAME --prompt-file case.json
    python bench/scoring.py --quick --json       # n = 8, fewer sampled calls
    python bench/scoring.py --device cuda --dtype bf16 --preset qwen2-7b --full   # GPU session
    python bench/scoring.py --device cuda --dtype bf16 --preset qwen2-7b --layout passages --prompt-tokens 2000
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.game.planning import CALL_OVERHEAD_TOKENS, choose_chunk_size, plan_levels  # noqa: E402
from auditor.game.scoring import score_masks  # noqa: E402
from auditor.game.players import PlayerSpec, render_prompt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import long_prompt  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    # ~19.5M parameters: 17.4M in the decoder, 2.1M in the (untied) embeddings and head
    "llama-20m": dict(arch="llama", vocab_size=2048, hidden_size=512, intermediate_size=1376,
                      num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4),
    # Qwen2-7B shapes (7.6B parameters), random init
    "qwen2-7b": dict(arch="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                     num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                     rope_theta=1_000_000.0),
    # the dossier testbed world's shape (issue 19: >= 512 positions for its case files), random init
    "dossier": dict(arch="llama", vocab_size=512, hidden_size=64, intermediate_size=256,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                    max_position_embeddings=512, tie_word_embeddings=True),
    # a smoke-test size (tests run the script with it)
    "tiny": dict(arch="llama", vocab_size=512, hidden_size=64, intermediate_size=128,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
}
# dense bf16/fp16 peaks by GPU name, first match wins (so the PCIe and NVL H100s come before "H100")
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0, "A100": 312.0,
               "L40S": 362.0, "A10": 125.0}
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


class _Stop(Exception):
    """Raised from the progress callback to end a sampled run."""


@dataclass
class Row:
    name: str
    strategy: str
    seconds: float
    tokens: int
    calls: int
    extrapolated: bool
    sampled_calls: int
    chunk_size: int
    max_abs_diff: float | None = None
    cpu_seconds: float | None = None


def build_model(preset: dict[str, Any], device: str, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    cfg = {"max_position_embeddings": 4096, "tie_word_embeddings": False, **preset}
    arch = cfg.pop("arch")
    config_cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    config = config_cls(pad_token_id=0, bos_token_id=2, eos_token_id=2, **cfg)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def build_tokenizer(vocab_size: int) -> Any:
    """A word-level fast tokenizer over "w0".."wV": one word = one token, so the prompt length and
    player positions are exact."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2}
    vocab.update({f"w{i}": i for i in range(3, vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")


def make_request(vocab_size: int, prompt_tokens: int, answer_tokens: int, n: int, seed: int):
    """Prompt of random words, players at the midpoints of n equal slices, random answer ids."""
    g = torch.Generator().manual_seed(seed)
    words = [f"w{int(i)}" for i in torch.randint(3, vocab_size, (prompt_tokens,), generator=g)]
    prompt = " ".join(words)
    starts = [int((i + 0.5) * prompt_tokens / n) for i in range(n)]
    char_at = [0]
    for w in words[:-1]:
        char_at.append(char_at[-1] + len(w) + 1)
    specs = [PlayerSpec(start=char_at[s], end=char_at[s] + len(words[s])) for s in starts]
    answer = torch.randint(3, vocab_size, (answer_tokens,), generator=g).tolist()
    return prompt, specs, answer, starts


def naive_values(model, prompt_ids, answer, starts, masks, baseline) -> list[float]:
    """The reference approach: one plain forward per mask, full-vocabulary logits. ``starts``:
    one-token players' positions, or (start, end) token spans."""
    ids = list(prompt_ids) + answer[:-1]
    emb = model.get_input_embeddings()
    out = []
    with torch.inference_mode():
        base = emb(torch.tensor(ids, device=emb.weight.device))
        for mask in masks:
            x = base.clone()
            for i, s in enumerate(starts):
                if not (mask >> i) & 1:
                    a, b = s if isinstance(s, tuple) else (s, s + 1)
                    x[a:b] = baseline
            logits = model(inputs_embeds=x[None]).logits[0].float()
            pos = torch.arange(len(ids) - len(answer), len(ids))
            z = logits[pos]
            y = torch.tensor(answer, device=z.device)
            zy = z.gather(-1, y[:, None]).squeeze(-1)
            z = z.scatter(-1, y[:, None], float("-inf"))
            out.append(float((zy - torch.logsumexp(z, -1)).sum()))
    return out


def decoder_flops(model, plan, seq_len: int, n_answer: int) -> float:
    """Model FLOPs of one game: 2 x decoder matmul parameters per token, attention scores and
    values (4 x layers x heads x head_dim x context per token), and the head at the answer positions."""
    cfg = model.config
    hidden, layers, heads = cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    emb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight.numel()
    matmul = sum(p.numel() for p in model.parameters()) - emb - head
    flops = 0.0

    def segment(rows: int, a: int, b: int) -> float:
        ctx = (b * (b + 1) - a * (a + 1)) / 2  # sum of (t + 1) for t in [a, b)
        return rows * (2 * matmul * (b - a) + 4 * layers * heads * head_dim * ctx)

    if plan.prefix_len:
        flops += segment(1, 0, plan.prefix_len)
    done = 0
    for group, (a, b) in zip(plan.groups, plan.bounds):
        done += len(group)
        flops += segment(2**done, a, b)
    return flops + 2 * head * n_answer * 2**done


def run_strategy(model, tok, prompt, specs, answer, strategy, chunk, sample_calls: int | None,
                 segments: list[dict[str, str]] | None = None) -> tuple[Row, Any]:
    stamps: list[float] = []

    def progress(done: int, total: int) -> None:
        stamps.append(time.perf_counter())
        if sample_calls is not None and len(stamps) >= sample_calls:
            raise _Stop

    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        game = score_masks(model, tok, prompt=prompt, players="segments" if segments else specs, segments=segments,
                           answer=answer, strategy=strategy, chunk_size=chunk, max_answer_tokens=len(answer),
                           progress=progress)
    except _Stop:
        game = None
    sync()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = Row(strategy, strategy, elapsed, 0, len(stamps), game is None, len(stamps), chunk,
              cpu_seconds=None if game is None else cpu)
    return row, (game, stamps, t0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="random-init model shape (default: llama-20m; dossier with --layout passages)")
    p.add_argument("--model", default=None,
                   help="a real model instead of a preset: hub id, directory or testbed:NAME (with --layout passages "
                        "and --prompt-file or --case-file dossier)")
    p.add_argument("--prompt-file", default=None,
                   help='--layout passages: JSON {"prompt", "segments": [{"id", "text", "label"}], "answer"?}')
    p.add_argument("--case-file", default="synthetic", choices=["synthetic", "dossier"],
                   help="--layout passages: a synthetic word prompt (--prompt-tokens) or the dossier world's "
                        "longest audit file (in the world's tokenizer)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    p.add_argument("--n", type=int, default=10, help="players (default 10)")
    p.add_argument("--prompt-tokens", type=int, default=None, help="default 128 (spread) or 400 (passages)")
    p.add_argument("--answer-tokens", type=int, default=16)
    p.add_argument("--chunk-size", type=int, default=None,
                   help="rows per forward call, same for every strategy (default: 64 on CPU, from memory on GPU)")
    p.add_argument("--sample-calls", type=int, default=4, help="calls timed for extrapolated rows")
    p.add_argument("--full", action="store_true", help="run every strategy to the end (no extrapolation)")
    p.add_argument("--quick", action="store_true", help="n = 8 and 4 sampled calls")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--repeat", type=int, default=1, help="timed repeats of the full runs (median reported)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: by GPU name)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", default="spread", choices=["spread", "passages"],
                   help="spread: one-token players spread evenly; passages: n contiguous passages (RAG, case file)")
    p.add_argument("--head-tokens", type=int, default=long_prompt.DOSSIER_HEAD,
                   help="passages: instruction tokens before the first passage")
    p.add_argument("--tail-tokens", type=int, default=long_prompt.DOSSIER_TAIL,
                   help="passages: question tokens after the last passage")
    p.add_argument("--no-audit", action="store_true", help="passages: skip the end-to-end audit")
    p.add_argument("--audit-only", action="store_true",
                   help="passages: only the end-to-end audit, no strategy table (bench/gpu.sh runs the two apart)")
    p.add_argument("--refine", type=int, default=2, choices=[0, 1, 2],
                   help="passages: coarse players refined into words in the end-to-end audit (library default 2)")
    p.add_argument("--audit-repeat", type=int, default=1, help="timed end-to-end audits after the cold one")
    p.add_argument("--plan-only", action="store_true",
                   help="no forward pass: tokens, calls and model FLOPs of each strategy's plan (model on the meta device)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    passages = args.layout == "passages"
    real_prompt = args.prompt_file or args.case_file == "dossier"
    if args.model and not (passages and real_prompt):
        p.error("--model needs --layout passages and --prompt-file or --case-file dossier (a real prompt)")
    if args.model and args.preset:
        p.error("give --model or --preset, not both")
    if args.audit_only and (not passages or args.no_audit):
        p.error("--audit-only needs --layout passages and no --no-audit")
    if args.quick:
        args.n, args.sample_calls = min(args.n, 8), min(args.sample_calls, 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.prompt_tokens is None:
        args.prompt_tokens = 400 if passages else 128
    dtype = DTYPES[args.dtype]
    preset_name = args.preset or ("dossier" if passages else "llama-20m")
    if args.model:
        from auditor.runtime.model_source import load_model

        loaded = load_model(args.model, device=args.device, dtype={torch.float32: "float32", torch.bfloat16: "bfloat16",
                                                                    torch.float16: "float16"}[dtype])
        model, tok, preset_name = loaded.model, loaded.tokenizer, args.model
        vocab = int(model.config.get_text_config().vocab_size)
    else:
        preset = dict(PRESETS[preset_name])
        if passages and args.case_file == "dossier" and not args.prompt_file:
            tok = long_prompt.dossier_tokenizer()  # the world's words; the preset's shape, random weights
            preset["vocab_size"] = max(preset["vocab_size"], len(tok))
        else:
            tok = build_tokenizer(preset["vocab_size"])
        model = build_model(preset, "meta" if args.plan_only else args.device, dtype, args.seed)
        vocab = preset["vocab_size"]
    request = None
    if passages:
        if args.prompt_file:
            request = long_prompt.load_prompt_file(args.prompt_file)
        elif args.case_file == "dossier":
            request = long_prompt.dossier_case_file(tok, answer=not args.model)
        else:
            request = long_prompt.synthetic_passages(vocab, args.prompt_tokens, args.answer_tokens, args.n, args.seed,
                                                     args.head_tokens, args.tail_tokens)
        prompt, specs = request.prompt, []
        spans, args.prompt_tokens = long_prompt.segment_token_spans(tok, request)
        args.n = len(spans)
        if args.plan_only:
            k = (len(request.answer) if isinstance(request.answer, list) else args.answer_tokens if request.answer is None
                 else len(tok(request.answer, add_special_tokens=False)["input_ids"]))
            return _plan_only(args, model, preset_name, spans, args.prompt_tokens, k)
        # warm-up (allocator, kernels, CUDA context): one small game; it also fixes a real model's answer
        warm = score_masks(model, tok, prompt=prompt, players="segments", segments=request.segments[:2],
                           answer=request.answer, max_answer_tokens=args.answer_tokens, chunk_size=4)
        answer = list(warm.answer_ids)
        args.answer_tokens = len(answer)
    else:
        prompt, specs, answer, spans = make_request(vocab, args.prompt_tokens, args.answer_tokens, args.n, args.seed)
        if args.plan_only:
            return _plan_only(args, model, preset_name, spans, args.prompt_tokens, len(answer))
        score_masks(model, tok, prompt=prompt, players=specs[:2], answer=answer, chunk_size=4)  # warm-up
    prompt_ids = render_prompt(tok, prompt=prompt).input_ids
    starts = [s[0] if isinstance(s, tuple) else s for s in spans]
    seq_len = len(prompt_ids) + args.answer_tokens - 1
    if args.chunk_size is None and args.device.startswith("cuda"):
        chunk = choose_chunk_size(model, seq_len, args.answer_tokens, vocab, 2**args.n, None)
    else:
        chunk = min(args.chunk_size or 64, 2**args.n)
    chunk = 2 ** (chunk.bit_length() - 1)
    overhead = CALL_OVERHEAD_TOKENS["cuda" if args.device.startswith("cuda") else "cpu"]
    params = sum(q.numel() for q in model.parameters())
    segments = request.segments if request is not None else None

    if args.audit_only:
        result = {"preset": preset_name, "params": params, "device": args.device, "device_name": _device_name(args.device),
                  "dtype": args.dtype, "threads": torch.get_num_threads(), "n_players": args.n, "layout": args.layout,
                  "prompt_tokens": args.prompt_tokens, "answer_tokens": args.answer_tokens, "seq_len": seq_len,
                  "prompt_source": request.source,
                  "audit": long_prompt.audit_end_to_end(model, tok, request, answer, args.answer_tokens,
                                                        args.refine, args.audit_repeat)}
        print(json.dumps(result) if args.json else json.dumps(result, indent=1))
        return result

    rows: list[Row] = []
    games: dict[str, Any] = {}
    for strategy in ("single", "batched", "prefix", "trie", "auto"):
        plan = plan_levels(starts, seq_len, 1 if strategy == "single" else chunk, strategy, overhead)
        sampled = strategy in ("single", "batched", "prefix") and not args.full
        sample = args.sample_calls + (1 if plan.prefix_len else 0) if sampled else None
        if sample is not None and sample >= plan.calls:
            sample = None
        times = []
        for _ in range(1 if sample is not None else max(1, args.repeat)):
            row, (game, stamps, t0) = run_strategy(model, tok, prompt, specs, answer, strategy,
                                                   1 if strategy == "single" else chunk, sample, segments)
            if game is None:
                # calls after the first (warm) one have one shape: extrapolate over the planned calls
                gaps = [b - a for a, b in zip(stamps[1:], stamps[2:])] or [stamps[-1] - t0]
                row.seconds = (stamps[-1] - t0) + statistics.median(gaps) * (plan.calls - len(stamps))
            else:
                games[strategy] = game
                row.max_abs_diff = None
            times.append(row.seconds)
        row.seconds = statistics.median(times)
        row.tokens, row.calls = plan.tokens, plan.calls
        rows.append(row)

    # correctness: the full runs agree with each other and with naive forwards on sampled masks
    with torch.inference_mode():
        baseline = model.get_input_embeddings()(torch.tensor([tok.pad_token_id], device=args.device))[0]
    check_masks = sorted({0, 2**args.n - 1, *torch.randint(0, 2**args.n, (6,), generator=torch.Generator().manual_seed(1)).tolist()})
    naive = naive_values(model, prompt_ids, answer, spans, check_masks, baseline)
    for row in rows:
        game = games.get(row.strategy)
        if game is not None:
            raw = game.values + game.raw_empty
            row.max_abs_diff = max(abs(float(raw[m]) - v) for m, v in zip(check_masks, naive))

    base = {r.strategy: r for r in rows}
    single, batched = base["single"], base["batched"]
    best = min((base["trie"], base["auto"]), key=lambda r: r.seconds)
    plan_best = plan_levels(starts, seq_len, chunk, best.strategy, overhead)
    flops = decoder_flops(model, plan_best, seq_len, args.answer_tokens)
    device_name = _device_name(args.device)
    peak = args.peak_tflops
    if peak is None and args.device.startswith("cuda"):
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)
    result = {
        "preset": preset_name,
        "params": params,
        "device": args.device,
        "device_name": device_name,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "n_players": args.n,
        "layout": args.layout,
        "prompt_tokens": args.prompt_tokens,
        "answer_tokens": args.answer_tokens,
        "player_token_starts": starts,
        "player_token_spans": [list(s) if isinstance(s, tuple) else [s, s + 1] for s in spans],
        "seq_len": seq_len,
        "chunk_size": chunk,
        "rows": [r.__dict__ for r in rows],
        "speedup_vs_single": {r.strategy: single.seconds / r.seconds for r in rows},
        "tokens_ratio_vs_batched": {r.strategy: batched.tokens / r.tokens for r in rows},
        "best_strategy": best.strategy,
        "seconds_per_audit": best.seconds,
        "model_tflop_per_audit": flops / 1e12,
        "achieved_tflops": flops / best.seconds / 1e12,
        "peak_tflops": peak,
        "mfu": (flops / best.seconds / 1e12 / peak) if peak else None,
        # the time the scoring FLOPs need at 100% of the peak: no schedule of the exact game beats it
        "floor_seconds_at_peak": (flops / 1e12 / peak) if peak else None,
        "checked_masks": check_masks,
    }
    if request is not None:
        result["prompt_source"] = request.source
        result["layout_spec"] = {"head_tokens": args.head_tokens, "tail_tokens": args.tail_tokens,
                                 "labels": [seg.get("label", "unlabelled") for seg in request.segments]}
        if not args.no_audit:
            result["audit"] = long_prompt.audit_end_to_end(model, tok, request, answer, args.answer_tokens,
                                                           args.refine, args.audit_repeat)
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result)
    return result


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or platform.machine()


def _plan_only(args: argparse.Namespace, model: Any, preset_name: str, spans: list[Any], prompt_len: int,
               answer_tokens: int) -> dict[str, Any]:
    """Tokens, calls and model FLOPs of every strategy's plan, with no forward pass: what a GPU run
    would push through the model, and the least time it could take at a given peak
    (``--peak-tflops``). A plan, not a measurement: the JSON says so (``plan_only``)."""
    if model.config.get_text_config().max_position_embeddings < prompt_len + answer_tokens - 1:
        raise SystemExit(f"{prompt_len} + {answer_tokens} tokens exceed the model's positions")
    starts = [s[0] if isinstance(s, tuple) else s for s in spans]
    seq_len = prompt_len + answer_tokens - 1
    chunk = 2 ** (min(args.chunk_size or 64, 2**args.n).bit_length() - 1)
    overhead = CALL_OVERHEAD_TOKENS["cuda" if args.device.startswith("cuda") else "cpu"]
    rows = []
    for strategy in ("single", "batched", "prefix", "trie", "auto"):
        plan = plan_levels(starts, seq_len, 1 if strategy == "single" else chunk, strategy, overhead)
        flops = decoder_flops(model, plan, seq_len, answer_tokens)
        rows.append({"strategy": strategy, "tokens": plan.tokens, "calls": plan.calls, "tflop": flops / 1e12,
                     "floor_seconds_at_peak": flops / 1e12 / args.peak_tflops if args.peak_tflops else None})
    batched = rows[1]["tokens"]
    result = {"plan_only": True, "preset": preset_name, "params": sum(q.numel() for q in model.parameters()),
              "layout": args.layout, "n_players": args.n, "prompt_tokens": prompt_len, "answer_tokens": answer_tokens,
              "seq_len": seq_len, "chunk_size": chunk, "peak_tflops": args.peak_tflops,
              "player_token_spans": [list(s) if isinstance(s, tuple) else [s, s + 1] for s in spans],
              "rows": rows, "tokens_ratio_vs_batched": {r["strategy"]: batched / r["tokens"] for r in rows}}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"PLAN ONLY (no forward pass): {preset_name} ({result['params'] / 1e9:.2f}B params), n = {args.n} "
              f"({args.layout}), {prompt_len} prompt + {answer_tokens} answer tokens, chunk {chunk}")
        for r in rows:
            floor = f"{r['floor_seconds_at_peak']:.2f} s at {args.peak_tflops:.0f} TFLOP/s" if args.peak_tflops else ""
            print(f"{r['strategy']:<9}{r['tokens']:>11}{r['calls']:>7}{r['tflop']:>11.1f} TFLOP "
                  f"{result['tokens_ratio_vs_batched'][r['strategy']]:>6.2f}x  {floor}")
    return result


def _print_table(result: dict[str, Any]) -> None:
    print(f"{result['preset']} ({result['params'] / 1e6:.1f}M params) on {result['device']} "
          f"[{result['device_name']}], {result['dtype']}, {result['threads']} threads; n = {result['n_players']} "
          f"({result['layout']}), "
          f"{result['prompt_tokens']} prompt + {result['answer_tokens']} answer tokens, chunk {result['chunk_size']}")
    head = f"{'strategy':<9}{'seconds':>10}{'tokens':>10}{'calls':>7}{'speedup':>9}{'tok ratio':>11}{'max|dv|':>10}  note"
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        s = r["strategy"]
        diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        note = f"extrapolated from {r['sampled_calls']} calls" if r["extrapolated"] else "full run"
        print(f"{s:<9}{r['seconds']:>10.2f}{r['tokens']:>10}{r['calls']:>7}"
              f"{result['speedup_vs_single'][s]:>8.1f}x{result['tokens_ratio_vs_batched'][s]:>10.2f}x{diff:>10}  {note}")
    mfu = result["mfu"]
    print(f"best: {result['best_strategy']}, {result['seconds_per_audit']:.2f} s per audit, "
          f"{result['model_tflop_per_audit']:.3f} TFLOP, {result['achieved_tflops']:.2f} TFLOP/s"
          + (f", MFU {mfu:.1%} of {result['peak_tflops']:.0f} TFLOP/s" if mfu is not None else ""))
    audit = result.get("audit")
    if audit:
        phases = ", ".join(f"{k} {v:.2f} s" for k, v in audit["phase_seconds"].items())
        print(f"one audit end to end (audit_prompt, {audit['granularity']}, n = {audit['n_players']}, refine "
              f"{audit['refine']} -> {audit['fine_n_players']} words): {audit['seconds']:.2f} s "
              f"(first audit {audit['cold_seconds']:.2f} s); {phases}; {audit['tokens_computed']} tokens "
              f"({audit['coarse_tokens']} coarse), {audit['forward_calls']} calls; gap {audit['gap']:.1e}"
              + (f"; note: {audit['refine_note']}" if audit["refine_note"] else ""))


if __name__ == "__main__":
    main()
