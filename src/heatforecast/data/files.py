"""Read and write heatmap files (.csv, .parquet, .npy, .npz) with strict validation.

The format is described in data/README.md. Every problem stops with a :class:`DataError` naming the
file, the row/series/column and what was expected; nothing is dropped, filled or reordered silently.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SUFFIXES = (".csv", ".parquet", ".npy", ".npz")
COMPRESSED = (".gz", ".bz2", ".xz", ".zip")  # a CSV that pandas decompresses by its suffix: rec.csv.gz
DATA_FILES = ".csv (or .csv.gz, .csv.bz2, .csv.xz, .csv.zip), .parquet, .npy or .npz"  # for messages
RESERVED = ("series", "time")


class DataError(ValueError):
    """A data file does not follow the heatmap format."""


@dataclass
class Heatmaps:
    """Series of heatmaps read from one source: ``series[i]`` is an array (T_i, A), and ``times[i]``
    its frames' times (T_i,) from the file's ``time`` column (numbers or datetime64), or None."""

    series: list[np.ndarray]
    ids: list[str]
    angles: np.ndarray  # (A,) bin angles in degrees
    times: list[np.ndarray] | None = None

    @property
    def n_bins(self) -> int:
        return len(self.angles)

    @cached_property
    def fingerprints(self) -> list[str]:
        """A digest of each series' frames (their float32 values and shape; not its id, file or times):
        the same recording, wherever and under whatever name it is read, gives the same one. Computed
        once (the series are not changed after reading)."""
        digests = (hashlib.sha1(f"{s.shape}".encode() + np.float32(s).tobytes()) for s in self.series)
        return [d.hexdigest()[:16] for d in digests]

    def time_of(self, series: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """The time of step ``steps[k]`` of series ``series[k]``: the file's time, or the step itself
        when the file has no time column. Steps after a series' last frame (forecasts beyond the data)
        continue from its last time in its median time step."""
        if self.times is None:
            return steps
        out = np.empty(len(steps), dtype=self.times[0].dtype)
        for s in np.unique(series):
            times, at = self.times[s], series == s
            last = len(times) - 1
            out[at] = times[np.minimum(steps[at], last)]
            beyond = np.maximum(steps[at] - last, 0)
            if beyond.any():
                if last == 0:
                    raise DataError(f"series {self.ids[s]!r} has one frame: no time step to continue by")
                out[at] += beyond * _median_step(times)
        return out


def file_type(path: Path) -> str:
    """The format of a heatmap file by its suffix, as SUFFIXES name them: a compressed CSV
    (``.csv.gz``, ``.csv.bz2``, ``.csv.xz``, ``.csv.zip``) is ``.csv``; another file, its last suffix."""
    *_, inner, outer = ["", "", *(s.lower() for s in path.suffixes)]
    return ".csv" if inner == ".csv" and outer in COMPRESSED else outer


def data_files(path: str | Path) -> list[Path]:
    """The files ``path`` names: a file; a folder (its heatmap files, by name, not its subfolders); or
    a glob pattern (``recordings/*.csv``, ``**`` for subfolders), matches by name."""
    text = str(path)
    if any(c in text for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True))
    elif Path(text).is_dir():
        files = sorted(Path(text).iterdir())
    else:
        return [Path(text)]
    files = [f for f in files if f.is_file() and file_type(f) in SUFFIXES]
    if not files:
        nested = subfolder_files(Path(text)) if Path(text).is_dir() else []
        hint = f"; its subfolders hold {len(nested)} (data.path='{text}/**/*' reads them)" if nested else ""
        raise DataError(f"data.path={text}: matches no {DATA_FILES} file{hint}")
    return files


def subfolder_files(folder: Path) -> list[Path]:
    """The heatmap files in the subfolders of ``folder``, which ``data.path=folder`` does not read."""
    found = (f for f in folder.rglob("*") if f.parent != folder and file_type(f) in SUFFIXES)
    return sorted(f for f in found if f.is_file())


def read_many(files: list[Path], **options: Any) -> Heatmaps:
    """Read several heatmap files (:func:`read_heatmaps`, same ``options``) as one data set: their
    series side by side, named ``<file>:<id>`` (the file's path from the files' common folder). Every
    file must have the first file's angles and the same kind of time column."""
    if len(files) == 1:
        return read_heatmaps(files[0], **options)
    parts = [read_heatmaps(f, **options) for f in files]
    first = parts[0]
    for f, part in zip(files, parts, strict=True):
        if part.n_bins != first.n_bins or not np.allclose(part.angles, first.angles):
            raise DataError(
                f"{f}: {part.n_bins} angle bins ({part.angles[0]:g}..{part.angles[-1]:g}); expected the "
                f"bins of {files[0]} ({first.n_bins}, {first.angles[0]:g}..{first.angles[-1]:g}): the "
                "files of one data set share their angles"
            )
    kinds = [_time_kind(p) for p in parts]
    for f, kind in zip(files, kinds, strict=True):
        if kind != kinds[0]:
            raise DataError(
                f"{f}: {kind}, unlike {files[0]} ({kinds[0]}); expected the same kind of time in all "
                "files of one data set"
            )
    root = Path(os.path.commonpath([f.parent for f in files]))  # ids name files from their folder
    times = None
    if parts[0].times is not None:  # integer and float times mix as floats
        dtype = np.result_type(*(p.times[0] for p in parts))
        times = [t.astype(dtype) for p in parts for t in p.times]
    return Heatmaps(
        series=[s for p in parts for s in p.series],
        ids=[f"{f.relative_to(root)}:{sid}" for f, p in zip(files, parts, strict=True) for sid in p.ids],
        angles=first.angles,
        times=times,
    )


def _time_kind(heatmaps: Heatmaps) -> str:
    if heatmaps.times is None:
        return "no time column"
    return "date-times" if heatmaps.times[0].dtype.kind == "M" else "numeric times"


def angle_grid(n_bins: int, angle_start: float, bin_width: float) -> np.ndarray:
    return angle_start + bin_width * np.arange(n_bins, dtype=np.float64)


def angle_names(angles: np.ndarray | list[float]) -> list[str]:
    """Column names for bins at ``angles`` (degrees): the shortest text that reads back as the same
    float32 angle, e.g. ``104.0625`` where ``:g`` wrote ``104.062``, and ``180`` rather than ``180.0``."""
    return [np.format_float_positional(a, trim="-") for a in np.asarray(angles, dtype=np.float32)]


def read_heatmaps(
    path: str | Path,
    scale: str = "linear",
    bin_width: float = 1.0,
    angle_start: float = 0.0,
    n_bins: int | None = None,
    max_gap: float | None = 1.5,
    split_at_gaps: bool = False,
) -> Heatmaps:
    """Read and validate a heatmap file. ``n_bins`` (if given) is the bin count the file must have;
    a time step longer than ``max_gap`` times its series' median step is a gap (None: not checked),
    which stops the read, or with ``split_at_gaps`` cuts the series there into parts ``<id>#1``, ..."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a {DATA_FILES} file)")
    suffix = file_type(path)
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown file type {suffix!r}; expected {DATA_FILES}")
    if suffix in (".csv", ".parquet"):
        data = _read_table(path, bin_width, angle_start, max_gap, split_at_gaps)
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


def _read_table(
    path: Path, bin_width: float, angle_start: float, max_gap: float | None, split_at_gaps: bool
) -> Heatmaps:
    try:
        # Series ids as written: read as numbers, "007" and "7" would become one series.
        csv = file_type(path) == ".csv"
        frame = pd.read_csv(path, dtype={"series": str}) if csv else pd.read_parquet(path)
    except (pd.errors.ParserError, ValueError, OSError) as err:
        # Excel and older tools write Latin-1 or cp1252 (a degree sign is then one byte, 0xb0).
        hint = "; expected UTF-8 text (save it as UTF-8 CSV)" if isinstance(err, UnicodeDecodeError) else ""
        raise DataError(f"{path}: cannot be read as a table: {err}{hint}") from err
    if named := [name for name in frame.index.names if name is not None]:
        # pandas stores a frame's index in Parquet and restores it as the index: a frame indexed by
        # time (or series and time) would otherwise lose those columns and be read in file order.
        frame = frame.reset_index(level=named)
    if frame.empty:
        raise DataError(f"{path}: no rows; expected one row per time step")
    if csv:  # pandas renames a repeated name ("0" -> "0.1"): read the header as is
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
        if "" in header:  # pandas calls it "Unnamed: k", which would pass for a bin
            k = header.index("")
            why = {0: " (pandas' to_csv writes its row index so unless index=False)"}.get(k, "")
            if k == len(header) - 1:
                why = " (a comma at the end of each line makes an empty last column)"
            raise DataError(
                f"{path}: column {k} has no name in the header row{why}; expected a name for every "
                "column: series, time or an angle"
            )
        if len(set(header)) < len(header):
            twice = next(name for name in header if header.count(name) > 1)
            # A file without a header row: its first row of values (zeros repeat) reads as the names.
            numbers = pd.to_numeric(pd.Series(header), errors="coerce").notna().all()
            hint = " (a CSV's first row names the columns; is it a row of data?)" if numbers else ""
            raise DataError(
                f"{path}: column {twice!r} appears {header.count(twice)} times; expected each once{hint}"
            )
    bins = [c for c in frame.columns if str(c) not in RESERVED]
    if len(bins) < 2:
        # numpy.savetxt writes spaces (and no header: its first row is one long name)
        sep = next((s for s in (";", "\t", "|", " ") if s in str(bins[0] if bins else "")), None)
        hint = f" (the header holds {sep!r}: expected values separated by commas)" if sep else ""
        raise DataError(f"{path}: {len(bins)} angle-bin columns{hint}; expected at least 2")
    columns = [str(c) for c in bins]
    angles = _column_angles(path, columns, bin_width, angle_start)
    if "series" in frame.columns:
        _check_present(path, frame["series"], "series", "a series id")
        ids = frame["series"].astype(str)
    else:
        ids = pd.Series("0", frame.index)
    time = _time_column(path, frame["time"]) if "time" in frame.columns else None
    if time is not None:
        _check_not_long(path, columns, ids, time, "series" in frame.columns)
    for col in bins:
        # true/false columns are numeric to pandas, but no energy
        if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            bad = pd.to_numeric(frame[col], errors="coerce").isna() & frame[col].notna()
            row = int(np.flatnonzero(bad.to_numpy())[0]) if bad.any() else 0
            value = frame[col].iloc[row]
            value = value.item() if isinstance(value, np.generic) else value  # True, not np.True_
            raise DataError(
                f"{path}: column {col!r}, row {row}: value {value!r} is not a number; expected numeric "
                "energy in every bin column"
            )
    values = frame[bins].to_numpy(dtype=np.float64)
    _check_finite(path, values, "row", columns)
    series, names, times = [], [], []
    # Each series' rows in file order, series in order of first appearance: one sort, not a pass over
    # every row per series (8,000 series of 50 rows took 14 s that way).
    codes, uniques = pd.factorize(ids)
    by_series = np.split(np.argsort(codes, kind="stable"), np.cumsum(np.bincount(codes))[:-1])
    for sid, rows in zip(uniques, by_series, strict=True):
        parts = [rows]
        if time is not None:
            rows = rows[np.argsort(time[rows], kind="stable")]
            gaps = _gaps(path, sid, time[rows], rows, max_gap, split_at_gaps)
            parts = np.split(rows, gaps + 1)
            times.extend(time[part] for part in parts)
        series.extend(values[part].astype(np.float32) for part in parts)
        names.extend([str(sid)] if len(parts) == 1 else [f"{sid}#{i}" for i in range(1, len(parts) + 1)])
    return Heatmaps(series, names, angles, times if time is not None else None)


def _check_not_long(path: Path, bins: list[str], ids: pd.Series, time: np.ndarray, has_series: bool) -> None:
    """Stop on a long (tidy) table, one row per time and angle: it reads as two or three bins named
    otherwise than angles (``angle``, ``energy``), each time repeated. Before the bins' values are
    checked, as an angle column may hold text."""
    named = pd.to_numeric(pd.Series(bins), errors="coerce").isna().all()
    if not named or len(bins) > 3 or not pd.DataFrame({"s": ids, "t": time}).duplicated().any():
        return
    index = "['series', 'time']" if has_series else "'time'"
    raise DataError(
        f"{path}: {len(bins)} bin columns ({', '.join(bins)}) and several rows per time: a long table, "
        "one row per time and angle? expected one row per time step and one column per angle bin "
        f"(pandas: table.pivot(index={index}, columns=<the angle column>, values=<the energy "
        "column>).reset_index())"
    )


def _check_present(path: Path, column: pd.Series, name: str, expected: str) -> None:
    if column.isna().any():
        row = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise DataError(f"{path}: row {row}: no {name} (empty or NaN); expected {expected} in every row")


def _time_column(path: Path, column: pd.Series) -> np.ndarray:
    """The ``time`` column as numbers or datetime64[ns] (UTC where the file gives offsets). Text must
    be ISO 8601 date-times: other text has no order heatforecast could know ("9:00" sorts after
    "10:00" as text), so it stops instead of being sorted as strings."""
    _check_present(path, column, "time", "a number or an ISO 8601 date-time")
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy()  # int64 stays int64: epoch nanoseconds do not fit a float64
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    if pd.api.types.is_datetime64_dtype(column):
        return column.to_numpy(dtype="datetime64[ns]")
    text = column.astype(str)
    numbers = pd.to_numeric(text, errors="coerce")
    dates = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    if numbers.notna().all():
        return numbers.to_numpy()
    if dates.notna().all():
        return dates.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    neither = numbers.isna() & dates.isna()
    row = int(np.flatnonzero(neither.to_numpy() if neither.any() else dates.isna().to_numpy())[0])
    what = "neither a number nor an ISO 8601 date-time" if neither.any() else "a number among date-times"
    raise DataError(
        f"{path}: row {row}: time {column.iloc[row]!r} is {what}; expected numbers or ISO 8601 "
        "date-times (e.g. 2026-01-31 12:00:05) throughout the time column"
    )


def _median_step(times: np.ndarray) -> np.generic:
    """The median time step of a sorted series, in the times' own kind: a timedelta64 for date-times,
    an integer for integer times (rounded), else a float."""
    steps = np.diff(times)
    if steps.dtype.kind in "miu":  # np.median gives a float (and does not take timedeltas)
        return np.round(np.median(steps.astype(np.int64))).astype(np.int64).astype(steps.dtype)[()]
    return np.median(steps)


def _gaps(
    path: Path, sid: str, times: np.ndarray, rows: np.ndarray, max_gap: float | None, split: bool
) -> np.ndarray:
    """Check a series' sorted times: one row per time, and no gap, i.e. no step longer than ``max_gap``
    times the median step: missing frames, which a window would learn as one step. Returns the
    positions k of the gaps (between frames k and k + 1) when ``split``; otherwise a gap stops."""
    steps = np.diff(times)
    if (steps == steps.dtype.type(0)).any():
        k = int(np.flatnonzero(steps == steps.dtype.type(0))[0])
        raise DataError(
            f"{path}: series {sid!r} has duplicate time {_show(times[k])} at rows "
            f"{sorted(rows[k : k + 2].tolist())}; expected one row per time step"
        )
    if max_gap is None or len(steps) < 2:
        return np.zeros(0, dtype=int)
    median = _median_step(times)
    ratio = steps / median
    gaps = np.flatnonzero(ratio > max_gap)
    if len(gaps) and not split:
        k = gaps[0]
        raise DataError(
            f"{path}: series {sid!r}: time jumps from {_show(times[k])} (row {rows[k]}) to "
            f"{_show(times[k + 1])} (row {rows[k + 1]}), {ratio[k]:.3g} times the series' median step "
            f"{_show(median)}; expected evenly spaced frames (data.max_gap={max_gap:g}), since a window "
            "across missing frames would learn a jump of several steps as one. Set "
            "data.split_at_gaps=true to cut the series there, or data.max_gap=null to train across gaps"
        )
    return gaps


def _show(value: np.generic) -> str:
    """A time or time step for a message: 12.5, 2026-01-31 12:00:05, 0 days 00:00:10."""
    if isinstance(value, np.timedelta64):
        return str(pd.Timedelta(value))
    if isinstance(value, np.datetime64):
        return str(pd.Timestamp(value))
    return f"{value:g}"


def _column_angles(path: Path, names: list[str], bin_width: float, angle_start: float) -> np.ndarray:
    """Angles from numeric column names (checked against the configured grid), else the grid. Names
    are all numeric or none: one other name among angles is a misnamed column (``Time``), not a bin."""
    numeric = pd.to_numeric(pd.Series(names), errors="coerce")
    if numeric.isna().all():
        return angle_grid(len(names), angle_start, bin_width)
    if numeric.isna().any():
        odd = names[int(np.flatnonzero(numeric.isna().to_numpy())[0])]
        angles = numeric.dropna()
        raise DataError(
            f"{path}: column {odd!r} is neither an angle nor one of {', '.join(RESERVED)} (names are "
            f"case-sensitive), while {len(angles)} other columns name angles ({angles.iloc[0]:g}.."
            f"{angles.iloc[-1]:g}); expected an angle for every bin column"
        )
    # A copy: pandas hands out a float column read-only (copy-on-write), which torch warns about.
    return _checked_angles(path, numeric.to_numpy(dtype=np.float64, copy=True), bin_width, angle_start)


def _checked_angles(path: Path, angles: np.ndarray, bin_width: float, angle_start: float) -> np.ndarray:
    """The angles a file gives its bins (column names, an .npz's ``angles``), if they are the grid of
    ``data.angle_start`` and ``data.bin_width``; else stop, saying how they differ."""
    grid = angle_grid(len(angles), angle_start, bin_width)
    if not np.allclose(angles, grid, atol=1e-6 * max(1.0, bin_width)):
        steps = np.unique(np.round(np.diff(angles), 9))
        fix = "set those two to match the file"
        # An even grid of another start or step, to the same tolerance: names rounded to a few digits
        # (104.062 for 104.0625) give uneven differences, but their span gives the step.
        step = (angles[-1] - angles[0]) / max(len(angles) - 1, 1)
        if step > 0 and np.allclose(angles, angle_grid(len(angles), angles[0], step), atol=1e-6 * step):
            steps = np.array([step])
            fix = f"to match the file: data.angle_start={angles[0]:.10g} data.bin_width={step:.10g}"
        elif (steps < 0).all():
            fix = "the bins run from high to low angle: reverse their order"
        elif (steps <= 0).any() and file_type(path) == ".csv":  # no grid fits such names
            fix = "a CSV's first row names the columns; is it a row of data?"
        raise DataError(
            f"{path}: the file gives the bins angles {angles[0]:g}..{angles[-1]:g} in steps of "
            f"{', '.join(f'{s:.10g}' for s in steps[:3])}; expected increasing angles starting at "
            f"data.angle_start={angle_start:g} in steps of data.bin_width={bin_width:g} ({fix})"
        )
    return angles


def _read_array(path: Path, bin_width: float, angle_start: float) -> Heatmaps:
    try:
        if file_type(path) == ".npy":
            array, stored_angles = np.load(path, allow_pickle=False), None
        else:
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                if "heatmaps" in keys:
                    array = archive["heatmaps"]
                    stored_angles = archive["angles"] if "angles" in keys else None
                elif len(keys) == 1:
                    array, stored_angles = archive[keys[0]], None
                else:
                    raise DataError(f"{path}: arrays {keys}; expected a key 'heatmaps' or exactly one array")
    except (ValueError, OSError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: cannot be read as a NumPy array: {err}") from err
    shape = array.shape  # as stored, for the messages
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or not np.issubdtype(array.dtype, np.number):
        raise DataError(
            f"{path}: array of shape {array.shape} and dtype {array.dtype}; expected numbers "
            "shaped (T, A) or (S, T, A)"
        )
    if np.iscomplexobj(array):  # a beamformer's or an FFT's output: its phase is no energy
        raise DataError(
            f"{path}: complex values ({array.dtype}); expected real energy: save np.abs(x) ** 2 "
            "(power), or 10 * np.log10 of it with data.scale=db"
        )
    if array.shape[-1] < 2:
        raise DataError(f"{path}: {array.shape[-1]} angle bins; expected at least 2")
    if 0 in array.shape[:2]:
        raise DataError(
            f"{path}: array of shape {shape} holds no frames; expected (T, A) or (S, T, A) with S, T > 0"
        )
    angles = angle_grid(array.shape[-1], angle_start, bin_width)
    if stored_angles is not None:  # the file says which angles its bins are: checked like column names
        if stored_angles.shape != angles.shape or not np.issubdtype(stored_angles.dtype, np.number):
            raise DataError(
                f"{path}: array 'angles' of shape {stored_angles.shape} and dtype {stored_angles.dtype}; "
                f"expected one angle (a number) per bin of 'heatmaps', shape {angles.shape}"
            )
        angles = _checked_angles(path, stored_angles.astype(np.float64), bin_width, angle_start)
    columns = angle_names(angles)
    for i, values in enumerate(array):
        _check_finite(path, values, f"series {i}, step", columns)
    series = [s.astype(np.float32) for s in array]
    return Heatmaps(series, [str(i) for i in range(len(series))], angles)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_finite(path: Path, values: np.ndarray, row_label: str, columns: list[str]) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"{path}: {row_label} {row}, column {columns[col]!r}: value {values[row, col]} "
            "(missing, NaN or inf); expected a finite number in every bin"
        )
    # Would read as inf: heatforecast computes in float32. (Two masks, not abs(): no float64 copy.)
    big = (values > FLOAT32_MAX) | (values < -FLOAT32_MAX)
    if big.any():
        row, col = np.argwhere(big)[0]
        raise DataError(
            f"{path}: {row_label} {row}, column {columns[col]!r}: value {values[row, col]:g} is beyond "
            f"float32's range (+-{FLOAT32_MAX:.3g}), in which heatforecast computes; expected the data "
            "in units that keep it inside (divide it by a power of ten)"
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
    """Write (S, T, A) heatmaps in the format given by the file suffix (see data/README.md), making
    the file's folder if it is not there."""
    path = Path(path)
    suffix = file_type(path)  # .csv.gz: pandas compresses by the suffix
    if suffix in SUFFIXES:
        path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(path, heatmaps)
    elif suffix == ".npz":
        np.savez_compressed(path, heatmaps=heatmaps)
    elif suffix in (".csv", ".parquet"):
        n_series, n_steps, n_bins = heatmaps.shape
        frame = pd.DataFrame(heatmaps.reshape(-1, n_bins), columns=angle_names(angles))
        frame.insert(0, "time", np.tile(np.arange(n_steps), n_series))
        frame.insert(0, "series", np.repeat(np.arange(n_series), n_steps))
        if suffix == ".csv":
            frame.to_csv(path, index=False, float_format="%.9g")
        else:
            frame.to_parquet(path, index=False)
    else:
        raise DataError(f"{path}: unknown file type {suffix!r}; expected {DATA_FILES}")
