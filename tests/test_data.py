"""Data: synthetic generator, file round trips, validation messages, leak-free windows, scaler."""

from __future__ import annotations

import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from heatforecast.data import (
    DataError,
    FileData,
    Heatmaps,
    Scaler,
    SyntheticData,
    make_synthetic,
    make_windows,
    read_heatmaps,
    write_heatmaps,
)

SMALL = dict(n_series=3, n_steps=120, n_bins=37, seed=3)


def small_array() -> np.ndarray:
    return make_synthetic(**SMALL)


def test_synthetic_is_deterministic_sparse_and_moving() -> None:
    a, b = make_synthetic(**SMALL), make_synthetic(**SMALL)
    assert a.shape == (3, 120, 37) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, make_synthetic(**{**SMALL, "seed": 4}))
    assert (a == 0).mean() > 0.2 and a.min() >= 0  # thresholded: many exact zeros
    big = make_synthetic(n_series=4, n_steps=200, seed=0)
    peaks = big.argmax(-1)
    assert np.abs(np.diff(peaks, axis=1)).mean() > 0.5  # peaks move
    db = make_synthetic(**SMALL, scale="db")
    assert db.min() < 0 and np.isfinite(db).all()
    # No flat frame in the default data (README, Metrics): peak_err_deg has a peak to find in each.
    for frames in (make_synthetic(), make_synthetic(scale="db")):
        assert (frames.max(-1) > frames.min(-1)).all()


def test_circular_synthetic_sources_cross_360_and_need_a_full_circle() -> None:
    one_source = dict(n_series=2, n_steps=300, n_bins=360, max_sources=1, death_rate=0.0, noise_floor=1e-6)
    for circular in (False, True):
        peak = make_synthetic(**one_source, circular=circular, seed=1).argmax(-1)
        jumps = np.abs(np.diff(peak, axis=1))  # degrees the peak moves per step, 1-degree bins
        # On a line the source turns back at the edges; on a circle it goes from 359 to 0.
        assert (jumps > 300).any() == circular and (jumps[jumps <= 300] <= 3).all()
    dm = SyntheticData(generator=SMALL, context_len=6, horizon=3, circular=True)
    with pytest.raises(DataError, match="data.circular=true but its 37 bins of 1 degrees cover 37 degrees"):
        dm.setup()


def test_a_full_circle_read_as_a_line_gets_a_note(capsys: pytest.CaptureFixture) -> None:
    full = dict(SMALL, n_bins=36)  # bins of 10 degrees: 0..350
    for circular in (False, True):
        SyntheticData(generator=full, context_len=6, horizon=3, bin_width=10.0, circular=circular).setup()
        note = capsys.readouterr().err
        assert (
            "cover 360 degrees, read as a line" in note and "take 350 and 0 degrees as" in note
        ) != circular
    SyntheticData(generator=SMALL, context_len=6, horizon=3).setup()  # 37 bins: 0..36, not a circle
    assert "note" not in capsys.readouterr().err


def test_make_synthetic_script_writes_the_generator_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    script = str(Path(__file__).resolve().parents[1] / "scripts" / "make_synthetic.py")
    small = dict(n_series=2, n_steps=40, n_bins=36, bin_width=10.0, seed=5)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in small.items()]
    for circular, flag in ((True, ["--circular"]), (False, [])):
        out = tmp_path / f"{circular}.npy"
        monkeypatch.setattr(sys, "argv", [script, str(out), *args, *flag])
        runpy.run_path(script, run_name="__main__")  # as `python scripts/make_synthetic.py ...` runs it
        np.testing.assert_array_equal(np.load(out), make_synthetic(**small, circular=circular))
    monkeypatch.setattr(sys, "argv", [script, str(tmp_path / "x.txt")])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(script, run_name="__main__")
    assert info.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1] == (  # argparse's
        f"make_synthetic.py: error: {tmp_path / 'x.txt'}: unknown file type '.txt'; expected .csv (or "
        ".csv.gz, .csv.bz2, .csv.xz, .csv.zip), .parquet, .npy or .npz"
    )
    # A new folder is made; one that cannot be (/proc takes none, even from root) was a traceback.
    monkeypatch.setattr(sys, "argv", [script, str(tmp_path / "new" / "x.npy"), *args])
    runpy.run_path(script, run_name="__main__")
    assert (tmp_path / "new" / "x.npy").is_file()
    monkeypatch.setattr(sys, "argv", [script, "/proc/heatforecast/x.npy", *args])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(script, run_name="__main__")
    assert info.value.code == 2 and "error: [Errno 2] No such file or directory: '/proc/heatforecast'" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npy", ".npz", ".csv.gz", ".CSV.BZ2", ".csv.zip"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    array = small_array()
    angles = 100 + np.arange(37) * 0.0625  # 100.0625: seven digits, which names written with :g cut
    path = tmp_path / f"heat{suffix}"
    write_heatmaps(path, array, angles)
    data = read_heatmaps(path, bin_width=0.0625, angle_start=100)
    assert data.ids == ["0", "1", "2"]
    np.testing.assert_array_equal(np.stack(data.series), array)
    np.testing.assert_array_equal(data.angles, angles)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npy", ".npz"])
def test_what_a_file_reads_into_is_writable(tmp_path: Path, suffix: str) -> None:
    # Half-degree bins: names "0.5" read as a float column, which pandas 3 hands out read-only, and
    # torch.from_numpy then warned on every CSV run ("The given NumPy array is not writable").
    path = tmp_path / f"heat{suffix}"
    write_heatmaps(path, small_array(), np.arange(37) * 0.5)
    data = read_heatmaps(path, bin_width=0.5)
    assert data.angles.flags.writeable and all(s.flags.writeable for s in data.series)
    if suffix in (".csv", ".parquet"):
        frame = two_series()
        frame.to_csv(tmp_path / "t.csv", index=False)
        frame.to_parquet(tmp_path / "t.parquet", index=False)
        data = read_heatmaps(tmp_path / f"t{suffix}")
        assert data.times is not None and all(t.flags.writeable for t in data.times)


def two_series() -> pd.DataFrame:
    """Two interleaved series, b and a, of two frames each, out of time order in the file."""
    return pd.DataFrame(
        {"series": ["b", "a", "b", "a"], "time": [2, 5, 1, 4], "0": [1.0, 2.0, 3.0, 4.0], "1": [0.0] * 4}
    )


def test_time_column_orders_rows_and_series_are_kept_apart(tmp_path: Path) -> None:
    frame = two_series()
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    data = read_heatmaps(path)
    assert data.ids == ["b", "a"]
    np.testing.assert_array_equal(data.series[0][:, 0], [3.0, 1.0])
    np.testing.assert_array_equal(data.series[1][:, 0], [4.0, 2.0])
    # Ids as written: read as numbers, "007" and "7" were one series, named "7".
    frame.assign(series=frame["series"].map({"a": "007", "b": "7"})).to_csv(path, index=False)
    assert read_heatmaps(path).ids == ["7", "007"]


def test_a_parquet_frame_indexed_by_series_and_time_keeps_them(tmp_path: Path) -> None:
    # pandas writes the index into Parquet and read_parquet restores it as the index, not as columns:
    # the two series were read as one, in file order, without times.
    frame = two_series()
    frame.set_index(["series", "time"]).to_parquet(tmp_path / "indexed.parquet")
    data = read_heatmaps(tmp_path / "indexed.parquet")
    assert data.ids == ["b", "a"]
    np.testing.assert_array_equal(data.series[0][:, 0], [3.0, 1.0])
    np.testing.assert_array_equal(data.times[1], [4, 5])
    frame.query("series == 'b'").drop(columns="series").set_index("time").to_parquet(tmp_path / "t.parquet")
    by_time = read_heatmaps(tmp_path / "t.parquet")
    np.testing.assert_array_equal(by_time.times[0], [1, 2])
    np.testing.assert_array_equal(by_time.series[0][:, 0], [3.0, 1.0])


def frames_at(times: list | np.ndarray) -> pd.DataFrame:
    """A two-bin table whose bin "0" holds each row's position in the file."""
    n = len(times)
    return pd.DataFrame({"time": times, "0": np.arange(n, dtype=float), "1": np.zeros(n)})


def test_date_time_text_is_ordered_in_time_not_as_text(tmp_path: Path) -> None:
    # As text, "10:00+02:00" sorts after "09:00Z"; in time it is 08:00 UTC, the earlier frame.
    times = ["2026-01-31T09:00:00Z", "2026-01-31T10:00:00+02:00", "2026-01-31T09:30:00Z"]
    frames_at(times).to_csv(tmp_path / "t.csv", index=False)
    data = read_heatmaps(tmp_path / "t.csv")
    np.testing.assert_array_equal(data.series[0][:, 0], [1.0, 0.0, 2.0])
    assert data.times[0].dtype == np.dtype("datetime64[ns]")
    assert str(data.times[0][0]) == "2026-01-31T08:00:00.000000000"  # in UTC


def test_time_types_are_kept_exact(tmp_path: Path) -> None:
    # Epoch nanoseconds one apart: as float64 they would collapse into duplicates.
    epoch_ns = 1_790_000_000_000_000_000 + np.array([2, 0, 1])
    frames_at(epoch_ns).to_parquet(tmp_path / "ns.parquet", index=False)
    data = read_heatmaps(tmp_path / "ns.parquet")
    np.testing.assert_array_equal(data.times[0], np.sort(epoch_ns))
    local = pd.date_range("2026-03-29 00:00", periods=4, freq="h", tz="Europe/Berlin")  # DST at 02:00
    frames_at(local).to_parquet(tmp_path / "tz.parquet", index=False)
    utc = read_heatmaps(tmp_path / "tz.parquet").times[0]
    np.testing.assert_array_equal(np.diff(utc), np.timedelta64(3600, "s"))  # 4 hours, no jump at 02:00


def test_gaps_stop_unless_max_gap_allows_them_and_jitter_passes(tmp_path: Path) -> None:
    jitter = frames_at(10.0 * np.arange(20) + np.tile([0.0, 1.5, -2.0, 0.5], 5))
    jitter.to_csv(tmp_path / "jitter.csv", index=False)
    assert len(read_heatmaps(tmp_path / "jitter.csv").series[0]) == 20  # steps 8 to 13.5 s: no gap
    gap = frames_at(np.r_[0:10, 25:35])
    gap.to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(DataError, match=r"time jumps from 9 \(row 9\) to 25 \(row 10\), 16 times"):
        read_heatmaps(tmp_path / "gap.csv")
    assert len(read_heatmaps(tmp_path / "gap.csv", max_gap=None).series[0]) == 20
    assert len(read_heatmaps(tmp_path / "gap.csv", max_gap=20).series[0]) == 20
    with pytest.raises(DataError, match=r"data.max_gap=1; expected a number above 1"):
        FileData(path=str(tmp_path / "gap.csv"), max_gap=1)
    with pytest.raises(DataError, match=r"split_at_gaps=true with data.max_gap=null"):
        FileData(path=str(tmp_path / "gap.csv"), max_gap=None, split_at_gaps=True)


def test_split_at_gaps_cuts_series_into_parts(tmp_path: Path) -> None:
    # Series "a": frames 0-11, a gap, 20-31, a gap, 40-44; series "b": no gap, keeps its name.
    a = frames_at(np.r_[0:12, 20:32, 40:45]).assign(series="a")
    b = frames_at(np.arange(15)).assign(series="b")
    pd.concat([f.sample(frac=1.0, random_state=0) for f in (a, b)]).to_csv(tmp_path / "g.csv", index=False)
    data = read_heatmaps(tmp_path / "g.csv", split_at_gaps=True)
    assert data.ids == ["a#1", "a#2", "a#3", "b"]
    assert [t.tolist() for t in data.times[:3]] == [list(range(12)), list(range(20, 32)), list(range(40, 45))]
    np.testing.assert_array_equal(data.series[1][:, 0], np.arange(12, 24))  # a's rows of frames 20-31
    short = FileData(path=str(tmp_path / "g.csv"), split_at_gaps=True, context_len=4, horizon=2)
    with pytest.raises(DataError, match=r"series 'a#3' has 5 steps; expected at least"):
        short.setup()  # a part too short for a window stops like any short series


def test_time_of_gives_file_times_and_continues_past_the_end(tmp_path: Path) -> None:
    times = np.array(["2026-01-31T12:00:00", "2026-01-31T12:00:10", "2026-01-31T12:00:21"], "datetime64[ns]")
    frames_at(times).to_parquet(tmp_path / "t.parquet", index=False)
    data = read_heatmaps(tmp_path / "t.parquet")
    got = data.time_of(np.zeros(4, dtype=int), np.array([0, 2, 3, 5]))
    seconds = np.array([0, 21, 31.5, 52.5]) * 1e9  # beyond the last frame: the median step, 10.5 s
    np.testing.assert_array_equal(got, times[0] + seconds.astype("timedelta64[ns]"))
    plain = Heatmaps(data.series, data.ids, data.angles)  # a file without a time column
    np.testing.assert_array_equal(plain.time_of(np.zeros(2, dtype=int), np.array([1, 7])), [1, 7])


def test_a_folder_or_pattern_reads_every_file_as_one_data_set(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "sub").mkdir()
    write_heatmaps(tmp_path / "a.csv", small_array()[:2], np.arange(37.0))
    write_heatmaps(tmp_path / "sub" / "b.parquet", small_array()[2:], np.arange(37.0))
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "notes.txt.gz").write_bytes(b"")  # compressed, but no CSV
    data = FileData(path=str(tmp_path / "**" / "*"), context_len=8, horizon=4)
    data.setup()  # every heatmap file, subfolders too; not notes.txt
    assert data.heatmaps.ids == ["a.csv:0", "a.csv:1", "sub/b.parquet:0"]
    (tmp_path / "sub" / "b.parquet").rename(tmp_path / "sub" / "b.csv.gz")  # no CSV inside: refused
    with pytest.raises(DataError, match=r"b\.csv\.gz: cannot be read as a table"):
        FileData(path=str(tmp_path / "**" / "*"), context_len=8, horizon=4).setup()
    write_heatmaps(tmp_path / "sub" / "b.csv.gz", small_array()[2:], np.arange(37.0))
    data = FileData(path=str(tmp_path / "**" / "*"), context_len=8, horizon=4)
    data.setup()  # a compressed CSV among them
    assert data.heatmaps.ids == ["a.csv:0", "a.csv:1", "sub/b.csv.gz:0"]
    (tmp_path / "sub" / "b.csv.gz").rename(tmp_path / "sub" / "b.parquet")
    np.testing.assert_array_equal(np.stack(data.heatmaps.series), small_array())
    assert data.lengths == [120, 120, 120]
    write_heatmaps(tmp_path / "c.npy", small_array()[:1], np.arange(37.0))
    with pytest.raises(DataError, match=r"c\.npy: no time column, unlike .*a\.csv \(numeric times\)"):
        FileData(path=str(tmp_path), context_len=8, horizon=4).setup()  # the folder: a.csv and c.npy
    (tmp_path / "a.csv").unlink()
    folder = FileData(path=str(tmp_path), context_len=8, horizon=4)
    capsys.readouterr()
    folder.setup()
    assert folder.heatmaps.ids == ["0"]  # c.npy alone (sub/ is not read): its own ids, as before
    # What the folder leaves out is said, not silently dropped.
    assert capsys.readouterr().err.startswith(
        f"note: data.path={tmp_path} reads the 1 heatmap file(s) in that folder, not the 1 in its "
        f"subfolders (sub/b.parquet); data.path='{tmp_path}/**/*' reads them all"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: matches no .* file$"):  # nothing below it either
        FileData(path=str(tmp_path / "empty"), context_len=8, horizon=4).setup()
    (tmp_path / "c.npy").unlink()
    with pytest.raises(
        DataError, match=r"matches no .* file; its subfolders hold 1 \(data\.path='.*/\*\*/\*'"
    ):
        FileData(path=str(tmp_path), context_len=8, horizon=4).setup()
    write_heatmaps(tmp_path / "c.npy", small_array()[:1], np.arange(37.0))
    write_heatmaps(tmp_path / "wide.npy", make_synthetic(n_series=1, n_steps=50, n_bins=45), np.arange(45.0))
    with pytest.raises(
        DataError, match=r"wide\.npy: 45 angle bins \(0\.\.44\); expected the bins of .*c\.npy"
    ):
        FileData(path=str(tmp_path), context_len=8, horizon=4).setup()
    with pytest.raises(
        DataError,
        match=r"data\.path=.*\*\.h5: matches no \.csv \(or \.csv\.gz, .*\), \.parquet, \.npy or \.npz file",
    ):
        FileData(path=str(tmp_path / "*.h5"), context_len=8, horizon=4).setup()


def test_integer_and_float_times_of_several_files_mix_as_floats(tmp_path: Path) -> None:
    frames_at(np.arange(5)).to_csv(tmp_path / "a.csv", index=False)
    frames_at(np.arange(5) + 0.5).to_csv(tmp_path / "b.csv", index=False)
    data = FileData(path=str(tmp_path), context_len=2, horizon=1)
    data.setup()
    assert [t.dtype for t in data.heatmaps.times] == [np.float64, np.float64]
    np.testing.assert_array_equal(data.heatmaps.times[1], np.arange(5) + 0.5)


def test_windows_never_leak_between_splits_or_series() -> None:
    lengths, L, H = [100, 77, 64], 8, 5
    windows = make_windows(lengths, L, H, stride=1, splits=(0.7, 0.15, 0.15))
    offsets = np.cumsum([0, *lengths[:-1]])
    targets = {}
    for name, w in windows.items():
        assert len(w) > 0
        rows = set()
        for start, series, time in zip(w.starts.tolist(), w.series.tolist(), w.time.tolist()):
            local = start - offsets[series]
            assert 0 <= local and local + L + H <= lengths[series]  # within its series
            assert time == local + L  # the target starts right after the context
            rows |= {(series, t) for t in range(time, time + H)}
        targets[name] = rows
    assert not targets["train"] & targets["val"]
    assert not targets["train"] & targets["test"]
    assert not targets["val"] & targets["test"]
    # Targets fall in their chronological split.
    for series, t in targets["train"]:
        assert t < round(lengths[series] * 0.7)
    for series, t in targets["test"]:
        assert t >= round(lengths[series] * 0.85)


def test_batches_are_the_windows_they_claim(tmp_path: Path) -> None:
    dm = SyntheticData(generator=SMALL, context_len=6, horizon=3, batch_size=16)
    dm.setup()
    x, y, series, time = next(iter(dm.train_dataloader()))
    raw = dm.heatmaps.series
    for i in range(len(x)):
        s, t = int(series[i]), int(time[i])
        expected = torch.from_numpy(raw[s][t - 6 : t + 3]) / dm.scaler.factor
        torch.testing.assert_close(torch.cat([x[i], y[i]]), expected)
    val = list(dm.val_dataloader())
    assert sum(len(b[0]) for b in val) == len(dm.windows["val"])  # last partial batch included
    order = torch.cat([b[3] + 1000 * b[2] for b in val])
    assert torch.equal(order, torch.sort(order).values)  # val in order


def test_train_eval_scores_an_even_spread_of_train_windows_in_order_and_unaugmented() -> None:
    dm = SyntheticData(generator=SMALL, context_len=6, horizon=3, train_eval=0.25, augment={"flip": 1.0})
    dm.setup()
    val, seen = dm.val_dataloader()  # the val split, then the train windows
    train, chosen = dm.windows["train"], dm.windows["train_eval"]
    assert len(chosen) == round(0.25 * len(train)) and len(val.windows) == len(dm.windows["val"])
    where = torch.searchsorted(train.starts, chosen.starts)  # their places among the train windows
    assert torch.equal(train.starts[where], chosen.starts)
    assert where[0] == 0 and where[-1] == len(train) - 1  # from the first to the last, evenly
    step = (len(train) - 1) / (len(chosen) - 1)
    assert set(where.diff().tolist()) <= {math.floor(step), math.ceil(step)}
    assert torch.equal(chosen.series, train.series[where]) and torch.equal(chosen.time, train.time[where])
    x, y, series, time = (torch.cat(parts) for parts in zip(*seen, strict=True))
    assert torch.equal(series, chosen.series) and torch.equal(time, chosen.time)  # in order
    for i in (0, len(x) - 1):  # as recorded: flip=1.0 mirrors every window that trains
        s, t = int(series[i]), int(time[i])
        expected = torch.from_numpy(dm.heatmaps.series[s][t - 6 : t + 3]) / dm.scaler.factor
        torch.testing.assert_close(torch.cat([x[i], y[i]]), expected)
    off = SyntheticData(generator=SMALL, context_len=6, horizon=3)  # the default: val alone
    off.setup()
    assert not isinstance(off.val_dataloader(), list) and len(off.windows["train_eval"]) == 0


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_a_train_eval_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match=rf"data.train_eval={share}; expected a fraction in \[0, 1\]"):
        SyntheticData(generator=SMALL, train_eval=share)


def test_predict_batches_hold_each_series_last_context(tmp_path: Path) -> None:
    lengths = (9, 40, 25)  # the first series is only one context long: too short for a window
    table = pd.concat(
        pd.DataFrame(make_synthetic(n_series=1, n_steps=n, n_bins=5, seed=i)[0]).assign(series=f"s{i}")
        for i, n in enumerate(lengths)
    )
    table.to_csv(tmp_path / "recent.csv", index=False)
    dm = FileData(path=str(tmp_path / "recent.csv"), context_len=9, horizon=4, eval_batch_size=2)
    dm.scaler = Scaler(2.0)  # as evaluate.py sets the checkpoint's
    too_short = "series 's0' has 9 steps; expected at least context_len \\+ horizon = 13"
    with pytest.raises(DataError, match=too_short):
        dm.setup()
    dm.setup("predict")
    with pytest.raises(DataError, match="series 's0' has 9 steps"):  # loaded once, checked every time
        dm.setup("fit")
    batches = list(dm.predict_dataloader())
    assert [len(b[0]) for b in batches] == [2, 1]
    x, _, series, time = (torch.cat(parts) for parts in zip(*batches, strict=True))
    assert series.tolist() == [0, 1, 2] and time.tolist() == list(lengths)
    for i, values in enumerate(dm.heatmaps.series):
        torch.testing.assert_close(x[i], torch.from_numpy(values[-9:]).float() / 2.0)


def test_every_split_shares_one_copy_of_the_data_on_a_device() -> None:
    dm = SyntheticData(generator=SMALL, context_len=6, horizon=3)
    dm.setup()
    meta = torch.device("meta")  # a device without memory stands in for a GPU
    loaders = [dm.loader(split, meta) for split in ("train", "val", "test")]
    assert loaders[0].values.device == meta
    assert all(loader.values is loaders[0].values for loader in loaders)
    assert dm.loader("train", torch.device("cpu")).values is dm.values


def test_drop_last_keeps_train_batches_full_and_each_epoch_drops_other_windows() -> None:
    dm = SyntheticData(generator=SMALL, context_len=6, horizon=3, batch_size=16, drop_last=True)
    dm.setup()
    n = len(dm.windows["train"])
    assert n % 16  # this data leaves a partial batch to drop
    loader = dm.train_dataloader()
    epochs = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader) == n // 16
        assert all(len(b[0]) == 16 for b in batches)
        epochs.append({(int(s), int(t)) for b in batches for s, t in zip(b[2], b[3])})
    assert epochs[0] != epochs[1]  # the dropped windows differ between epochs
    assert sum(len(b[0]) for b in dm.val_dataloader()) == len(dm.windows["val"])  # val keeps all


def test_drop_last_with_fewer_windows_than_a_batch_says_so() -> None:
    dm = SyntheticData(generator=SMALL, context_len=6, horizon=3, batch_size=10_000, drop_last=True)
    dm.setup()
    with pytest.raises(DataError, match=r"drop_last=true but the train split holds \d+ windows"):
        dm.train_dataloader()


def test_scaler_sees_train_only_and_round_trips(tmp_path: Path) -> None:
    array = small_array()
    write_heatmaps(tmp_path / "a.npy", array, np.arange(37.0))
    changed = array.copy()
    changed[:, 100:] *= 50  # beyond the train split (70 % of 120 = 84 steps)
    write_heatmaps(tmp_path / "b.npy", changed, np.arange(37.0))
    dms = [FileData(path=str(tmp_path / n), context_len=6, horizon=3) for n in ("a.npy", "b.npy")]
    for dm in dms:
        dm.setup()
    assert dms[0].scaler.factor == dms[1].scaler.factor > 0
    x = torch.rand(5, 37)
    torch.testing.assert_close(dms[0].scaler.inverse_transform(dms[0].scaler.transform(x)), x)
    assert torch.equal(dms[0].scaler.transform(torch.zeros(3)), torch.zeros(3))


def test_same_seed_same_first_batch() -> None:
    def first(seed: int) -> torch.Tensor:
        dm = SyntheticData(generator=SMALL, context_len=6, horizon=3, seed=seed)
        dm.setup()
        return next(iter(dm.train_dataloader()))[0]

    assert torch.equal(first(0), first(0))
    assert not torch.equal(first(0), first(1))


def augmented_epochs(epochs: int = 2, **augment: object) -> list[list[tuple[torch.Tensor, ...]]]:
    """Each epoch's train batches without augmentation and with it (same data, seed and order)."""
    circular = bool(augment.pop("circular", False))
    generator = dict(SMALL, n_bins=36) if circular else SMALL
    out = []
    for options in ({}, augment):
        dm = SyntheticData(
            generator=generator, context_len=6, horizon=3, batch_size=16, augment=options,
            bin_width=10.0 if circular else 1.0, circular=circular,
        )  # fmt: skip
        dm.setup()
        loader = dm.train_dataloader()
        batches = []
        for epoch in range(epochs):
            loader.sampler.set_epoch(epoch)
            batches.append(list(loader))
        out.append(batches)
    return out


def test_flip_mirrors_whole_windows_on_a_coin_drawn_per_window_and_epoch() -> None:
    plain, flipped = augmented_epochs(flip=0.5)
    mirrored = []
    for plain_epoch, flipped_epoch in zip(plain, flipped, strict=True):
        coins = []
        for (x, y, s, t), (fx, fy, fs, ft) in zip(plain_epoch, flipped_epoch, strict=True):
            assert torch.equal(s, fs) and torch.equal(t, ft)  # the same windows, in the same order
            window, augmented = torch.cat([x, y], 1), torch.cat([fx, fy], 1)
            same = (augmented == window).flatten(1).all(1)
            mirror = (augmented == window.flip(-1)).flatten(1).all(1)
            symmetric = (window == window.flip(-1)).flatten(1).all(1)
            assert (same | mirror).all()  # context and target mirrored together, or left alone
            coins.append(mirror[~symmetric])
        mirrored.append(torch.cat(coins))
    for coins in mirrored:
        assert 0.4 < coins.float().mean() < 0.6
    assert not torch.equal(mirrored[0], mirrored[1])  # a fresh draw each epoch
    assert torch.equal(augmented_epochs(flip=0.5)[1][1][0][0], flipped[1][0][0])  # seeded


def test_circular_flip_and_rotate_are_the_circle_symmetries() -> None:
    plain, turned = augmented_epochs(epochs=1, circular=True, flip=0.5, rotate=True)
    x, y, *_ = plain[0][0]
    tx, ty, *_ = turned[0][0]
    window, augmented = torch.cat([x, y], 1), torch.cat([tx, ty], 1)
    found = []
    for w, a in zip(window, augmented, strict=True):
        mirror = w[:, (-torch.arange(36)) % 36]  # about 0 degrees
        matches = [
            (f, k) for f, v in ((0, w), (1, mirror)) for k in range(36) if torch.equal(a, v.roll(k, -1))
        ]
        assert matches, "each window is a turn of itself or of its mirror image"
        found.append(matches[0])
    assert len({k for _, k in found}) > 5 and {f for f, _ in found} == {0, 1}


def test_augment_refuses_what_cannot_work_and_never_touches_val_or_test() -> None:
    with pytest.raises(ValueError, match=r"data.augment.flip=1.5; expected a probability in \[0, 1\]"):
        SyntheticData(generator=SMALL, augment={"flip": 1.5})
    with pytest.raises(ValueError, match="data.augment.rotate=true needs data.circular=true"):
        SyntheticData(generator=SMALL, augment={"rotate": True})
    batches = {}
    for flip in (0.0, 1.0):
        dm = SyntheticData(generator=SMALL, context_len=6, horizon=3, augment={"flip": flip})
        dm.setup()
        batches[flip] = [b[0] for split in ("val", "test") for b in dm.loader(split)]
        batches[flip].append(next(iter(dm.train_dataloader()))[0])
    for plain, flipped in zip(batches[0.0][:-1], batches[1.0][:-1], strict=True):
        assert torch.equal(plain, flipped)
    assert torch.equal(batches[1.0][-1], batches[0.0][-1].flip(-1))  # flip=1: every train window


def test_a_resumed_epoch_draws_the_same_mirrored_windows() -> None:
    dm = SyntheticData(generator=SMALL, context_len=6, horizon=3, batch_size=16, augment={"flip": 0.5})
    dm.setup()
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    whole = list(loader)
    resumed = dm.train_dataloader()
    resumed.load_state_dict({"epoch": 1, "batches_done": 2})  # as Lightning restores a mid-epoch checkpoint
    rest = list(resumed)
    assert len(rest) == len(whole) - 2
    for a, b in zip(whole[2:], rest, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
