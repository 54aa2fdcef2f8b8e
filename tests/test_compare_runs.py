"""scripts/compare_runs.py on a real (tiny) multirun plus a broken run."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from heatforecast.metrics import DEFAULT_PEAKS, PeakSettings

from .conftest import ROOT


def test_table_has_every_run_with_its_overrides_and_values(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    # 3 series: enough test blocks for skill intervals
    given = [
        "experiment=smoke",
        "data.generator.n_series=3",
        "trainer.enable_progress_bar=False",
    ]  # as -m writes it
    cmd = [sys.executable, "train.py", "-m", *given, "loss=mse,emd", f"hydra.sweep.dir={sweep}"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=300)
    runs = {p.name: p for p in sweep.iterdir() if p.is_dir()}
    # Hydra sorts the overrides; the folder names leave out what only changes the terminal's output.
    folder = "{}_data.generator.n_series=3,experiment=smoke,loss={}"
    broken = sweep / folder.format(2, "kl")  # a run that died before writing metrics.json
    shutil.copytree(runs[folder.format(0, "mse")] / ".hydra", broken / ".hydra")
    (broken / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in [*given, "loss=kl"]))
    # The table's run: the overrides as given, less what only changes the terminal's output.
    name = ",".join(given[:-1]) + ",loss={}"

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
    assert "1 run(s) without metrics.json: a sweep cut short resumes job by job" in done.stdout
    printed = next(r for r in done.stdout.splitlines() if r.startswith("| persistence (same windows)"))
    cells = [c.strip() for c in printed.split("|")[1:-1]]
    assert "nan" not in cells and "" in cells and "0" in cells  # blank where it has no value; skill 0
    table = pd.read_csv(csv).set_index("run")
    assert table.loc[name.format("kl"), "status"] == "crashed or running"
    for i, loss in enumerate(("mse", "emd")):
        metrics = json.loads((runs[folder.format(i, loss)] / "metrics.json").read_text())
        row = table.loc[name.format(loss)]
        assert row["status"] == "ok"
        assert row["emd"] == pytest.approx(metrics["model"]["test"]["emd"], rel=1e-9)
        assert row["mse"] == pytest.approx(metrics["model"]["test"]["mse"], rel=1e-9)
        for column, split in (("skill_emd train windows", "train_eval"), ("skill_emd val", "val")):
            assert row[column] == pytest.approx(metrics["model"][split]["skill_emd"], rel=1e-9), column
        assert row["train_eval/emd change %"] == 0  # one epoch: its first validation is its last
        cell = metrics["intervals"]["drift"]["emd"]
        assert (
            row["skill_emd vs drift 95%"] == f"{cell['skill']:+.3f} [{cell['low']:+.3f}, {cell['high']:+.3f}]"
        )
        ahead = metrics["intervals"]["per_horizon"]["persistence"]["emd"]["ahead_steps"]
        assert row["ahead of persistence to step"] == f"{ahead} of 4"  # experiment=smoke: H = 4
    assert table.loc["persistence (same windows)", "skill_emd"] == 0
    drift = metrics["drift"]["test"]  # the reference panels of the last run read, the same on every run
    assert table.loc["drift (same windows)", "emd"] == pytest.approx(drift["emd"], rel=1e-9)
    assert table.loc[name.format("mse"), "best_epoch"] == 0  # one epoch
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert (tmp_path / "c_by_horizon.png").stat().st_size > 1000


def load_compare_runs():
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
    compare_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_runs)
    return compare_runs


def test_a_metrics_file_that_is_not_a_run_s_is_named_in_the_status(tmp_path: Path) -> None:
    # JSON of another shape stopped the table with a TypeError or KeyError traceback.
    compare_runs = load_compare_runs()
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- loss=emd\n")
    shape = "metrics.json without the model's and persistence's test panels"
    cases = [("{bad", "unreadable metrics.json"), ('{"model": 3}', shape), ('{"model": {"test": {}}}', shape)]
    for text, status in cases:
        (tmp_path / "metrics.json").write_text(text)
        assert compare_runs.read_run(tmp_path, "val/emd")["status"] == status, text


def test_a_run_made_before_ospa_deg_has_nan_there_and_its_other_columns(tmp_path: Path) -> None:
    compare_runs = load_compare_runs()
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- loss=emd\n")
    older = {c: 1.0 for c in compare_runs.COLUMNS if c != "ospa_deg"}
    panel = {"test": older, "test_per_horizon": {}}
    (tmp_path / "metrics.json").write_text(json.dumps({"model": panel, "persistence": panel}))
    row = compare_runs.read_run(tmp_path, "val/emd")
    assert row["status"] == "ok" and row["emd"] == 1.0 and row["ospa_deg"] != row["ospa_deg"]  # NaN
    assert row["peaks"] == dataclasses.asdict(DEFAULT_PEAKS)  # what runs made before the setting used
    assert (
        row["persistence"]["emd"] == 1.0 and row["persistence"]["ospa_deg"] != row["persistence"]["ospa_deg"]
    )


def test_what_changes_none_of_a_run_s_results_is_not_part_of_its_label(tmp_path: Path) -> None:
    # A seed run with the progress bar off and one with it on are the same experiment: one --by group;
    # so are a sweep's job resumed with ckpt_path=last (its overrides.yaml then holds it) and the others.
    compare_runs = load_compare_runs()
    (tmp_path / ".hydra").mkdir()
    given = (
        "- loss=emd\n- trainer.enable_progress_bar=False\n- +trainer.enable_model_summary=false\n- seed=2\n"
        "- paths.log_dir=/elsewhere\n- ckpt_path=last\n"
    )
    (tmp_path / ".hydra" / "overrides.yaml").write_text(given)
    row = compare_runs.read_run(tmp_path, "val/emd")
    assert row["run"] == "loss=emd,seed=2" and compare_runs.group_name(row, "seed") == "loss=emd"


def test_evaluate_folders_are_passed_over(tmp_path: Path) -> None:
    # `compare_runs.py logs` listed every evaluate.py folder as a run, failed commands' as "crashed".
    compare_runs = load_compare_runs()
    for name, job in [("runs/a", "train"), ("evaluations/b", "evaluate"), ("runs/c", None)]:
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text("[]\n")
        if job:  # the part of Hydra's hydra.yaml that names the script
            (tmp_path / name / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    name: {job}\n")
    assert compare_runs.find_runs([tmp_path]) == ([tmp_path / "runs" / "a", tmp_path / "runs" / "c"], 1)


def test_by_seed_averages_metrics_and_lead_times_over_the_seeds() -> None:
    compare_runs = load_compare_runs()
    reference = dict.fromkeys(compare_runs.COLUMNS, 1.0)
    rows = []
    for loss, emds, leads in (("emd", (8.0, 9.0), (7, 9)), ("mse", (10.0, 12.0), (0, 0))):
        for seed, emd, lead in zip((1, 2), emds, leads):
            overrides = [f"loss={loss}", f"seed={seed}"]
            rows.append(
                {"run": ",".join(overrides), "overrides": overrides, "status": "ok"}
                | dict.fromkeys(compare_runs.TRAINING, 0.0)
                | dict.fromkeys(compare_runs.COLUMNS, emd)
                | {"lead": {"persistence": (lead, 10), "drift": (None, 10)}}  # (ahead_steps, H)
                | {"persistence": reference, "drift": reference}
            )
    table = compare_runs.table(rows, by="seed", sort="emd").set_index("run")
    assert table.loc["loss=emd", "emd"] == "8.5 ± 0.71" and table.loc["loss=mse", "emd"] == "11 ± 1.4"
    assert table.loc["loss=emd", "ahead of persistence to step"] == "8 ± 1.4"
    assert table.loc["loss=mse", "ahead of persistence to step"] == "0 ± 0"
    assert table.loc["loss=emd", "n"] == 2 and list(table.index[:2]) == ["loss=emd", "loss=mse"]
    # A skill grows as the model improves: sorted by one, the best group comes first all the same.
    for row in rows:
        row["skill_emd"] = -row["emd"]
    by_skill = compare_runs.table(rows, by="seed", sort="skill_emd")
    assert list(by_skill.run[:2]) == ["loss=emd", "loss=mse"]
    single = compare_runs.table(rows, by=None, sort="skill_emd")
    assert list(single.run[:4]) == [
        "loss=emd,seed=1",
        "loss=emd,seed=2",
        "loss=mse,seed=1",
        "loss=mse,seed=2",
    ]


def test_runs_on_other_windows_get_reference_rows_of_their_own() -> None:
    # compare_runs.py logs/runs mixes runs on other data: each set of windows shows its own references
    # (it used to show the first run's, labelled "same windows", beside every run).
    compare_runs = load_compare_runs()
    rows = []
    for overrides, persistence in ((["loss=emd"], 2.0), (["loss=mse"], 2.0), (["data=file"], 5.0)):
        reference = dict.fromkeys(compare_runs.COLUMNS, persistence)
        rows.append(
            {"run": ",".join(overrides), "overrides": overrides, "status": "ok"}
            | dict.fromkeys(compare_runs.TRAINING, 0.0)
            | dict.fromkeys(compare_runs.COLUMNS, 1.0)
            | {"persistence": reference, "drift": dict.fromkeys(compare_runs.COLUMNS, persistence + 1)}
        )
    table = compare_runs.table(rows, by=None, sort="emd").set_index("run")
    assert table.loc["persistence (windows of loss=emd and 1 more)", "emd"] == 2.0
    assert table.loc["drift (windows of loss=emd and 1 more)", "emd"] == 3.0
    assert table.loc["persistence (windows of data=file)", "emd"] == 5.0
    assert table.loc["drift (windows of data=file)", "emd"] == 6.0
    assert len(table) == 3 + 4
    same = compare_runs.table(rows[:2], by=None, sort="emd").set_index("run")
    assert list(same.index[2:]) == ["persistence (same windows)", "drift (same windows)"]
    # The same windows scored with other peak settings: ospa_deg on another scale, references apart.
    rows[1]["peaks"] = dataclasses.asdict(PeakSettings(cutoff_deg=10.0))
    scored_otherwise = compare_runs.table(rows[:2], by=None, sort="emd").set_index("run")
    assert "persistence (windows of loss=mse)" in scored_otherwise.index and len(scored_otherwise) == 2 + 4


def test_diagnosis_reads_overfitting_from_the_curves() -> None:
    compare_runs = load_compare_runs()
    # Train loss halves over three epochs and the train windows' EMD falls by 40 %; val/emd is best at
    # epoch 1 and ends 10 % above it. The points at step 31 are train.py's re-validation of the best
    # checkpoint after the fit, not an epoch.
    curves = {
        "train/loss_epoch": [(10, 2.0), (20, 1.5), (30, 1.0)],
        "val/emd": [(10, 5.0), (20, 4.0), (30, 4.4), (31, 4.0)],
        "train_eval/emd": [(10, 5.0), (20, 4.0), (30, 3.0), (31, 4.0)],
        "epoch": [(10, 0.0), (20, 1.0), (30, 2.0), (31, 3.0)],
    }
    got = compare_runs.diagnosis(curves, "emd")
    assert got == pytest.approx(
        {
            "best_val": 4.0,
            "best_epoch": 1.0,
            "val_after_best_pct": 10.0,
            "train_loss_pct": -50.0,
            "train_eval_pct": -40.0,
        }
    )
    untrained = compare_runs.diagnosis({"val/emd": [(0, 3.0)]}, "emd")  # model=persistence: no fit
    assert untrained["best_val"] == 3.0 and untrained["val_after_best_pct"] == 0.0
    for nan in ("train_loss_pct", "train_eval_pct"):  # no train curve
        assert untrained[nan] != untrained[nan]
    without = compare_runs.diagnosis({k: v for k, v in curves.items() if k != "train_eval/emd"}, "emd")
    assert without["train_eval_pct"] != without["train_eval_pct"]  # data.train_eval=0: NaN

    # For a skill the best validation is the highest.
    skill = {"val/skill_emd": [(10, 0.1), (20, 0.3), (30, 0.2)], "epoch": [(10, 0.0), (20, 1.0), (30, 2.0)]}
    got = compare_runs.diagnosis(skill, "skill_emd")
    assert got["best_val"] == 0.3 and got["best_epoch"] == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sort", "emdd"], "argument --sort: invalid choice: 'emdd'"),
        (["--metric", "accuracy"], "argument --metric: invalid choice: 'accuracy'"),
        (["--by", "sead"], "--by sead: no run has an override sead=...; their override keys: loss, seed"),
    ],
)
def test_a_sort_metric_or_group_key_that_names_nothing_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    args: list[str],
    message: str,
) -> None:
    run = tmp_path / "0_loss=emd,seed=1"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- loss=emd\n- seed=1\n")  # a run that crashed early
    monkeypatch.setattr(sys, "argv", ["compare_runs.py", str(tmp_path), *args])
    with pytest.raises(SystemExit) as info:
        load_compare_runs().main()
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_skills_that_are_not_finite_are_null_in_metrics_json_and_nan_when_read(tiny, tmp_path: Path) -> None:
    # Constant frames: persistence is exact, so each skill is 1 - x / 0: -inf where the forecast is not
    # exact, NaN where it is (0 / 0). Python's json wrote -Infinity and NaN, which strict parsers refuse.
    from heatforecast.training import run
    from heatforecast.training.report import read_result

    np.save(tmp_path / "still.npy", np.ones((2, 60, 6), np.float32))
    run(tiny("data=file", f"data.path={tmp_path / 'still.npy'}", model="linear"))

    def refuse(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")

    written = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    model = written["model"]["test"]
    assert model["mse"] > 0 and model["skill_mse"] is None and written["drift"]["test"]["skill_mse"] is None
    assert written["intervals"]["linear"]["mse"]["skill"] is not None  # finite numbers stay
    read = read_result(tmp_path / "metrics.json")
    assert read["model"]["test"]["skill_mse"] != read["model"]["test"]["skill_mse"]  # NaN
    assert all(v != v for v in read["model"]["test_per_horizon"]["skill_mse"])
    skill = read["intervals"]["persistence"]["mse"]["skill"]
    assert skill != skill
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- model=linear\n")
    row = load_compare_runs().read_run(tmp_path, "val/emd")
    assert row["status"] == "ok" and row["skill_emd"] != row["skill_emd"]
    assert row["skill_emd vs persistence 95%"].endswith(" (not defined)")
