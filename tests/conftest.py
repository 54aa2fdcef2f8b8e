"""Shared helpers: a tiny, fast configuration of the real training config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core (`-n auto` in pyproject.toml). Each worker, and every script
    # its tests start, computes on one thread: with torch's default of a thread per core the workers
    # contend for the cores (docs/performance.md, "Test suite": 159 s against 133 s on 2 cores).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# conf/experiment/smoke.yaml: 2 series x 90 steps x 37 bins, one short epoch.
TINY = ["experiment=smoke"]
TINY_MODEL = {
    "transformer": ["model.d_model=16", "model.n_layers=1", "model.n_heads=2"],
    "linear": [],
    "persistence": [],
    "drift": [],
}


def tiny_config(tmp_path: Path, *overrides: str, model: str = "transformer") -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                *TINY,
                f"model={model}",
                *TINY_MODEL[model],
                f"paths.output_dir={tmp_path}",
                f"paths.log_dir={tmp_path}",
                *overrides,
            ],
        )


@contextmanager
def hydra_job(config: str, *overrides: str) -> Iterator[DictConfig]:
    """The config an entry point's main() gets for ``overrides`` (rewritten as the script rewrites its
    command line), with Hydra's job state (the command's overrides, the chosen options, the run mode)
    set as inside it: its checks run in-process, without the few seconds a new Python process spends
    importing torch and Lightning."""
    from heatforecast.training import with_file_settings, with_implied_settings

    typed = list(overrides)
    args = with_file_settings(typed, CONF) if config == "evaluate" else with_implied_settings(typed)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(config, args, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    try:
        yield cfg
    finally:
        HydraConfig.instance().cfg = None


def fake_slurm_env() -> dict[str, str]:
    """This environment with tests/fake_slurm's stand-ins for SLURM's sbatch, srun and scontrol first on
    PATH: they run a batch job's tasks on this machine with the variables SLURM sets."""
    return {**os.environ, "PATH": f"{ROOT / 'tests' / 'fake_slurm'}{os.pathsep}{os.environ['PATH']}"}


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every TensorBoard scalar a run folder holds: tag -> its values in step order."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture
def tiny(tmp_path: Path):
    """tiny(*overrides, model=...) -> a composed config writing under tmp_path."""
    return lambda *o, model="transformer": tiny_config(tmp_path, *o, model=model)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained run folder (metrics.json + checkpoints), shared by the tests that need one."""
    from heatforecast.training import run

    run_dir = tmp_path_factory.mktemp("run")
    run(tiny_config(run_dir, "loss=emd", "data.generator.n_series=3"))  # 6 test blocks: intervals
    return run_dir
