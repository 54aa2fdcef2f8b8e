"""train.py's job: fit, validate and test a configured run, then write its metrics.json."""

from __future__ import annotations

import logging
import platform
import warnings
from pathlib import Path
from time import perf_counter
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher, _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf

from heatforecast.data import HeatmapData
from heatforecast.forecasts import per_series, write_per_series
from heatforecast.metrics import FORECASTERS, METRICS
from heatforecast.module import EVAL_SPLITS, Forecaster
from heatforecast.training.build import build_module, build_trainer
from heatforecast.training.checkpoints import check_resume, check_resumed_data, finished_run, resolve_ckpt
from heatforecast.training.config import (
    ConfigError,
    absolute_path,
    check_config,
    check_metric,
    check_present,
    choice,
    in_multirun,
)
from heatforecast.training.report import summarize, write_result

# What train.py reads of its config by name (all of conf/train.yaml but the logger, which ~logger drops).
TRAIN_READS = (
    "seed", "compile", "ckpt_path", "optimized_metric", "nonfinite", "peaks", "val_figure_every",
    "data", "model", "loss", "optim", "optim.optimizer", "optim.scheduler", "trainer", "callbacks", "paths",
)  # fmt: skip

# Two lines every run printed that say nothing about it: Lightning's advertisement for its cloud
# logger, and its own use of a torch API that torch deprecated (lightning/pytorch/utilities/_pytree.py).
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
    lambda record: not str(record.msg).startswith("💡 Tip")
)
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def _lightning_logs_once() -> None:
    """Lightning adds a console handler of its own to the "lightning" logger, whose messages also reach
    the root logger's handlers that Hydra sets (the console, and the run's train.log): each showed twice
    on screen. Where the root logger has handlers, Lightning's goes."""
    if logging.getLogger().hasHandlers():
        lightning_log = logging.getLogger("lightning")
        for handler in list(lightning_log.handlers):
            lightning_log.removeHandler(handler)


def _custom_scalars(logger: Any, train_eval: bool) -> None:
    """TensorBoard layout: train vs val loss, each val metric beside the references', in one chart, and
    with ``train_eval`` (data.train_eval) each metric on the train windows beside val's."""
    writer = getattr(logger, "experiment", None)
    if not hasattr(writer, "add_custom_scalars"):
        return
    losses = ["^train/loss_epoch$", *(["^train_eval/loss$"] if train_eval else []), "^val/loss$"]
    layout = {
        "loss": {"train vs val": ["Multiline", losses]},
        "val: model vs the references": {
            m: ["Multiline", [f"^val/{m}$", *(f"^val/{who}/{m}$" for who in FORECASTERS[1:])]]
            for m in METRICS
        },
    }
    if train_eval:
        pairs = {m: ["Multiline", [f"^train_eval/{m}$", f"^val/{m}$"]] for m in METRICS}
        layout["train windows vs val"] = pairs
    writer.add_custom_scalars(layout)


def _check_processes(cfg: DictConfig, trainer: L.Trainer) -> None:
    """Refuse what several DDP processes cannot do, before any of them starts."""
    # The launcher classes are underscored but exported (lightning.pytorch.strategies.launchers'
    # __all__): Lightning itself tells spawned processes from re-run scripts by them; no public flag does.
    if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher) and trainer.num_devices > 1:
        raise ConfigError(
            f"trainer.strategy={cfg.trainer.get('strategy')}: processes started by multiprocessing keep "
            "the metric panels, and this process, which writes metrics.json, gets none of them; expected "
            "trainer.strategy=ddp"
        )
    if cfg.nonfinite == "skip" and trainer.world_size > 1:
        raise ConfigError(
            f"nonfinite=skip with {trainer.world_size} DDP processes; expected nonfinite=raise or off: "
            "Lightning cannot skip a training step in distributed training"
        )
    starts_processes = (
        isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher)
        and not trainer.strategy.cluster_environment.creates_processes_externally
        and trainer.num_devices > 1
    )
    if starts_processes and in_multirun():
        raise ConfigError(
            f"trainer.strategy={cfg.trainer.get('strategy')} with {trainer.num_devices} processes in a "
            "multirun (-m) that runs its jobs here: Lightning starts each extra process by running the "
            "command line again, which would run the whole sweep again; expected one DDP run per command "
            "(no -m), or hydra/launcher=slurm, where SLURM starts the processes"
        )


def run(cfg: DictConfig) -> float:
    """Train (unless the model has no parameters), score val and test, write metrics.json.

    Returns the value of ``cfg.optimized_metric`` for the best checkpoint (what sweepers minimise).
    """
    _lightning_logs_once()
    check_present(cfg, TRAIN_READS)
    check_metric(cfg.optimized_metric, ("val",))
    check_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt(cfg, output_dir, sweep=in_multirun())
    resumed = check_resume(cfg, ckpt_path) if ckpt_path is not None else None
    if cfg.data.get("path"):
        # Absolute in the checkpoint's config, so evaluate.py finds the data from any folder.
        cfg.data.path = absolute_path(cfg.data.path)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # Draws no random numbers, so the model's init is as before.
    trainer = build_trainer(cfg, resumed_step=resumed.step if resumed else None)
    # A fit early stopping had ended trains on when resumed without it (Forecaster.on_train_start).
    trains_on = resumed is not None and resumed.stopped and not trainer.early_stopping_callbacks
    if resumed is not None and not trains_on and (finished := finished_run(output_dir, ckpt_path)):
        # Its training settings are the command's (check_resume): nothing to train, nothing new to score.
        emd = {who: finished[who]["test"]["emd"] for who in ("model", "persistence")}
        print(
            f"note: {output_dir} holds a finished run (its metrics.json): nothing to resume; its result "
            f"stands: {finished['optimized_metric']} {finished['value']:.4g}, test emd {emd['model']:.4g} "
            f"(persistence {emd['persistence']:.4g}; evaluate.py scores its checkpoints again)"
        )
        return finished["value"]
    _check_processes(cfg, trainer)  # before the data is read

    datamodule: HeatmapData = instantiate(cfg.data)
    datamodule.setup()
    datamodule.check_splits()  # before any training, not after it
    if resumed and resumed.series and cfg.data.get("path"):  # generated: the same settings, the same series
        check_resumed_data(resumed.series, datamodule, ckpt_path)
    module = build_module(cfg, datamodule)
    logger = trainer.logger
    if trainer.is_global_zero:
        _custom_scalars(logger, datamodule.train_eval > 0)

    best, fit = None, None
    if module.optimizer_factory is not None:
        fit = timed_fit(trainer, module, datamodule, ckpt_path)
        callback = trainer.checkpoint_callback  # None with +trainer.enable_checkpointing=false
        best = (callback.best_model_path or None) if callback else None
        monitor = callback.monitor if callback else None
        if trainer.global_step == 0 and trainer.is_global_zero:  # e.g. trainer.max_epochs=0
            print("note: the fit made no optimizer step; the panels below are the untrained model's")
        elif (best is None or monitor != cfg.optimized_metric) and trainer.is_global_zero:
            # callbacks.model_checkpoint changed (save_top_k=0, another monitor) or null (the first
            # checkpoint callback left, last_checkpoint or Lightning's own, keeps the latest): the panels
            # are not the best on optimized_metric.
            kept = f"the checkpoint callback monitors {monitor}"
            if not monitor:
                kept = "the checkpoint callback keeps the latest" if callback else "no checkpoint callback"
            print(
                f"note: no checkpoint was kept as the best on optimized_metric={cfg.optimized_metric} "
                f"({kept}); the panels below are of " + ("the fit's last weights" if best is None else best)
            )
    trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
    trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)

    splits = tuple(s for s in EVAL_SPLITS if s in module.panels)  # train_eval with data.train_eval
    result = summarize(
        module.panels, cfg.optimized_metric, datamodule, module.metrics["test"].peak_settings, splits
    )
    result.update(best_checkpoint=best, seed=cfg.seed, fit=fit, versions=versions())
    result["per_series"] = per_series(
        module.panels["test"]["windows"], datamodule.heatmaps.ids, module.scale_factor
    )
    if trainer.is_global_zero:
        kept = ", checkpoints/" if (output_dir / "checkpoints").is_dir() else ""  # none for persistence
        # TensorBoard reads the events below the folder it is given: a hydra.run.dir outside
        # paths.log_dir holds its own.
        shown = Path(cfg.paths.log_dir)
        shown = shown if output_dir.resolve().is_relative_to(shown.resolve()) else output_dir
        print(  # above the panel, with which the run ends (DESIGN.md)
            f"run folder: {output_dir} (metrics.json, per_series.csv, test_by_horizon.png{kept}); "
            f"tensorboard --logdir {shown}"
        )
        write_result(result, output_dir, logger)
        write_per_series(result["per_series"], output_dir, show=False)  # the run ends on its panel
        final = {f"hp/{s}_{m}": result["model"][s][m] for s in splits for m in METRICS}
        for who, cells in result["intervals"]["per_horizon"].items():  # when there are intervals
            if (steps := cells["emd"]["ahead_steps"]) is not None:
                final[f"hp/test_steps_ahead_of_{who}"] = steps
        if logger is not None:
            logger.log_hyperparams(_hparams(cfg), metrics=final)
            logger.finalize("success")
    return result["value"]


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's config for the TensorBoard hparams tab, with each group's chosen option."""
    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("paths", None)
    params.pop("callbacks", None)
    for group in ("data", "model", "loss", "trainer"):
        if (picked := choice(group)) is not None:
            params[f"{group}_choice"] = picked
    return params


def timed_fit(
    trainer: L.Trainer, module: Forecaster, datamodule: HeatmapData, ckpt_path: str | None
) -> dict[str, Any]:
    """Fit, and return its training throughput (validation epochs and checkpoints included) and the
    device's peak memory: of this process's part of the fit when it resumes ``ckpt_path``, and no
    throughput (None) when nothing was left to train."""
    device = trainer.strategy.root_device
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.init()  # the allocator's statistics exist only once CUDA is initialised
        torch.cuda.reset_peak_memory_stats(device)
    start = perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    seconds = perf_counter() - start
    samples = module.samples_trained * trainer.world_size
    return {
        "device": torch.cuda.get_device_name(device) if cuda else device.type,
        "precision": str(trainer.precision),
        "samples": samples,
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 1) if samples else None,
        "peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
        "resumed_from": ckpt_path,
    }


def versions() -> dict[str, str]:
    """The library versions, and the CPU kernels torch picked (AVX2, AVX512, ...): another set sums
    floats in another order, so the same seed trains a slightly different model."""
    import hydra
    import lightning
    import numpy

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "lightning": lightning.__version__,
        "hydra": hydra.__version__,
        "numpy": numpy.__version__,
    }
