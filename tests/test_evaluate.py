"""evaluate.py: reproduces training's test panel, exports forecasts, refuses unsafe or foreign checkpoints."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from heatforecast.data import make_synthetic, write_heatmaps
from heatforecast.forecasts import SCORED, predict
from heatforecast.metrics import DEFAULT_PEAKS, FORECASTERS, PeakSettings
from heatforecast.training import CheckpointError, ConfigError, run, with_file_settings
from heatforecast.training import evaluate as run_evaluate
from heatforecast.training.checkpoints import load_checkpoint, restore_forecaster
from heatforecast.training.evaluation import WINDOW_KEYS, evaluation_data

from .conftest import CONF, ROOT, hydra_job, tiny_config


def evaluate(out_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "evaluate.py", f"hydra.run.dir={out_dir}", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_evaluate_reproduces_the_logged_test_metrics(trained: Path, tmp_path: Path) -> None:
    training = json.loads((trained / "metrics.json").read_text())
    done = evaluate(tmp_path, f"ckpt_path={training['best_checkpoint']}")
    assert done.returncode == 0, done.stderr
    got = json.loads((tmp_path / "metrics.json").read_text())
    assert got["split"] == "test"
    for who in FORECASTERS:
        for name, value in training[who]["test"].items():
            assert got[who]["test"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), (who, name)
    # Training's metrics.json has the skill intervals too, from the same windows.
    assert training["intervals"]["units"] == 6 and training["intervals"]["drift"]["emd"]["low"] is not None
    for who in FORECASTERS[1:]:
        for name, cell in training["intervals"][who].items():
            assert got["intervals"][who][name] == pytest.approx(cell, rel=1e-6, abs=1e-9), (who, name)
    assert training["intervals"]["persistence"]["emd"]["skill"] == pytest.approx(
        training["model"]["test"]["skill_emd"], rel=1e-5
    )
    # At each horizon step: the same skills as the per-horizon panel, and the same as evaluate's.
    per_step = training["intervals"]["per_horizon"]
    for name in ("emd", "mse"):
        cell = per_step["persistence"][name]
        horizon_skill = training["model"]["test_per_horizon"][f"skill_{name}"]
        assert cell["skill"] == pytest.approx(horizon_skill, rel=1e-5)
        assert all(low <= s <= high for low, s, high in zip(cell["low"], cell["skill"], cell["high"]))
        for who, key in itertools.product(FORECASTERS[1:], ("skill", "low", "high", "ahead_steps")):
            want = per_step[who][name][key]
            assert got["intervals"]["per_horizon"][who][name][key] == pytest.approx(want, rel=1e-6)
    for png in ("test_by_horizon.png", "window.png", "peak_track.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_scoring_keeps_of_every_window_only_what_the_forecast_file_writes(trained: Path) -> None:
    ckpt = load_checkpoint(trained / "checkpoints" / "last.ckpt")
    module = restore_forecaster(ckpt)
    dm = instantiate(OmegaConf.create(ckpt["hyper_parameters"]["config"]).data)
    dm.setup()
    scored = {}
    for keep in (SCORED, ("forecast",), ()):
        module.metrics["test"].reset()
        scored[keep] = predict(module, dm.loader("all"), keep)
    every = scored[SCORED].windows
    ids = dm.heatmaps.ids
    assert every["series"].unique().tolist() == list(range(len(ids))) and len(ids) > 1
    for keep, got in scored.items():
        assert set(got.windows) == {*keep, "series", "time"}
        for key, value in got.windows.items():
            torch.testing.assert_close(value, every[key])
    # The figures' part: the first window, and the first series' windows at the last horizon step.
    first = scored[()].first_series
    assert (first.series, first.time) == (int(every["series"][0]), int(every["time"][0]))
    torch.testing.assert_close(first.window["forecast"], every["forecast"][0])
    mine = every["series"] == first.series
    assert 0 < mine.sum() < len(mine)
    for key in SCORED:
        torch.testing.assert_close(first.last_step[key], every[key][mine, -1])


def test_forecasts_round_trip_between_npz_parquet_and_csv(trained: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "last.ckpt"
    for suffix in ("npz", "parquet", "csv", "csv.gz"):
        out = f"out={tmp_path / f'forecasts.{suffix}'}"
        with hydra_job(
            "evaluate", f"ckpt_path={ckpt}", "predict=true", out, f"paths.output_dir={tmp_path / suffix}"
        ) as cfg:
            run_evaluate(cfg)
    npz = np.load(tmp_path / "forecasts.npz")
    windows, horizon, n_bins = npz["forecast"].shape
    assert horizon == 4 and n_bins == 37 and len(npz["series"]) == windows
    table = pd.read_parquet(tmp_path / "forecasts.parquet")
    csv = pd.read_csv(tmp_path / "forecasts.csv", dtype={"series": str})  # ids "0", "1" stay text
    pd.testing.assert_frame_equal(csv, table, check_dtype=False, check_exact=False, rtol=1e-6)
    with gzip.open(tmp_path / "forecasts.csv.gz", "rt") as compressed:  # compressed by its suffix
        pd.testing.assert_frame_equal(pd.read_csv(compressed, dtype={"series": str}), csv)
    assert list(table.columns[:4]) == ["series", "time", "horizon", "step"]
    bins = table.iloc[:, 4:].to_numpy().reshape(windows, horizon, n_bins)
    np.testing.assert_allclose(bins, npz["forecast"])
    np.testing.assert_array_equal(table["step"].to_numpy()[::horizon], npz["step"])
    np.testing.assert_array_equal(table["step"].to_numpy(), table["time"].to_numpy())  # no time column
    np.testing.assert_array_equal(npz["time"], npz["step"])
    # The scored windows' target and references come along, aligned: each window's persistence is the
    # frame before its first target, the previous window's first target (stride 1, same series).
    panels = json.loads((tmp_path / "npz" / "metrics.json").read_text())
    for who in ("forecast", *FORECASTERS[1:]):
        mse = np.mean((npz[who].astype(np.float64) - npz["target"]) ** 2)
        assert mse == pytest.approx(panels["model" if who == "forecast" else who]["test"]["mse"], rel=1e-5)
    same = (npz["series"][1:] == npz["series"][:-1]) & (npz["step"][1:] == npz["step"][:-1] + 1)
    assert same.sum() > 10
    for h in range(horizon):
        np.testing.assert_array_equal(npz["persistence"][1:][same, h], npz["target"][:-1][same, 0])


def test_new_file_is_scored_on_all_windows_and_bin_count_is_checked(trained: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "last.ckpt"
    same = make_synthetic(n_series=2, n_steps=40, n_bins=37, seed=9)
    write_heatmaps(tmp_path / "new.npy", same, np.arange(37.0))
    # DESIGN.md's command: data.path alone, the windows taken from the checkpoint.
    done = evaluate(tmp_path / "a", f"ckpt_path={ckpt}", f"data.path={tmp_path / 'new.npy'}")
    assert done.returncode == 0, done.stderr
    got = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert got["split"] == "all" and np.isfinite(got["model"]["test"]["emd"])
    # Each series scored on its own windows: the window-weighted means give back the overall panel.
    per_series = got["per_series"]
    assert list(per_series) == ["0", "1"] and [p["windows"] for p in per_series.values()] == [29, 29]
    for who in FORECASTERS:
        for name in ("emd", "mse", "peak_err_deg"):
            mean = np.mean([p[who][name] for p in per_series.values()])
            assert mean == pytest.approx(got[who]["test"][name], rel=1e-5), (who, name)
    table = pd.read_csv(tmp_path / "a" / "per_series.csv", index_col="series")
    assert table.loc[1, "persistence_emd"] == pytest.approx(per_series["1"]["persistence"]["emd"])
    assert table.loc[1, "drift_emd"] == pytest.approx(per_series["1"]["drift"]["emd"])
    assert "lowest skill_emd" in done.stdout
    assert f"scored: every window of {tmp_path / 'new.npy'}, 58 windows" in done.stdout
    # 2 series: the bootstrap draws blocks of L + H = 12 steps; first targets 8..36 fall in 4 per series.
    intervals = got["intervals"]
    assert (intervals["unit"], intervals["block_steps"], intervals["units"]) == ("block", 12, 8)
    assert "bootstrap over 8 blocks of 12 steps" in done.stdout
    for name in ("emd", "mse"):
        emd = intervals["persistence"][name]
        assert emd["skill"] == pytest.approx(got["model"]["test"][f"skill_{name}"], rel=1e-5)
        assert emd["low"] <= emd["skill"] <= emd["high"]
    # Refused in-process (evaluate.py's own "error:" line is tested above and in test_bad_inputs.py).
    write_heatmaps(tmp_path / "wide.npy", make_synthetic(n_series=1, n_steps=40, n_bins=45), np.arange(45.0))
    for path, settings, message in (
        ("wide.npy", ["data.context_len=8", "data.horizon=4"], "trained on 37 angle bins; .*wide.npy has 45"),
        # The checkpoint's data.context_len is 8: set to anything else, it is refused.
        ("new.npy", ["data.context_len=16"], "trained with data.context_len=8; this evaluation has .*=16"),
        ("new.npy", ["data.circular=true"], "trained with data.circular=False"),
    ):
        out = f"paths.output_dir={tmp_path / 'b'}"
        with hydra_job(
            "evaluate", f"ckpt_path={ckpt}", "data=file", f"data.path={tmp_path / path}", out, *settings
        ) as cfg:
            with pytest.raises(CheckpointError, match=message):
                run_evaluate(cfg)
    assert not (tmp_path / "b").exists()


def test_future_forecasts_start_after_each_series_last_frame(trained: Path, tmp_path: Path) -> None:
    ckpt_path = trained / "checkpoints" / "last.ckpt"
    # Series "a" holds just one context (8 steps, fewer than context_len + horizon); "b" holds 30 steps,
    # its rows shuffled: the context is its last 8 steps in `time` order, not in file order. Frames
    # come every 10 s (b's with a little jitter); the forecasts' times go on in each series' median step.
    frames = {sid: make_synthetic(n_series=1, n_steps=n, n_bins=37, seed=s)[0]
              for sid, n, s in (("a", 8, 3), ("b", 30, 4))}  # fmt: skip
    start = pd.Timestamp("2026-01-31 12:00:00")
    seconds = {"a": 10.0 * np.arange(8), "b": 10.0 * np.arange(30) + 0.5 * (np.arange(30) == 5)}
    table = pd.concat(
        pd.DataFrame(f, columns=[str(a) for a in range(37)])
        .assign(series=sid, time=start + pd.to_timedelta(seconds[sid], unit="s"))
        .sample(frac=1.0, random_state=0)
        for sid, f in frames.items()
    )
    table.to_parquet(tmp_path / "recent.parquet", index=False)
    out = tmp_path / "next.parquet"
    data = ["data=file", f"data.path={tmp_path / 'recent.parquet'}", "data.context_len=8", "data.horizon=4"]
    done = evaluate(tmp_path / "run", f"ckpt_path={ckpt_path}", "predict=future", f"out={out}", *data)
    assert done.returncode == 0, done.stderr
    got = pd.read_parquet(out)
    assert got["series"].tolist() == ["a"] * 4 + ["b"] * 4
    assert got["step"].tolist() == [8, 9, 10, 11, 30, 31, 32, 33]
    after_a, after_b = start + pd.Timedelta(70, "s"), start + pd.Timedelta(290, "s")  # last frames
    expected_times = [after_a + pd.Timedelta(10 * h, "s") for h in range(1, 5)]
    expected_times += [after_b + pd.Timedelta(10 * h, "s") for h in range(1, 5)]
    assert got["time"].tolist() == expected_times
    assert got["horizon"].tolist() == [1, 2, 3, 4] * 2
    assert (tmp_path / "run" / "future.png").stat().st_size > 1000
    assert not (tmp_path / "run" / "metrics.json").exists()  # nothing to score

    expected = forecast_by_hand(ckpt_path, np.stack([frames["a"][-8:], frames["b"][-8:]]))
    np.testing.assert_allclose(got.iloc[:, 4:].to_numpy().reshape(2, 4, 37), expected, rtol=1e-5, atol=1e-6)


def forecast_by_hand(ckpt_path: Path, contexts: np.ndarray) -> np.ndarray:
    """The checkpoint's model applied to (B, L, A) data-unit contexts, built without evaluate's code."""
    import torch
    from omegaconf import OmegaConf

    from heatforecast.training import build_model
    from heatforecast.training.checkpoints import load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    model = build_model(OmegaConf.create(ckpt["hyper_parameters"]["config"]), contexts.shape[-1])
    model.load_state_dict({k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")})
    factor = ckpt["hyper_parameters"]["scale_factor"]
    with torch.no_grad():
        return (model.eval()(torch.from_numpy(contexts / factor).float()) * factor).numpy()


def test_load_forecaster_forecasts_the_frames_after_a_context(trained: Path) -> None:
    from heatforecast.training import load_forecaster

    ckpt_path = trained / "checkpoints" / "last.ckpt"
    module = load_forecaster(ckpt_path)
    contexts = make_synthetic(n_series=2, n_steps=8, n_bins=37, seed=5)
    batch, single = module.forecast(contexts), module.forecast(contexts[1])
    assert batch.shape == (2, 4, 37) and single.shape == (4, 37) and not module.training
    np.testing.assert_allclose(batch.numpy(), forecast_by_hand(ckpt_path, contexts), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single.numpy(), batch[1].numpy(), rtol=1e-6, atol=1e-7)
    frozen = contexts[1].copy()
    frozen.flags.writeable = False  # as pandas 3 hands out a frame's values, or a memory-mapped .npy
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # was: torch's "The given NumPy array is not writable"
        torch.testing.assert_close(module.forecast(frozen), single)
    table = pd.DataFrame(contexts[1], columns=[str(a) for a in range(37)])  # the last rows of a file
    torch.testing.assert_close(module.forecast(table), single)  # was: "could not determine the shape"
    # Rows as a data file holds them: one series, a time column (taken in its order), angle names.
    rows = table.assign(series="a", time=np.arange(8.0))[::-1].reset_index(drop=True)
    torch.testing.assert_close(module.forecast(rows[["series", "time", *table.columns]]), single)
    bad_tables = {
        "frames hold rows of 2 series (a, b); expected the last frames of one": rows.assign(
            series=["a", "b"] * 4
        ),
        "values; expected numbers or date-times (pd.to_datetime": rows.assign(  # str or object
            time=[f"{h}:00" for h in range(8, 16)]
        ),
        "frames' columns name 37 angles, 1..37; expected the model's 37 bins, 0..36 degrees": table.rename(
            columns=lambda c: str(int(c) + 1)
        ),
    }
    for message, frames in bad_tables.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            module.forecast(frames)
    bad = {
        "expected (8, 37) or (B, 8, 37)": contexts[:, 1:],
        "expected (8, 37) or (B, 8, 37): the last 8": contexts[..., :36],
        "NaN or inf": np.where(contexts > 0.5, np.nan, contexts),
        "negative values": -contexts - 1,
        "values beyond float32's range (+-3.4e+38)": contexts.astype(np.float64) * 1e300,  # was: "NaN or inf"
        "NaN or inf; expected finite values": np.full_like(contexts, np.inf),
    }
    for message, frames in bad.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            module.forecast(frames)


def test_future_forecast_needs_a_context_per_series(trained: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "last.ckpt"
    write_heatmaps(tmp_path / "short.npy", make_synthetic(n_series=1, n_steps=7, n_bins=37), np.arange(37.0))
    data = ["data=file", f"data.path={tmp_path / 'short.npy'}", "data.context_len=8", "data.horizon=4"]
    done = evaluate(tmp_path / "a", f"ckpt_path={ckpt}", "predict=future", *data)
    assert done.returncode != 0
    assert "series '0' has 7 steps; expected at least context_len = 8" in done.stderr


def test_evaluate_checks_the_keys_of_new_data_and_added_settings(trained: Path, tmp_path: Path) -> None:
    ckpt = f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"
    data = ["data=file", f"data.path={tmp_path / 'x.npy'}", "+data.split_at_gap=true"]
    with hydra_job("evaluate", ckpt, *data) as cfg:
        with pytest.raises(ConfigError, match="data.split_at_gap: heatforecast.data.FileData takes no such"):
            run_evaluate(cfg)
    with hydra_job("evaluate", ckpt, "+splt=val") as cfg:
        with pytest.raises(ConfigError, match=r"\+splt=val: adds a top-level setting 'splt' that nothing"):
            run_evaluate(cfg)


@pytest.mark.parametrize(
    "bad, expected",
    [
        (["predict=maybe"], "predict='maybe'; expected false, true"),
        (["predict=future", "split=test"], "split=test with predict=future; expected no split"),
        (["out=f.txt"], "out=f.txt: expected a .npz, .parquet or .csv file"),
        # was: a traceback once the whole evaluation had run (/proc takes no new folders, even from root)
        (["out=/proc/heatforecast/f.csv"], "out=/proc/heatforecast/f.csv: cannot make its folder /proc/"),
        (["split=vall"], "split=vall; expected test, val, train or all"),
        (["optimized_metric=val/emdd"], "optimized_metric='val/emdd'; expected val/NAME or test/NAME"),
    ],
)
def test_evaluate_options_are_checked_before_any_work(bad: list[str], expected: str) -> None:
    from hydra import compose, initialize_config_dir

    from heatforecast.training import ConfigError
    from heatforecast.training import evaluate as evaluate_in_process

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("evaluate", overrides=["ckpt_path=no/such.ckpt", *bad])
    with pytest.raises(ConfigError, match=re.escape(expected)):
        evaluate_in_process(cfg)  # the missing checkpoint would be the next error


def test_a_forecast_file_named_as_a_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    from heatforecast.training.evaluation import check_out

    (tmp_path / "f.csv").mkdir()  # was: IsADirectoryError once the whole evaluation had run
    with pytest.raises(ConfigError, match=r"f\.csv: a folder; expected a file, e\.g\. out=.*/forecasts\.npz"):
        check_out(tmp_path / "f.csv")
    check_out(tmp_path / "new" / "f.parquet")
    assert (tmp_path / "new").is_dir()  # its folder made, so the write at the end cannot fail on it


def test_a_checkpoint_saved_before_runs_kept_the_linear_reference_gets_the_runs_own(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    kept = {key: ckpt["state_dict"].pop(key) for key in ("linear.weight", "linear.bias")}
    torch.save(ckpt, tmp_path / "old.ckpt")
    refitted = load_checkpoint(tmp_path / "old.ckpt")["state_dict"]
    for key, value in kept.items():  # fitted again to the train split of the data it was trained on
        torch.testing.assert_close(refitted[key], value)
    assert "old.ckpt: saved before runs kept the linear reference; fitted it to" in capsys.readouterr().out


def test_a_checkpoint_with_the_panels_own_angles_loads(trained: Path, tmp_path: Path) -> None:
    # Saved before 2026-11-28, a checkpoint held a copy of the angles per metric panel (val and test),
    # and none for train_eval, added later: loading it stopped with "Missing key(s)".
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    assert not [key for key in ckpt["state_dict"] if key.startswith("metrics.")]  # no longer stored
    for split in ("val", "test"):
        ckpt["state_dict"][f"metrics.{split}.angles"] = ckpt["state_dict"]["angles"].clone()
    torch.save(ckpt, tmp_path / "old.ckpt")
    old, new = (
        restore_forecaster(load_checkpoint(path))
        for path in (tmp_path / "old.ckpt", trained / "checkpoints" / "last.ckpt")
    )
    frames = torch.rand(2, old.hparams.config["data"]["context_len"], len(old.angles))
    torch.testing.assert_close(old.forecast(frames), new.forecast(frames))
    torch.testing.assert_close(old.metrics["train_eval"].angles, new.angles)


def test_settings_evaluate_would_ignore_are_refused(trained: Path, tmp_path: Path) -> None:
    # The model, loss and training settings are the checkpoint's: loss=kl used to score with emd silently.
    ckpt = f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"
    with hydra_job("evaluate", ckpt, "split=val", "loss=kl", f"paths.output_dir={tmp_path}") as cfg:
        with pytest.raises(ConfigError) as info:
            run_evaluate(cfg)
    assert str(info.value) == (
        "loss=kl: evaluate.py takes the model, loss and training settings from the checkpoint, so "
        "this would be ignored; expected settings of ckpt_path, split, predict, out, optimized_metric, "
        "peaks, data, paths only"
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("key", ["peaks", "predict", "optimized_metric", "data"])  # Hydra refuses ~ of a null
def test_a_setting_evaluate_reads_deleted_with_a_tilde_is_refused(
    trained: Path, tmp_path: Path, key: str
) -> None:
    # ~peaks: a traceback for a checkpoint from before the settings, and ignored for a newer one.
    ckpt = f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"
    with hydra_job("evaluate", ckpt, f"~{key}", f"paths.output_dir={tmp_path}") as cfg:
        with pytest.raises(ConfigError, match=rf"^{key} is not set \(deleted with ~{key}\?\)"):
            run_evaluate(cfg)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "override", ["data.augment.flip=0.5", "data.batch_size=8", "data.train_eval=0.5", "data.drop_last=true"]
)
def test_data_settings_only_training_reads_are_refused(trained: Path, tmp_path: Path, override: str) -> None:
    # evaluate.py scores every window in order and unaugmented: a mirrored or subsampled score was asked
    # for and would not have happened.
    ckpt = f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"
    with hydra_job("evaluate", ckpt, override, f"paths.output_dir={tmp_path}") as cfg:
        with pytest.raises(ConfigError) as info:
            run_evaluate(cfg)
    name = override.split("=")[0].split(".")[1]
    assert str(info.value).startswith(f"data.{name}: a training setting, which evaluate.py would ignore")
    assert not list(tmp_path.iterdir())


def test_a_run_on_a_relative_path_evaluates_and_resumes_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checkpoint kept data.path as typed, relative to where training ran: evaluate.py run from
    # another folder stopped with "data/sample.csv: no such file".
    monkeypatch.chdir(ROOT)
    data = ["data=file", "data.path=data/sample.csv"]
    run(tiny_config(tmp_path / "run", *data))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    stored = load_checkpoint(last)["hyper_parameters"]["config"]["data"]["path"]
    assert stored == str(ROOT / "data" / "sample.csv")
    (tmp_path / "run" / "metrics.json").unlink()  # cut short after its last checkpoint: not finished
    run(tiny_config(tmp_path / "run", *data, "ckpt_path=last"))  # the same relative path resumes
    assert (tmp_path / "run" / "metrics.json").is_file()
    monkeypatch.chdir(tmp_path)
    with hydra_job("evaluate", f"ckpt_path={last}", f"paths.output_dir={tmp_path / 'eval'}") as cfg:
        result = run_evaluate(cfg)
    assert result["data"] == stored and result["split"] == "test"


def test_training_data_that_moved_is_asked_for_and_then_known_by_its_series(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "a.csv").write_bytes((ROOT / "data" / "sample.csv").read_bytes())
    run(tiny_config(tmp_path / "run", "data=file", f"data.path={tmp_path / 'old' / 'a.csv'}"))
    (tmp_path / "old").rename(tmp_path / "new")
    ckpt, out = f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}", f"paths.output_dir={tmp_path}"
    with hydra_job("evaluate", ckpt, out) as cfg:  # was: "old/a.csv: no such file"
        with pytest.raises(
            CheckpointError, match=r"trained on .*old/a\.csv, which is not there now; expected data"
        ):
            run_evaluate(cfg)
    with hydra_job("evaluate", ckpt, out, f"data.path={tmp_path / 'new' / 'a.csv'}") as cfg:
        assert run_evaluate(cfg)["split"] == "test"  # the same series under a new name


def data_for(trained: DictConfig, *overrides: str) -> tuple[DictConfig, bool]:
    typed = with_file_settings(list(overrides), CONF)  # as evaluate.py rewrites its command line
    with initialize_config_dir(str(CONF), version_base="1.3"):  # as inside evaluate.py: initialised
        cfg = compose("evaluate", ["ckpt_path=x.ckpt", *typed])
        return evaluation_data(cfg, trained, typed, "x.ckpt")


def test_evaluation_data_is_the_checkpoints_unless_the_command_names_other_data() -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        trained = compose("train", ["experiment=smoke", "data.circular=true", "data.generator.n_bins=36",
                                    "data.bin_width=10"]).data  # fmt: skip
    assert data_for(trained) == (trained, False)
    # A loader setting changes the checkpoint's own data config: still its test split.
    data, other = data_for(trained, "data.eval_batch_size=7")
    assert not other and data.eval_batch_size == 7 and data.generator == trained.generator
    # Another generator seed: other series, from the checkpoint's generator otherwise.
    data, other = data_for(trained, "data.generator.seed=3")
    assert other and data.generator.seed == 3 and data.generator.n_bins == 36
    # Another data option: its config, with the windows and grid the model was trained on.
    data, other = data_for(trained, "data=file", "data.path=new.csv")
    assert other and data._target_ == "heatforecast.data.FileData" and data.path == "new.csv"
    assert [data[k] for k in WINDOW_KEYS] == [trained[k] for k in WINDOW_KEYS]
    # data.path alone (DESIGN.md's `evaluate.py ckpt_path=PATH data.path=FILE`) is data=file's config,
    # with the command's other data settings; Hydra refused it ("Key 'path' is not in struct").
    alone, other = data_for(trained, "data.path=new.csv", "+data.max_gap=null")
    assert other and alone == OmegaConf.merge(data, {"max_gap": None})
    synthetic, other = data_for(trained, "data=synthetic")  # reads no file: has no path
    assert other and synthetic._target_ == trained._target_ and "path" not in synthetic
    # A file setting on an option that reads no file: heatforecast's message, not Hydra's "Could not
    # override 'data.path'" (which suggests the + that then leads to this one).
    with pytest.raises(ConfigError, match=r"^data\.path: heatforecast\.data\.SyntheticData takes no such"):
        data_for(trained, "data=synthetic", "data.path=new.csv")
    # data=file without a path: FileData was built without one ("missing 1 required positional argument").
    with pytest.raises(ConfigError, match=r"^data\.path is required and not set \(\?\?\? in its config"):
        data_for(trained, "data=file")
    with pytest.raises(
        CheckpointError, match="trained with data.horizon=4; this evaluation has data.horizon=6"
    ):
        data_for(trained, "data=file", "data.path=new.csv", "data.horizon=6")
    data, other = data_for(trained, "data.splits=[0.5,0.25,0.25]")
    assert not other and list(data.splits) == [0.5, 0.25, 0.25]
    with pytest.raises(ConfigError, match=r"^data\.generator\.noise_floor=inf: expected a finite number"):
        data_for(trained, "data.generator.noise_floor=inf")  # was: taken, generating inf frames


def test_the_training_series_are_scored_on_their_test_split_under_any_name(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # A file holding the series the model was trained on (a copy, or the file named again) counted as
    # other data: every window was scored, the training windows included.
    training = json.loads((trained / "metrics.json").read_text())
    ckpt = f"ckpt_path={training['best_checkpoint']}"
    stored = OmegaConf.create(
        load_checkpoint(trained / "checkpoints" / "last.ckpt")["hyper_parameters"]["config"]
    )
    own = instantiate(stored.data).load()  # the generated series the run trained on
    write_heatmaps(tmp_path / "copy.npy", np.stack(own.series), own.angles)

    def scored(*overrides: str) -> dict:
        with hydra_job("evaluate", ckpt, f"paths.output_dir={tmp_path / 'out'}", *overrides) as cfg:
            return run_evaluate(cfg)

    copy = scored("data=file", f"data.path={tmp_path / 'copy.npy'}")
    said = capsys.readouterr().out
    assert copy["split"] == "test" and "holds the series the model was trained on" in said
    assert f"\nwritten to {tmp_path / 'out'}: metrics.json, per_series.csv, figures" in said
    for name, value in training["model"]["test"].items():  # the training run's own test windows
        assert copy["model"]["test"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    assert scored("data=file", f"data.path={tmp_path / 'copy.npy'}", "split=all")["split"] == "all"
    assert "\nall windows           model  persistence" in capsys.readouterr().out  # not "test metric"
    # One training series beside a new one: all windows, and a note naming the one.
    new = make_synthetic(n_series=1, n_steps=90, n_bins=37, seed=9)[0]
    write_heatmaps(tmp_path / "mixed.npy", np.stack([own.series[1], new]), own.angles)
    assert scored("data=file", f"data.path={tmp_path / 'mixed.npy'}")["split"] == "all"
    assert "the model was trained on 1 of the 2 series in" in capsys.readouterr().out
    # Other splits of the training data may reach into the steps it was trained on: said, not refused.
    assert scored("data.splits=[0.5,0.25,0.25]")["split"] == "test"
    assert "the scored split may hold steps the model was trained on" in capsys.readouterr().out
    # The checkpoint's own data is its data, though generated elsewhere its last bits may differ.
    elsewhere = torch.load(training["best_checkpoint"], weights_only=True)
    elsewhere["hyper_parameters"]["data_fingerprints"] = ["0" * 16] * 3
    torch.save(elsewhere, tmp_path / "elsewhere.ckpt")
    ckpt = f"ckpt_path={tmp_path / 'elsewhere.ckpt'}"
    assert scored()["split"] == "test"


def test_evaluate_scores_ospa_with_the_run_s_peak_settings_and_the_command_s(
    trained: Path, tmp_path: Path
) -> None:
    # ospa_deg is comparable only on one set of peak settings: a checkpoint is scored with its run's
    # (the defaults for a run made before they existed), each peaks.KEY on the command replacing one.
    last = trained / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["hyper_parameters"]["config"]["peaks"]["cutoff_deg"] = 10.0  # a run with another cutoff
    torch.save(ckpt, tmp_path / "cutoff_10.ckpt")
    del ckpt["hyper_parameters"]["config"]["peaks"]  # a run from before the settings
    torch.save(ckpt, tmp_path / "before.ckpt")
    scored = {}
    for name, path, extra in (
        ("own", last, []),
        ("before", tmp_path / "before.ckpt", []),
        ("command", last, ["peaks.cutoff_deg=10"]),
        ("run and command", tmp_path / "cutoff_10.ckpt", ["peaks.within_db=6"]),
    ):
        out = f"paths.output_dir={tmp_path / name.replace(' ', '_')}"
        with hydra_job("evaluate", f"ckpt_path={path}", *extra, out) as cfg:
            result = run_evaluate(cfg)
        scored[name] = (result["peaks"], result["model"]["test"]["ospa_deg"])
    training = json.loads((trained / "metrics.json").read_text())
    assert scored["own"] == scored["before"] == (training["peaks"], training["model"]["test"]["ospa_deg"])
    assert training["peaks"] == dataclasses.asdict(DEFAULT_PEAKS)
    assert scored["command"][0] == dataclasses.asdict(PeakSettings(cutoff_deg=10.0))
    assert scored["run and command"][0] == dataclasses.asdict(PeakSettings(within_db=6.0, cutoff_deg=10.0))
    assert scored["command"][1] < scored["own"][1]  # a cheaper miss
    bad = f"paths.output_dir={tmp_path / 'bad'}"
    with hydra_job("evaluate", f"ckpt_path={last}", "peaks.max_count=9", bad) as cfg:
        with pytest.raises(InstantiationException, match=r"peaks.max_count=9; expected a whole number 1..8"):
            run_evaluate(cfg)
    assert not (tmp_path / "bad").exists()
