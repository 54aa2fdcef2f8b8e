"""Training-step speed: `python scripts/bench_train.py [--batch-sizes 64,256,1024] [HYDRA OVERRIDES ...]`.

For the configured model and loss (default config; add e.g. `trainer=gpu`), at each
batch size: samples/s and peak memory of a bare training step, split into data, forward, loss, backward
and optimizer; then the same steps inside a real Lightning fit (logging, metrics, callbacks), printed
last as `overhead N%` = Lightning's time per window / the bare forward+backward+optimizer time per
window - 1, at the largest batch size.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from heatforecast.training import build_module

CONF = Path(__file__).resolve().parents[1] / "conf"


class StepTimer(L.Callback):
    """Wall time and windows between the starts of consecutive training batches (skipping warm-up)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.starts, self.sizes = warmup, [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        self.starts.append(time.perf_counter())
        self.sizes.append(len(batch[0]))

    def rate(self) -> tuple[float, float]:
        """Seconds per step and windows per second."""
        starts, sizes = self.starts[self.warmup :], self.sizes[self.warmup : -1]
        seconds = starts[-1] - starts[0]
        return seconds / len(sizes), sum(sizes) / seconds


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # process peak RSS (Linux: KiB)


def bare_steps(cfg, batch_size: int, steps: int, device: torch.device) -> tuple[dict[str, float], int]:  # noqa: ANN001
    """Mean seconds per phase of a hand-written training step, and the windows those steps took (the
    last batch of an epoch is partial)."""
    dm = instantiate(cfg.data, batch_size=batch_size)
    dm.setup()
    module = build_module(cfg, dm).to(device)
    optimizer = module.optimizer_factory(params=module.parameters())
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    phases = dict.fromkeys(("data", "forward", "loss", "backward", "optimizer"), 0.0)
    windows = 0
    loader = dm.loader("train", device if cfg.data.on_device else None)
    batches = (batch for _ in iter(int, 1) for batch in loader)  # epoch after epoch, as long as needed
    for i in range(steps + 3):
        times = [time.perf_counter()]
        x, y, *_ = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        sync()
        times.append(time.perf_counter())
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            pred = module(x)
            sync()
            times.append(time.perf_counter())
            loss = module.loss(pred, y)
            sync()
            times.append(time.perf_counter())
        loss.backward()
        sync()
        times.append(time.perf_counter())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter())
        if i >= 3:  # warm-up steps excluded
            windows += len(x)
            for name, t0, t1 in zip(phases, times, times[1:]):
                phases[name] += (t1 - t0) / steps
    return phases, windows


def lightning_step(cfg, batch_size: int, steps: int) -> tuple[float, float]:  # noqa: ANN001
    """Seconds per training step and windows/s inside a Lightning fit with the run's logging and
    metrics."""
    dm = instantiate(cfg.data, batch_size=batch_size)
    dm.setup()
    module = build_module(cfg, dm)
    timer = StepTimer(warmup=3)
    trainer = instantiate(
        cfg.trainer,
        max_epochs=-1,
        max_steps=steps + 3,
        limit_val_batches=0,
        logger=instantiate(cfg.logger),
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=cfg.paths.output_dir,
    )
    trainer.fit(module, datamodule=dm)
    return timer.rate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="64,256,1024")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="logs/bench_train", help="where the Lightning runs log")
    args, overrides = parser.parse_known_args()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={args.out}", *overrides])
    L.seed_everything(0, verbose=False)
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {name}, threads {torch.get_num_threads()}")
    print(f"model {cfg.model._target_}, loss {cfg.loss._target_}, precision {cfg.trainer.precision}")
    print("\n| batch | data ms | forward ms | loss ms | backward ms | optimizer ms | samples/s | peak MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    overheads = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        phases, windows = bare_steps(cfg, batch_size, args.steps, device)
        total = sum(phases.values())
        cells = " | ".join(f"{v * 1e3:.1f}" for v in phases.values())
        rate = windows / (total * args.steps)
        print(f"| {batch_size} | {cells} | {rate:,.0f} | {peak_memory_mb(device):,.0f} |")
        compute = total - phases["data"]
        bare_rate = windows / (compute * args.steps)
        overheads.append((batch_size, *lightning_step(cfg, batch_size, args.steps), compute, bare_rate))
    print("\n| batch | Lightning step ms | bare fwd+bwd+opt ms | samples/s in Lightning |")
    print("|---:|---:|---:|---:|")
    for batch_size, step, rate, compute, _ in overheads:
        print(f"| {batch_size} | {step * 1e3:.1f} | {compute * 1e3:.1f} | {rate:,.0f} |")
    # Per window, since an epoch's last batch is partial and the two loops need not meet it equally.
    batch_size, _, rate, _, bare_rate = overheads[-1]
    print(f"\noverhead {100 * (bare_rate / rate - 1):.0f}% (batch {batch_size})")


if __name__ == "__main__":
    main()
