#!/usr/bin/env bash
# The one command of a GPU session (issue 10), from the repository root of the lent machine:
#   bash tools/gpu/sweep.sh "$OUT" [BUDGET_S]      (carry: [".gpu_carry"]; build it first here
#                                                  with `python -m tools.gpu.carry`)
# Unpacks the carried ray/optuna/wandb into /tmp, checks them (tools/gpu/env.py), then runs the
# budgeted phases of tools/gpu/sweep.py. Everything lands in OUT: gpu_sweep.json/.md/.log,
# env.json, sweep_report.html/.md, trial_status.json (8 files at most come back).
set -u
OUT=${1:?usage: bash tools/gpu/sweep.sh OUT [BUDGET_S]}
BUDGET=${2:-420}
START=$(date +%s)
mkdir -p "$OUT"
SITE=/tmp/gpu_site
rm -rf "$SITE" && mkdir -p "$SITE"
if ! tar -xJf .gpu_carry/site.tar.xz -C "$SITE"; then
  echo "no .gpu_carry/site.tar.xz: run 'python -m tools.gpu.carry' and carry .gpu_carry" \
    | tee "$OUT/gpu_sweep.md"
  exit 2
fi
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 WANDB_MODE=offline
export CUBLAS_WORKSPACE_CONFIG=:4096:8
echo "unpacked in $(( $(date +%s) - START )) s"
python3 -m tools.gpu.env --site "$SITE" --fallback .gpu_carry/fallback --out "$OUT/env.json" \
  > "$OUT/gpu_sweep.log" 2>&1 || PHASES="--phases mfu_eager,mfu_compile,mfu_loop"
tail -n 30 "$OUT/gpu_sweep.log"
# Without a working Ray only the torch-only phases can run; the result names the others.
LEFT=$(( BUDGET - ($(date +%s) - START) ))
python3 -m tools.gpu.sweep --out "$OUT" --budget-s "$LEFT" ${PHASES:-}
