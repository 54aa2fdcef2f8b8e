"""Loader speed: `python scripts/bench_data.py [--batch-size 256] [--device cpu]`.

Prints the windows/s of heatforecast's train loader (one gather per batch) and of a naive per-sample
Dataset + torch DataLoader over the same windows, and the time of one forward+backward+optimizer step
of the default model (conf/model/transformer.yaml, loss emd+mse) at the same batch size, so the
loader's share of a training step is visible; and the loader with ``data.augment.flip=0.5`` (a second
gather per batch).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset

from heatforecast.data import Augment
from heatforecast.training import build_model

CONF = Path(__file__).resolve().parents[1] / "conf"


class NaiveWindows(Dataset):
    """The textbook way: one window per __getitem__, collated by the DataLoader."""

    def __init__(self, values: torch.Tensor, starts: torch.Tensor, context_len: int, horizon: int) -> None:
        self.values, self.starts = values, starts.tolist()
        self.context_len, self.horizon = context_len, horizon

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.starts[i]
        return (
            self.values[s : s + self.context_len],
            self.values[s + self.context_len : s + self.context_len + self.horizon],
        )


def windows_per_second(loader: Iterable[Any], n_batches: int, device: torch.device) -> float:
    """Windows/s delivered on ``device`` (a batch gathered elsewhere is copied there, as training would)."""
    count, start = 0, time.perf_counter()
    for i, (x, y, *_) in enumerate(loader):
        x, y = x.to(device), y.to(device)
        count += len(x)
        if i + 1 == n_batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def arguments() -> argparse.ArgumentParser:
    """The command line main() reads (tests/test_docs.py parses the documented ones with it)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=256, help="windows per batch")
    parser.add_argument("--batches", type=int, default=15, help="timed batches per loader")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    return parser


def main() -> None:
    parser = arguments()
    args = parser.parse_args()
    if min(args.batch_size, args.batches) < 1:
        parser.error("--batch-size and --batches must be >= 1")
    torch.manual_seed(0)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"data.batch_size={args.batch_size}"])
    dm = instantiate(cfg.data)
    dm.setup()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    print(f"{len(dm.windows['train'])} train windows of {dm.context_len}+{dm.horizon} x {dm.n_bins} bins")

    # On a GPU, heatforecast's loader gathers there (data.on_device=true); the naive one runs on the
    # CPU and each batch is copied over.
    def measure(loader) -> float:  # noqa: ANN001
        # Each loader is warmed up alike: on a GPU a kernel's first launch loads it (lazy loading).
        windows_per_second(loader, 2, device)
        return windows_per_second(loader, args.batches, device)

    loader = dm.loader("train", device)
    ours = measure(loader)
    dm.augment = Augment(flip=0.5, circular=dm.circular)
    flipped = measure(dm.loader("train", device))
    naive_set = NaiveWindows(dm.values, dm.windows["train"].starts, dm.context_len, dm.horizon)
    naive = measure(DataLoader(naive_set, args.batch_size, shuffle=True, pin_memory=device.type == "cuda"))

    model = build_model(cfg, dm.n_bins).to(device)
    loss = instantiate(cfg.loss).to(device)
    optimizer = torch.optim.AdamW(model.parameters())
    x, y, *_ = next(iter(loader))

    def step() -> None:
        optimizer.zero_grad()
        loss(model(x), y).backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.batches):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - start) / args.batches
    batch_ours, batch_naive = args.batch_size / ours, args.batch_size / naive
    print(f"\n| at batch {args.batch_size} | windows/s | ms per batch | share of a training step |")
    print("|---|---:|---:|---:|")
    print(f"| heatforecast loader | {ours:,.0f} | {batch_ours * 1e3:.3f} | {batch_ours / step_s:.2%} |")
    batch_flipped = args.batch_size / flipped
    print(
        f"| heatforecast loader, augment.flip=0.5 | {flipped:,.0f} | {batch_flipped * 1e3:.3f} "
        f"| {batch_flipped / step_s:.2%} |"
    )
    share = batch_naive / step_s
    print(f"| naive Dataset + DataLoader | {naive:,.0f} | {batch_naive * 1e3:.3f} | {share:.2%} |")
    print(f"| model fwd+bwd+step | {args.batch_size / step_s:,.0f} | {step_s * 1e3:.1f} | |")
    print(f"\nloader speed-up over naive: {ours / naive:.1f}x")


if __name__ == "__main__":
    main()
