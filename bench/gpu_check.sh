#!/usr/bin/env bash
# One short GPU check for a lent device (the device tool's 15 minutes): run once, read the JSON line.
#   bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONPATH=. timeout 300 python bench/gpu_check.py "$@"
