"""Training-step speed: `python scripts/bench_train.py [--batch-sizes 64,256,1024] [HYDRA OVERRIDES ...]`.

For the configured model and loss (default config; add e.g. `trainer=gpu`), at each batch size:
- a bare training step (forward, loss, backward, gradient clipping as the trainer config asks, optimizer
  and its learning-rate schedule) split into phases, each timed to a device sync, and its peak memory;
- bare samples/s: the same forward+backward+optimizer steps back to back, no sync inside, no data phase;
- the same training inside a real Lightning fit (data, logging, metrics, callbacks), its train windows
  repeated so that all the timed steps fall in one epoch: the per-step cost, apart from the work done
  once per epoch, which a small data set at a large batch would otherwise mix in every few steps;
- that once-per-epoch work (epoch-end logging and its host sync, the non-finite check, a new shuffle),
  in ms per epoch: a second fit of epochs of 2 steps (``limit_train_batches``), 2 x (its step time -
  the first fit's).
With `--repeats R` the bare and Lightning runs alternate R times and the tables show medians (and the
range of the pairs' overheads). With `--profile N`, one more bare loop and Lightning fit of N steps at
the first batch size run under cProfile, and their host time per step is split by where it is spent:
Lightning's loop, torch's Python, torch operators (on a GPU, mostly launching kernels), heatforecast,
the rest; the difference is what the fit adds. Printed last:
`overhead N%` = median bare samples/s / median samples/s in Lightning - 1, at the largest batch size.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import pstats
import resource
import statistics
import time
import warnings
from collections import Counter
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from heatforecast.data.datamodule import Windows
from heatforecast.training import build_module

CONF = Path(__file__).resolve().parents[1] / "conf"
WARMUP = 3  # untimed steps before each timed run: allocator, kernel loading, compilation
SHORT_EPOCH = 2  # steps per epoch of the fit that prices the once-per-epoch work


class StepTimer(L.Callback):
    """Time and windows of the training steps after ``warmup``, from the start of the first timed batch
    to the end of the last step, with a device sync at those two points only, as a real fit runs.
    On CUDA, the host syncs inside those steps are reported too (``torch.cuda.set_sync_debug_mode``):
    each one stalls the host until the GPU drains, which a launch-bound small model pays in full."""

    def __init__(self, warmup: int, profiler: cProfile.Profile | None = None) -> None:
        self.warmup, self.steps, self.windows = warmup, 0, 0
        self.start = self.seconds = 0.0
        self.profiler = profiler  # enabled over the timed steps only, if given

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
        device = trainer.strategy.root_device
        if trainer.global_step == self.warmup:
            sync(device)
            self.start = time.perf_counter()
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("warn")
            if self.profiler:
                gc.collect()  # as for the bare loop's profile
                self.profiler.enable()
        if trainer.global_step >= self.warmup:
            self.steps += 1
            self.windows += len(batch[0])

    def on_train_batch_end(self, trainer, *args) -> None:  # noqa: ANN001, ANN002
        if trainer.global_step == trainer.max_steps:
            if self.profiler:
                self.profiler.disable()
            device = trainer.strategy.root_device
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
            sync(device)
            self.seconds = time.perf_counter() - self.start

    def rate(self) -> tuple[float, float]:
        """Seconds per step and windows per second."""
        return self.seconds / self.steps, self.windows / self.seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # process peak RSS (Linux: KiB)


def bare_steps(
    cfg,  # noqa: ANN001
    batch_size: int,
    steps: int,
    device: torch.device,
    profiler: cProfile.Profile | None = None,
) -> tuple[dict[str, float], float]:
    """A hand-written training step: forward, loss, backward, gradient clipping if the trainer config
    clips, optimizer and its learning-rate schedule (Forecaster.build_optimizers). Returns the
    mean seconds per phase (a device sync after each phase), and the windows/s of
    forward+backward+optimizer run back to back with no sync inside, as a real loop runs, over a few
    batches gathered beforehand (so without the data phase). ``profiler`` runs over the latter."""
    dm = instantiate(cfg.data, batch_size=batch_size)
    dm.setup()
    module = build_module(cfg, dm).to(device)
    # Warm-up, phased and back-to-back steps: the schedule must not run out.
    optimizer, scheduler = module.build_optimizers(total_steps=WARMUP + 2 * steps)
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    clip = cfg.trainer.get("gradient_clip_val")
    loader = dm.loader("train", device if cfg.data.on_device else None)
    batches = (batch for _ in iter(int, 1) for batch in loader)  # epoch after epoch, as long as needed

    def run(n: int, next_batch, mark) -> int:  # noqa: ANN001
        windows = 0
        for _ in range(n):
            x, y, *_ = next_batch()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            mark("data")
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                pred = module(x)
                mark("forward")
                loss = module.loss(pred, y)
                mark("loss")
            loss.backward()
            mark("backward")
            if clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if scheduler:
                scheduler.step()
            mark("optimizer")
            windows += len(x)
        return windows

    run(WARMUP, lambda: next(batches), lambda phase: None)
    phases = dict.fromkeys(("data", "forward", "loss", "backward", "optimizer"), 0.0)
    clock = [time.perf_counter()]

    def mark(phase: str) -> None:
        sync(device)
        now = time.perf_counter()
        phases[phase] += (now - clock[0]) / steps
        clock[0] = now

    sync(device)
    clock[0] = time.perf_counter()
    run(steps, lambda: next(batches), mark)
    pool = [next(batches) for _ in range(4)]  # distinct inputs, so no step reads another's cache
    turn = iter(range(steps))
    sync(device)
    start = time.perf_counter()
    if profiler:
        gc.collect()  # not the finalizers of earlier fits' objects (Lightning's among them) in this profile
        profiler.enable()
    windows = run(steps, lambda: pool[next(turn) % len(pool)], lambda phase: None)
    sync(device)
    if profiler:
        profiler.disable()
    return phases, windows / (time.perf_counter() - start)


def lightning_step(
    cfg,  # noqa: ANN001
    batch_size: int,
    steps: int,
    per_epoch: int | None = None,
    profiler: cProfile.Profile | None = None,
) -> tuple[float, float, Counter[str]]:
    """Seconds per training step and windows/s inside a Lightning fit with the run's logging, metrics
    and per-step callbacks (the progress bar off, no validation or checkpoints), and where the timed
    steps synced the host with the GPU (file:line -> count; CUDA only). The train windows are repeated
    until every step is a full batch of one epoch, or of epochs of ``per_epoch`` steps if given (no
    more copies than that, since each epoch shuffles all of them). ``profiler`` runs over the timed steps."""
    dm = instantiate(cfg.data, batch_size=batch_size)
    dm.setup()
    train = dm.windows["train"]
    copies = math.ceil((per_epoch or steps + WARMUP) * batch_size / len(train))
    dm.windows["train"] = Windows(*(t.repeat(copies) for t in (train.starts, train.series, train.time)))
    module = build_module(cfg, dm)
    timer = StepTimer(warmup=WARMUP, profiler=profiler)
    lr_monitor = cfg.callbacks.get("lr_monitor")
    trainer = instantiate(
        cfg.trainer,
        max_epochs=-1,
        max_steps=steps + WARMUP,
        limit_train_batches=per_epoch,
        limit_val_batches=0,
        logger=instantiate(cfg.logger),
        callbacks=[timer] + ([instantiate(lr_monitor)] if lr_monitor else []),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=cfg.paths.output_dir,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, datamodule=dm)
    syncs: Counter[str] = Counter()
    for w in caught:
        if "synchronizing CUDA operation" in str(w.message):
            syncs[f"{w.filename}:{w.lineno}"] += 1
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return *timer.rate(), syncs


STDLIB = "Python's standard library and built-ins called by each other"


def part_of(path: str, name: str) -> str:
    """The part of the stack a profiled function belongs to."""
    if "/lightning/" in path or "/lightning_utilities/" in path:
        return "Lightning (loops, hooks, logging, plugins)"
    if "/torch/" in path:
        return "torch, Python (modules, autograd and optimizer front ends)"
    if path == "~" and "torch" in name:
        return "torch operators and backward (C++; on a GPU mostly kernel launches)"
    if "/heatforecast/" in path:
        return "heatforecast (module, model, loss, loader)"
    if path == __file__:
        return "this bench (its step timer, the bare loop's own lines)"
    return STDLIB


def host_time_by_part(stats: pstats.Stats, steps: int) -> dict[str, float]:
    """Own time per step (ms) of the profiled calls, by the part of the stack that spent it. Time in
    Python's standard library and built-ins goes to the part that called them, one call level up
    (Lightning's context managers around each hook count as Lightning)."""
    parts: Counter[str] = Counter()
    for (path, _, name), (_, _, own, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        part = part_of(path, name)
        if part != STDLIB or not callers:
            parts[part] += own * 1e3 / steps
            continue
        for (caller_path, _, caller_name), (_, _, own_here, _) in callers.items():
            parts[part_of(caller_path, caller_name)] += own_here * 1e3 / steps
    return dict(parts.most_common())


def profile_fit(cfg, batch_size: int, steps: int, device: torch.device) -> None:  # noqa: ANN001
    """Print where the host time per step goes in the bare loop and in a Lightning fit (cProfile over
    the timed steps of each), and the difference. cProfile slows Python calls down, so the parts'
    shares and differences, not their sums, are what to read."""
    bare, fit = cProfile.Profile(), cProfile.Profile()
    bare_steps(cfg, batch_size, steps, device, profiler=bare)
    step, *_ = lightning_step(cfg, batch_size, steps, profiler=fit)
    bare_stats, fit_stats = pstats.Stats(bare), pstats.Stats(fit)
    bare_parts, fit_parts = host_time_by_part(bare_stats, steps), host_time_by_part(fit_stats, steps)
    print(
        f"\nhost time per step under cProfile at batch {batch_size} ({steps} steps each; the Lightning "
        f"fit's step took {step * 1e3:.2f} ms):"
    )
    print("\n| part | bare loop ms/step | Lightning fit ms/step | Lightning - bare |\n|---|---:|---:|---:|")
    for part, ms in fit_parts.items():
        print(
            f"| {part} | {bare_parts.get(part, 0.0):.3f} | {ms:.3f} | {ms - bare_parts.get(part, 0.0):+.3f} |"
        )
    bare_total, fit_total = sum(bare_parts.values()), sum(fit_parts.values())
    print(f"| all | {bare_total:.3f} | {fit_total:.3f} | {fit_total - bare_total:+.3f} |")
    bare_calls, fit_calls = operator_calls(bare_stats, steps), operator_calls(fit_stats, steps)
    # Whole calls a step; fewer are calls now and then (log steps, epoch ends).
    only = sorted((op for op, n in fit_calls.items() if n >= 0.5 and op not in bare_calls), key=fit_calls.get)
    listed = ", ".join(f"{op} {fit_calls[op]:.0f}" for op in reversed(only))
    print(f"\ntorch operators only the fit calls (calls per step): {listed or 'none'}")


def operator_calls(stats: pstats.Stats, steps: int) -> dict[str, float]:
    """Calls per step of each torch operator (C++ function) among the profiled calls, by a short name
    (``index_select`` for "<method 'index_select' of 'torch._C.TensorBase' objects>")."""
    calls: dict[str, float] = {}
    for (path, _, name), (_, count, *_) in stats.stats.items():  # type: ignore[attr-defined]
        if part_of(path, name).startswith("torch operators"):
            short = name.split("'")[1] if "'" in name else name.strip("<>").rsplit(" ", 1)[-1]
            calls[short] = calls.get(short, 0.0) + count / steps
    return calls


def counts(text: str) -> list[int]:
    """``--batch-sizes 64,256``: whole numbers >= 1 (argparse names the option when this raises)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}; expected whole numbers >= 1, comma-separated")
    return values


def arguments() -> argparse.ArgumentParser:
    """The command line main() reads (tests/test_docs.py parses the documented ones with it)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--batch-sizes", default="64,256,1024", type=counts, help="comma-separated")
    parser.add_argument(
        "--steps", type=int, default=10, help=f"timed steps per run, after {WARMUP} warm-up steps"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="bare/Lightning pairs per batch size; medians are shown"
    )
    parser.add_argument("--out", default="logs/bench_train", help="where the Lightning runs log")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="profile N bare and N Lightning steps at the first batch size",
    )
    return parser


def main() -> None:
    parser = arguments()
    args, overrides = parser.parse_known_args()
    if min(args.steps, args.repeats) < 1 or args.profile < 0:
        parser.error("--steps and --repeats must be >= 1, --profile >= 0")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={args.out}", *overrides])
    L.seed_everything(0, verbose=False)
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {name}, threads {torch.get_num_threads()}")
    print(f"model {cfg.model._target_}, loss {cfg.loss._target_}, precision {cfg.trainer.precision}")
    names = ("data", "forward", "loss", "backward", "optimizer")
    print("\n| batch | " + " | ".join(f"{n} ms" for n in names) + " | bare samples/s | peak MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    overheads, syncs = [], Counter()
    for batch_size in args.batch_sizes:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        # Bare and Lightning runs alternate, so a slow spell of a shared machine hits both alike.
        rounds = []
        for _ in range(args.repeats):
            phases, bare_rate = bare_steps(cfg, batch_size, args.steps, device)
            step, rate, round_syncs = lightning_step(cfg, batch_size, args.steps)
            short_step, _, _ = lightning_step(cfg, batch_size, args.steps, per_epoch=SHORT_EPOCH)
            syncs.update(round_syncs)
            rounds.append(
                {
                    "phases": phases,
                    "bare_rate": bare_rate,
                    "step": step,
                    "rate": rate,
                    "overhead": bare_rate / rate - 1,
                    "epoch_end": SHORT_EPOCH * (short_step - step),
                }
            )
        phases = {k: statistics.median(r["phases"][k] for r in rounds) for k in rounds[0]["phases"]}
        bare_rate, step, rate, epoch_end = (
            statistics.median(r[key] for r in rounds) for key in ("bare_rate", "step", "rate", "epoch_end")
        )
        spread = [r["overhead"] for r in rounds]
        cells = " | ".join(f"{v * 1e3:.1f}" for v in phases.values())
        print(f"| {batch_size} | {cells} | {bare_rate:,.0f} | {peak_memory_mb(device):,.0f} |")
        overheads.append((batch_size, step, rate, bare_rate, min(spread), max(spread), epoch_end))
    print(
        "\n| batch | Lightning step ms | samples/s in Lightning | bare samples/s | extra ms/step "
        "| overhead | range | epoch end ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for batch_size, step, rate, bare_rate, low, high, epoch_end in overheads:
        # Lightning's added time per step: the share a launch-bound GPU step pays in full.
        extra_ms = batch_size * (1 / rate - 1 / bare_rate) * 1e3
        print(
            f"| {batch_size} | {step * 1e3:.1f} | {rate:,.0f} | {bare_rate:,.0f} | {extra_ms:.2f} "
            f"| {bare_rate / rate - 1:.0%} | {low:.0%} to {high:.0%} | {epoch_end * 1e3:.1f} |"
        )
    if device.type == "cuda":
        timed = len(overheads) * args.repeats * args.steps
        where = "\n".join(f"  {n} at {place}" for place, n in syncs.most_common())
        every = cfg.trainer.log_every_n_steps
        print(f"\nhost syncs in {timed} timed Lightning steps (logging reads the device every {every}):")
        print(where or "  none")
    if args.profile:
        profile_fit(cfg, overheads[0][0], args.profile, device)
    # Per window: the fit and the bare loop both train full batches.
    batch_size, _, rate, bare_rate, *_ = overheads[-1]
    print(f"\noverhead {100 * (bare_rate / rate - 1):.0f}% (batch {batch_size})")


if __name__ == "__main__":
    main()
