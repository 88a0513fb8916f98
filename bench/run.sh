#!/usr/bin/env bash
# All benchmarks, one command: chat speed, the BLAS fix, and the dev-week evaluation.
#   bash bench/run.sh            (about 30-60 minutes on a 2-core CPU)
# Figures go to bench/out/; copy the tables into bench/RESULTS.md with the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
py=.venv/bin/python
echo "== machine"; uname -srm; nproc; grep -m1 "model name" /proc/cpuinfo 2>/dev/null || true
echo "== chat speed (engines vs raw libraries)"
$py bench/engine_speed.py --json bench/out/engine_speed.json | tee bench/out/engine_speed.txt
echo "== MLX CPU BLAS fix"
$py bench/blas_speed.py | tee bench/out/blas_speed.txt
echo "== sleep cost (1x, 4x, 16x a day)"
$py bench/sleep_cost.py --json bench/out/sleep_cost.json | tee bench/out/sleep_cost.txt
echo "== dev-week memory evaluation"
POCKETSLEEP_HOME=$(mktemp -d) .venv/bin/pocketsleep eval \
  --suite "${SUITE:-../shared/eval/dev-week.json}" --methods "${METHODS:-none,icl,sft,sleep}" \
  --engine "${ENGINE:-llamacpp}" --json bench/out/dev-week.json | tee bench/out/dev-week.txt
