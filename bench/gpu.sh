#!/usr/bin/env bash
# Every GPU measurement the project owes, in one run that ends within 8 minutes (issue 19, item 6):
#
#   1. passages        bench/scoring.py, Qwen2-7B shapes (random init, bf16), a 2,000-token prompt of
#                      10 passages (segments), every scoring strategy; s/audit (scoring), MFU
#   2. passages-audit  the same model and prompt, one audit end to end (audit_prompt at segment
#                      granularity: scoring, LP, refinement of the 2 most salient passages, metrics)
#   3. spread          bench/scoring.py, the same model, 128 + 16 tokens, 10 one-word players, all
#                      strategies run in full (the issue-3 preset)
#   4. solver          bench/solver_device.py, extract_batch on the card (the tensor path) vs HiGHS on
#                      the same samples, n = 10, planted and LM-like games
#
# Each step runs under its own timeout (their sum plus start-up stays under 8 minutes on one
# H100), writes <step>.json and <step>.log; bench/gpu_summary.py then writes summary.json and
# summary.txt (the human table, also printed) with the card's name from nvidia-smi and torch.
# A step that fails or times out is reported as such; the others still count.
#
# Without a GPU: --cpu-tiny (or BENCH_CPU_TINY=1) runs the same four steps on the CPU with tiny
# configurations (about 26 s of CPU; more wall time on a loaded machine), so the script itself is
# tested (tests/bench/test_gpu_bench.py).
#
#   bench/gpu.sh [--cpu-tiny] [--out DIR]      # default DIR: bench/results/gpu-<UTC time>
set -uo pipefail

MODE=gpu
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu-tiny) MODE=cpu-tiny; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (use --cpu-tiny, --out DIR)" >&2; exit 2 ;;
  esac
done
[[ "${BENCH_CPU_TINY:-0}" == "1" ]] && MODE=cpu-tiny

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
OUT="${OUT:-$ROOT/bench/results/gpu-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
: > "$OUT/steps.tsv"
STARTED=$(date +%s%N)

# The card, as the driver and as torch name it (both recorded: they are what the numbers mean).
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/nvidia-smi.txt" 2>&1 || true
fi
"$PY" - > "$OUT/torch-device.json" <<'EOF'
import json, platform, torch
cuda = torch.cuda.is_available()
print(json.dumps({"torch": torch.__version__, "cuda_available": cuda, "cuda": torch.version.cuda,
                  "device_name": torch.cuda.get_device_name(0) if cuda else None,
                  "cpu": platform.processor() or platform.machine()}))
EOF

if [[ "$MODE" == gpu ]] && ! grep -q '"cuda_available": true' "$OUT/torch-device.json"; then
  echo "gpu.sh: torch sees no CUDA device; run bench/gpu.sh --cpu-tiny to test the script on the CPU" >&2
  exit 2
fi

step() {  # step NAME LIMIT_S COMMAND...: run under a timeout, record rc and seconds
  local name="$1" limit="$2"; shift 2
  local t0 t1 rc
  t0=$(date +%s%N)
  echo "[$name] (limit ${limit} s) $*" >&2
  (cd "$ROOT" && timeout --kill-after=10 "$limit" "$@") > "$OUT/$name.json" 2> "$OUT/$name.log"
  rc=$?
  t1=$(date +%s%N)
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( (t1 - t0) / 1000000 ))" "$limit" >> "$OUT/steps.tsv"  # ms
}

if [[ "$MODE" == gpu ]]; then
  # Budget (s): 120 + 160 + 90 + 90 = 460 of the 480; start-up and the summary take the rest.
  # Estimates at ~50% MFU: passages ~75 s (model init ~20 s, the trie's 6 PFLOP ~12 s twice, sampled
  # rows), its audit ~100 s (the refinement's word game is the larger one), spread ~50 s, solver ~40 s.
  P7B=(--device cuda --dtype bf16 --preset qwen2-7b)
  step passages "${BENCH_LIMIT_PASSAGES:-120}" "$PY" bench/scoring.py "${P7B[@]}" --layout passages \
    --prompt-tokens 2000 --n 10 --sample-calls 2 --no-audit --json
  step passages-audit "${BENCH_LIMIT_AUDIT:-160}" "$PY" bench/scoring.py "${P7B[@]}" --layout passages \
    --prompt-tokens 2000 --n 10 --audit-only --audit-repeat 0 --json
  step spread "${BENCH_LIMIT_SPREAD:-90}" "$PY" bench/scoring.py "${P7B[@]}" --full --json
  step solver "${BENCH_LIMIT_SOLVER:-90}" "$PY" bench/solver_device.py --device cuda --n 10 --batch 256 \
    --highs-samples 32 --budget 15 --json
else
  TINY=(--preset tiny --layout passages --prompt-tokens 64 --n 5 --answer-tokens 4 --threads 1)
  step passages 60 "$PY" bench/scoring.py "${TINY[@]}" --full --no-audit --json
  step passages-audit 60 "$PY" bench/scoring.py "${TINY[@]}" --audit-only --refine 1 --audit-repeat 0 --json
  step spread 60 "$PY" bench/scoring.py --preset tiny --prompt-tokens 32 --n 4 --answer-tokens 4 --full \
    --threads 1 --json
  step solver 60 "$PY" bench/solver_device.py --device cpu --n 8 --batch 8 --highs-samples 2 --budget 10 --json
fi

FINISHED=$(date +%s%N)
"$PY" "$ROOT/bench/gpu_summary.py" "$OUT" --mode "$MODE" --milliseconds "$(( (FINISHED - STARTED) / 1000000 ))"
