"""Read and write heatmap files (.csv, .parquet, .npy, .npz) with strict validation.

The format is described in data/README.md. Every problem stops with a :class:`DataError` naming the
file, the row/series/column and what was expected; nothing is dropped, filled or reordered silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SUFFIXES = (".csv", ".parquet", ".npy", ".npz")
RESERVED = ("series", "time")


class DataError(ValueError):
    """A data file does not follow the heatmap format."""


@dataclass
class Heatmaps:
    """Series of heatmaps read from one source: ``series[i]`` is an array (T_i, A)."""

    series: list[np.ndarray]
    ids: list[str]
    angles: np.ndarray  # (A,) bin angles in degrees

    @property
    def n_bins(self) -> int:
        return len(self.angles)


def angle_grid(n_bins: int, angle_start: float, bin_width: float) -> np.ndarray:
    return angle_start + bin_width * np.arange(n_bins, dtype=np.float64)


def read_heatmaps(
    path: str | Path,
    scale: str = "linear",
    bin_width: float = 1.0,
    angle_start: float = 0.0,
    n_bins: int | None = None,
) -> Heatmaps:
    """Read and validate a heatmap file. ``n_bins`` (if given) is the bin count the file must have."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected one of {', '.join(SUFFIXES)})")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown file type {suffix!r}; expected one of {SUFFIXES}")
    if suffix in (".csv", ".parquet"):
        data = _read_table(path, bin_width, angle_start)
    else:
        data = _read_array(path, bin_width, angle_start)
    if n_bins is not None and data.n_bins != n_bins:
        raise DataError(
            f"{path}: {data.n_bins} angle bins (angles {data.angles[0]:g}..{data.angles[-1]:g}); "
            f"expected {n_bins} (data.n_bins)"
        )
    for values, sid in zip(data.series, data.ids, strict=True):
        _check_sign(path, sid, values, data.angles, scale)
    return data


def _read_table(path: Path, bin_width: float, angle_start: float) -> Heatmaps:
    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except (pd.errors.ParserError, ValueError, OSError) as err:
        raise DataError(f"{path}: cannot be read as a table: {err}") from err
    bins = [c for c in frame.columns if str(c) not in RESERVED]
    if len(bins) < 2:
        raise DataError(f"{path}: {len(bins)} angle-bin columns; expected at least 2")
    for col in bins:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            bad = pd.to_numeric(frame[col], errors="coerce").isna() & frame[col].notna()
            row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
            raise DataError(
                f"{path}: column {col!r}, row {row}: value {frame[col].iloc[row]!r} is not a "
                "number; expected numeric energy in every bin column"
            )
    angles = _column_angles(path, [str(c) for c in bins], bin_width, angle_start)
    ids = frame["series"].astype(str) if "series" in frame.columns else pd.Series("0", frame.index)
    values = frame[bins].to_numpy(dtype=np.float64)
    _check_finite(path, values, "row", [str(c) for c in bins])
    series, names = [], []
    for sid in pd.unique(ids):  # series in order of first appearance
        rows = np.flatnonzero((ids == sid).to_numpy())
        if "time" in frame.columns:
            times = frame["time"].iloc[rows]
            dup = times.duplicated(keep=False)
            if dup.any():
                raise DataError(
                    f"{path}: series {sid!r} has duplicate time {times[dup].iloc[0]} at rows "
                    f"{rows[dup.to_numpy()].tolist()}; expected one row per time step"
                )
            rows = rows[np.argsort(times.to_numpy(), kind="stable")]
        series.append(values[rows].astype(np.float32))
        names.append(str(sid))
    return Heatmaps(series, names, angles)


def _column_angles(path: Path, names: list[str], bin_width: float, angle_start: float) -> np.ndarray:
    """Angles from numeric column names (checked against the configured grid), else the grid."""
    grid = angle_grid(len(names), angle_start, bin_width)
    try:
        angles = np.array([float(n) for n in names])
    except ValueError:
        return grid
    if not np.allclose(angles, grid, atol=1e-6 * max(1.0, bin_width)):
        steps = np.unique(np.round(np.diff(angles), 9))
        raise DataError(
            f"{path}: bin columns name angles {angles[0]:g}..{angles[-1]:g} in steps of "
            f"{', '.join(f'{s:g}' for s in steps[:3])}; expected increasing angles starting at "
            f"data.angle_start={angle_start:g} in steps of data.bin_width={bin_width:g} "
            "(set those two to match the file)"
        )
    return angles


def _read_array(path: Path, bin_width: float, angle_start: float) -> Heatmaps:
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                if "heatmaps" in keys:
                    array = archive["heatmaps"]
                elif len(keys) == 1:
                    array = archive[keys[0]]
                else:
                    raise DataError(f"{path}: arrays {keys}; expected a key 'heatmaps' or exactly one array")
    except (ValueError, OSError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: cannot be read as a NumPy array: {err}") from err
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.number):
        raise DataError(
            f"{path}: array of shape {array.shape} and dtype {array.dtype}; expected numbers "
            "shaped (T, A) or (S, T, A)"
        )
    if array.shape[-1] < 2:
        raise DataError(f"{path}: {array.shape[-1]} angle bins; expected at least 2")
    angles = angle_grid(array.shape[-1], angle_start, bin_width)
    columns = [f"{a:g}" for a in angles]
    for i, values in enumerate(array):
        _check_finite(path, values, f"series {i}, step", columns)
    series = [s.astype(np.float32) for s in array]
    return Heatmaps(series, [str(i) for i in range(len(series))], angles)


def _check_finite(path: Path, values: np.ndarray, row_label: str, columns: list[str]) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"{path}: {row_label} {row}, column {columns[col]!r}: value {values[row, col]} "
            "(missing, NaN or inf); expected a finite number in every bin"
        )


def _check_sign(path: Path, sid: str, values: np.ndarray, angles: np.ndarray, scale: str) -> None:
    if scale == "linear" and (values < 0).any():
        step, col = np.argwhere(values < 0)[0]
        raise DataError(
            f"{path}: series {sid!r}, step {step}, angle {angles[col]:g}: negative value "
            f"{values[step, col]:g}; "
            "data.scale=linear expects non-negative energy (use data.scale=db for dB values)"
        )


def write_heatmaps(path: str | Path, heatmaps: np.ndarray, angles: np.ndarray) -> None:
    """Write (S, T, A) heatmaps in the format given by the file suffix (see data/README.md)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, heatmaps)
    elif suffix == ".npz":
        np.savez_compressed(path, heatmaps=heatmaps)
    elif suffix in (".csv", ".parquet"):
        n_series, n_steps, n_bins = heatmaps.shape
        frame = pd.DataFrame(heatmaps.reshape(-1, n_bins), columns=[f"{a:g}" for a in angles])
        frame.insert(0, "time", np.tile(np.arange(n_steps), n_series))
        frame.insert(0, "series", np.repeat(np.arange(n_series), n_steps))
        if suffix == ".csv":
            frame.to_csv(path, index=False, float_format="%.9g")
        else:
            frame.to_parquet(path, index=False)
    else:
        raise DataError(f"{path}: unknown file type {suffix!r}; expected one of {SUFFIXES}")
