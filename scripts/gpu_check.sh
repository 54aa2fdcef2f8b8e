#!/usr/bin/env bash
# One-GPU check, under 5 minutes on an H100/H200: the bf16 training step at batch 64..4096, then the
# default config trained with trainer=gpu (bf16-mixed, data on the GPU), its samples/s, peak GPU memory
# and test panel, that checkpoint scored again by evaluate.py on the CPU (float32, as on a machine
# without a GPU), and last tests/test_gpu.py but its slow test (`python -m pytest -m gpu` runs that too:
# a CUDA-graph fit under DDP, which compiles for over a minute). Each part prints its seconds. The
# loader's own bench is `python scripts/bench_data.py --device cuda --batches 50`.
# Exits non-zero if no GPU was used, a metric is not finite, the CPU's scores are not the GPU's or a GPU
# test fails (the tests run in any case). Needs the project installed with a CUDA torch and pytest
# (README: GPUs). The compiled step's speed is a longer bench (docs/performance.md, torch.compile).
# PYTHON picks the interpreter (default python3); LOG_DIR where runs go (default logs/gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
log_dir=${LOG_DIR:-logs/gpu_check}
total=0
took() { total=$((total + SECONDS)); echo "gpu_check: $1 took $SECONDS s ($total s in all)"; SECONDS=0; }
"$python" - <<'PY'
import sys

import lightning
import torch

if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible to torch " + torch.__version__)
print("gpu_check:", torch.cuda.get_device_name(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| lightning", lightning.__version__, "| python", sys.version.split()[0])
PY
echo "== bf16 training step (bench_train.py trainer=gpu)"
"$python" scripts/bench_train.py --batch-sizes 64,256,1024,4096 --steps 30 --out "$log_dir/bench" trainer=gpu
took "the step bench"
echo "== default config, trainer=gpu"
run_dir="$log_dir/run"
rm -rf "$run_dir"
"$python" train.py trainer=gpu "hydra.run.dir=$run_dir" trainer.enable_progress_bar=false
"$python" - "$run_dir/metrics.json" <<'PY'
import json, math, sys

from heatforecast.metrics import FORECASTERS

metrics = json.load(open(sys.argv[1]))
fit = metrics["fit"]
values = [v for who in FORECASTERS for v in metrics[who]["test"].values()]
if not all(v is not None and math.isfinite(v) for v in values):  # metrics.json has null for NaN or inf
    sys.exit("gpu_check: non-finite metrics in " + sys.argv[1])
if not fit["peak_memory_mb"]:
    sys.exit(f"gpu_check: the fit ran on {fit['device']}, not on a GPU")
emd = ", ".join(f"{who} {metrics[who]['test']['emd']:.3f}" for who in FORECASTERS)
print(f"gpu_check: fit {fit['samples_per_s']:,.0f} samples/s with validation, peak GPU memory "
      f"{fit['peak_memory_mb']:,.0f} MB on {fit['device']}; test emd: {emd}")
PY
took "the default run"
echo "== the GPU run's best checkpoint scored again by evaluate.py on the CPU (float32)"
best=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["best_checkpoint"])' "$run_dir/metrics.json")
rm -rf "$log_dir/eval"
CUDA_VISIBLE_DEVICES= "$python" evaluate.py "ckpt_path='$best'" "hydra.run.dir=$log_dir/eval" >/dev/null
scores_agree=true
"$python" - "$run_dir/metrics.json" "$log_dir/eval/metrics.json" <<'PY' || scores_agree=false
import json, sys

from heatforecast.metrics import FORECASTERS

# Same test windows, bf16 autocast on the GPU against float32 on the CPU: the references do no matmuls,
# so they must agree to float rounding; the model's bf16 matmuls keep 8 mantissa bits (0.4 % each).
BOUNDS = {"model": 0.02, "persistence": 1e-4, "linear": 1e-4, "drift": 1e-4}
gpu, cpu = (json.load(open(path)) for path in sys.argv[1:])
bad = []
for who in FORECASTERS:
    for key in ("emd", "mse"):
        a, b = gpu[who]["test"][key], cpu[who]["test"][key]
        rel = abs(a - b) / abs(a)
        print(f"gpu_check: test {key} of {who}: {a:.5f} on the GPU (bf16), {b:.5f} on the CPU, {rel:.2e} apart")
        if rel > BOUNDS[who]:
            bad.append(f"{who} {key} {rel:.2e} > {BOUNDS[who]:.0e}")
if bad:
    sys.exit("gpu_check: evaluate.py disagrees with train.py's test panel: " + "; ".join(bad))
PY
took "the CPU scoring"
echo "== GPU tests (pytest -m gpu: bf16 fit, loader on the GPU, no host sync in training steps, CUDA graphs, deterministic circular)"
if "$python" -c "import pytest" 2>/dev/null; then
    # -o addopts=: in this process, one test at a time (pyproject's `-n auto` would share the GPU
    # between workers), and pytest-xdist need not be installed.
    "$python" -m pytest -q -o addopts= -m "gpu and not slow" -p no:cacheprovider --durations=0 tests/test_gpu.py
else
    echo "gpu_check: pytest is not installed for $python, so tests/test_gpu.py did not run" >&2
    exit 1
fi
took "the GPU tests"
$scores_agree || exit 1
echo "gpu_check: ok"
