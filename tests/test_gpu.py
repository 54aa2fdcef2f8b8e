"""GPU path (`python -m pytest -m gpu`, needs CUDA): the same checks scripts/gpu_check.sh makes, small."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from heatforecast import losses
from heatforecast.metrics import FORECASTERS
from heatforecast.training import build_module, build_trainer, run

from .conftest import ROOT, tiny_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_bf16_fit_on_the_gpu_keeps_data_there_and_scores_finite(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "trainer=gpu")
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["fit"]["precision"] == "bf16-mixed"
    assert metrics["fit"]["peak_memory_mb"] > 0
    assert torch.cuda.get_device_name() == metrics["fit"]["device"]
    values = [v for who in FORECASTERS for v in metrics[who]["test"].values()]
    assert all(math.isfinite(v) for v in values)


@pytest.mark.parametrize("augment", [[], ["data.augment.flip=0.5"]])
def test_on_device_loader_gathers_on_the_gpu(tmp_path: Path, augment: list[str]) -> None:
    cfg = tiny_config(tmp_path, "trainer=gpu", *augment)
    dm = instantiate(cfg.data)
    dm.setup()
    x, y, series, time = next(iter(dm.loader("train", torch.device("cuda"))))
    assert x.is_cuda and y.is_cuda and series.is_cuda and time.is_cuda
    cpu = next(iter(dm.loader("train", torch.device("cpu"))))
    torch.testing.assert_close(x.cpu(), cpu[0])  # same windows, same order, wherever gathered


def test_deterministic_fit_on_the_gpu_runs_with_circular_losses_and_metrics(tmp_path: Path) -> None:
    # trainer.deterministic=true makes torch refuse ops it cannot repeat on CUDA; circular EMD's median
    # was one (conf/trainer/gpu.yaml leaves it off for speed, a user may turn it on).
    circle = ["data.circular=true", "data.generator.n_bins=36", "data.bin_width=10"]
    run(tiny_config(tmp_path, "trainer=gpu", "trainer.deterministic=true", *circle))
    panel = json.loads((tmp_path / "metrics.json").read_text())["model"]["test"]
    assert all(math.isfinite(v) for v in panel.values())


def test_circular_emd_under_deterministic_algorithms_matches_the_cpu() -> None:
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 5, 36, generator=gen), torch.rand(2, 5, 36, generator=gen)
    cpu = losses.emd(pred, target, 10.0, circular=True)
    torch.use_deterministic_algorithms(True)
    try:
        cuda = losses.emd(pred.cuda(), target.cuda(), 10.0, circular=True)
    finally:
        torch.use_deterministic_algorithms(False)
    torch.testing.assert_close(cuda.cpu(), cpu)


class SyncGuard(L.Callback):
    """Makes any host-GPU sync an error from the start of batch ``first`` to the start of batch ``last``:
    whole training steps (data, forward, loss, backward, clipping, optimizer, schedule, hooks, logging)."""

    def __init__(self, first: int = 1, last: int = 4) -> None:
        self.first, self.last, self.guarded = first, last, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.first:
            torch.cuda.set_sync_debug_mode("error")
        elif batch_idx == self.last:
            torch.cuda.set_sync_debug_mode("default")
            self.guarded = self.last - self.first

    def on_train_end(self, trainer, module) -> None:
        torch.cuda.set_sync_debug_mode("default")  # also when a step raised


@pytest.mark.parametrize("options", [[], ["data.augment.flip=0.5"], ["optim.optimizer.fused=true"]])
def test_training_steps_between_log_steps_never_sync_the_host(tmp_path: Path, options: list[str]) -> None:
    # log_every_n_steps is 10: steps 1-3 read nothing back; a sync there raises "called a synchronizing
    # CUDA operation" with the line that did it. Mirrored windows are gathered on the GPU too, and the
    # fused optimizer step is clipped by the module, not Lightning.
    cfg = tiny_config(tmp_path, "trainer=gpu", "trainer.limit_train_batches=6", *options)
    dm = instantiate(cfg.data)
    dm.setup()
    guard = SyncGuard()
    build_trainer(cfg, (guard,)).fit(build_module(cfg, dm), datamodule=dm)
    assert guard.guarded == 3


def test_cuda_graph_compiled_fit_validates_and_tests(tmp_path: Path) -> None:
    # compile=reduce-overhead: outside training, each call of a compiled part frees the outputs of the
    # last call; validation and test call the model and then the loss on its forecast. Two epochs, so
    # training graphs run again after the validation ones.
    cfg = tiny_config(
        tmp_path, "trainer=gpu", "compile=reduce-overhead", "data.drop_last=true", "trainer.max_epochs=2"
    )
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["fit"]["samples"] == 2 * 3 * 16  # epochs x experiment=smoke's batches x batch size
    values = [v for who in FORECASTERS for v in metrics[who]["test"].values()]
    assert all(math.isfinite(v) for v in values)


@pytest.mark.slow  # compiling under DDP took most of 90 s on an H100: gpu_check.sh leaves it to `-m gpu`
def test_cuda_graph_compiled_fit_under_ddp(tmp_path: Path) -> None:
    # CUDA graphs with DDP's gradient all-reduce hooks, as one NCCL process per visible GPU (a process
    # of its own, as train.py runs it).
    cmd = [
        sys.executable, "train.py", "experiment=smoke", "trainer=ddp", "compile=reduce-overhead",
        "data.drop_last=true", "trainer.max_epochs=2", f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["fit"]["peak_memory_mb"] > 0
    values = [v for who in FORECASTERS for v in metrics[who]["test"].values()]
    assert all(math.isfinite(v) for v in values)
