"""Scale-out paths that run on a CPU: DDP over 2 gloo processes, sweeps via submitit, Optuna."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from heatforecast.metrics import FORECASTERS

from .conftest import CONF, ROOT, fake_slurm_env, scalars

# Same windows and updates either way: 2 ranks x 8 windows, averaged, is one step of 16 windows.
# Logging every step puts train/loss in TensorBoard for the comparison.
EQUIVALENT = [
    "experiment=smoke",
    "trainer.deterministic=true",
    "model.dropout=0",
    "data.generator.n_series=3",
    "trainer.log_every_n_steps=1",
]
DDP_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.precision=32-true"]


def train(*overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run that every multi-process run below must reproduce."""
    run_dir = tmp_path_factory.mktemp("one")
    done = train(*EQUIVALENT, "data.batch_size=16", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def assert_same_run(one: Path, two: Path) -> None:
    """Two runs' panels, skill intervals and TensorBoard scalars agree to float rounding."""
    a = json.loads((one / "metrics.json").read_text())
    b = json.loads((two / "metrics.json").read_text())
    for who in FORECASTERS:
        for split in ("val", "test", "train_eval"):  # train_eval: data.train_eval's train windows
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
    # TensorBoard shows the whole run, not rank 0's share: train/loss per step and per epoch, val/loss
    # and test/loss (the test split's 33 windows split 17/16 over the ranks), every metric.
    logged_a, logged_b = scalars(one), scalars(two)
    assert {"train/loss", "train/loss_epoch", "val/loss", "test/loss", "train_eval/loss"} <= set(logged_a)
    assert set(logged_b) == set(logged_a)
    for tag, values in logged_a.items():
        assert logged_b[tag] == pytest.approx(values, rel=1e-5, abs=1e-9), tag
    # One run folder, one set of TensorBoard events (rank 0 only), no per-rank folders.
    assert not [p for p in two.iterdir() if p.is_dir() and p.name not in (".hydra", "checkpoints")]


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(one_process: Path, tmp_path: Path) -> None:
    two = train(*EQUIVALENT, *DDP_CPU, "trainer.devices=2", "data.batch_size=8", f"hydra.run.dir={tmp_path}")
    assert two.returncode == 0, two.stderr[-3000:]
    assert_same_run(one_process, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "shape",
    [
        ["hydra.launcher.gpus_per_node=2", "trainer.devices=2"],
        [
            "hydra.launcher.nodes=2",
            "hydra.launcher.gpus_per_node=1",
            "trainer.num_nodes=2",
            "trainer.devices=1",
        ],
    ],
    ids=["1 node x 2 tasks", "2 nodes x 1 task"],
)
def test_a_ddp_job_through_the_slurm_launcher_matches_one_process(
    one_process: Path, tmp_path: Path, shape: list[str]
) -> None:
    # `-m hydra/launcher=slurm` as a user runs it, with fake_slurm's sbatch and srun standing in for
    # SLURM's: submitit writes and submits the batch script, srun starts one task per GPU with SLURM's
    # rank variables, and Lightning's SLURMEnvironment makes them the DDP ranks (gloo here).
    cmd = [sys.executable, "train.py", "-m", "hydra/launcher=slurm", *shape, *EQUIVALENT, *DDP_CPU]
    done = subprocess.run(
        [*cmd, "data.batch_size=8", f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT, env=fake_slurm_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (script,) = tmp_path.glob(".submitit/*/*_submission.sh")
    per_node, nodes = (2, 1) if "trainer.devices=2" in shape else (1, 2)
    for flag in (f"--ntasks-per-node={per_node}", f"--nodes={nodes}", "--signal=USR2@120", "--time=240"):
        assert f"#SBATCH {flag}\n" in script.read_text(), flag
    logs = "".join(p.read_text() for p in tmp_path.glob(".submitit/*/*_log.*"))
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs
    (job,) = (p.parent for p in tmp_path.glob("*/metrics.json"))
    assert_same_run(one_process, job)


@pytest.mark.slow
def test_a_nan_on_one_ddp_rank_stops_the_run_naming_that_rank(tmp_path: Path) -> None:
    # Rank 1's loss alone turns NaN at its call 1; the all-reduced NaN gradient makes rank 0's loss NaN
    # a step later, so each rank stops with its own message and the rank names the origin.
    nan = ["loss=mse", "loss._target_=tests.helpers.NaNAtCall", "+loss.call=1", "+loss.rank=1"]
    done = train(
        *EQUIVALENT, *DDP_CPU, "trainer.devices=2", "data.batch_size=8", *nan, f"hydra.run.dir={tmp_path}"
    )
    assert done.returncode != 0
    assert re.search(
        r"error: non-finite training loss \(loss=mse\) at step 1, batch 1 on DDP rank 1: ", done.stderr
    )
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_sweep_through_submitit_local(tmp_path: Path) -> None:
    done = train(
        "-m", "hydra/launcher=submitit_local", "loss=mse,emd", "experiment=smoke", f"paths.log_dir={tmp_path}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent.name for p in tmp_path.glob("multiruns/*/*/metrics.json"))
    assert runs == ["0_experiment=smoke,loss=mse", "1_experiment=smoke,loss=emd"]


def test_optuna_search_runs_seeded_trials_and_resumes_as_a_grid_sweep_does(tmp_path: Path) -> None:
    search = ["hparams_search=optuna", "experiment=smoke", "hydra.sweeper.n_trials=2"]
    done = train(*search, f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    results = tmp_path / "optimization_results.yaml"
    text = results.read_text()
    assert "best_params" in text and "loss.weights.mse" in text and "model.base" in text
    first, second = sorted(p.parent for p in tmp_path.glob("*/metrics.json"))
    # Cut short before its second trial: the seeded sampler draws the same trials again, the first
    # one's result stands, and the second starts in the folder it had.
    shutil.rmtree(second)
    done = train(*search, f"hydra.sweep.dir={tmp_path}", "ckpt_path=last")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"note: {first} holds a finished run" in done.stdout
    assert f"this sweep job had not started (no {second / 'checkpoints' / 'last.ckpt'})" in done.stdout
    assert results.read_text() == text


@pytest.mark.parametrize(
    ("search", "model"), [("optuna", "TransformerForecaster"), ("optuna_linear", "DLinear")]
)
def test_every_searched_setting_is_one_the_searched_model_has(search: str, model: str) -> None:
    # A key the model lacks stops every trial in Hydra ("Could not override 'model.d_model'").
    import heatforecast.training  # noqa: F401  (registers the metric_mode resolver, as train.py does)

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", [f"hparams_search={search}"], return_hydra_config=True)
    assert cfg.model._target_ == f"heatforecast.models.{model}"
    assert len(cfg.hydra.sweeper.params) >= 4
    for key in cfg.hydra.sweeper.params:
        assert OmegaConf.select(cfg, key, default="absent") != "absent", key


@pytest.mark.parametrize(("metric", "direction"), [("val/emd", "minimize"), ("val/skill_mse", "maximize")])
def test_optuna_maximises_a_skill_and_minimises_an_error(metric: str, direction: str) -> None:
    import heatforecast.training  # noqa: F401  (registers the metric_mode resolver, as train.py does)

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train", [f"optimized_metric={metric}", "hparams_search=optuna"], return_hydra_config=True
        )
    assert cfg.hydra.sweeper.direction == direction


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


@pytest.mark.slow
def test_the_docker_images_files_run_the_default_command(tmp_path: Path) -> None:
    # No Docker engine here: lay out what the Dockerfile's COPY lines put in /app, install it as its
    # RUN line does (a built wheel, not this checkout's editable install, so a module the package
    # data misses fails here), then run the image's command as a smoke run from that folder.
    app, site = tmp_path / "app", tmp_path / "site"
    steps = [line.split() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    copies = [[a for a in step[1:] if not a.startswith("--")] for step in steps if step[:1] == ["COPY"]]
    assert copies, "no COPY lines in the Dockerfile"
    for *sources, dest in copies:  # COPY a b ./ puts a and b in ./; COPY src ./src is src itself
        folder = app / dest if dest.endswith("/") else (app / dest).parent
        folder.mkdir(parents=True, exist_ok=True)
        for name in sources:
            target = folder / name if dest.endswith("/") else app / dest
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, target, dirs_exist_ok=True)
            else:
                shutil.copy2(ROOT / name, target)
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    done = subprocess.run([*install, "--target", str(site), str(app)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    cmd = json.loads(next(" ".join(s[1:]) for s in steps if s[:1] == ["CMD"]))
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import heatforecast; print(heatforecast.__file__)"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr  # the wheel, not the checkout
    run = subprocess.run(
        [sys.executable, *cmd[1:], "experiment=smoke"], cwd=app, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "test metric" in run.stdout
    assert list((app / "logs").glob("runs/*/*/metrics.json"))  # under the image's logs/ volume
