"""GPU path (`python -m pytest -m gpu`, needs CUDA): the same checks scripts/gpu_check.sh makes, small."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from heatforecast.training import run

from .conftest import tiny_config

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
    values = [v for who in ("model", "persistence") for v in metrics[who]["test"].values()]
    assert all(math.isfinite(v) for v in values)


def test_on_device_loader_gathers_on_the_gpu(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    cfg = tiny_config(tmp_path, "trainer=gpu")
    dm = instantiate(cfg.data)
    dm.setup()
    x, y, series, time = next(iter(dm.loader("train", torch.device("cuda"))))
    assert x.is_cuda and y.is_cuda and series.is_cuda and time.is_cuda
    cpu = next(iter(dm.loader("train", torch.device("cpu"))))
    torch.testing.assert_close(x.cpu(), cpu[0])  # same windows, same order, wherever gathered
