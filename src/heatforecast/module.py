"""The LightningModule: wires a forecaster, a training loss and the metric panel, and logs them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import GradClipAlgorithmType
from torch import Tensor, nn
from torchmetrics import MeanMetric

from heatforecast.data.datamodule import VAL_SPLITS
from heatforecast.data.files import RESERVED
from heatforecast.losses import DEFAULT_EPS
from heatforecast.metrics import DEFAULT_PEAKS, FORECASTERS, ForecastMetrics, PeakSettings
from heatforecast.models import Drift, LeastSquaresLinear
from heatforecast.plots import forecast_figure


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf."""


class ForecastShapeError(ValueError):
    """The model turned a context (B, L, A) into something other than a forecast (B, H, A)."""


NONE = torch.iinfo(torch.long).max  # "no batch yet" for the device-side non-finite watch
EVAL_SPLITS = ("val", "test", "train_eval")  # what the metric panels score (data.train_eval's windows)


class Forecaster(L.LightningModule):
    """Trains ``model`` on ``loss`` in scaled units; scores every split in data units.

    Args:
        model: (B, L, A) -> (B, H, A) in scaled units.
        loss: a heatforecast loss module (scalar on (B, H, A)).
        optimizer: a partial taking the parameters (``conf/optim``).
        scheduler: a partial taking the optimizer and ``total_steps`` (OneCycleLR), or None.
        angles: (A,) bin angles in degrees.
        scale_factor: the data scaler's factor (data = scaled * factor).
        scale: ``linear`` or ``db``.
        linear: the linear reference, fitted to the train split (scaled units); stored in checkpoints.
        circular: the angle axis wraps around (0..360 data): metrics take their circular forms.
        peak_settings: how ospa_deg finds each frame's sources (``peaks:`` in conf/train.yaml).
        nonfinite: what a NaN/inf training loss does: ``raise`` (stop, naming the batch; checked on the
            device and read every ``log_every_n_steps`` steps, so no host sync per step), ``skip`` (the
            batch; a host sync per step), or ``off`` (no check).
        val_figure_every: draw TensorBoard's ``val/forecast`` figure at the fit's first validation and
            every this many after it (with validation every epoch: epochs 0, N, 2N, ...), or once at
            the closing validation where nothing was fitted; 0 never (each drawing costs a tenth of a
            second or more of host time).
        config: the run's config as plain data, stored in checkpoints to rebuild the run.
        data_fingerprints: the training series' digests (``Heatmaps.fingerprints``), stored in
            checkpoints so that evaluation knows which series the model was trained on.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer] | None,
        scheduler: Callable[..., Any] | None,
        angles: Tensor,
        scale_factor: float,
        scale: str,
        linear: LeastSquaresLinear,
        circular: bool = False,
        peak_settings: PeakSettings = DEFAULT_PEAKS,
        loss_name: str = "",
        nonfinite: str = "raise",
        val_figure_every: int = 1,
        config: dict | None = None,
        data_fingerprints: list[str] | None = None,
    ) -> None:
        super().__init__()
        if nonfinite not in ("raise", "skip", "off"):
            raise ValueError(f"nonfinite must be 'raise', 'skip' or 'off'; got {nonfinite!r}")
        if (
            isinstance(val_figure_every, bool)
            or not isinstance(val_figure_every, int)
            or val_figure_every < 0
        ):
            raise ValueError(
                "val_figure_every must be a whole number >= 0 (0: no val/forecast figure); "
                f"got {val_figure_every!r}"
            )
        stored = {
            "config": config or {},
            "scale_factor": scale_factor,
            "data_fingerprints": data_fingerprints,
        }
        self.save_hyperparameters(stored)
        self.model, self.loss = model, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scale, self.scale_factor = scale, float(scale_factor)
        self.loss_name, self.nonfinite = loss_name, nonfinite
        self.register_buffer("angles", angles.detach().clone().float())
        horizon = linear.horizon  # the data's; a model of one's own need not say it
        eps = DEFAULT_EPS * self.scale_factor  # the losses' floor, in data units
        # The test panel keeps each window's metrics too, for the skill intervals in metrics.json.
        # train_eval: the train windows that validation also scores (data.train_eval), in eval mode.
        self.metrics = nn.ModuleDict(
            {
                s: ForecastMetrics(
                    angles, horizon, scale, eps, circular, s == "test", self.scale_factor, peak_settings
                )
                for s in EVAL_SPLITS
            }
        )
        # The references every split is scored beside: persistence, the fitted linear map, and drift
        # with its defaults.
        self.linear = linear
        self.drift = Drift(horizon, bin_width=float(angles[1] - angles[0]), circular=circular)
        self.panels: dict[str, dict[str, Any]] = {}
        self._figure_window: tuple[Tensor, Tensor, Tensor] | None = None
        self.val_figure_every, self._validations = val_figure_every, 0  # the fit's; kept in checkpoints
        self._fit_stopped = False  # a resumed checkpoint's: a callback (early stopping) had stopped the fit
        # nonfinite=raise: on the host, each batch since the last clean check (step, index, series,
        # time); on the device, the position in that list of the first batch whose loss was NaN/inf
        # (NONE while there is none), so the error can name that batch's windows.
        self._unchecked: list[tuple[int, int, Tensor, Tensor]] = []
        self._first_nonfinite: Tensor | None = None
        self.samples_trained = 0  # windows seen by training_step in this process (for samples/s)
        # The epoch's training loss, summed on the device (sum of loss x windows, and windows). Not a
        # buffer: DDP would overwrite every rank's sum with rank 0's at each forward.
        self._loss_sum: Tensor | None = None
        self._loss_windows = 0
        # The last batch's loss (None when it was skipped) and the optimizer step whose loss was written
        # last: with trainer.accumulate_grad_batches several batches end at one step.
        self._batch_loss: Tensor | None = None
        self._logged_step = 0
        # val/loss, test/loss: window-weighted means, summed across DDP ranks in float (Lightning's own
        # sync_dist mean divides an integer window count by the ranks, off when the total is odd).
        # nan_strategy="disable": a NaN loss shows as NaN, not silently dropped.
        self.eval_loss = nn.ModuleDict({s: MeanMetric(nan_strategy="disable") for s in EVAL_SPLITS})

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        # A model of one's own that gets H or A wrong would fail inside a loss, or, where the loss
        # broadcasts (MSE of a (B, 1, A) forecast), train on. Shapes are known on the host: no sync.
        expected = (x.shape[0], self.linear.horizon, x.shape[-1])
        if not isinstance(out, Tensor) or out.shape != expected:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            model = self.hparams.config.get("model", {}).get("_target_", type(self.model).__name__)
            raise ForecastShapeError(
                f"model {model} turned a context of shape {tuple(x.shape)} into {got}; expected a forecast "
                f"of shape {expected}: data.horizon={expected[1]} frames of the data's {expected[2]} bins"
            )
        # Under bf16 autocast the model's last layer may return bf16; losses and metrics sum over 181
        # bins (CDFs), which bf16's 8-bit mantissa cannot do accurately.
        return out.float()

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor | None:
        x, y, series, time = batch
        loss = self.loss(self(x), y)
        self.samples_trained += len(x)
        if self.nonfinite == "raise":
            self._watch_nonfinite(loss, batch_idx, series, time)
        elif self.nonfinite == "skip" and not torch.isfinite(loss):  # a host sync: skipping is decided here
            self.print("skipped: " + self._nonfinite_message(self.global_step, batch_idx, series, time))
            self._batch_loss = None
            return None
        # Not self.log: Lightning's per-call bookkeeping costs ~0.5 ms of host time, a sizeable share of
        # a small model's GPU step. The loss is summed on the device and written every log_every_n_steps steps
        # (train/loss, the name DESIGN.md gives) and at each epoch's end (train/loss_epoch).
        if self._loss_sum is None:
            self._loss_sum = torch.zeros((), device=loss.device)
        self._loss_sum.add_(loss.detach(), alpha=len(x))
        self._loss_windows += len(x)
        self._batch_loss = loss.detach()
        return loss

    def _nonfinite_message(self, step: int, batch_idx: int, series: Tensor, time: Tensor) -> str:
        # Under DDP every rank checks its own batches, and a NaN gradient reaches the other ranks in the
        # next all-reduce, so their losses follow a step later: the rank tells the origin apart.
        rank = f" on DDP rank {self.global_rank}" if self.trainer.world_size > 1 else ""
        return (
            f"non-finite training loss (loss={self.loss_name}) at step {step}, batch {batch_idx}{rank}: "
            f"windows of series {series.tolist()[:8]} with first target steps {time.tolist()[:8]}"
        )

    def _watch_nonfinite(self, loss: Tensor, batch_idx: int, series: Tensor, time: Tensor) -> None:
        """Note on the device whether this batch's loss is NaN or inf, without a host sync (three small
        kernels; :meth:`check_nonfinite` reads the result)."""
        if self._first_nonfinite is None:
            self._first_nonfinite = torch.full((), NONE, dtype=torch.long, device=loss.device)
        this = torch.where(torch.isfinite(loss.detach()), NONE, len(self._unchecked))
        self._first_nonfinite = torch.minimum(self._first_nonfinite, this)
        self._unchecked.append((self.global_step, batch_idx, series, time))

    def check_nonfinite(self) -> None:
        """Raise NonFiniteLossError if a training loss since the start was NaN or inf (one host sync)."""
        if self._first_nonfinite is None:
            return
        first = int(self._first_nonfinite)
        if first == NONE:
            self._unchecked.clear()  # all finite: positions restart at 0, and the device still says NONE
            return
        step, batch_idx, series, time = self._unchecked[first]
        raise NonFiniteLossError(
            self._nonfinite_message(step, batch_idx, series, time)
            + f"; noticed at step {self.global_step}; set nonfinite=skip to skip such batches"
        )

    @property
    def _at_max_steps(self) -> bool:
        return 0 <= self.trainer.max_steps <= self.global_step

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # A fit that reaches trainer.max_steps inside an epoch ends without that epoch's validation, which
        # the checkpoints and early stopping read (a fit shorter than an epoch would crash in early
        # stopping). Asking it to stop instead makes Lightning validate the steps it trained.
        if self._at_max_steps:
            self.trainer.should_stop = True
        # The host reads the device every log_every_n_steps optimizer steps only, as Lightning's own
        # logging does, at the batch that made the step (0: never, as for Lightning).
        every = self.trainer.log_every_n_steps
        if not every or self.global_step % every or self.global_step == self._logged_step:
            return
        self._logged_step = self.global_step
        if self.nonfinite == "raise":
            self.check_nonfinite()
        # The batch's own loss: Lightning's `outputs` divide it by accumulate_grad_batches. Under DDP it
        # is this rank's share of the step, so the ranks average it (equal shares): every rank reaches
        # this line at the same step, and nonfinite=skip, which could leave one out, is refused.
        if self.logger is not None and self._batch_loss is not None:
            loss = self.trainer.strategy.reduce(self._batch_loss, reduce_op="mean")
            self.logger.log_metrics({"train/loss": loss.item()}, step=self.global_step)

    def on_train_epoch_end(self) -> None:
        if self.nonfinite == "raise":
            self.check_nonfinite()
        if self._loss_windows:
            # Every DDP rank trains the same number of windows, so the mean of rank means is the mean.
            self.log("train/loss_epoch", self._loss_sum / self._loss_windows, sync_dist=True)
        self._loss_sum, self._loss_windows = None, 0

    def score(
        self, split: str, x: Tensor, y: Tensor, series: Tensor, time: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Forecast a batch of windows (of ``series``, first target steps ``time``), add it to the
        split's metric panels; returns the forecast in scaled units, and in data units the forecast,
        the target and the references' forecasts ({"persistence": ..., "linear": ..., "drift": ...})."""
        pred = self(x)
        to_data = self.scale_factor
        forecast, target = pred * to_data, y * to_data
        references = {
            "persistence": (x[:, -1:] * to_data).expand_as(y),
            "linear": self.linear(x) * to_data,
            "drift": self.drift(x) * to_data,
        }
        self.metrics[split].update(forecast, target, *(references[w] for w in FORECASTERS[1:]), series, time)
        return pred, forecast, target, references

    def _eval_step(self, split: str, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        x, y, series, time = batch
        pred, forecast, target, _ = self.score(split, x, y, series, time)
        # compile=reduce-overhead: outside training each call of a compiled part starts a new CUDA-graph
        # iteration, which frees the outputs of the last one, so the loss gets a copy of the forecast.
        # One value per window, as weights are dropped with nan_strategy="disable" (torchmetrics #3434).
        self.eval_loss[split].update(self.loss(pred.clone(), y).expand(len(x)))
        # Named by split, not by Lightning's dataloader index (val/loss, train_eval/loss).
        self.log(f"{split}/loss", self.eval_loss[split], on_epoch=True, add_dataloader_idx=False)
        if split == "val" and batch_idx == 0:
            self._figure_window = (x[0] * self.scale_factor, target[0], forecast[0])

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(VAL_SPLITS[dataloader_idx], batch, batch_idx)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step("test", batch, batch_idx)

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        """The forecast, in data units, of a batch whose first element is the contexts x (B, L, A)."""
        return self(batch[0]) * self.scale_factor

    @torch.no_grad()
    def forecast(self, frames: Tensor | pd.DataFrame | npt.ArrayLike) -> Tensor:
        """The H frames that follow ``frames``, all in data units: the last L observed frames (L, A)
        give (H, A), a batch (B, L, A) gives (B, H, A). ``frames``: a tensor, anything numpy reads as
        an array, or a DataFrame laid out as a data file's rows (:meth:`table_frames`). Runs in eval
        mode (no dropout) on the module's device; L is checked against the training run's
        ``data.context_len`` when the config has it."""
        if isinstance(frames, pd.DataFrame):
            frames = self.table_frames(frames)
        if not isinstance(frames, Tensor):
            # A copy: torch does not read a DataFrame, and warns on a read-only array (pandas' copy-on-write
            # frames, a memory-mapped file); a context is small. In float64 first: float32 would turn
            # values beyond its range into inf.
            frames = np.array(frames, dtype=np.float64)
            if (np.isfinite(frames) & (np.abs(frames) > (most := torch.finfo(torch.float32).max))).any():
                raise ValueError(
                    f"frames hold values beyond float32's range (+-{most:.3g}), in which the model "
                    "computes; expected the training data's units"
                )
        x = torch.as_tensor(frames, dtype=torch.float32, device=self.angles.device)
        n_bins, context_len = len(self.angles), self.hparams.config.get("data", {}).get("context_len")
        if x.ndim not in (2, 3) or x.shape[-1] != n_bins or x.shape[-2] != (context_len or x.shape[-2]):
            steps = context_len or "L"
            raise ValueError(
                f"frames of shape {tuple(x.shape)}; expected ({steps}, {n_bins}) or (B, {steps}, "
                f"{n_bins}): the last {steps} observed frames over the model's {n_bins} angle bins"
            )
        if not torch.isfinite(x).all():
            raise ValueError("frames hold NaN or inf; expected finite values")
        if self.scale == "linear" and (x < 0).any():
            raise ValueError("frames hold negative values; expected non-negative energy (data.scale=linear)")
        training = self.training
        self.eval()
        out = self.predict_step((x.reshape(-1, *x.shape[-2:]) / self.scale_factor,), 0)
        self.train(training)
        return out.reshape(*x.shape[:-2], *out.shape[-2:])

    def table_frames(self, table: pd.DataFrame) -> np.ndarray:
        """The (rows, A) bins of a DataFrame laid out as a data file (data/README.md): its rows in the
        order of its ``time`` column where it has one, of one ``series`` only, each other column a bin;
        numeric column names must be the model's angles."""
        if "series" in table and (ids := table["series"].unique()).size > 1:
            raise ValueError(
                f"frames hold rows of {ids.size} series ({', '.join(map(str, ids[:3]))}"
                f"{', ...' if ids.size > 3 else ''}); expected the last frames of one (select its rows first)"
            )
        if "time" in table:
            kind = table["time"].dtype
            if not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_datetime64_any_dtype(kind)):
                # Text would sort as text ("10:00" before "9:00"); a data file's reader parses it.
                raise ValueError(
                    f"frames' time column holds {kind} values; expected numbers or date-times "
                    "(pd.to_datetime(table['time']) reads text)"
                )
            table = table.sort_values("time", kind="stable")  # what the column means in a data file
        bins = table.drop(columns=[c for c in RESERVED if c in table])
        names = pd.to_numeric(pd.Series(bins.columns.astype(str)), errors="coerce").to_numpy()
        angles = self.angles.cpu().numpy()
        named = len(names) and not np.isnan(names).any()  # all numeric: angles, as in a data file
        if named and (len(names) != len(angles) or not np.allclose(names, angles, atol=1e-6)):
            raise ValueError(
                f"frames' columns name {len(names)} angles, {names[0]:g}..{names[-1]:g}; expected the "
                f"model's {len(angles)} bins, {angles[0]:g}..{angles[-1]:g} degrees"
            )
        return bins.to_numpy(dtype=np.float64, copy=True)

    def _end_epoch(self, split: str) -> None:
        panels = self.metrics[split].compute()
        self.metrics[split].reset()
        self.panels[split] = panels
        # torchmetrics already reduced the sums across ranks, so every rank holds the same values;
        # sync_dist averages identical numbers (once per epoch) and keeps Lightning's DDP checks quiet.
        self.log_dict({f"{split}/{k}": v for k, v in panels["model"].items()}, sync_dist=True)
        for who in FORECASTERS[1:]:  # val/persistence/emd, val/linear/emd, val/drift/emd
            self.log_dict({f"{split}/{who}/{k}": v for k, v in panels[who].items()}, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        # One panel per val loader, on every DDP rank (computing a panel syncs them), batches or none.
        for split in VAL_SPLITS[: len(self.trainer.num_val_batches)]:
            self._end_epoch(split)
        every = self.val_figure_every
        if self.trainer.sanity_checking or not every or self._figure_window is None:
            return
        if self.trainer.state.fn != TrainerFn.FITTING:
            # The run's closing validation of its best checkpoint: drawn only where nothing was
            # fitted, as the fit's figures stand at their own steps and the best may be an earlier one.
            if self._validations == 0:
                self._log_figure(*self._figure_window)
            return
        if self._validations % every == 0:
            self._log_figure(*self._figure_window)
        self._validations += 1

    def on_test_epoch_end(self) -> None:
        self._end_epoch("test")

    def _log_figure(self, x: Tensor, y: Tensor, pred: Tensor) -> None:
        if not self.trainer.is_global_zero:  # other DDP ranks log to a no-op stand-in: don't draw for it
            return
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_figure"):
            return
        fig = forecast_figure(x, y, pred, self.angles)
        experiment.add_figure("val/forecast", fig, self.global_step)
        plt.close(fig)

    def on_train_start(self) -> None:
        # Lightning issue #20550: when configure_optimizers reads estimated_stepping_batches (OneCycleLR
        # does), the train loader is built before the checkpoint is restored, and its saved position is
        # never loaded. Load it here, before the first batch is drawn; a no-op unless resuming.
        self.trainer.fit_loop._load_combined_loader_states()
        # Lightning keeps EarlyStopping's state in a checkpoint but not the stop it asked for, so a resumed
        # run that early stopping had ended trained another epoch (and could pick another best). Without
        # early stopping now, the resume trains on, as asked (train.py then trains a finished run on).
        if self._fit_stopped and self.trainer.early_stopping_callbacks:
            self.trainer.should_stop = True
            if self.trainer.is_global_zero:
                print(
                    "resuming a fit that early stopping had ended: nothing left to train "
                    "(callbacks.early_stopping=null trains on)"
                )

    # The RNG (dropout) travels with the checkpoint, so a resumed run draws what the original would have;
    # so does the count of validations, so it draws the val/forecast figure where the original would,
    # and whether a callback had stopped the fit (the checkpoint callbacks save after the others decide).
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_cpu"] = torch.get_rng_state()
        if torch.cuda.is_available():
            checkpoint["rng_cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["validations"] = self._validations
        # A stop a callback (early stopping) asked for; the one on_train_batch_end asks at max_steps
        # Lightning makes again by itself on resume.
        checkpoint["fit_stopped"] = self.trainer.should_stop and not self._at_max_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._validations = checkpoint.get("validations", 0)
        self._fit_stopped = checkpoint.get("fit_stopped", False)
        # Saved before runs kept the linear reference: the one this run fitted to the same train split.
        for name, value in self.linear.state_dict(prefix="linear.").items():
            checkpoint["state_dict"].setdefault(name, value)
        if "rng_cpu" in checkpoint:
            torch.set_rng_state(checkpoint["rng_cpu"])
        if "rng_cuda" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["rng_cuda"])

    def build_optimizers(self, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
        """The configured optimizer over this module's parameters, and its schedule over
        ``total_steps`` (None without one). Needs an optimizer factory."""
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer, None
        scheduler = self.scheduler_factory(
            optimizer, max_lr=optimizer.defaults["lr"], total_steps=total_steps
        )
        return optimizer, scheduler

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # Lightning's mixed-precision plugin refuses to clip for an optimizer that unscales gradients in
        # its own step (AdamW(fused=True)), which is right under 16-mixed's loss scaling. bf16-mixed
        # scales nothing, so the gradients are as computed and are clipped as under 32-true (Lightning
        # issue #21435). 16-mixed with a fused optimizer and clipping is refused by check_config.
        plugin = self.trainer.precision_plugin
        if gradient_clip_val and isinstance(plugin, MixedPrecision) and plugin.scaler is None:
            algorithm = GradClipAlgorithmType(gradient_clip_algorithm or GradClipAlgorithmType.NORM)
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            return None
        optimizer, scheduler = self.build_optimizers(self.trainer.estimated_stepping_batches)
        if scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
