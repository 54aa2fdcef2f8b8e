"""Training: every model x loss runs end to end, multiruns, TensorBoard contents, persistence by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

import heatforecast.module
from heatforecast.losses import DEFAULT_EPS, MSE, emd
from heatforecast.metrics import FORECASTERS, METRICS
from heatforecast.models import DLinear, LeastSquaresLinear
from heatforecast.module import Forecaster
from heatforecast.training import build_module, build_trainer, run

from .conftest import CONF, ROOT, TINY, TINY_MODEL, scalars, tiny_config
from .helpers import RecordedMSE

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
LOSSES = sorted(p.stem for p in (CONF / "loss").glob("*.yaml"))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_and_loss_trains_and_scores(tiny, tmp_path: Path, model: str, loss: str) -> None:
    value = run(tiny(f"loss={loss}", model=model))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["value"] == value and np.isfinite(value)
    for who in FORECASTERS:
        assert set(metrics[who]["test"]) == set(METRICS)
        assert all(np.isfinite(v) for v in metrics[who]["test"].values())
        assert len(metrics[who]["test_per_horizon"]["emd"]) == 4
    if model in ("persistence", "drift"):  # no parameters: scored, not trained; the same as its panel
        for who in ("persistence", "drift"):
            assert (metrics["model"]["test"] == metrics[who]["test"]) == (model == who), who
        assert metrics["best_checkpoint"] is None
    else:
        assert Path(metrics["best_checkpoint"]).is_file()
        assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_a_fit_of_no_steps_says_the_panels_are_the_untrained_model_s(
    tiny, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run(tiny("trainer.max_epochs=0"))
    assert "note: the fit made no optimizer step; the panels below are the untrained model's" in (
        capsys.readouterr().out
    )
    assert json.loads((tmp_path / "metrics.json").read_text())["fit"]["samples"] == 0


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_a_fused_optimizer_clips_gradients_under_bf16_mixed(tmp_path: Path, algorithm: str) -> None:
    # Lightning refuses to clip for a fused optimizer under any mixed precision (issue #21435); the
    # module clips under bf16-mixed, which scales no loss. Plain SGD, whose step follows the gradient's
    # size (Adam's hides a clip's scale), learns the same with and without fusing, and else without
    # the clip.
    def weights(name: str, *overrides: str) -> dict[str, torch.Tensor]:
        run(
            tiny_config(
                tmp_path / name,
                "trainer.precision=bf16-mixed",
                "trainer.gradient_clip_val=1e-3",
                f"+trainer.gradient_clip_algorithm={algorithm}",
                "optim.optimizer._target_=torch.optim.SGD",
                *overrides,
            )
        )
        return torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]

    fused = weights("fused", "optim.optimizer.fused=true")
    plain = weights("plain")
    unclipped = weights("unclipped", "optim.optimizer.fused=true", "trainer.gradient_clip_val=0")
    trained = [name for name in fused if name.startswith("model.")]
    for name in trained:
        torch.testing.assert_close(fused[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)
    moved = [(fused[name] - unclipped[name]).abs().max().item() for name in trained]
    assert max(moved) > 1e-4  # 1.6e-3 on this CPU


@pytest.mark.parametrize(
    ("override", "panels_of"),
    [
        (
            "+callbacks.model_checkpoint.save_top_k=0",
            "the checkpoint callback monitors val/emd); the panels below are of the fit's last",
        ),
        (
            "callbacks.model_checkpoint.monitor=val/loss",
            "the checkpoint callback monitors val/loss); the panels below are of /",
        ),
        (  # callbacks.last_checkpoint, then the first checkpoint callback, keeps last.ckpt
            "callbacks.model_checkpoint=null",
            "the checkpoint callback keeps the latest); the panels below are of /",
        ),
        (  # Lightning adds its own, which keeps the latest as well
            "callbacks.model_checkpoint=null callbacks.last_checkpoint=null",
            "the checkpoint callback keeps the latest); the panels below are of /",
        ),
        (  # was: AttributeError on the missing callback's best_model_path
            "callbacks.model_checkpoint=null +trainer.enable_checkpointing=false",
            "no checkpoint callback); the panels below are of the fit's last weights",
        ),
        (  # was: Lightning's refusal of the configured checkpoint callbacks
            "+trainer.enable_checkpointing=false",
            "no checkpoint callback); the panels below are of the fit's last weights",
        ),
    ],
)
def test_panels_not_of_the_best_checkpoint_on_the_optimized_metric_say_so(
    tiny, override: str, panels_of: str, capsys: pytest.CaptureFixture
) -> None:
    # They were printed and written as every run's are, with nothing to tell them apart.
    run(tiny(*override.split()))
    assert "note: no checkpoint was kept as the best on optimized_metric=val/emd (" + panels_of in (
        capsys.readouterr().out
    )


def test_last_ckpt_is_the_latest_state_when_the_best_epoch_is_an_earlier_one(tiny, tmp_path: Path) -> None:
    # Lightning's save_last refreshed last.ckpt only with a new best: a run whose val EMD stopped
    # improving kept last.ckpt at its best epoch, and ckpt_path=last trained the epochs after it again.
    run(tiny("optim.optimizer.lr=0.05", "trainer.max_epochs=5", "callbacks.early_stopping=null"))
    best = json.loads((tmp_path / "metrics.json").read_text())["best_checkpoint"]
    assert Path(best).name != "epoch004.ckpt"  # this lr makes the val EMD worse after an early epoch
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 4  # saved at the last epoch's validation
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == sorted(
        [Path(best).name, "last.ckpt"]
    )


def test_returned_metric_is_the_logged_one(tiny, tmp_path: Path) -> None:
    value = run(tiny("loss=emd", "data.generator.n_series=3"))  # 6 test blocks: intervals
    logged = scalars(tmp_path)
    assert logged["val/emd"][-1] == pytest.approx(value, rel=1e-6)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"]["test"]["emd"] == pytest.approx(logged["test/emd"][-1], rel=1e-6)
    for tag in (
        "train/loss_epoch",
        "val/loss",
        *(f"val/{who}/emd" for who in FORECASTERS[1:]),
        "hp/test_emd",
    ):
        assert tag in logged, tag
    for who in FORECASTERS[1:]:  # the lead time, for sorting a sweep in the HParams tab
        ahead = metrics["intervals"]["per_horizon"][who]["emd"]["ahead_steps"]
        assert logged[f"hp/test_steps_ahead_of_{who}"] == [ahead]
    # Each test series on its own windows: weighted by their windows, they give back the test panel.
    by_series = metrics["per_series"]
    assert list(by_series) == ["0", "1", "2"]
    windows = np.array([p["windows"] for p in by_series.values()])
    for who in FORECASTERS:
        emd = np.array([p[who]["emd"] for p in by_series.values()])
        assert emd @ windows / windows.sum() == pytest.approx(metrics[who]["test"]["emd"], rel=1e-5)
    table = pd.read_csv(tmp_path / "per_series.csv", index_col="series")
    assert table["windows"].tolist() == windows.tolist()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"val/forecast", "test/by_horizon"} <= set(events.Tags()["images"])
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert "custom_scalars__config__" in events.Tags()["tensors"]


def custom_charts(run_dir: Path) -> dict[str, dict[str, list[str]]]:
    """TensorBoard's Custom Scalars layout of a run: category -> chart -> the tags it overlays."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    proto = events.Tensors("custom_scalars__config__")[0].tensor_proto
    layout = layout_pb2.Layout.FromString(proto.string_val[0])
    return {c.title: {chart.title: list(chart.multiline.tag) for chart in c.chart} for c in layout.category}


def test_validation_scores_train_windows_beside_val_without_changing_the_fit(tiny, tmp_path: Path) -> None:
    # data.train_eval: the model's panel on a fixed share of train windows, in eval mode, at every
    # validation. It draws no random numbers, so the fit and its val and test panels stay as without it.
    whole_split = ["trainer.limit_val_batches=1.0", "trainer.max_epochs=2", "callbacks.early_stopping=null"]
    results, configs = {}, {}
    for share in (0.5, 0):
        configs[share] = cfg = tiny("loss=emd", f"data.train_eval={share}", *whole_split)
        cfg.paths.output_dir = cfg.paths.log_dir = str(tmp_path / str(share))
        run(cfg)
        results[share] = json.loads((tmp_path / str(share) / "metrics.json").read_text())
    seen, without = results[0.5], results[0]
    for who in FORECASTERS:
        assert seen[who]["val"] == without[who]["val"] and seen[who]["test"] == without[who]["test"]
        assert set(seen[who]["train_eval"]) == set(METRICS) and "train_eval" not in without[who]
    logged = scalars(tmp_path / "0.5")
    assert len(logged["train_eval/emd"]) == 3  # two epochs, then the best checkpoint's closing validation
    assert logged["train_eval/emd"][-1] == pytest.approx(seen["model"]["train_eval"]["emd"], rel=1e-6)
    for tag in ("train_eval/loss", "train_eval/persistence/emd", "hp/train_eval_emd"):
        assert tag in logged, tag
    assert not any(tag.startswith("train_eval/") for tag in scalars(tmp_path / "0"))
    charts = {share: custom_charts(tmp_path / str(share)) for share in (0.5, 0)}
    assert charts[0.5]["train windows vs val"]["emd"] == ["^train_eval/emd$", "^val/emd$"]
    assert "train windows vs val" not in charts[0]
    losses = ["^train/loss_epoch$", "^train_eval/loss$", "^val/loss$"]
    assert charts[0.5]["loss"]["train vs val"] == losses
    assert charts[0]["loss"]["train vs val"] == [losses[0], losses[2]]  # no curve that never comes
    # Persistence needs no model: its panel there is that of the chosen train windows, by hand.
    dm = instantiate(configs[0.5].data)
    dm.setup()
    x, y, *_ = (torch.cat(parts) for parts in zip(*dm.loader("train_eval"), strict=True))
    assert len(x) == round(len(dm.windows["train"]) * 0.5)
    by_hand = emd(x[:, -1:].expand_as(y), y).mean().item()  # emd is the same in any unit of energy
    assert seen["persistence"]["train_eval"]["emd"] == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.parametrize(
    ("overrides", "epochs"),
    [
        (["val_figure_every=2"], [0, 2]),  # not again for the closing validation of the best checkpoint
        (["val_figure_every=0"], []),
        # validating every 2nd epoch (after epochs 1 and 3): the 1st validation draws, the 2nd does not
        (["val_figure_every=2", "trainer.check_val_every_n_epoch=2", "trainer.max_epochs=4"], [1]),
    ],
)
def test_val_forecast_figure_is_drawn_at_every_nth_validation(
    tiny, tmp_path: Path, overrides: list[str], epochs: list[int]
) -> None:
    run(tiny("loss=mse", "trainer.max_epochs=3", "callbacks.early_stopping=null", *overrides))
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    epoch_ends = [e.step for e in events.Scalars("train/loss_epoch")]  # one per epoch
    per_epoch = epoch_ends[1] - epoch_ends[0]  # steps an epoch; the figure's step: the steps done
    drawn = (
        [e.step for e in events.Images("val/forecast")] if "val/forecast" in events.Tags()["images"] else []
    )
    assert drawn == [(e + 1) * per_epoch for e in epochs]


def test_a_resumed_fit_draws_the_val_forecast_figure_where_the_original_would(tiny, tmp_path: Path) -> None:
    every_epoch = ["+callbacks.model_checkpoint.save_top_k=-1", "callbacks.early_stopping=null"]
    cfg = tiny("loss=mse", "trainer.max_epochs=4", "val_figure_every=2", *every_epoch)
    run(cfg)
    resumed = tmp_path / "resumed"
    cfg.paths.output_dir = cfg.paths.log_dir = str(resumed)
    cfg.ckpt_path = str(tmp_path / "checkpoints" / "epoch000.ckpt")  # after the first validation
    run(cfg)

    def drawn(run_dir: Path) -> list[int]:
        events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
        events.Reload()
        return [e.step for e in events.Images("val/forecast")]

    original = drawn(tmp_path)
    assert len(original) == 2 and drawn(resumed) == original[1:]  # at epoch 2 only, as in the original


def test_a_model_without_training_gets_one_val_forecast_figure(tiny, tmp_path: Path) -> None:
    run(tiny(model="drift"))  # no fit: the closing validation draws the only figure
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images("val/forecast")) == 1


@pytest.mark.parametrize("rank_zero", [True, False])
def test_only_rank_zero_draws_the_val_forecast_figure(monkeypatch, tmp_path: Path, rank_zero: bool) -> None:
    # Under DDP the other ranks' logger is a no-op stand-in; a figure drawn there would be thrown away.
    drawn = []
    monkeypatch.setattr(heatforecast.module, "forecast_figure", lambda *a: drawn.append(a) or plt.figure())
    monkeypatch.setattr(L.Trainer, "is_global_zero", property(lambda trainer: rank_zero))
    module = Forecaster(
        DLinear(4, 2), MSE(), None, None, torch.arange(5.0), 1.0, "linear", LeastSquaresLinear(4, 2)
    )
    module.trainer = L.Trainer(logger=TensorBoardLogger(tmp_path), enable_progress_bar=False)
    module._log_figure(torch.rand(4, 5), torch.rand(2, 5), torch.rand(2, 5))
    assert len(drawn) == rank_zero


def test_training_loss_is_logged_per_step_and_as_the_epoch_mean(tiny, tmp_path: Path) -> None:
    run(tiny("loss=mse", "trainer.log_every_n_steps=1"))
    logged = scalars(tmp_path)
    steps = logged["train/loss"]
    assert len(steps) == 3  # experiment=smoke: 3 full train batches of 16 windows
    assert logged["train/loss_epoch"] == [pytest.approx(np.mean(steps), rel=1e-5)]


def test_with_accumulated_batches_train_loss_is_the_stepping_batch_s_loss_once_per_step(
    tiny, tmp_path: Path
) -> None:
    # Lightning's step output is the loss over accumulate_grad_batches; the run logged that, at step 0
    # (before any step) and twice at each step (at both batches that ended on it).
    RecordedMSE.values.clear()
    accumulate = ["trainer.accumulate_grad_batches=2", "trainer.log_every_n_steps=1"]
    run(
        tiny(
            "loss=mse",
            "loss._target_=tests.helpers.RecordedMSE",
            "trainer.limit_train_batches=4",
            *accumulate,
        )
    )
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    batches = RecordedMSE.values  # batches 1 and 3 end steps 1 and 2
    assert [step for step, _ in logged] == [1, 2]
    assert [value for _, value in logged] == pytest.approx([batches[1], batches[3]], rel=1e-6)


def test_persistence_metrics_match_a_hand_computation(tiny, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    series = rng.random((1, 40, 6)).astype(np.float32) ** 3
    np.save(tmp_path / "x.npy", series)
    cfg = tiny(
        "data=file",
        f"data.path={tmp_path / 'x.npy'}",
        "data.context_len=3",
        "data.horizon=2",
        "data.splits=[0.5,0.25,0.25]",
        "trainer.limit_val_batches=null",
        model="persistence",
    )
    run(cfg)
    got = json.loads((tmp_path / "metrics.json").read_text())["model"]["test"]
    values = series[0].astype(np.float64)
    factor = values[:20].mean()  # the scaler: mean of the train half
    eps = DEFAULT_EPS * factor
    angles = np.arange(6.0)
    err, emd, peak, gap, mass = [], [], [], [], []
    for first in range(30, 39):  # test targets: steps 30..39, two at a time
        last = values[first - 1]
        for t in values[first : first + 2]:
            err.append(last - t)
            emd.append(scipy.stats.wasserstein_distance(angles, angles, last + eps, t + eps))
            peak.append(abs(np.argmax(last) - np.argmax(t)))
            gap.append(abs(last.sum() - t.sum()))
            mass.append(t.sum())
    err = np.array(err)
    assert got["mse"] == pytest.approx(np.mean(err**2), rel=1e-5)
    assert got["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-5)
    assert got["emd"] == pytest.approx(np.mean(emd), rel=1e-5)
    assert got["peak_err_deg"] == pytest.approx(np.mean(peak), rel=1e-6)
    assert got["mass_rel_err"] == pytest.approx(sum(gap) / sum(mass), rel=1e-5)
    assert got["skill_emd"] == 0 and got["skill_mse"] == 0


def test_multirun_of_two_losses_gives_two_named_runs(tmp_path: Path) -> None:
    args = [*TINY, *TINY_MODEL["transformer"], f"paths.log_dir={tmp_path}"]
    cmd = [sys.executable, "train.py", "-m", "loss=mse,emd", *args]
    done = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    runs = sorted(p.parent for p in tmp_path.glob("multiruns/*/*/metrics.json"))
    assert [r.name.split(",")[0] for r in runs] == ["0_experiment=smoke", "1_experiment=smoke"]
    lines = done.stdout.splitlines()
    said = [line for line in lines if line.startswith("run folder: ")]
    assert lines[lines.index(said[0]) + 1].startswith("test metric")  # the panel follows, and ends the run
    assert said == [f"run folder: {r} (metrics.json, per_series.csv, test_by_horizon.png, checkpoints/); "
                    f"tensorboard --logdir {tmp_path}" for r in runs]  # fmt: skip
    assert ["loss=mse" in runs[0].name, "loss=emd" in runs[1].name] == [True, True]
    # Once per job: Lightning's own console handler printed each of its messages a second time.
    assert (done.stdout + done.stderr).count("GPU available: False, used: False") == 2
    for r in runs:
        assert "val/emd" in scalars(r)
        assert json.loads((r / "metrics.json").read_text())["optimized_metric"] == "val/emd"


def test_a_run_outside_the_log_dir_names_its_own_folder_for_tensorboard(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # hydra.run.dir=/elsewhere: `tensorboard --logdir logs` would not show the run's events.
    run(tiny_config(tmp_path / "elsewhere", f"paths.log_dir={tmp_path / 'logs'}", model="persistence"))
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("run folder: ")]
    assert said[0].endswith(f"; tensorboard --logdir {tmp_path / 'elsewhere'}")


def test_two_sweeps_started_together_do_not_collide(tmp_path: Path) -> None:
    cmd = [sys.executable, "train.py", "-m", *TINY, "model=persistence", f"paths.log_dir={tmp_path}"]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    sweeps = list((tmp_path / "multiruns").iterdir())
    assert len(sweeps) == 2
    assert all(len(list(s.glob("*/metrics.json"))) == 1 for s in sweeps)


def test_trainer_predict_forecasts_the_steps_after_each_series(tiny) -> None:
    import lightning as L
    import torch
    from hydra.utils import instantiate

    from heatforecast.training import build_module

    cfg = tiny()
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    module = build_module(cfg, datamodule)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    (forecast,) = trainer.predict(module, datamodule=datamodule)
    factor = datamodule.scaler.factor
    last = torch.from_numpy(np.stack([s[-8:] for s in datamodule.heatmaps.series])).float()
    with torch.no_grad():
        expected = module.model.eval()(last / factor) * factor
    assert forecast.shape == (2, 4, 37)
    torch.testing.assert_close(forecast, expected)


def test_data_circular_makes_losses_metrics_and_model_wrap(tiny) -> None:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from heatforecast.losses import CdfLoss
    from heatforecast.training import ConfigError, build_module

    circle = ("data.circular=true", "data.generator.n_bins=36", "data.bin_width=10")
    cfg = tiny(*circle, "loss=emd_mse")
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    module = build_module(cfg, datamodule)
    cdf_losses = [m for m in module.loss.modules() if isinstance(m, CdfLoss)]
    assert cdf_losses and all(m.circular for m in cdf_losses)
    assert all(m.circular for m in module.metrics.values()) and module.model.pad_mode == "circular"
    assert np.isfinite(run(cfg))
    with pytest.raises(ConfigError, match="loss.terms.emd.circular=false but data.circular=true"):
        build_module(tiny(*circle, "loss=emd_mse", "loss.terms.emd.circular=false"), datamodule)
    # w2 has no circular form: it takes data.circular like the others and refuses true, naming the way out.
    with pytest.raises(
        InstantiationException, match="loss w2 has no circular form .* use loss=emd or loss=cramer"
    ):
        build_module(tiny(*circle, "loss=w2"), datamodule)


@pytest.mark.parametrize("mode", ["true", "default", "reduce-overhead", "max-autotune-no-cudagraphs"])
def test_every_offered_compile_mode_compiles_model_and_loss_in_place(tiny, mode: str) -> None:
    from hydra.utils import instantiate

    from heatforecast.training import build_module

    cfg = tiny(f"compile={mode}")
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    module = build_module(cfg, datamodule)
    # nn.Module.compile keeps the module and wraps its call, so checkpoints keep plain state_dict keys.
    assert module.model._compiled_call_impl is not None and module.loss._compiled_call_impl is not None
    assert module.state_dict().keys() == build_module(tiny(), datamodule).state_dict().keys()


def test_the_linear_reference_is_fitted_to_the_train_windows_only(tiny) -> None:
    datamodule = instantiate(tiny().data)
    datamodule.setup()
    module = build_module(tiny(), datamodule)
    train, everything = datamodule.windows["train"], datamodule.windows["all"]
    offsets = torch.arange(datamodule.context_len + datamodule.horizon)

    def fitted(windows) -> LeastSquaresLinear:  # gathered here by hand, every window in one batch
        frames = datamodule.values[windows.starts[:, None] + offsets]
        batch = (frames[:, : datamodule.context_len], frames[:, datamodule.context_len :])
        return LeastSquaresLinear(datamodule.context_len, datamodule.horizon).fit([batch])

    torch.testing.assert_close(module.linear.weight, fitted(train).weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(module.linear.bias, fitted(train).bias, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(module.linear.weight, fitted(everything).weight, rtol=1e-3, atol=1e-4)
    # It forecasts in the panel beside the model: the val panel's linear column is its forecast's.
    x, y, series, time = next(iter(datamodule.loader("val")))
    _, _, target, references = module.score("val", x, y, series, time)
    torch.testing.assert_close(references["linear"], module.linear(x) * datamodule.scaler.factor)


@pytest.mark.parametrize(("metric", "best"), [("val/emd", min), ("val/skill_emd", max)])
def test_checkpoints_and_early_stopping_keep_the_best_of_a_skill_by_its_highest_value(
    tiny, tmp_path: Path, metric: str, best
) -> None:
    cfg = tiny(f"optimized_metric={metric}", "trainer.max_epochs=4", "optim.optimizer.lr=3e-2")
    modes = {"min": min, "max": max}
    assert (
        modes[cfg.callbacks.model_checkpoint.mode] is best
        and modes[cfg.callbacks.early_stopping.mode] is best
    )
    value = run(cfg)
    fit = scalars(tmp_path)[metric][:-1]  # the last point is the closing validation of the kept checkpoint
    assert len(set(fit)) > 1 and value == pytest.approx(best(fit), rel=1e-6)


def test_a_one_step_horizon_trains_and_scores(tiny, tmp_path: Path) -> None:
    # torchmetrics hands a one-element per-horizon panel back as a 0-d tensor; metrics.json keeps lists.
    value = run(tiny("data.horizon=1"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for who in FORECASTERS:
        assert len(metrics[who]["test_per_horizon"]["emd"]) == 1
        assert metrics[who]["test_per_horizon"]["emd"][0] == pytest.approx(metrics[who]["test"]["emd"])
    assert value == metrics["model"]["val"]["emd"]


@pytest.mark.parametrize(("max_steps", "validations"), [(2, [2]), (4, [3, 4])])
def test_a_fit_ending_on_max_steps_validates_where_it_ends(
    tiny, tmp_path: Path, max_steps: int, validations: list[int]
) -> None:
    # The smoke epoch has 3 steps. Without the module's stop request, 2 steps crashed in early stopping
    # (no val/emd yet) and 4 steps left the 4th step unvalidated.
    run(tiny(f"trainer.max_steps={max_steps}", "trainer.max_epochs=3"))
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    # Lightning logs a validation at the 0-based index of the step before it; the last is the closing one.
    assert [e.step + 1 for e in events.Scalars("val/emd")][:-1] == validations
    best = json.loads((tmp_path / "metrics.json").read_text())["best_checkpoint"]
    assert torch.load(best, weights_only=False)["global_step"] in validations


def test_a_run_without_a_logger_writes_its_metrics_and_no_events(tiny, tmp_path: Path) -> None:
    value = run(tiny("~logger"))  # the learning-rate monitor, which needs a logger, is left out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["value"] == value and Path(metrics["best_checkpoint"]).is_file()
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


@pytest.mark.parametrize(
    ("setting", "refresh_rate"),
    [
        ("trainer.enable_progress_bar=true", 20),
        ("trainer.enable_progress_bar=false", None),
        ("~trainer.enable_progress_bar", 20),  # a trainer config without the key: Lightning's default
    ],
)
def test_one_setting_turns_the_progress_bar_on_or_off(tiny, setting: str, refresh_rate: int | None) -> None:
    # The configured bar (refresh every 20 batches) or none; Lightning refused the callback without a bar.
    bar = build_trainer(tiny(setting)).progress_bar_callback
    assert (bar and bar.refresh_rate) == refresh_rate


def test_lightning_s_advertisement_is_not_printed(tiny, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    run(tiny(model="persistence"))
    assert "Tip" not in caplog.text and "GPU available" in caplog.text  # Lightning's other lines stay


def test_log_every_n_steps_zero_writes_no_per_step_loss(tiny, tmp_path: Path) -> None:
    run(tiny("trainer.log_every_n_steps=0"))  # Lightning's "never"; the module divided by it
    logged = scalars(tmp_path)
    assert "train/loss" not in logged and "train/loss_epoch" in logged
