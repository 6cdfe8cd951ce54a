#!/usr/bin/env bash
# The prepared GPU check (bench/gpu_check.py): throughput and MFU of MIRAM and ViTMAE, the 2x decoder's attention
# memory and time, bf16 against fp32, the loader's feed rate and pretrain.py's own images/s. At most about 8 minutes
# on one GPU; results in bench/results/gpu_<device>.json and a table to paste into bench/README.md. Without a GPU it
# says so and runs every part on the CPU at toy sizes.
#   bash bench/gpu_check.sh [--output DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
if "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    exec "$python" "$root/bench/gpu_check.py" "$@"
fi
echo "No GPU here: a dry run of every part on the CPU at toy sizes (its numbers mean nothing)."
exec "$python" "$root/bench/gpu_check.py" --dry-run "$@"
