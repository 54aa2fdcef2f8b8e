"""Scale-out paths that run on a CPU: DDP over 2 gloo processes, sweeps via submitit, Optuna."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from heatforecast.metrics import FORECASTERS

from .conftest import ROOT

# Same windows and updates either way: 2 ranks x 8 windows, averaged, is one step of 16 windows.
EQUIVALENT = [
    "experiment=smoke",
    "trainer.deterministic=true",
    "model.dropout=0",
    "data.generator.n_series=3",
]


def train(*overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path: Path) -> None:
    one = train(*EQUIVALENT, "data.batch_size=16", f"hydra.run.dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
    two = train(*EQUIVALENT, *ddp, "data.batch_size=8", f"hydra.run.dir={tmp_path / 'two'}")
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for who in FORECASTERS:
        for split in ("val", "test"):
            for name, value in a[who][split].items():
                assert b[who][split][name] == pytest.approx(value, rel=1e-5, abs=1e-9), (who, split, name)
    # Every rank's test windows are gathered for the skill intervals: the same windows, the same draws
    # (skills are ratios near 1 of float32 window metrics, hence an absolute tolerance).
    assert b["intervals"]["units"] == a["intervals"]["units"] == 6  # 3 series x 2 blocks: intervals
    for who in FORECASTERS[1:]:
        for name, cell in a["intervals"][who].items():
            assert b["intervals"][who][name] == pytest.approx(cell, rel=1e-5, abs=1e-6), (who, name)
        for name, cell in a["intervals"]["per_horizon"][who].items():
            for key, values in cell.items():  # each step's skill, low, high
                got = b["intervals"]["per_horizon"][who][name][key]
                assert got == pytest.approx(values, rel=1e-5, abs=1e-6), (who, name, key)
    # One run folder, one set of TensorBoard events (rank 0 only), no per-rank folders.
    assert not [
        p for p in (tmp_path / "two").iterdir() if p.is_dir() and p.name not in (".hydra", "checkpoints")
    ]


@pytest.mark.slow
def test_sweep_through_submitit_local(tmp_path: Path) -> None:
    done = train(
        "-m", "hydra/launcher=submitit_local", "loss=mse,emd", "experiment=smoke", f"paths.log_dir={tmp_path}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent.name for p in tmp_path.glob("multiruns/*/*/metrics.json"))
    assert runs == ["0_experiment=smoke,loss=mse", "1_experiment=smoke,loss=emd"]


def test_optuna_search_runs_seeded_trials(tmp_path: Path) -> None:
    done = train(
        "hparams_search=optuna", "experiment=smoke", "hydra.sweeper.n_trials=2", f"paths.log_dir={tmp_path}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = tmp_path.glob("multiruns/*/optimization_results.yaml")
    text = results.read_text()
    assert "best_params" in text and "loss.weights.mse" in text and "model.base" in text
    assert len(list(tmp_path.glob("multiruns/*/*/metrics.json"))) == 2


@pytest.mark.slow
def test_compiled_run_trains_and_its_checkpoint_evaluates_without_compile(tmp_path: Path) -> None:
    done = train("experiment=smoke", "compile=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-3000:]
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())
    cmd = [
        sys.executable,
        "evaluate.py",
        f"ckpt_path={trained['best_checkpoint']}",
        f"hydra.run.dir={tmp_path / 'eval'}",
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for name, value in trained["model"]["test"].items():
        assert evaluated["model"]["test"][name] == pytest.approx(value, rel=1e-4, abs=1e-7), name
