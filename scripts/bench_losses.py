"""Forward + backward time of every loss: `python scripts/bench_losses.py [--device cpu] [--repeats 20]`.

Prints, per batch shape, each loss's median time and its ratio to mse, then emd against POT's
ot.wasserstein_1d on the same tensors (forward only for POT, which is what it offers batched here);
last, the metric panel's time per evaluation batch (ForecastMetrics.update: the forecast and the three
references) at each ``peaks.max_count``, whose exact matching grows as max_count 2^max_count.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from heatforecast import losses
from heatforecast.metrics import MAX_PEAK_COUNT, ForecastMetrics, PeakSettings

MIN_TIMING = 0.01  # seconds: the least one timing spans (calls in a row)
LOSSES: dict[str, Callable[[], torch.nn.Module]] = {
    "mse": losses.MSE,
    "l1": losses.L1,
    "huber": losses.Huber,
    "cumsum_mse": losses.CumsumMSE,
    "cosine": losses.Cosine,
    "cumsum_mse_over_cos": losses.CumsumMSEOverCos,
    "emd": losses.EMD,
    "emd_circular": lambda: losses.EMD(circular=True),
    "cramer": losses.Cramer,
    "kl": losses.KL,
    "w2": losses.W2,
    "combo(emd+mse)": lambda: losses.Combo({"emd": losses.EMD(), "mse": losses.MSE()}, {"emd": 1, "mse": 1}),
}


def timed(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median wall time in seconds of one call of each fn, after two warm-up calls. The fns take turns
    within each repeat, so a slow spell of the machine hits all of them alike. A repeat times as many
    calls in a row as fill about MIN_TIMING seconds (timeit's way), so that calls of tens of
    microseconds are not lost in the timer and in one-off stalls."""

    def run(fn: Callable[[], object], calls: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    calls = {}
    for name, fn in fns.items():
        run(fn, 2)
        calls[name] = max(1, round(MIN_TIMING / max(run(fn, 1), 1e-9)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(run(fn, calls[name]) / calls[name])
    return {name: statistics.median(t) for name, t in times.items()}


def fwd_bwd(loss: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor) -> None:
    loss(pred, target).backward()


def bench_shape(spec: str, device: torch.device, repeats: int) -> None:
    shape = tuple(int(s) for s in spec.split("x"))
    pred = torch.rand(shape, device=device, requires_grad=True)
    target = torch.rand(shape, device=device)
    print(f"\n| loss @ {spec} | fwd+bwd ms | x mse |\n|---|---:|---:|")
    steps = {name: partial(fwd_bwd, make().to(device), pred, target) for name, make in LOSSES.items()}
    times = timed(steps, repeats, device)
    for name, t in times.items():
        print(f"| {name} | {t * 1e3:.3f} | {t / times['mse']:.2f} |")
    try:
        import ot
    except ImportError:
        print("(POT not installed: pip install -e '.[dev]')")
        return
    n = shape[-1]
    grid = torch.arange(n, dtype=torch.float32, device=device)[:, None].expand(n, pred[..., 0].numel())
    p = losses.distribution(pred.detach(), eps=1e-12).reshape(-1, n).T.contiguous()
    q = losses.distribution(target, eps=1e-12).reshape(-1, n).T.contiguous()
    forward = {
        "ours": partial(losses.EMD(eps=1e-12), pred.detach(), target),
        "pot": partial(ot.wasserstein_1d, grid, grid, p, q, p=1),
    }
    t = timed(forward, max(3, repeats // 4), device)
    print(
        f"\nemd forward @ {spec}: heatforecast {t['ours'] * 1e3:.3f} ms, "
        f"POT ot.wasserstein_1d {t['pot'] * 1e3:.3f} ms -> {t['pot'] / t['ours']:.0f}x faster"
    )


def bench_panel(spec: str, device: torch.device, repeats: int) -> None:
    batch, horizon, n_bins = (int(s) for s in spec.split("x"))
    target, pred = torch.rand(2, batch, horizon, n_bins, device=device)  # noise: every peak slot filled
    angles = torch.arange(float(n_bins), device=device)
    updates = {}
    for count in range(1, MAX_PEAK_COUNT + 1):
        panel = ForecastMetrics(angles, horizon, peak_settings=PeakSettings(max_count=count)).to(device)
        updates[count] = partial(panel.update, pred, target, target, target, target)
    times = timed(updates, max(3, repeats // 4), device)
    print(f"\n| metric panel @ {spec}: peaks.max_count | ms per batch | x max_count 4 |\n|---|---:|---:|")
    for count, t in times.items():
        print(f"| {count} | {t * 1e3:.1f} | {t / times[4]:.2f} |")


def arguments() -> argparse.ArgumentParser:
    """The command line main() reads (tests/test_docs.py parses the documented ones with it)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--repeats", type=int, default=20, help="timings per loss; medians are shown")
    parser.add_argument("--shapes", default="8x10x181,4096x10x181", help="comma-separated BxHxA shapes")
    parser.add_argument(
        "--panel-shape", default="256x10x181", help="BxHxA of the metric panel's batch (data.eval_batch_size)"
    )
    return parser


def main() -> None:
    parser = arguments()
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    for flag, spec in [
        *(("--shapes", s) for s in args.shapes.split(",")),
        ("--panel-shape", args.panel_shape),
    ]:
        if not re.fullmatch(r"[1-9]\d*x[1-9]\d*x([2-9]|[1-9]\d+)", spec):
            parser.error(f"{flag}: {spec!r}; expected BxHxA, e.g. 8x10x181 (at least 1 x 1 x 2)")
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, float32")
    for spec in args.shapes.split(","):
        bench_shape(spec, device, args.repeats)
    bench_panel(args.panel_shape, device, args.repeats)


if __name__ == "__main__":
    main()
