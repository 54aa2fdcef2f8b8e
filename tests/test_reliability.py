"""Reliability: kill-and-resume equivalence, determinism, non-finite loss guard."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from heatforecast.models import DLinear, LeastSquaresLinear
from heatforecast.module import Forecaster, NonFiniteLossError
from heatforecast.training import ConfigError, run

from .conftest import ROOT, fake_slurm_env, scalars, tiny_config

RESUMABLE = [
    "experiment=smoke",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=4",
    "callbacks.last_checkpoint.every_n_train_steps=1",
    "callbacks.early_stopping=null",
]


def train(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", *RESUMABLE, f"hydra.run.dir={run_dir}", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """The uninterrupted run's folder for a set of extra overrides, trained once per module."""
    runs: dict[tuple[str, ...], Path] = {}

    def folder(*extra: str) -> Path:
        if extra not in runs:
            runs[extra] = tmp_path_factory.mktemp("uninterrupted")
            done = train(runs[extra], *extra)
            assert done.returncode == 0, done.stderr
        return runs[extra]

    return folder


def assert_same_model_metrics(want_dir: Path, got_dir: Path) -> None:
    want = json.loads((want_dir / "metrics.json").read_text())
    got = json.loads((got_dir / "metrics.json").read_text())
    for split in ("val", "test"):
        for name, value in want["model"][split].items():
            assert got["model"][split][name] == pytest.approx(value, rel=1e-6, abs=1e-9), (split, name)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [[], DDP], ids=["one process", "2 DDP processes"])
def test_killed_mid_epoch_then_resumed_ends_like_an_uninterrupted_run(
    uninterrupted, tmp_path: Path, processes: list[str]
) -> None:
    kill = ["+callbacks.kill._target_=tests.helpers.SignalAtStep", "+callbacks.kill.step=6"]
    killed = train(tmp_path, *processes, *kill)
    assert killed.returncode == -9  # SIGKILL in the middle of epoch 2 (steps 4..7), every rank alike
    assert not (tmp_path / "metrics.json").exists()
    resumed = train(tmp_path, *processes, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_model_metrics(uninterrupted(*processes), tmp_path)


@pytest.mark.slow
def test_a_preempted_slurm_job_is_requeued_and_resumes_where_it_stopped(
    uninterrupted, tmp_path: Path
) -> None:
    # SIGUSR2 at step 6: what SLURM sends at a preemption or before a time limit. submitit requeues the
    # job through scontrol (here tests/fake_slurm's stand-ins for sbatch, srun and scontrol), and it
    # runs again in its run folder.
    preempt = [
        "+callbacks.preempt._target_=tests.helpers.SignalAtStep",
        "+callbacks.preempt.step=6",
        "+callbacks.preempt.signal=SIGUSR2",
    ]
    cmd = [sys.executable, "train.py", "-m", "hydra/launcher=slurm", *RESUMABLE, *preempt]
    done = subprocess.run(
        [*cmd, f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT, env=fake_slurm_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    printed = "".join(p.read_text() for p in sorted(tmp_path.glob(".submitit/*/*_0_log.*")))
    assert "Caught signal SIGUSR2" in printed and "Requeued job" in printed
    (run_dir,) = (p.parent for p in tmp_path.glob("*/metrics.json"))
    assert printed.count("resuming: this submitit job was requeued; continuing from ") == 1
    assert f"{run_dir}/checkpoints/last.ckpt" in printed
    assert_same_model_metrics(uninterrupted(), run_dir)


def test_resume_without_a_checkpoint_says_where_it_looked(tmp_path: Path) -> None:
    done = train(tmp_path / "empty", "ckpt_path=last")
    assert done.returncode != 0
    assert "no checkpoint at" in done.stderr and "last.ckpt" in done.stderr


def test_a_resumed_fit_s_tensorboard_curves_hold_each_step_once(tiny, tmp_path: Path) -> None:
    # A resume logs again the steps after its checkpoint that the run had logged before it was cut
    # short: TensorBoard drew the curve twice over them, going back at the resumed step.
    every_epoch = ["loss=mse", "trainer.max_epochs=2", "+callbacks.model_checkpoint.save_top_k=-1"]
    settings = [*every_epoch, "trainer.log_every_n_steps=1", "callbacks.early_stopping=null"]
    run(tiny(*settings))
    want = scalars(tmp_path)["train/loss"]
    assert len(want) == 6  # experiment=smoke: 3 steps an epoch
    run(tiny(*settings, f"ckpt_path={tmp_path / 'checkpoints' / 'epoch000.ckpt'}"))  # steps 4-6 again
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [step for step, _ in logged] == [1, 2, 3, 4, 5, 6]
    assert [value for _, value in logged] == pytest.approx(want, rel=1e-6)


def test_a_sweep_cut_short_resumes_each_job_where_it_stopped(tmp_path: Path) -> None:
    # Before, the sweep's command again with ckpt_path=last stopped at the first job that had not
    # started (no last.ckpt), and without it at the first that had (its folder holds a run).
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "experiment=smoke",
        "loss=mse,emd,kl",
        f"hydra.sweep.dir={sweep}",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=300)
    finished, cut, unstarted = (
        sweep / f"{i}_experiment=smoke,loss={loss}" for i, loss in enumerate(["mse", "emd", "kl"])
    )
    kept = (finished / "metrics.json").stat().st_mtime_ns
    want = {job: json.loads((job / "metrics.json").read_text()) for job in (cut, unstarted)}
    (cut / "metrics.json").unlink()  # killed after its last checkpoint
    shutil.rmtree(unstarted)  # the sweep was killed before this job
    done = subprocess.run([*cmd, "ckpt_path=last"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"note: {finished} holds a finished run (its metrics.json): nothing to resume" in done.stdout
    assert (finished / "metrics.json").stat().st_mtime_ns == kept
    assert f"fit (resumed from {cut / 'checkpoints' / 'last.ckpt'}): no samples trained" in done.stdout
    last = unstarted / "checkpoints" / "last.ckpt"
    assert f"note: ckpt_path=last: this sweep job had not started (no {last}); it starts now" in done.stdout
    for job, metrics in want.items():
        got = json.loads((job / "metrics.json").read_text())
        assert got["model"]["test"] == pytest.approx(metrics["model"]["test"], rel=1e-6), job.name
    # The sweep's folder given as a run's: it holds no run, and says what it is.
    with pytest.raises(ConfigError, match=r"is a sweep's folder \(it holds multirun\.yaml\), not a run's"):
        run(tiny_config(sweep, "ckpt_path=last"))


def test_a_finished_run_resumed_keeps_its_result(tiny, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    value = run(tiny("loss=emd"))
    metrics = tmp_path / "metrics.json"
    # As a run made before ospa_deg and the skill intervals wrote it (their panel stopped such a resume).
    result = json.loads(metrics.read_text())
    del result["intervals"]
    for who in ("model", "persistence", "linear", "drift"):
        del result[who]["test"]["ospa_deg"]
    metrics.write_text(json.dumps(result))
    kept = metrics.stat().st_mtime_ns
    capsys.readouterr()
    assert run(tiny("loss=emd", "ckpt_path=last")) == value
    model, persistence = (result[who]["test"]["emd"] for who in ("model", "persistence"))
    emd = f"test emd {model:.4g} (persistence {persistence:.4g};"
    printed = capsys.readouterr().out
    assert f"note: {tmp_path} holds a finished run (its metrics.json): nothing to resume; " in printed
    assert f"its result stands: val/emd {value:.4g}, {emd}" in printed
    assert metrics.stat().st_mtime_ns == kept
    with pytest.raises(ConfigError, match=r"differ from the run it resumes: loss._target_"):
        run(tiny("loss=mse", "ckpt_path=last"))  # not a finished run's result under another loss


def test_a_resume_with_other_training_settings_is_refused_naming_them(tiny, tmp_path: Path) -> None:
    run(tiny("loss=emd"))
    last = str(tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(
        ConfigError, match=r"differ from the run it resumes: data.seed: 0 -> 3; seed: 0 -> 3;"
    ):
        run(tiny("loss=emd", "seed=3", f"ckpt_path={last}"))
    with pytest.raises(
        ConfigError, match=r"loss._target_: 'heatforecast.losses.EMD' -> 'heatforecast.losses.MSE'"
    ):
        run(tiny("loss=mse", f"ckpt_path={last}"))
    # ospa_deg on other peaks would change the val curve that picks the best checkpoint mid-run.
    with pytest.raises(ConfigError, match=r"differ from the run it resumes: peaks.distance_deg: 5.0 -> 2;"):
        run(tiny("loss=emd", "peaks.distance_deg=2", f"ckpt_path={last}"))
    # Where it writes, what it draws, how it watches itself and which kernels step the optimizer may
    # change: into another folder, here.
    elsewhere = tiny(
        "loss=emd",
        f"ckpt_path={last}",
        "val_figure_every=0",
        "callbacks.early_stopping=null",
        "optim.optimizer.fused=true",
    )
    elsewhere.paths.output_dir = elsewhere.paths.log_dir = str(tmp_path / "elsewhere")
    assert run(elsewhere) == json.loads((tmp_path / "metrics.json").read_text())["value"]


def test_a_fit_that_early_stopping_ended_resumes_with_nothing_left_to_train(
    tiny, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # Lightning keeps EarlyStopping's state in last.ckpt but not the stop it asked for: a run killed
    # after its last validation (before metrics.json) trained another epoch when resumed.
    stopping = ["optim.optimizer.lr=0.05", "trainer.max_epochs=10", "callbacks.early_stopping.patience=1"]
    run(tiny(*stopping))
    last = tmp_path / "checkpoints" / "last.ckpt"
    stopped = torch.load(last, weights_only=True)
    assert stopped["epoch"] < 9 and stopped["fit_stopped"]  # early stopping ended it
    want = json.loads((tmp_path / "metrics.json").read_text())
    (tmp_path / "metrics.json").unlink()
    capsys.readouterr()
    run(tiny(*stopping, "ckpt_path=last"))
    printed = capsys.readouterr().out
    assert (
        "resuming a fit that early stopping had ended: nothing left to train "
        "(callbacks.early_stopping=null trains on)" in printed
    )
    assert f"fit (resumed from {last}): no samples trained" in printed
    resumed = torch.load(last, weights_only=True)
    assert (resumed["epoch"], resumed["global_step"]) == (stopped["epoch"], stopped["global_step"])
    got = json.loads((tmp_path / "metrics.json").read_text())
    assert got["best_checkpoint"] == want["best_checkpoint"] and got["model"] == want["model"]
    assert got["fit"]["samples"] == 0 and got["fit"]["samples_per_s"] is None
    # Without early stopping now, the resume trains on to trainer.max_epochs, as asked, though the run
    # had finished (it wrote metrics.json again above).
    run(tiny(*stopping, "callbacks.early_stopping=null", "ckpt_path=last"))
    assert torch.load(last, weights_only=True)["epoch"] == 9
    assert json.loads((tmp_path / "metrics.json").read_text())["fit"]["samples"] > 0


@pytest.mark.parametrize(("before", "after"), [(0, 0.5), (0.5, 0)], ids=["turned on", "turned off"])
def test_a_resume_may_change_the_share_of_train_windows_validation_scores(
    tiny, tmp_path: Path, before: float, after: float
) -> None:
    # data.train_eval adds or drops a val loader that draws no random numbers: the resumed fit makes
    # the same weights, and its validations score the train windows or not as the resume says.
    every_epoch = ["loss=mse", "trainer.max_epochs=3", "+callbacks.model_checkpoint.save_top_k=-1"]
    run(tiny(*every_epoch, "callbacks.early_stopping=null", f"data.train_eval={before}"))
    resumed = tiny(
        *every_epoch,
        "callbacks.early_stopping=null",
        f"data.train_eval={after}",
        f"ckpt_path={tmp_path / 'checkpoints' / 'epoch000.ckpt'}",
    )
    resumed.paths.output_dir = resumed.paths.log_dir = str(tmp_path / "resumed")
    run(resumed)
    want, got = (
        torch.load(d / "checkpoints" / "epoch002.ckpt")["state_dict"]
        for d in (tmp_path, tmp_path / "resumed")
    )
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    scored = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["model"]
    assert ("train_eval" in scored) == (after > 0)


def test_a_resume_takes_moved_data_and_refuses_changed_data(tiny, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_bytes((ROOT / "data" / "sample.csv").read_bytes())
    value = run(tiny("data=file", f"data.path={data / 'a.csv'}", "trainer.max_epochs=2"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    # Moved (to node-local scratch, say): refused before as a changed data.path, though the same series.
    data.rename(tmp_path / "moved")
    moved = ["data=file", f"data.path={tmp_path / 'moved' / 'a.csv'}", "trainer.max_epochs=2"]
    (tmp_path / "metrics.json").unlink()  # cut short after its last checkpoint (a finished run stands)
    assert run(tiny(*moved, f"ckpt_path={last}")) == value  # nothing left to train: scored again
    (tmp_path / "metrics.json").unlink()
    # Changed in place: the same path, other series; the resume would continue on other data.
    frame = pd.read_csv(tmp_path / "moved" / "a.csv")
    frame.iloc[5, 3] += 1.0
    frame.to_csv(tmp_path / "moved" / "a.csv", index=False)
    with pytest.raises(
        ConfigError, match=r"a\.csv holds other series than the run it resumes was trained on"
    ):
        run(tiny(*moved, f"ckpt_path={last}"))


def test_a_checkpoint_saved_before_runs_kept_the_linear_reference_resumes(tiny, tmp_path: Path) -> None:
    run(tiny("loss=emd", "trainer.max_epochs=2"))
    ckpt = torch.load(tmp_path / "checkpoints" / "epoch000.ckpt", weights_only=True)
    for key in ("linear.weight", "linear.bias"):
        del ckpt["state_dict"][key]
    torch.save(ckpt, tmp_path / "old.ckpt")
    value = run(tiny("loss=emd", "trainer.max_epochs=2", f"ckpt_path={tmp_path / 'old.ckpt'}"))
    assert value == json.loads((tmp_path / "metrics.json").read_text())["value"]  # it trained and scored


def test_same_config_and_seed_give_identical_metrics(tiny, tmp_path: Path) -> None:
    def run_in(folder: str, *overrides: str) -> tuple[float, dict]:
        value = run(tiny("loss=emd_mse", f"paths.output_dir={tmp_path / folder}", *overrides))
        return value, json.loads((tmp_path / folder / "metrics.json").read_text())

    (first, metrics), (second, again) = run_in("first"), run_in("second")
    assert first == second
    assert metrics["model"] == again["model"]
    assert metrics["seed"] == 0 and "torch" in metrics["versions"]
    assert (
        metrics["versions"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    )  # AVX512, ...
    assert run_in("seed1", "seed=1")[0] != first


class NaNLoss(nn.Module):
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).mean() * float("nan")


def forecaster(nonfinite: str) -> Forecaster:
    module = Forecaster(DLinear(4, 2), NaNLoss(), None, None, torch.arange(5.0), 1.0, "linear",
                        LeastSquaresLinear(4, 2), loss_name="nan_loss", nonfinite=nonfinite)  # fmt: skip
    module.trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return module


def test_non_finite_loss_stops_naming_the_batch_or_is_skipped() -> None:
    batch = (torch.rand(3, 4, 5), torch.rand(3, 2, 5), torch.tensor([0, 0, 1]), torch.tensor([7, 8, 20]))
    watching = forecaster("raise")
    watching.log = lambda *args, **kwargs: None  # logging needs a running fit loop
    assert watching.training_step(batch, 0) is not None  # recorded on the device, no host sync here
    with pytest.raises(NonFiniteLossError) as info:
        watching.check_nonfinite()
    message = str(info.value)
    assert "loss=nan_loss" in message and "series [0, 0, 1]" in message and "[7, 8, 20]" in message
    assert "nonfinite=skip" in message
    assert forecaster("skip").training_step(batch, 0) is None


@pytest.mark.parametrize(
    ("call", "where"),
    [
        (1, "at step 1, batch 1: windows"),
        # Epochs of 6 batches: checks at steps 6 (epoch end) and 10 (log step) pass clean first.
        (8, "at step 8, batch 2: windows .* noticed at step 10;"),
    ],
)
def test_non_finite_loss_stops_the_fit_naming_the_step_it_happened(
    tmp_path: Path, call: int, where: str
) -> None:
    # The device-side record names the step where the loss blew up, not the later step that read it.
    cfg = tiny_config(
        tmp_path,
        "loss=mse",
        f"+loss.call={call}",
        "loss._target_=tests.helpers.NaNAtCall",
        "trainer.limit_train_batches=6",
        "trainer.max_epochs=3",
    )
    with pytest.raises(NonFiniteLossError, match=rf"loss=NaNAtCall\) {where}"):
        run(cfg)
