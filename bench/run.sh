#!/usr/bin/env bash
# All benchmarks, one command: chat speed, the BLAS fix, sleep cost, the quiz's
# wobble, and the dev-week evaluation.
#   bash bench/run.sh            (hours on a 2-core CPU: sleep takes about an hour)
#   ONLY=eval RESUME=1 bash bench/run.sh   (only the evaluation, keeping the methods
#                                           a stopped run of it finished)
# Figures go to bench/out/; bench/out/eval-dev-week.md holds the evaluation's tables
# for bench/RESULTS.md (paste them with the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
py=.venv/bin/python
echo "== machine"; uname -srm; nproc; grep -m1 "model name" /proc/cpuinfo 2>/dev/null || true
if [[ "${ONLY:-all}" != eval ]]; then
  echo "== chat speed (engines vs raw libraries)"
  $py bench/engine_speed.py --json bench/out/engine_speed.json | tee bench/out/engine_speed.txt
  echo "== MLX CPU BLAS fix"
  $py bench/blas_speed.py | tee bench/out/blas_speed.txt
  echo "== sleep cost (1x, 4x, 16x a day)"
  $py bench/sleep_cost.py --json bench/out/sleep_cost.json | tee bench/out/sleep_cost.txt
  echo "== the gate's quiz under noise (about 12 minutes)"
  $py bench/quiz_wobble.py --json bench/out/quiz_wobble.json | tee bench/out/quiz_wobble.txt
fi
echo "== dev-week memory evaluation"
# The JSON is rewritten after every night ("complete": false until the end), so a
# stopped run keeps what it finished; RESUME=1 runs only the methods it lacks.
out=bench/out/eval-dev-week
resume=()
if [[ "${RESUME:-0}" == 1 && -f $out.json ]]; then resume=(--resume "$out.json"); fi
POCKETSLEEP_HOME=$(mktemp -d) .venv/bin/pocketsleep eval \
  --suite "${SUITE:-../shared/eval/dev-week.json}" --methods "${METHODS:-none,icl,sft,sleep}" \
  --model "${MODEL:-default}" --engine "${ENGINE:-llamacpp}" --json "$out.json" --plot "$out.png" ${resume[@]+"${resume[@]}"} \
  | tee "$out.txt"
echo "== tables for RESULTS.md (also from a stopped run: $py bench/results_table.py $out.json)"
$py bench/results_table.py "$out.json" | tee "$out.md"
