"""scripts/compare_runs.py on a real (tiny) multirun plus a broken run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import ROOT


def test_table_has_every_run_with_its_overrides_and_values(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "train.py", "-m", "experiment=smoke", "loss=mse,emd", f"hydra.sweep.dir={sweep}"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=300)
    runs = {p.name: p for p in sweep.iterdir() if p.is_dir()}
    broken = sweep / "2_experiment=smoke,loss=kl"  # a run that died before writing metrics.json
    shutil.copytree(runs["0_experiment=smoke,loss=mse"] / ".hydra", broken / ".hydra")
    (broken / ".hydra" / "overrides.yaml").write_text("- experiment=smoke\n- loss=kl\n")

    csv = tmp_path / "table.csv"
    cmd = [
        sys.executable,
        "scripts/compare_runs.py",
        str(sweep),
        "--csv",
        str(csv),
        "--png",
        str(tmp_path / "c.png"),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "crashed or running" in done.stdout
    table = pd.read_csv(csv).set_index("run")
    assert table.loc["experiment=smoke,loss=kl", "status"] == "crashed or running"
    for name in ("mse", "emd"):
        metrics = json.loads(
            (
                runs[f"{'0' if name == 'mse' else '1'}_experiment=smoke,loss={name}"] / "metrics.json"
            ).read_text()
        )
        row = table.loc[f"experiment=smoke,loss={name}"]
        assert row["status"] == "ok"
        assert row["emd"] == pytest.approx(metrics["model"]["test"]["emd"], rel=1e-9)
        assert row["mse"] == pytest.approx(metrics["model"]["test"]["mse"], rel=1e-9)
    assert table.loc["persistence (same windows)", "skill_emd"] == 0
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert (tmp_path / "c_by_horizon.png").stat().st_size > 1000
