"""From a checked config to objects: the model, the LightningModule with its linear reference, the Trainer."""

from __future__ import annotations

import inspect

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from heatforecast.data import HeatmapData
from heatforecast.models import LeastSquaresLinear
from heatforecast.module import Forecaster
from heatforecast.training.config import ConfigError, choice, peak_settings

# torch.compile's modes (None: its default) that a fit was run with on a GPU (docs/performance.md);
# max-autotune (CUDA graphs plus kernel autotuning) never was, so it is not offered.
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune-no-cudagraphs")


def build_model(cfg: DictConfig, n_bins: int) -> torch.nn.Module:
    """Instantiate ``cfg.model``, giving it the data's bin count if it takes one."""
    params = inspect.signature(get_class(cfg.model._target_)).parameters
    return instantiate(cfg.model, **({"n_bins": n_bins} if "n_bins" in params else {}))


def build_module(cfg: DictConfig, datamodule: HeatmapData) -> Forecaster:
    """The LightningModule for a set-up datamodule, with the linear reference fitted to its train split."""
    model, loss = build_model(cfg, datamodule.n_bins), instantiate(cfg.loss)
    for name, part in loss.named_modules():
        # A CDF loss that wraps while the metrics do not (or the reverse) would select checkpoints on a
        # metric that disagrees with the training loss about what a 0/360 degree miss costs.
        if getattr(part, "circular", datamodule.circular) != datamodule.circular:
            where = f"loss.{name}" if name else "loss"
            wraps, data_wraps = str(part.circular).lower(), str(datamodule.circular).lower()
            raise ConfigError(
                f"{where}.circular={wraps} but data.circular={data_wraps}; expected the same: set "
                "data.circular (the losses, metrics and model follow it)"
            )
    if cfg.compile:  # in place, so state_dict keys stay those of the plain modules
        mode = None if cfg.compile is True else cfg.compile
        if mode not in COMPILE_MODES:
            modes = ", ".join(COMPILE_MODES[1:])
            raise ConfigError(f"compile={cfg.compile!r}; expected true, false or a mode: {modes}")
        model.compile(mode=mode)
        loss.compile(mode=mode)  # fuses the elementwise passes of the distribution losses
    trainable = any(p.requires_grad for p in model.parameters())
    if trainable and cfg.optim.optimizer is None:  # Lightning would run the fit without a step
        raise ConfigError(
            f"optim.optimizer=null, but {cfg.model._target_} has weights to train; expected an optimizer "
            "(conf/optim/), or a model without weights (model=persistence or drift)"
        )
    loss_name = choice("loss") or cfg.loss._target_.rsplit(".", 1)[-1]
    linear = linear_reference(datamodule)
    try:  # the module checks nonfinite and val_figure_every
        module = Forecaster(
            model=model,
            loss=loss,
            optimizer=instantiate(cfg.optim.optimizer) if trainable else None,
            scheduler=instantiate(cfg.optim.scheduler) if trainable and cfg.optim.scheduler else None,
            angles=datamodule.angles,
            scale_factor=datamodule.scaler.factor,
            scale=datamodule.scale,
            linear=linear,
            circular=datamodule.circular,
            peak_settings=peak_settings(cfg.peaks),
            loss_name=loss_name,
            nonfinite=cfg.nonfinite,
            val_figure_every=cfg.val_figure_every,
            config=OmegaConf.to_container(cfg, resolve=True),
            data_fingerprints=datamodule.heatmaps.fingerprints,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if module.optimizer_factory is not None:
        # The optimizer and schedule check their settings (a negative lr, ...) when built, which
        # Lightning does only once the fit has started: built here once, they stop the run before it.
        try:
            module.build_optimizers(total_steps=100)
        except ValueError as err:
            raise ConfigError(f"optim: {err}") from err
    return module


def linear_reference(datamodule: HeatmapData) -> LeastSquaresLinear:
    """The linear reference fitted to a set-up datamodule's train windows (all of them, in order)."""
    return LeastSquaresLinear(datamodule.context_len, datamodule.horizon).fit(datamodule.in_order("train"))


def build_trainer(
    cfg: DictConfig, extra_callbacks: tuple[L.Callback, ...] = (), resumed_step: int | None = None
) -> L.Trainer:
    """The configured Trainer with the configured logger and callbacks, plus ``extra_callbacks``.

    Without a logger (``~logger``) the learning-rate monitor, which only writes to it, is left out;
    with ``trainer.enable_progress_bar=false``, the progress bar, and with
    ``trainer.enable_checkpointing=false`` the checkpoint callbacks (Lightning would refuse both).
    A fit resumed from a checkpoint saved at ``resumed_step`` logs again the steps after it that the
    run it continues had logged before it was cut short: TensorBoard hides those earlier points
    (SummaryWriter's purge_step) instead of drawing the curve twice over them. Lightning logs the next
    step's learning rate at the checkpoint's own step, which the resume then logs again, as it was.
    """
    logger = False  # None would be Lightning's own
    if cfg.get("logger") is not None:
        purge = resumed_step is not None and issubclass(get_class(cfg.logger._target_), TensorBoardLogger)
        logger = instantiate(cfg.logger, **({"purge_step": resumed_step + 1} if purge else {}))
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    if not logger:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # True: Lightning's defaults, for one's own trainer config
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if not cfg.trainer.get("enable_checkpointing", True):
        callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
    return instantiate(cfg.trainer, logger=logger, callbacks=[*callbacks, *extra_callbacks])
