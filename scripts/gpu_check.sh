#!/usr/bin/env bash
# One-GPU check, under 5 minutes on an H100/H200: bf16 step speed and peak memory at batch 256/1024,
# then a short bf16 training of the default config with trainer=gpu and data on the GPU, its test panel,
# and a failure exit if no GPU was used or any metric is not finite.
# Needs the project installed with a CUDA torch (README: Install / GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible to torch " + torch.__version__)
print("gpu_check:", torch.cuda.get_device_name(), "torch", torch.__version__, "cuda", torch.version.cuda)
PY
python scripts/bench_train.py --batch-sizes 256,1024 --steps 20 --out logs/gpu_check/bench \
    trainer=gpu data.on_device=true
run_dir="logs/gpu_check/run_$(date +%Y%m%d_%H%M%S)"
python train.py trainer=gpu data.on_device=true trainer.max_epochs=8 data.batch_size=256 \
    "hydra.run.dir=$run_dir"
python - "$run_dir" <<'PY'
import json, math, sys
metrics = json.load(open(f"{sys.argv[1]}/metrics.json"))
values = [v for who in ("model", "persistence") for v in metrics[who]["test"].values()]
if not all(math.isfinite(v) for v in values):
    sys.exit("gpu_check: non-finite metrics in metrics.json")
print("gpu_check: ok; test emd", round(metrics["model"]["test"]["emd"], 3),
      "persistence", round(metrics["persistence"]["test"]["emd"], 3))
PY
