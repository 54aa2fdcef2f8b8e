"""Data: synthetic generator, file round trips, validation messages, leak-free windows, scaler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from heatforecast.data import (
    DataError,
    FileData,
    SyntheticData,
    make_synthetic,
    make_windows,
    read_heatmaps,
    write_heatmaps,
)

SMALL = dict(n_series=3, n_steps=120, n_bins=37, seed=3)
FORUM = Path(__file__).resolve().parents[2] / "shared" / "examples" / "forum_vector.csv"


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


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npy", ".npz"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    array = small_array()
    angles = np.arange(37) * 5.0
    path = tmp_path / f"heat{suffix}"
    write_heatmaps(path, array, angles)
    data = read_heatmaps(path, bin_width=5.0)
    assert data.ids == ["0", "1", "2"]
    np.testing.assert_array_equal(np.stack(data.series), array)
    np.testing.assert_array_equal(data.angles, angles)


def test_time_column_orders_rows_and_series_are_kept_apart(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "series": ["b", "a", "b", "a"],
            "time": [2, 5, 1, 4],
            "0": [1.0, 2.0, 3.0, 4.0],
            "1": [0.0, 0.0, 0.0, 0.0],
        }
    )
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    data = read_heatmaps(path)
    assert data.ids == ["b", "a"]
    np.testing.assert_array_equal(data.series[0][:, 0], [3.0, 1.0])
    np.testing.assert_array_equal(data.series[1][:, 0], [4.0, 2.0])


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
    "text": (
        lambda f: f.assign(**{"3": ["x"] + list(f["3"].iloc[1:])}),
        r"column '3', row 0.*not a number",
    ),
    "duplicate time": (
        lambda f: f.assign(time=[0, 0] + list(range(2, len(f)))),
        r"duplicate time 0",
    ),
    "angles": (lambda f: f.rename(columns={"3": "5"}), r"angles 0\.\.5.*data\.bin_width=1"),
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
    with pytest.raises(DataError, match="no such file"):
        read_heatmaps(tmp_path / "missing.csv")
    (tmp_path / "d.txt").write_text("1")
    with pytest.raises(DataError, match="unknown file type"):
        read_heatmaps(tmp_path / "d.txt")


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
    with pytest.raises(DataError, match=r"series '0' has 1 steps; expected at least .* = 6"):
        dm.setup()


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
