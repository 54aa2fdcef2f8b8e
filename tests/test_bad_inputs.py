"""Bad input a user can cause: every malformed data case, bad configs, unusable checkpoints and output
folders. Each case asserts on the message (what, where, what was expected) and that nothing half-done
was left behind."""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException
from omegaconf import OmegaConf

from heatforecast.data import DataError, FileData, SyntheticData, read_heatmaps
from heatforecast.models import Drift
from heatforecast.training import (
    USER_ERRORS,
    CheckpointError,
    ConfigError,
    error_message,
    evaluate,
    run,
    unknown_setting,
    unquoted_value,
    with_file_settings,
    with_implied_settings,
)
from heatforecast.training.checkpoints import load_checkpoint
from heatforecast.training.config import check_config, check_keys
from heatforecast.training.fit import TRAIN_READS

from .conftest import CONF, ROOT, TINY, hydra_job, tiny_config

FORUM = Path(__file__).resolve().parents[2] / "shared" / "examples" / "forum_vector.csv"


def write_frame(tmp_path: Path, frame: pd.DataFrame, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def good_frame(n: int = 50, bins: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.random((n, bins)), columns=[str(a) for a in range(bins)])


BAD_CASES = {
    "nan": (lambda f: f.assign(**{"2": f["2"].where(f.index != 7)}), r"row 7, column '2'.*NaN"),
    "inf": (lambda f: f.assign(**{"1": f["1"].replace(f["1"].iloc[3], np.inf)}), r"row 3.*inf"),
    "negative": (lambda f: f.assign(**{"0": -f["0"]}), r"negative value.*data\.scale=linear"),
    "beyond float32": (  # finite as read (float64), inf once in float32
        lambda f: f.assign(**{"1": np.where(f.index == 5, 1e39, f["1"])}),
        r"row 5, column '1': value 1e\+39 is beyond float32's range.*divide it by a power of ten",
    ),
    "text": (
        lambda f: f.assign(**{"3": ["x"] + list(f["3"].iloc[1:])}),
        r"column '3', row 0.*not a number",
    ),
    "duplicate time": (
        lambda f: f.assign(time=[0, 0] + list(range(2, len(f)))),
        r"duplicate time 0",
    ),
    "angles": (lambda f: f.rename(columns={"3": "5"}), r"angles 0\.\.5.*data\.bin_width=1"),
    "missing time": (
        lambda f: f.assign(time=np.where(f.index == 4, np.nan, f.index)),
        r"row 4: no time \(empty or NaN\); expected a number or an ISO 8601 date-time",
    ),
    "text time": (  # as text "10:00" sorts before "9:00": no order could be trusted
        lambda f: f.assign(time=[f"{9 + i}:00" for i in range(len(f))]),
        r"row 0: time '9:00' is neither a number nor an ISO 8601 date-time",
    ),
    "number among date-times": (
        lambda f: f.assign(time=[f"2026-01-{1 + i % 28:02d}" if i != 3 else "3" for i in range(len(f))]),
        r"row 3: time '3' is a number among date-times",
    ),
    "missing series id": (
        lambda f: f.assign(series=np.where(f.index == 2, None, "a")),
        r"row 2: no series \(empty or NaN\); expected a series id",
    ),
    "gap in time": (  # frames 20 and 21 are missing
        lambda f: f.assign(time=np.arange(len(f)) + 2 * (np.arange(len(f)) >= 20)),
        r"series '0': time jumps from 19 \(row 19\) to 22 \(row 20\), 3 times the series' median step 1;"
        r".*data\.max_gap=1\.5.*data\.split_at_gaps=true to cut the series there, or data\.max_gap=null",
    ),
}


@pytest.mark.parametrize("case", BAD_CASES)
def test_malformed_tables_name_the_problem(tmp_path: Path, case: str) -> None:
    make_bad, pattern = BAD_CASES[case]
    path = write_frame(tmp_path, make_bad(good_frame()))
    with pytest.raises(DataError, match=pattern) as info:
        read_heatmaps(path)
    assert str(path) in str(info.value)


def test_row_with_extra_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("0,1,2\n1,2,3\n1,2,3,4\n")
    with pytest.raises(DataError, match=r"ragged\.csv: cannot be read as a table.*line 3"):
        read_heatmaps(path)


def test_a_csv_that_is_not_utf8_is_refused_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("time,0°,1°\n0,1,2\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.csv: cannot be read as a table: .*; expected UTF-8 text"):
        read_heatmaps(path)


def test_row_with_missing_fields_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("0,1,2\n1,2,3\n1,2\n")
    with pytest.raises(DataError, match=r"row 1, column '2'.*missing"):
        read_heatmaps(path)


def test_arrays_with_wrong_shape_or_keys_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(DataError, match=r"shape \(2, 3, 4, 5\).*\(T, A\) or \(S, T, A\)"):
        read_heatmaps(tmp_path / "a.npy")
    np.savez(tmp_path / "b.npz", x=np.zeros((5, 4)), y=np.zeros((5, 4)))
    with pytest.raises(DataError, match=r"key 'heatmaps' or exactly one array"):
        read_heatmaps(tmp_path / "b.npz")
    arr = np.ones((2, 60, 4))
    arr[1, 10, 2] = np.nan
    np.save(tmp_path / "c.npy", arr)
    with pytest.raises(DataError, match=r"series 1, step 10, column '2'"):
        read_heatmaps(tmp_path / "c.npy")
    np.save(tmp_path / "iq.npy", np.ones((60, 4)) * (1 + 2j))  # the imaginary part would be cast away
    with pytest.raises(DataError, match=r"iq\.npy: complex values \(complex128\); expected real energy"):
        read_heatmaps(tmp_path / "iq.npy")
    with pytest.raises(DataError, match="no such file"):
        read_heatmaps(tmp_path / "missing.csv")
    (tmp_path / "d.txt").write_text("1")
    with pytest.raises(DataError, match="unknown file type"):
        read_heatmaps(tmp_path / "d.txt")
    for name, shape in (("e.npy", (0, 5)), ("f.npy", (0, 3, 5)), ("g.npy", (2, 0, 5))):  # no frames
        np.save(tmp_path / name, np.zeros(shape))
        with pytest.raises(DataError, match=re.escape(f"{name}: array of shape {shape} holds no frames")):
            read_heatmaps(tmp_path / name)


def test_angle_names_rounded_to_a_few_digits_are_read_as_the_even_grid_they_are(tmp_path: Path) -> None:
    # 65 bins of 2.8125 degrees, named with 6 significant digits (104.062 for 104.0625), as :g writes.
    frame = pd.DataFrame(np.ones((30, 65)), columns=[f"{a:g}" for a in np.arange(65) * 2.8125])
    frame.to_csv(tmp_path / "rounded.csv", index=False)
    with pytest.raises(DataError) as info:
        read_heatmaps(tmp_path / "rounded.csv")
    assert str(info.value).endswith(
        "the file gives the bins angles 0..180 in steps of 2.8125; expected increasing angles starting "
        "at data.angle_start=0 in steps of data.bin_width=1 (to match the file: data.angle_start=0 "
        "data.bin_width=2.8125)"
    )
    assert read_heatmaps(tmp_path / "rounded.csv", bin_width=2.8125).n_bins == 65


def test_an_npz_with_angles_is_read_with_them_checked(tmp_path: Path) -> None:
    heatmaps = np.ones((2, 30, 5))
    np.savez(tmp_path / "ok.npz", heatmaps=heatmaps, angles=np.arange(5.0) * 2 + 10)
    assert read_heatmaps(tmp_path / "ok.npz", bin_width=2, angle_start=10).angles.tolist() == [
        10,
        12,
        14,
        16,
        18,
    ]
    # The file says its bins are half-degree ones: read on the 1-degree default grid, they were ignored.
    np.savez(tmp_path / "half.npz", heatmaps=heatmaps, angles=np.arange(5.0) / 2)
    with pytest.raises(
        DataError,
        match=r"half\.npz: the file gives the bins angles 0\.\.2 in steps of 0\.5; .*\(to match the file: "
        r"data\.angle_start=0 data\.bin_width=0\.5\)$",
    ):
        read_heatmaps(tmp_path / "half.npz")
    np.savez(tmp_path / "short.npz", heatmaps=heatmaps, angles=np.arange(4.0))
    with pytest.raises(
        DataError, match=r"array 'angles' of shape \(4,\) .*expected one angle \(a number\) per"
    ):
        read_heatmaps(tmp_path / "short.npz")
    np.savez(tmp_path / "text.npz", heatmaps=heatmaps, angles=np.array(["N", "NE", "E", "SE", "S"]))
    with pytest.raises(DataError, match=r"array 'angles' of shape \(5,\) and dtype <U2"):
        read_heatmaps(tmp_path / "text.npz")


def test_a_table_without_rows_with_a_repeated_column_or_true_false_bins_is_refused(tmp_path: Path) -> None:
    # The header-only CSV died in pandas ("single positional indexer is out-of-bounds").
    (tmp_path / "empty.csv").write_text("0,1,2\n")
    with pytest.raises(DataError, match=r"empty.csv: no rows; expected one row per time step"):
        read_heatmaps(tmp_path / "empty.csv")
    (tmp_path / "twice.csv").write_text("0,1,1,2\n0.5,1,1,1\n")  # pandas read the second '1' as '1.1'
    with pytest.raises(DataError, match=r"twice.csv: column '1' appears 2 times; expected each once"):
        read_heatmaps(tmp_path / "twice.csv")
    (tmp_path / "flags.csv").write_text("0,1,2\n0.5,True,1\n0.5,False,1\n")
    with pytest.raises(DataError, match=r"column '1', row 0: value True is not a number"):
        read_heatmaps(tmp_path / "flags.csv")


def test_table_columns_that_would_pass_for_bins_are_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame(np.ones((30, 5)), columns=["0", "1", "2", "3", "4"])
    # pandas' default to_csv writes the row index as an unnamed first column: it read as a sixth bin,
    # the row number as energy, with every angle taken from the grid.
    frame.to_csv(tmp_path / "index.csv")
    with pytest.raises(DataError, match=r"index\.csv: column 0 has no name .*index=False"):
        read_heatmaps(tmp_path / "index.csv")
    lines = frame.to_csv(index=False).splitlines()
    (tmp_path / "comma.csv").write_text("".join(f"{line},\n" for line in lines))
    with pytest.raises(DataError, match=r"column 5 has no name .*comma at the end of each line"):
        read_heatmaps(tmp_path / "comma.csv")
    # A misnamed time column among angle names: it read as a bin of energy.
    frame.assign(Time=np.arange(30.0)).to_parquet(tmp_path / "Time.parquet")
    with pytest.raises(DataError, match=r"column 'Time' is neither an angle nor one of series, time"):
        read_heatmaps(tmp_path / "Time.parquet")
    frame.set_index(pd.Index(np.arange(30.0), name="stamp")).to_parquet(tmp_path / "stamp.parquet")
    with pytest.raises(DataError, match=r"column 'stamp' is neither an angle"):  # an index: see test_data
        read_heatmaps(tmp_path / "stamp.parquet")
    frame.to_csv(tmp_path / "semicolon.csv", sep=";", index=False)
    with pytest.raises(DataError, match=r"1 angle-bin columns \(the header holds ';'"):
        read_heatmaps(tmp_path / "semicolon.csv")
    np.savetxt(tmp_path / "savetxt.csv", frame.to_numpy())  # numpy's default: spaces, no header
    with pytest.raises(DataError, match=r"1 angle-bin columns \(the header holds ' '"):
        read_heatmaps(tmp_path / "savetxt.csv")
    frame[frame.columns[::-1]].to_csv(tmp_path / "descending.csv", index=False)
    with pytest.raises(DataError, match=r"gives the bins angles 4\.\.0 .*high to low angle"):
        read_heatmaps(tmp_path / "descending.csv")
    (tmp_path / "headless.csv").write_text("0.5,0.2,0.9\n0.1,0.3,0.4\n")
    with pytest.raises(DataError, match=r"first row names the columns; is it a row of data"):
        read_heatmaps(tmp_path / "headless.csv")
    (tmp_path / "sparse.csv").write_text("0,0.5,0,0\n0.1,0.3,0.4,0\n")  # no header, zeros repeat
    with pytest.raises(
        DataError, match=r"column '0' appears 3 times; expected each once \(a CSV's first row"
    ):
        read_heatmaps(tmp_path / "sparse.csv")
    (tmp_path / "names.csv").write_text("time,series,time,0,1\n0,a,0,1,1\n")
    with pytest.raises(DataError, match=r"column 'time' appears 2 times; expected each once$"):
        read_heatmaps(tmp_path / "names.csv")


@pytest.mark.parametrize("ids, name", [(None, "long.csv"), (["a", "b"], "long.parquet")])
def test_a_long_table_is_refused_with_the_pivot_that_makes_it_a_data_file(
    tmp_path: Path, ids: list[str] | None, name: str
) -> None:
    # One row per (series,) time and angle: it read as two bins, angle and energy, each time repeated.
    wide = {sid: good_frame(30, 4).rename(columns=float) for sid in ids or ["0"]}
    long = pd.concat(
        frame.rename_axis(index="time", columns="angle")
        .stack()
        .rename("energy")
        .reset_index()
        .assign(series=sid)
        for sid, frame in wide.items()
    )
    long = long if ids else long.drop(columns="series")
    path = tmp_path / name
    long.to_parquet(path) if name.endswith(".parquet") else long.to_csv(path, index=False)
    index = ["series", "time"] if ids else "time"
    with pytest.raises(DataError) as info:
        read_heatmaps(path)
    assert str(info.value) == (
        f"{path}: 2 bin columns (angle, energy) and several rows per time: a long table, one row per "
        "time and angle? expected one row per time step and one column per angle bin (pandas: "
        f"table.pivot(index={index!r}, columns=<the angle column>, values=<the energy column>).reset_index())"
    )
    # The pivot the message gives makes a file that reads, with the long table's values.
    long.pivot(index=index, columns="angle", values="energy").reset_index().to_csv(
        tmp_path / "wide.csv", index=False
    )
    heatmaps = read_heatmaps(tmp_path / "wide.csv")
    assert heatmaps.ids == list(wide)
    np.testing.assert_allclose(heatmaps.angles, [0, 1, 2, 3])
    for got, frame in zip(heatmaps.series, wide.values(), strict=True):
        np.testing.assert_allclose(got, frame.to_numpy(dtype=np.float32))


def test_mixed_bin_counts_against_expected_count(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((60, 180)))
    with pytest.raises(DataError, match="180 angle bins.*expected 181"):
        read_heatmaps(tmp_path / "a.npy", n_bins=181)


def test_forum_frame_is_refused_with_clear_messages() -> None:
    if not FORUM.is_file():
        pytest.skip(f"{FORUM} not present")
    with pytest.raises(DataError, match=r"182 angle bins \(angles 0\.\.181\); expected 181"):
        read_heatmaps(FORUM, n_bins=181)
    with pytest.raises(DataError, match=r"negative value -27\.858.*data\.scale=db"):
        read_heatmaps(FORUM)
    data = read_heatmaps(FORUM, scale="db")  # meaningful as dB: 0 is 0 dB
    assert data.n_bins == 182 and data.series[0].shape == (1, 182)
    dm = FileData(path=str(FORUM), scale="db", context_len=4, horizon=2)
    with pytest.raises(DataError, match=r"series '0' has 1 step; expected at least .* = 6"):
        dm.setup()


def test_a_train_split_without_energy_is_refused_naming_the_file(tmp_path: Path) -> None:
    late = np.zeros((2, 100, 6))
    late[:, 80:, 3] = 1.0  # energy only after the train split: no scale to fit
    np.save(tmp_path / "late.npy", late)
    with pytest.raises(DataError, match=r"late\.npy: the train split holds no energy .* first 70% of each"):
        FileData(path=str(tmp_path / "late.npy"), context_len=8, horizon=4).setup()


def test_short_series_and_empty_split_are_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "short.npy", np.ones((2, 12, 5)))
    with pytest.raises(DataError, match=r"short\.npy: series '0' has 12 steps; expected at least"):
        FileData(path=str(tmp_path / "short.npy"), context_len=8, horizon=5).setup()
    np.save(tmp_path / "tight.npy", np.ones((1, 20, 5)))
    tight = FileData(path=str(tmp_path / "tight.npy"), context_len=8, horizon=5)
    tight.setup()  # train windows exist, so the scaler can be fitted
    with pytest.raises(DataError, match=r"tight\.npy: the val split has no window"):
        tight.check_splits()
    with pytest.raises(DataError, match=r"the val split has no window"):
        tight.val_dataloader()
    # Long enough, but no window starts in the test split: the stride is named too.
    np.save(tmp_path / "long.npy", np.ones((1, 200, 5)))
    sparse = FileData(path=str(tmp_path / "long.npy"), context_len=8, horizon=5, stride=150)
    sparse.setup()
    with pytest.raises(DataError, match=r"long\.npy: the test split has no window: .* stride 150; expected"):
        sparse.check_splits()


def train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", "experiment=smoke", f"hydra.run.dir={tmp_path / 'run'}", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def assert_refused(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode != 0
    for fragment in fragments:
        assert fragment in done.stderr, (fragment, done.stderr[-2000:])


def assert_nothing_written(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert not (run_dir / "metrics.json").exists()
    assert not list(run_dir.glob("checkpoints/*.ckpt"))
    assert not list(run_dir.glob("events.out.tfevents.*"))


def test_missing_data_file_stops_before_training(tmp_path: Path) -> None:
    # experiment=smoke (in train()) picks data=tiny, which the implied data=file replaces.
    done = train(tmp_path, f"data.path={tmp_path / 'nope.csv'}")
    assert_refused(done, "note: data.path without a data option: reading it as data=file", "error: ")
    assert "nope.csv: no such file" in done.stderr
    assert "Traceback" not in done.stderr
    assert_nothing_written(tmp_path)


# In-process from here on: the entry point's "error:" line is test_missing_data_file_stops_before_training's.
def test_malformed_file_stops_the_run_naming_row_and_column(tmp_path: Path) -> None:
    frame = good_frame(60)
    frame.loc[12, "2"] = np.nan
    path = write_frame(tmp_path, frame)
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, "data=file", f"data.path={path}", "data.context_len=4")
    with pytest.raises(DataError, match=r"bad.csv: row 12, column '2'.*expected a finite number"):
        run(cfg)
    assert_nothing_written(tmp_path)


def test_horizon_longer_than_the_series_stops_before_training(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=re.escape("series '0' has 90 steps; expected at least context_len + horizon = 208")
    ):
        run(tiny_config(tmp_path / "run", "data.horizon=200"))
    assert_nothing_written(tmp_path)


def test_unknown_key_and_unknown_option_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException, match="Could not override 'trainer.max_epoch'"):
        tiny_config(tmp_path, "trainer.max_epoch=3")  # Hydra's; the scripts name the key first (below)
    with pytest.raises(MissingConfigException, match="Could not find 'model/transformr'") as info:
        tiny_config(tmp_path, "model=transformr")
    assert "transformer" in str(info.value) and "persistence" in str(info.value)
    # No close name, so no guess (difflib's default cutoff offered 'patch').
    with pytest.raises(
        ConfigError, match=r"model.depth: \S+TransformerForecaster takes no such setting; expected"
    ):
        run(tiny_config(tmp_path, "+model.depth=4"))


def test_a_key_the_config_lacks_is_named_with_the_nearest_and_the_part_s_keys() -> None:
    # Hydra said "Key 'max_epoch' is not in struct" and suggested +trainer.max_epoch=3: for a typo,
    # a second error later (check_keys), after torch had loaded.
    said = unknown_setting(["-m", "seed=1,2", "trainer.max_epoch=3"], CONF, "train")  # a sweep: its first job
    assert said.startswith(
        "trainer.max_epoch=3: trainer has no setting 'max_epoch' (did you mean 'max_epochs'?)"
    )
    keys = said.split("expected one of: ")[1].split(";")[0].split(", ")
    assert "max_epochs" in keys and "devices" in keys and "_target_" not in keys
    assert said.endswith("; to add another argument of lightning.pytorch.Trainer: +trainer.max_epoch=3")
    # No _target_ to take an added key: no advice to add it (check_added_settings would refuse it).
    said = unknown_setting(["seeed=3"], CONF, "train")
    assert said.startswith("seeed=3: the config has no setting 'seeed' (did you mean 'seed'?)")
    assert "hydra" not in said and "+" not in said
    said = unknown_setting(["ckpt_path=x.ckpt", "data.contxt_len=8"], CONF, "evaluate")
    assert said.startswith(
        "data.contxt_len=8: data has no setting 'contxt_len' (did you mean 'context_len'?)"
    )
    # A multirun's jobs take the sweeper's params first (experiment=loss_study sweeps the losses): its
    # first job here trains loss=emd, which has mass_weight; the sweep's own config (the default
    # loss, a combo) has none, and is composed without the swept values, as Hydra composes it.
    study = ["-m", "experiment=loss_study", "hydra.sweeper.params.loss=emd", "seed=1,2"]
    assert unknown_setting([*study, "loss.mass_weight=0,0.1"], CONF, "train") is None
    said = unknown_setting([*study, "loss.mass_wieght=0,0.1"], CONF, "train")
    assert said.startswith("loss.mass_wieght=0,0.1: loss has no setting 'mass_wieght' (did you mean")
    # A key of the swept options that the default one lacks: Hydra composes the multirun's own config
    # with the default loss first; ++ sets the key there and in each job.
    said = unknown_setting(["-m", "loss=emd,cramer", "loss.circular=true"], CONF, "train")
    assert said.endswith("then each job with its own: ++loss.circular=true sets the key in both")
    assert unknown_setting(["-m", "loss=emd,cramer", "++loss.circular=true"], CONF, "train") is None
    assert "++" not in unknown_setting(["-m", "seed=1,2", "loss.circular=true"], CONF, "train")
    assert unknown_setting(["loss=mse", "loss.mass_weight=1"], CONF, "train").startswith(
        "loss.mass_weight=1: loss has no setting 'mass_weight'; conf/ sets none there; to add another "
        "argument of heatforecast.losses.MSE: +loss.mass_weight=1"
    )
    # An option the group lacks, in any job of a sweep: Hydra met `emdd` only when its job started.
    said = unknown_setting(["-m", "loss=emd,emdd", "seed=1,2"], CONF, "train")
    assert said.startswith(
        "loss=emd,emdd: loss has no option 'emdd' (did you mean 'emd'?); expected one of: "
    )
    said = unknown_setting(["hparams_search=optuna_lin"], CONF, "train")
    assert said.endswith("(did you mean 'optuna_linear'?); expected one of: optuna, optuna_linear")
    # What Hydra takes, or refuses for another reason (it says why), passes.
    for fine in (
        ["trainer.max_epochs=3"],
        ["+trainer.fast_dev_run=true"],
        ["-m", "model=transformer,linear,persistence,drift", "seed=range(1,4)"],
        ["--cfg", "job"],
    ):
        assert unknown_setting(fine, CONF, "train") is None, fine


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # Instantiated late in a run (by configure_optimizers), after the data is read.
        (
            ["+optim.optimizer.betaz=[0.9,0.99]"],
            "optim.optimizer.betaz: torch.optim.AdamW takes no such setting (did you mean 'betas'?)",
        ),
        (
            ["+trainer.max_epoch=3"],
            "trainer.max_epoch: lightning.pytorch.Trainer takes no such setting (did you mean 'max_epochs'?)",
        ),
        (
            ["loss=combo", "+loss.terms.emd.circ=true"],
            "loss.terms.emd.circ: heatforecast.losses.EMD takes no such setting (did you mean 'circular'?)",
        ),
        (
            ["+callbacks.early_stopping.patiense=2"],
            "callbacks.early_stopping.patiense: lightning.pytorch.callbacks.EarlyStopping takes no such "
            "setting (did you mean 'patience'?)",
        ),
        # TensorBoardLogger hands its **kwargs on to SummaryWriter, which refuses them only when built.
        (
            ["+logger.flush_sec=5"],
            "logger.flush_sec: lightning.pytorch.loggers.TensorBoardLogger takes no such setting "
            "(did you mean 'flush_secs'?)",
        ),
        (
            ["+peaks.distance=2"],
            "peaks.distance: heatforecast.metrics.PeakSettings takes no such setting (did you mean "
            "'distance_deg'?)",
        ),
        # A synthetic data setting under data=file.
        (
            ["data=file", "data.path=x.csv", "+data.generator.n_series=3"],
            "data.generator: heatforecast.data.Fil",
        ),
    ],
)
def test_keys_a_target_does_not_take_stop_the_run_before_anything_is_built(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    cfg = tiny_config(tmp_path, *overrides)
    key = message.split(":")[0]
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        run(cfg)
    assert f"add ~{key} to the command" in str(info.value)
    assert not list(tmp_path.iterdir())  # refused before the logger or the data were made


@pytest.mark.parametrize("key", ["model._target_", "loss._target_", "optim.optimizer._target_"])
def test_a_target_that_cannot_be_imported_is_refused_naming_its_key(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{key}=heatforecast.Nope: cannot be imported")):
        run(tiny_config(tmp_path, f"{key}=heatforecast.Nope"))
    assert not list(tmp_path.iterdir())


def test_a_module_of_one_s_own_that_is_not_found_is_named_with_where_it_must_be(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run(tiny_config(tmp_path, "model._target_=my_models.Net"))
    message = str(info.value)
    assert "model._target_=my_models.Net: cannot be imported (no module named 'my_models': " in message
    assert "PYTHONPATH" in message
    with pytest.raises(ConfigError) as info:  # the package is there, the name in it is not: no hint
        run(tiny_config(tmp_path, "model._target_=heatforecast.models.Net"))
    assert "cannot be imported; expected the dotted path" in str(info.value)


def test_a_model_whose_forecast_has_another_shape_stops_at_its_first_batch(tmp_path: Path) -> None:
    # model.horizon=3 against data.horizon=4 (experiment=smoke): MSE would broadcast and train on.
    with pytest.raises(USER_ERRORS) as info:
        run(tiny_config(tmp_path, "loss=mse", "model.horizon=3", model="linear"))
    assert re.fullmatch(
        r"model heatforecast\.models\.DLinear turned a context of shape \(\d+, 8, 37\) into \(\d+, 3, 37\); "
        r"expected a forecast of shape \(\d+, 4, 37\): data\.horizon=4 frames of the data's 37 bins",
        error_message(info.value),
    )
    assert not list(tmp_path.glob("checkpoints/*.ckpt"))  # before any training step


def test_a_configured_class_s_own_message_comes_first_on_one_line(tmp_path: Path) -> None:
    with pytest.raises(InstantiationException) as info:  # Hydra's: "Error in call to target ...", repr
        run(tiny_config(tmp_path, "data.stride=0"))
    assert error_message(info.value) == (  # what train.py and evaluate.py print after "error: "
        "data.stride must be >= 1; got 0 (raised by heatforecast.data.datamodule.SyntheticData)"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # `seeed=3` fails in Hydra, which suggests `+seeed=3`; that must not train with seed 0 in silence.
        (
            "+seeed=3",
            "+seeed=3: adds a top-level setting 'seeed' that nothing reads (did you mean 'seed'?); "
            "expected one of: ckpt",
        ),
        (
            "+optim.schedular=null",
            "adds a setting 'schedular' to optim that nothing reads (did you mean 'scheduler'?); expected",
        ),
    ],
)
def test_a_setting_added_with_plus_that_nothing_reads_is_refused(
    tmp_path: Path, override: str, message: str
) -> None:
    with hydra_job("train", "experiment=smoke", f"paths.output_dir={tmp_path}", override) as cfg:
        with pytest.raises(ConfigError, match=re.escape(message)):
            run(cfg)
    assert not list(tmp_path.iterdir())


def test_a_setting_added_with_plus_for_an_interpolation_is_taken(tmp_path: Path) -> None:
    # A variable that another value refers to is read, by that interpolation.
    data = ["data=file", "data.path=${paths.data_dir}/sample.csv"]
    with hydra_job(
        "train", *TINY, f"paths.output_dir={tmp_path}", f"+paths.data_dir={ROOT / 'data'}", *data
    ) as cfg:
        run(cfg)
    assert (tmp_path / "metrics.json").is_file()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=ten", "trainer.max_epochs='ten': lightning.pytorch.Trainer expects an integer"),
        ("model.d_model=abc", "model.d_model='abc': heatforecast.models.TransformerForecaster expects an"),
        ("model.d_model=true", "model.d_model=True: heatforecast.models.TransformerForecaster expects an"),
        ("data.batch_size=64.5", "data.batch_size=64.5: heatforecast.data.SyntheticData expects an integer"),
        ("data.scale=3", "data.scale=3: heatforecast.data.SyntheticData expects text"),
        ("seed=abc", "seed='abc': expected an integer"),
    ],
)
def test_values_of_the_wrong_type_are_refused_before_anything_is_built(
    tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(tiny_config(tmp_path, override))
    assert not list(tmp_path.iterdir())


def test_values_of_the_annotated_type_pass() -> None:
    # An integer where a number is expected, null where the annotation allows it, interpolations.
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["model.dropout=0", "trainer.max_epochs=null", "loss=emd"])
    assert OmegaConf.to_container(cfg.loss)["bin_width"] == "${data.bin_width}"  # checked unresolved
    check_keys(cfg)  # raises ConfigError for a value that its target's annotation does not allow


def test_a_precision_that_converts_the_batches_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    # 64-true died in the first validation step (a float32 reference against double weights), the
    # half '-true' ones in the losses' backward; bf16-true would also have scored bf16-rounded targets.
    for precision in ("64-true", "64", "bf16-true", "16-true"):
        with pytest.raises(
            ConfigError, match=rf"trainer.precision={precision}; expected 32-true, bf16-mixed"
        ):
            run(tiny_config(tmp_path, f"trainer.precision={precision}"))
    assert not list(tmp_path.iterdir())
    for precision in ("32-true", "32", "bf16-mixed", "16-mixed"):
        check_config(tiny_config(tmp_path, f"trainer.precision={precision}"))


def test_a_fused_optimizer_with_16_mixed_clipping_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    # Lightning raised this pairing at the first optimizer step, after the data and model were built.
    # accelerator=auto may take a GPU; on a CPU Lightning runs 16-mixed as bf16-mixed, where the module
    # clips.
    fused = ("trainer.accelerator=auto", "optim.optimizer.fused=true", "trainer.gradient_clip_val=0.5")
    for precision in ("16-mixed", "16"):
        with pytest.raises(
            ConfigError,
            match=rf"optim.optimizer.fused=true with trainer.precision={precision} and "
            r"trainer.gradient_clip_val=0.5: .* expected trainer.precision=bf16-mixed",
        ):
            run(tiny_config(tmp_path, f"trainer.precision={precision}", *fused))
    assert not list(tmp_path.iterdir())
    for allowed in (
        "trainer.precision=bf16-mixed",
        "trainer.gradient_clip_val=0",
        "optim.optimizer.fused=null",
        "trainer.accelerator=cpu",
    ):
        check_config(tiny_config(tmp_path, "trainer.precision=16-mixed", *fused, allowed))


@pytest.mark.skipif(torch.cuda.is_available(), reason="what a machine without a GPU says")
def test_a_gpu_trainer_without_a_gpu_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu .* sees no CUDA GPU; on this machine use"):
        run(tiny_config(tmp_path, "trainer=gpu"))
    assert not list(tmp_path.iterdir())


def test_skipping_bad_batches_under_ddp_is_refused_before_training(tmp_path: Path) -> None:
    # Lightning cannot skip a step on one rank while the others train it; the run would crash mid-fit.
    ddp = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true")
    with pytest.raises(ConfigError, match=r"nonfinite=skip with 2 DDP processes; expected nonfinite=raise"):
        run(tiny_config(tmp_path, *ddp, "nonfinite=skip"))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork"])
def test_ddp_through_multiprocessing_is_refused_before_training(tmp_path: Path, strategy: str) -> None:
    # It trains, then dies in summarize(): the panels stay in the spawned processes.
    ddp = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true")
    with pytest.raises(
        ConfigError, match=f"trainer.strategy={strategy}: processes started by multiprocessing"
    ):
        run(tiny_config(tmp_path, *ddp, f"trainer.strategy={strategy}"))
    assert not list(tmp_path.iterdir())


def test_ddp_processes_in_a_local_multirun_are_refused(tmp_path: Path) -> None:
    # Lightning would start rank 1 by running this command line again, i.e. the whole sweep again, in a
    # sweep folder of its own.
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
    cmd = [sys.executable, "train.py", "-m", "experiment=smoke", *ddp, "loss=mse,emd"]
    paths = [f"hydra.sweep.dir={tmp_path / 'sweep'}", f"paths.log_dir={tmp_path / 'logs'}"]
    done = subprocess.run([*cmd, *paths], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "error: trainer.strategy=ddp with 2 processes in a multirun (-m) that runs its jobs here" in (
        done.stderr
    )
    assert "expected one DDP run per command (no -m), or hydra/launcher=slurm" in done.stderr
    assert not list(tmp_path.glob("sweep/*/checkpoints")) and not (tmp_path / "logs").exists()


def test_a_callback_entry_without_a_class_is_refused(tmp_path: Path) -> None:
    # A misspelt callback name adds an entry instead of changing the existing one.
    with pytest.raises(ConfigError, match="callbacks.early_stoping: no _target_; expected a") as info:
        run(tiny_config(tmp_path, "+callbacks.early_stoping.patience=2"))
    assert "early_stopping" in str(info.value)
    assert not list(tmp_path.iterdir())


def test_keys_the_config_tree_sets_are_all_taken() -> None:
    # Every option of every group composes into a config whose keys its targets take.
    for group in (
        "data",
        "model",
        "loss",
        "optim",
        "trainer",
        "logger",
        "callbacks",
        "experiment",
        "hparams_search",
    ):
        for option in sorted(p.stem for p in (CONF / group).glob("[!_]*.yaml")):
            with initialize_config_dir(str(CONF), version_base="1.3"):
                cfg = compose("train", overrides=[f"{group}={option}"])
            check_keys(cfg)  # raises on a key its target does not take


def test_unknown_generator_and_augment_settings_name_the_key() -> None:
    with pytest.raises(DataError, match="data.generator.n_serie: not a setting of make_synthetic; expected"):
        SyntheticData(generator={"n_serie": 3})
    with pytest.raises(DataError) as info:
        SyntheticData(augment={"flipp": 0.5})
    assert str(info.value) == "data.augment.flipp: not a setting of Augment; expected one of: flip, rotate"
    with pytest.raises(DataError, match=r"data.augment.circular: .* \(data.circular sets it\)"):
        SyntheticData(augment={"circular": True})
    with pytest.raises(DataError, match=r"data.generator.scale: .* \(data.scale sets it\)"):
        SyntheticData(generator={"scale": "db"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"generator": {"n_bins": 1}}, "data.generator.n_bins must be >= 2; got 1"),
        ({"generator": {"n_series": 0}}, "data.generator.n_series must be >= 1; got 0"),
        (
            {"generator": {"death_rate": 2.0}},
            "data.generator.death_rate is a probability per source and step",
        ),
        ({"generator": {"noise_floor": 0.0}}, "data.generator.noise_floor must be a finite number > 0"),
        ({"bin_width": -1.0}, "data.bin_width must be a finite number > 0; got -1.0"),
        ({"bin_width": math.inf}, "data.bin_width must be a finite number > 0; got inf"),  # was: overflow
        ({"generator": {"seed": -1}}, "data.generator.seed must be >= 0; got -1"),  # was numpy's, garbled
        # was: numpy's "high - low < 0", an OverflowError, or frames with no zero under a NaN threshold
        ({"generator": {"max_speed": -1.0}}, "data.generator.max_speed must be a finite number >= 0"),
        ({"angle_start": math.nan}, "data.angle_start must be a finite number; got nan"),
        ({"generator": {"threshold": math.nan}}, "data.generator.threshold must be a finite number; got nan"),
        # null (or another type) where a number goes was a TypeError from a comparison
        ({"generator": {"seed": None}}, "data.generator.seed must be a whole number; got None"),
        ({"generator": {"n_bins": 2.5}}, "data.generator.n_bins must be a whole number; got 2.5"),
        ({"generator": {"max_speed": None}}, "data.generator.max_speed must be a number; got None"),
    ],
)
def test_impossible_synthetic_data_settings_name_the_setting(settings: dict, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        SyntheticData(**settings).setup()


@pytest.mark.parametrize(
    ("augment", "message"),
    [
        ({"flip": None}, "data.augment.flip=None; expected a probability in [0, 1]"),  # was a TypeError
        ({"flip": True}, "data.augment.flip=True; expected a probability in [0, 1]"),
        ({"rotate": None}, "data.augment.rotate=None; expected true or false"),  # was taken as false
    ],
)
def test_augment_settings_of_another_type_name_the_setting(augment: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SyntheticData(augment=augment, circular=True)


@pytest.mark.parametrize("splits", [None, 0.5, "0.7,0.15,0.15"])
def test_splits_that_are_no_list_of_fractions_name_the_setting_from_python(splits: object) -> None:
    # The config path refuses them by type first; from Python, null was "'NoneType' object is not iterable".
    with pytest.raises(
        ValueError, match=re.escape(f"data.splits must be 3 positive fractions summing to 1; got {splits}")
    ):
        SyntheticData(splits=splits)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.splits=[0.8,0.3,0.1]", "data.splits must be 3 positive fractions"),
        ("data.scale=log", "data.scale must be 'linear' or 'db'"),
        ("optimized_metric=val/accuracy", "optimized_metric='val/accuracy'"),
        (
            "optimized_metric=test/emd",
            "mass_rel_err, skill_emd, skill_mse; training picks checkpoints and stops on it, which the test "
            "split must not steer",
        ),
        ("model.n_heads=3", "must be divisible by model.n_heads"),
        ("nonfinite=ignore", "nonfinite must be 'raise', 'skip' or 'off'"),
        (
            "val_figure_every=-1",
            "val_figure_every must be a whole number >= 0 (0: no val/forecast figure); got -1",
        ),
        (
            "val_figure_every=often",
            "val_figure_every must be a whole number >= 0 (0: no val/forecast figure); got 'often'",
        ),
        (
            "trainer.limit_val_batches=0",
            "trainer.limit_val_batches=0 turns validation off, but the checkpoint",
        ),
        (
            "trainer.limit_train_batches=0",  # died in OneCycleLR: "Expected positive integer total_steps"
            "trainer.limit_train_batches=0 trains nothing, and the one-cycle schedule",
        ),
        ("trainer.max_steps=0", "trainer.max_steps=0 trains nothing, and the one-cycle schedule"),  # the same
        (
            "trainer.accumulate_grad_batches=0",
            "trainer.accumulate_grad_batches=0; expected >= 1",
        ),  # ZeroDivision
        (
            "trainer.check_val_every_n_epoch=0",
            "trainer.check_val_every_n_epoch=0; expected >= 1",
        ),  # modulo by 0
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1; expected >= 0"),  # trained uphill
        ("trainer.max_epochs=-2", "trainer.max_epochs=-2; expected >= -1"),
        ("trainer.limit_val_batches=-1", "trainer.limit_val_batches=-1 turns validation off"),
        (
            "trainer.max_epochs=-1",  # used to die in OneCycleLR: "Expected positive integer total_steps"
            "trainer.max_epochs=-1 with no trainer.max_steps: the run has no set length",
        ),
        ("data.eval_batch_size=0", "data.eval_batch_size must be >= 1; got 0"),  # was: batch_size, silently
        ("model.d_model=0", "model.d_model must be >= 1; got 0"),  # was: a traceback in torch's init
        ("model.patch=0", "model.patch must be >= 1; got 0"),  # was: "integer modulo by zero"
        ("model.dropout=1", "model.dropout must be in [0, 1); got 1"),
        ("optim.optimizer.lr=-1", "optim: Invalid learning rate: -1"),  # was: a traceback mid-fit
        ("optim.scheduler.pct_start=2", "optim: Expected float between 0 and 1 pct_start, but got 2"),
        (
            "loss.weights.mse=-1",
            "combo loss: weights {'mse': -1}; expected finite numbers >= 0",
        ),  # was: trained
        ("loss.weights.mse=inf", "loss.weights.mse=inf: expected a finite number"),  # was: an inf loss
        ("data=_windows", "data=... names no class to build (no _target_); expected an option of conf/data/"),
        ("compile=fast", "compile='fast'; expected true, false or a mode: default,"),
        ("compile=max-autotune", "compile='max-autotune'; expected true, false or a mode: default,"),
        ("seed=-1", "seed=-1: expected 0..4294967295"),  # was: a traceback from seed_everything
        ("callbacks.early_stopping.patience=-1", "callbacks.early_stopping.patience=-1; expected >= 0"),
        (
            "+callbacks.early_stopping.min_delta=-0.5",
            "callbacks.early_stopping.min_delta=-0.5; expected >= 0",
        ),
        ("data.splits=null", "data.splits=null: heatforecast.data.SyntheticData takes no null there"),
        (
            "optim.optimizer.lr=null",
            "optim.optimizer.lr=null: torch.optim.AdamW takes no null there",
        ),  # TypeError
        ("optimized_metric=null", "optimized_metric=None; expected val/NAME"),  # AttributeError
        ("data=file", "data.path is required and not set"),  # was: omegaconf's MissingMandatoryValue
        # NaN or inf in any setting: an OverflowError from numpy, NaN losses, a schedule gone NaN.
        ("data.angle_start=nan", "data.angle_start=nan: expected a finite number (null where"),
        ("optim.scheduler.pct_start=nan", "optim.scheduler.pct_start=nan: expected a finite number"),
        ("data.splits=[0.7,nan,0.15]", "data.splits[1]=nan: expected a finite number"),
        ("trainer.gradient_clip_val=inf", "trainer.gradient_clip_val=inf: expected a finite number"),
        # ospa_deg's settings: an impossible one, or a matching too large to try every pairing of.
        ("peaks.max_count=9", "peaks.max_count=9; expected a whole number 1..8 (ospa_deg's exact matching"),
        ("peaks.max_count=0", "peaks.max_count=0; expected a whole number 1..8"),
        ("peaks.max_count=2.5", "peaks.max_count=2.5: heatforecast.metrics.PeakSettings expects an integer"),
        ("peaks.distance_deg=-1", "peaks.distance_deg must be a finite number >= 0; got -1"),
        ("peaks.within_db=-3", "peaks.within_db must be a finite number >= 0; got -3"),
        ("peaks.cutoff_deg=0", "peaks.cutoff_deg must be a finite number > 0; got 0"),
        ("peaks.within_db=inf", "peaks.within_db=inf: expected a finite number"),
    ],
)
def test_bad_values_in_config_are_refused_before_training(
    tmp_path: Path, override: str, message: str
) -> None:
    # USER_ERRORS: what train.py prints as one "error:" line (a plain ValueError was a traceback there).
    with pytest.raises(USER_ERRORS, match=re.escape(message)):
        run(tiny_config(tmp_path, override))
    assert not (tmp_path / "metrics.json").exists()
    assert not list(tmp_path.glob("checkpoints/*.ckpt"))


@pytest.mark.parametrize("key", [k for k in TRAIN_READS if k != "ckpt_path"])  # Hydra refuses ~ckpt_path
def test_a_setting_the_run_reads_deleted_with_a_tilde_is_refused_naming_it(tmp_path: Path, key: str) -> None:
    # Each was an omegaconf traceback somewhere in the run (~seed: "Key 'seed' is not in struct"). Without
    # experiment=smoke, which sets keys of data and trainer again (next test).
    with hydra_job("train", f"~{key}", f"hydra.run.dir={tmp_path / 'run'}") as cfg:
        with pytest.raises(ConfigError, match=rf"^{key} is not set \(deleted with ~{key}\?\), and the run"):
            run(cfg)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["peaks=null"], "peaks=None; expected ospa_deg's settings (conf/train.yaml's peaks:)"),
        # experiment=smoke sets keys of these groups, which stay without their classes.
        (
            ["~trainer"],
            "trainer=... names no class to build (no _target_); expected an option of conf/trainer/",
        ),
        (["~data"], "data=... names no class to build (no _target_); expected an option of conf/data/"),
        (
            ["~data.context_len"],
            "model.context_len: Interpolation key 'data.context_len' not found, which it is set from "
            "(deleted with ~?)",
        ),
        # Lightning ran such a fit without a step: the untrained model's panels, as if trained.
        (
            ["optim.optimizer=null"],
            "optim.optimizer=null, but heatforecast.models.TransformerForecaster has weights to train",
        ),
    ],
)
def test_a_node_left_without_its_settings_or_class_is_refused(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(tiny_config(tmp_path, *overrides))
    assert not list(tmp_path.iterdir())


def test_a_drift_lag_longer_than_the_context_is_refused(tmp_path: Path) -> None:
    # It was shortened to the context silently (context_len - 1 steps; one frame: persistence).
    with pytest.raises(USER_ERRORS, match=r"model.lag=8 .* data.context_len=8 frames does not hold"):
        run(tiny_config(tmp_path, "model.lag=8", model="drift"))  # experiment=smoke: context_len 8
    assert not (tmp_path / "metrics.json").exists()
    for speed in (math.nan, math.inf):  # was: "cannot convert float NaN to integer", or an OverflowError
        with pytest.raises(ValueError, match=f"model.max_speed a finite number > 0; got 2, {speed}"):
            Drift(horizon=4, max_speed=speed)  # the config's own check names such settings first


def test_data_path_without_a_data_option_is_read_as_data_file() -> None:
    # The default data is generated: Hydra's refusal ("Key 'path' is not in struct") named no way out.
    assert with_implied_settings(["-m", "data.path=a.csv", "loss=mse,emd"]) == [
        "-m", "data.path=a.csv", "data=file", "loss=mse,emd"
    ]  # fmt: skip
    # Not at the end, where argparse would take it after --cfg's value and refuse the command.
    assert with_implied_settings(["data.path=a.csv", "--cfg", "job"]) == [
        "data.path=a.csv",
        "data=file",
        "--cfg",
        "job",
    ]
    assert with_implied_settings(["data=file", "data.path=a.csv"]) == ["data=file", "data.path=a.csv"]
    assert with_implied_settings(["loss=emd"]) == ["loss=emd"]


def test_a_moved_setting_works_under_its_old_name(capsys: pytest.CaptureFixture) -> None:
    # last.ckpt's step interval moved to callbacks.last_checkpoint; the old key was README's, and
    # Hydra's own refusal suggested a "+" that would have set it on the best-checkpoint callback.
    new = "callbacks.last_checkpoint.every_n_train_steps"
    for typed in ("", "+"):
        old = f"{typed}callbacks.model_checkpoint.every_n_train_steps=1,5"
        assert with_implied_settings(["-m", old, "loss=emd"]) == ["-m", f"{new}=1,5", "loss=emd"]
    assert f"note: callbacks.model_checkpoint.every_n_train_steps is now {new}" in capsys.readouterr().err
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train", overrides=with_implied_settings(["callbacks.model_checkpoint.every_n_train_steps=5"])
        )
    assert cfg.callbacks.last_checkpoint.every_n_train_steps == 5
    assert "every_n_train_steps" not in cfg.callbacks.model_checkpoint


def test_evaluate_takes_file_settings_without_a_plus() -> None:
    # evaluate.yaml starts from the default (generated) data: Hydra refused data.max_gap=null with
    # "Key 'max_gap' is not in struct", though the checkpoint's data may be files that have it.
    typed = ["ckpt_path=x.ckpt", "data.path=a.csv", "data.max_gap=null", "data.split_at_gaps=true"]
    args = with_file_settings(typed, CONF)
    assert args == [typed[0], "++data.path=a.csv", "++data.max_gap=null", "++data.split_at_gaps=true"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        data = compose("evaluate", args).data
        assert data.max_gap is None and data.path == "a.csv"
        # No null path in evaluate.yaml hides data=file's required one: its own check names it.
        assert OmegaConf.is_missing(compose("evaluate", ["data=file"]).data, "path")
    for unchanged in (["data.scale=db"], ["~data.max_gap"]):
        assert with_file_settings(unchanged, CONF) == unchanged
    with_file = ["data=file", "data.max_gap=null"]
    assert with_file_settings(with_file, CONF) == ["data=file", "++data.max_gap=null"]
    assert with_file_settings(["+data.max_gap=null"], CONF) == ["++data.max_gap=null"]  # the + Hydra suggests
    # The settings come from conf/data/file.yaml, which must list every setting of FileData's own.
    own = inspect.signature(FileData).parameters.values()
    typed = [f"data.{p.name}=1" for p in own if p.kind != p.VAR_KEYWORD]
    assert len(typed) == 4 and with_file_settings(typed, CONF) == [f"++{a}" for a in typed]


def test_an_unquoted_path_with_an_equals_sign_is_refused_with_the_quoted_form() -> None:
    # Run folders are named by their overrides; Hydra's own message was "mismatched input '='".
    path = "logs/multiruns/x/1_experiment=smoke,loss=emd/checkpoints/last.ckpt"
    done = subprocess.run(
        [sys.executable, "evaluate.py", f"ckpt_path={path}"], cwd=ROOT, capture_output=True, text=True
    )
    assert_refused(done, f"expected the value quoted, as in \"ckpt_path='{path}'\"")
    assert done.stderr.count("\n") == 1
    assert unquoted_value(["-m", "loss=mse,emd", f"ckpt_path='{path}'", "hydra.run.dir=a/b"]) is None


def test_a_launcher_without_multirun_is_refused(tmp_path: Path) -> None:
    # Hydra uses a launcher in a multirun only: hydra/launcher=slurm alone trained on this machine.
    with hydra_job("train", "hydra/launcher=submitit_local", "experiment=smoke") as cfg:
        with pytest.raises(ConfigError, match=r"hydra/launcher=submitit_local without -m: .* would run here"):
            check_config(cfg)
    with hydra_job(
        "train", "hydra/launcher=submitit_local", "experiment=smoke", "hydra.mode=MULTIRUN"
    ) as cfg:
        check_config(cfg)  # raises ConfigError for any setting it refuses


def test_a_new_run_in_a_folder_that_holds_a_run_is_refused(trained: Path) -> None:
    # Lightning would write last-v1.ckpt beside the old last.ckpt, which ckpt_path=last then resumes.
    before = sorted(p.name for p in trained.rglob("*"))
    with pytest.raises(
        ConfigError, match=r"the run folder .* already holds a run \(.*last.ckpt.*metrics.json\)"
    ):
        run(tiny_config(trained, "loss=emd", "data.generator.n_series=3"))
    assert sorted(p.name for p in trained.rglob("*")) == before


def test_output_folder_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    # /proc refuses new folders even to root, unlike a chmod-ed folder.
    cmd = [sys.executable, "train.py", "experiment=smoke", "hydra.run.dir=/proc/heatforecast/run"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert_refused(done, "/proc/heatforecast")


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_checkpoint_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": {"config": {}}, "state_dict": {}, "x": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused: it holds Python objects"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_and_foreign_checkpoints_are_refused(trained: Path, tmp_path: Path) -> None:
    data = (trained / "checkpoints" / "last.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot be read as a checkpoint"):
        load_checkpoint(tmp_path / "cut.ckpt")
    # Files torch.save did not write met its old-pickle reader: a KeyError or IndexError traceback.
    (tmp_path / "a.csv").write_bytes((ROOT / "data" / "sample.csv").read_bytes())
    (tmp_path / "note.ckpt").write_text("hi\n")
    for name in ("a.csv", "note.ckpt"):
        with pytest.raises(CheckpointError, match="a checkpoint .*not written by torch.save"):
            load_checkpoint(tmp_path / name)
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a heatforecast checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.ckpt")
    # Saved before runs kept the linear reference, and trained on a file that is gone: it cannot be fitted.
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    for key in ("linear.weight", "linear.bias"):
        del ckpt["state_dict"][key]
    ckpt["hyper_parameters"]["config"]["data"] = {
        "_target_": "heatforecast.data.FileData",
        "path": "gone.csv",
    }
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="old.ckpt: saved before runs kept the linear .* gone.csv"):
        load_checkpoint(tmp_path / "old.ckpt")


def test_a_missing_checkpoint_path_or_a_run_folder_for_one_is_refused(trained: Path, tmp_path: Path) -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("evaluate")
    with pytest.raises(ConfigError, match="ckpt_path is not set; expected a checkpoint written by train.py"):
        evaluate(cfg)
    # The run's folder instead of a file in it: refused, naming the files it may have meant.
    best = json.loads((trained / "metrics.json").read_text())["best_checkpoint"]
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(trained)
    assert str(info.value).endswith(
        f"a folder; expected a .ckpt file written by train.py, e.g. ckpt_path={best} (the best, whose "
        f"panels metrics.json holds) or ckpt_path={trained / 'checkpoints' / 'last.ckpt'} (the latest)"
    )
    # A sweep's run folder cut short (no metrics.json): the hint is typed as Hydra can read it.
    meant = tmp_path / "1_loss=emd" / "checkpoints" / "last.ckpt"
    meant.parent.mkdir(parents=True)
    meant.touch()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(meant.parents[1])
    assert str(info.value).endswith(f"train.py, e.g. \"ckpt_path='{meant}'\" (the latest)")
    with pytest.raises(CheckpointError, match=re.escape(f"e.g. \"ckpt_path='{meant}'\" (the latest)")):
        load_checkpoint(meant.parent)  # its checkpoints/ folder
