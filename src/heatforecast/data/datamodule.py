"""Windows, splits, scaling and batches: the LightningDataModules behind ``data=synthetic|file``.

All series are concatenated into one contiguous tensor ``values`` (N, A). A window is a start row
``s``: context rows ``s .. s+L-1``, target rows ``s+L .. s+L+H-1``. A batch is gathered with one
indexing operation, ``values[starts[:, None] + arange(L + H)]``, so there is no per-sample Python work
and the whole set can live on the GPU (``on_device``) with no DataLoader workers.
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from heatforecast.data.files import DataError, Heatmaps, angle_grid, data_files, read_many, subfolder_files
from heatforecast.data.synthetic import make_synthetic

SPLITS = ("train", "val", "test")
# What val_dataloader's loaders score, in dataloader_idx order: the val split, then (data.train_eval)
# the train windows that every validation scores too.
VAL_SPLITS = ("val", "train_eval")


@dataclass
class Windows:
    """The windows of one split: global start rows, and for each its series and first target step."""

    starts: Tensor  # (W,) long, rows of `values`
    series: Tensor  # (W,) long, index into the series list
    time: Tensor  # (W,) long, step (within its series) of the first target frame

    def __len__(self) -> int:
        return len(self.starts)

    def to(self, device: torch.device | str) -> Windows:
        return Windows(self.starts.to(device), self.series.to(device), self.time.to(device))

    def spread(self, count: int) -> Windows:
        """``count`` of these windows (all, if there are fewer), evenly spaced over them: the first, the
        last and equal steps between, so every part of every series is represented, the same ones
        every time."""
        pick = torch.linspace(0, len(self) - 1, min(count, len(self))).round().long()
        return Windows(self.starts[pick], self.series[pick], self.time[pick])


def make_windows(
    lengths: list[int], context_len: int, horizon: int, stride: int, splits: tuple[float, ...]
) -> dict[str, Windows]:
    """Split every series chronologically and assign each window to the split of its targets.

    Series i of length T has train targets at steps < round(T f_train), val targets below
    round(T (f_train + f_val)), test targets above. A window whose targets straddle a boundary is in
    no split, so no target step is ever in two splits; a context may reach back into the earlier split.
    The extra split "all" holds every window (to score a model on a file it was not trained on).
    """
    parts: dict[str, list[tuple[np.ndarray, ...]]] = {k: [] for k in (*SPLITS, "all")}
    offset = 0
    for i, n in enumerate(lengths):
        train_end = round(n * splits[0])
        val_end = round(n * (splits[0] + splits[1]))
        start = np.arange(0, n - context_len - horizon + 1, stride)
        first, last = start + context_len, start + context_len + horizon - 1
        masks = {
            "train": last < train_end,
            "val": (first >= train_end) & (last < val_end),
            "test": first >= val_end,
            "all": np.ones_like(start, dtype=bool),  # every window, for scoring a new file
        }
        for name, mask in masks.items():
            s = start[mask]
            parts[name].append((s + offset, np.full_like(s, i), s + context_len))
        offset += n
    out = {}
    for name, chunks in parts.items():
        cols = [torch.from_numpy(np.concatenate(c)).long() for c in zip(*chunks, strict=True)]
        out[name] = Windows(*cols)
    return out


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's random draws (train shuffle, augmentation): a function of the run's seed
    and the epoch only, so a resumed run draws what the original would have."""
    return seed * 100_003 + epoch


def check_settings(key: str, given: dict, target: Callable, own: set[str] | frozenset[str]) -> None:
    """Stop, naming ``data.<key>.<name>``, if ``given`` (a dict setting of the data config) holds a
    name that ``target`` does not take, or one of ``own``, which the data module passes itself."""
    takes = sorted(set(inspect.signature(target).parameters) - own)
    if unknown := sorted(set(given) - set(takes)):
        raise DataError(
            f"data.{key}.{unknown[0]}: not a setting of {target.__name__}; expected one of: "
            + ", ".join(takes)
            + (f" (data.{unknown[0]} sets it)" if unknown[0] in own else "")
        )


@dataclass
class Augment:
    """Symmetries of the angle axis applied to train windows, context and target alike; a fresh draw
    for every window each epoch, seeded by ``data.seed`` and the epoch (a resumed run draws the same).

    ``flip``: the probability of mirroring a window, bin a <-> A-1-a (about the middle of the grid), or
    a <-> -a (about the first bin) round the circle with ``circular``. ``rotate`` (circular data only): turn
    every window round the circle by a uniformly drawn whole number of bins. Valid only where the
    recordings' dynamics share the symmetry (sources that move alike towards either end, e.g. a
    symmetric array's 0..180 degree map); val and test windows are never changed.
    """

    flip: float = 0.0
    rotate: bool = False
    circular: bool = False

    def __post_init__(self) -> None:
        number = isinstance(self.flip, numbers.Real) and not isinstance(self.flip, bool)
        if not (number and 0 <= self.flip <= 1):  # null was a TypeError
            raise ValueError(f"data.augment.flip={self.flip}; expected a probability in [0, 1]")
        if not isinstance(self.rotate, bool):  # null passed for false
            raise ValueError(f"data.augment.rotate={self.rotate}; expected true or false")
        if self.rotate and not self.circular:
            raise ValueError("data.augment.rotate=true needs data.circular=true (a turn wraps round 360)")

    @property
    def active(self) -> bool:
        return self.flip > 0 or self.rotate

    def draw(self, n: int, seed: int, epoch: int) -> tuple[Tensor, Tensor]:
        """This epoch's draws for windows 0..n-1: whether each is mirrored (n,) bool, and its turn as a
        fraction of the circle (n,) in [0, 1)."""
        gen = torch.Generator().manual_seed(epoch_seed(seed, epoch) * 2 + 1)  # not the shuffle's stream
        return torch.rand(n, generator=gen) < self.flip, torch.rand(n, generator=gen)

    def __call__(self, frames: Tensor, flips: Tensor, turns: Tensor) -> Tensor:
        """Windows (B, T, A) mirrored and turned by their draws: out[..., a] = frames[..., index[a]],
        one gather for both."""
        n_bins = frames.shape[-1]
        index = torch.arange(n_bins, device=frames.device).expand(len(frames), -1)
        if self.flip > 0:
            mirrored = (-index) % n_bins if self.circular else n_bins - 1 - index
            index = torch.where(flips.unsqueeze(-1), mirrored, index)
        if self.rotate:
            index = (index - (turns * n_bins).long().unsqueeze(-1)) % n_bins
        return frames.gather(-1, index.unsqueeze(1).expand_as(frames))


class Scaler:
    """x_scaled = x / factor: a positive factor, fitted on train frames only.

    Linear energy: factor = mean train value per bin, so train data has mean 1 and zeros stay zeros.
    dB: factor = 1, because the dB softmax of the distribution losses is defined in dB units.
    """

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = float(factor)

    @classmethod
    def fit(cls, train_values: np.ndarray, scale: str) -> Scaler:
        if scale == "db":
            return cls(1.0)
        mean = float(np.mean(train_values, dtype=np.float64))
        if not mean > 0:
            raise DataError("the train split holds no energy (all zeros); cannot fit the scaler")
        return cls(mean)

    def transform(self, x: Tensor) -> Tensor:
        return x / self.factor

    def inverse_transform(self, x: Tensor) -> Tensor:
        return x * self.factor


class WindowSampler:
    """The order of a split's windows: shuffled per epoch from (seed, epoch) for train, else in order.

    Lightning calls ``set_epoch`` (it looks for ``loader.sampler``). The order depends only on the seed
    and epoch, so a resumed run draws the same order (the loader then skips the batches already done).
    """

    def __init__(self, n: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """This rank's number of windows, without drawing the permutation."""
        n = self.n - self.n % self.world_size if self.shuffle else self.n
        return len(range(self.rank, n, self.world_size))

    def order(self) -> Tensor:
        if self.shuffle:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=gen)
            # Every rank takes the same number of train windows, so DDP steps stay in lockstep.
            order = order[: self.n - self.n % self.world_size]
        else:
            order = torch.arange(self.n)
        return order[self.rank :: self.world_size]


class WindowLoader:
    """Batches (x, y, series, time) of one split, each gathered in one indexing operation.

    x: (B, L, A) context, y: (B, H, A) target (scaled), series/time: (B,) the window's series index and
    the step of its first target frame. The last partial batch is kept unless ``drop_last``. With an
    active ``augment`` each window is mirrored / turned by that epoch's draw for it.
    """

    batch_sampler = None  # Lightning inspects DataLoader-like attributes; batching is done here

    def __init__(
        self,
        values: Tensor,
        windows: Windows,
        context_len: int,
        horizon: int,
        batch_size: int,
        sampler: WindowSampler,
        drop_last: bool = False,
        augment: Augment | None = None,
    ) -> None:
        self.values, self.windows, self.sampler = values, windows, sampler
        self.context_len, self.batch_size, self.drop_last = context_len, batch_size, drop_last
        self.augment = augment if augment is not None and augment.active else None
        self.offsets = torch.arange(context_len + horizon, device=values.device)
        self.batches_done = 0  # within the current epoch, for mid-epoch resume
        self._skip = 0

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        device = self.values.device
        order = self.sampler.order().to(device)
        if self.augment is not None:
            draws = self.augment.draw(len(self.windows), self.sampler.seed, self.sampler.epoch)
            flips, turns = (d.to(device) for d in draws)
        self.batches_done, skip, self._skip = self._skip, self._skip, 0
        for i in range(skip * self.batch_size, len(self) * self.batch_size, self.batch_size):
            idx = order[i : i + self.batch_size]
            rows = (self.windows.starts[idx, None] + self.offsets).view(-1)
            # index_select on the row axis is the fastest gather here (see scripts/bench_data.py).
            frames = self.values.index_select(0, rows).view(len(idx), -1, self.values.shape[-1])
            if self.augment is not None:
                frames = self.augment(frames, flips[idx], turns[idx])
            self.batches_done += 1
            yield (
                frames[:, : self.context_len],
                frames[:, self.context_len :],
                self.windows.series[idx],
                self.windows.time[idx],
            )

    # Lightning stores these in checkpoints and restores them on resume (stateful loaders).
    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])
        self._skip = state["batches_done"]


class HeatmapData(L.LightningDataModule):
    """Windows over angle-energy series; subclasses say where the series come from (:meth:`load`).

    Args:
        context_len: L, steps of context per window.
        horizon: H, steps to forecast.
        stride: steps between consecutive window starts.
        splits: chronological train/val/test fractions of every series.
        batch_size: train batch size; val/test use ``eval_batch_size`` (default: the same).
        drop_last: drop each epoch's last partial train batch (a different one each epoch, since the
            order is shuffled): every step then has the same shape, which torch.compile wants.
        scale: ``linear`` (non-negative energy) or ``db`` (10 log10 power, may be negative).
        bin_width, angle_start: the angle grid in degrees (checked against numeric column names).
        circular: the angle axis wraps around (bearings, directional spectra over 0..360): the bins
            must cover exactly 360 degrees; losses, metrics and the model's angle convolution wrap.
        augment: ``{flip: probability, rotate: bool}``, symmetries applied to train windows
            (:class:`Augment`); None or zeros: none.
        on_device: keep all data on the training device and gather batches there (no effect on a CPU).
        train_eval: the share of the train windows (:meth:`Windows.spread`: evenly spaced, the same
            ones every time) that validation also scores, as a second val loader: the model's panel
            on windows it trains on, in eval mode, beside val's. 0: none, one val loader.
        seed: seeds the train shuffle.
    """

    def __init__(
        self,
        context_len: int = 32,
        horizon: int = 10,
        stride: int = 1,
        splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        drop_last: bool = False,
        scale: str = "linear",
        bin_width: float = 1.0,
        angle_start: float = 0.0,
        circular: bool = False,
        augment: dict | None = None,
        on_device: bool = True,
        train_eval: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= train_eval <= 1:  # NaN too
            raise ValueError(
                f"data.train_eval={train_eval}; expected a fraction in [0, 1] of the train windows (0: none)"
            )
        if scale not in ("linear", "db"):
            raise ValueError(f"data.scale must be 'linear' or 'db'; got {scale!r}")
        fractions = isinstance(splits, Sequence) and not isinstance(splits, str)
        splits = tuple(float(f) for f in splits) if fractions else splits  # null was a TypeError
        if not fractions or len(splits) != 3 or min(splits) <= 0 or abs(sum(splits) - 1) > 1e-6:
            raise ValueError(f"data.splits must be 3 positive fractions summing to 1; got {splits}")
        eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        for key, value in dict(
            context_len=context_len,
            horizon=horizon,
            stride=stride,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
        ).items():
            if int(value) < 1:
                raise ValueError(f"data.{key} must be >= 1; got {value}")
        self.context_len, self.horizon, self.stride = context_len, horizon, stride
        self.splits, self.scale, self.seed = splits, scale, seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.drop_last = drop_last
        self.bin_width, self.angle_start, self.circular = bin_width, angle_start, circular
        check_settings("augment", augment or {}, Augment, {"circular"})
        self.augment = Augment(**(augment or {}), circular=circular)
        self.on_device, self.train_eval = on_device, float(train_eval)
        self.heatmaps: Heatmaps | None = None
        self.scaler: Scaler | None = None  # fitted in setup() unless set before (a checkpoint's)
        self._device_values: dict[torch.device, Tensor] = {}

    def load(self) -> Heatmaps:
        raise NotImplementedError

    @property
    def source(self) -> str:
        """Where the data comes from, for messages."""
        return type(self).__name__

    def setup(self, stage: str | None = None) -> None:
        """Load, window and scale the data (once); at every call, check each series is long enough for
        ``stage``: ``"predict"`` (forecasting beyond each series' end) needs ``context_len`` steps, the
        other stages a whole window."""
        heatmaps = self.load() if self.heatmaps is None else self.heatmaps
        future = stage == "predict"
        need = self.context_len + (0 if future else self.horizon)
        for values, sid in zip(heatmaps.series, heatmaps.ids, strict=True):
            if len(values) < need:
                raise DataError(
                    f"{self.source}: series {sid!r} has {len(values)} step{'' if len(values) == 1 else 's'}; "
                    "expected at least "
                    + (f"context_len = {need}" if future else f"context_len + horizon = {need}")
                )
        if self.heatmaps is not None:
            return
        span = heatmaps.n_bins * self.bin_width
        if self.circular and not math.isclose(span, 360.0):
            raise DataError(
                f"{self.source}: data.circular=true but its {heatmaps.n_bins} bins of {self.bin_width:g} "
                f"degrees cover {span:g} degrees; expected 360 (e.g. bins 0..359 of 1 degree: 360 is 0 again)"
            )
        if not self.circular and math.isclose(span, 360.0) and rank_zero_only.rank == 0:
            # Bearings over 0..359 are almost always circular, but a full-circle scan may have an edge
            # (a blind sector): say what the setting changes rather than guess it.
            last = self.angle_start + span - self.bin_width
            print(
                f"note: {self.source}: its {heatmaps.n_bins} bins cover 360 degrees, read as a line "
                "(data.circular=false): EMD, Cramer, the peak error and the transformer's angle "
                f"convolution take {last:g} and {self.angle_start:g} degrees as its two ends; if the angle "
                "wraps round, train with data.circular=true to make them neighbouring bins",
                file=sys.stderr,
            )
        self.lengths = [len(s) for s in heatmaps.series]
        self.windows = make_windows(self.lengths, self.context_len, self.horizon, self.stride, self.splits)
        train = self.windows["train"]  # a share above 0 scores one window at least
        share = max(1, round(len(train) * self.train_eval)) if self.train_eval else 0
        self.windows["train_eval"] = train.spread(share)
        if self.scaler is None:
            self.check_splits(("train",))
            train_rows = [s[: round(len(s) * self.splits[0])] for s in heatmaps.series]
            try:
                self.scaler = Scaler.fit(np.concatenate(train_rows), self.scale)
            except DataError as err:
                first = f"the first {self.splits[0]:.0%} of each series, data.splits"
                raise DataError(f"{self.source}: {err} ({first}); expected some energy to scale by") from err
        values = torch.from_numpy(np.concatenate(heatmaps.series)).float()
        self.values = self.scaler.transform(values).contiguous()
        self.angles = torch.from_numpy(heatmaps.angles).float()
        self.heatmaps = heatmaps

    def check_splits(self, splits: tuple[str, ...] = SPLITS) -> None:
        """Stop with a clear message if one of these splits holds no window."""
        for name in splits:
            if len(self.windows[name]) == 0:
                raise DataError(
                    f"{self.source}: the {name} split has no window: series lengths {self.lengths}, "
                    f"splits {self.splits}, context_len {self.context_len}, horizon {self.horizon}, stride "
                    f"{self.stride}; expected every split to hold at least context_len + horizon steps, with "
                    "a window starting every stride steps"
                )

    @property
    def n_bins(self) -> int:
        return self.values.shape[-1]

    def _device(self) -> torch.device:
        if self.on_device and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def _rank(self) -> tuple[int, int]:
        """(this process's rank, the number of ranks): each loader takes this rank's share."""
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def loader(self, split: str, device: torch.device | None = None) -> WindowLoader:
        """The batches of one split ('train' shuffled; 'val', 'test', 'all' in order), this rank's share,
        gathered on ``device`` (default: the training device with ``on_device``, else the CPU)."""
        self.check_splits((split,))
        device = device or self._device()
        windows = self.windows[split].to(device)
        train = split == "train"
        drop_last = train and self.drop_last
        batch = self.batch_size if train else self.eval_batch_size
        sampler = WindowSampler(len(windows), train, self.seed, *self._rank())
        if drop_last and len(sampler) < batch:
            raise DataError(
                f"{self.source}: data.drop_last=true but the train split holds {len(sampler)} windows "
                f"(this rank's share), fewer than one batch of data.batch_size={batch}"
            )
        return WindowLoader(
            self._values_on(device),
            windows,
            self.context_len,
            self.horizon,
            batch,
            sampler,
            drop_last,
            self.augment if train else None,
        )

    def in_order(self, split: str, batch_size: int = 32) -> Iterator[tuple[Tensor, Tensor]]:
        """Every window of ``split`` as (x, y) batches on the CPU: in order, unaugmented, and all of
        them whatever this process's DDP rank (to fit a reference forecast to the train split). Small
        batches, as the linear reference's float64 products then stay in cache: on this project's CPU
        its fit took 22 us a window at 32, 66-74 at 512."""
        self.check_splits((split,))
        windows = self.windows[split]
        sampler = WindowSampler(len(windows), False, self.seed)
        loader = WindowLoader(self.values, windows, self.context_len, self.horizon, batch_size, sampler)
        return ((x, y) for x, y, *_ in loader)

    def _values_on(self, device: torch.device) -> Tensor:
        """The scaled data on ``device``, copied there once and shared by every split's loader."""
        if device == self.values.device:
            return self.values
        if device not in self._device_values:
            self._device_values[device] = self.values.to(device)
        return self._device_values[device]

    def predict_dataloader(self) -> WindowLoader:
        """Batches to forecast the ``horizon`` steps after each series' last frame: one window per
        series whose context is its last ``context_len`` frames and whose target lies beyond the data
        (y is empty, (B, 0, A)); ``time`` is the series' length, the step of the first forecast frame."""
        lengths = torch.tensor(self.lengths)
        ends = lengths.cumsum(0)  # each series' end row in `values`
        future = Windows(ends - self.context_len, torch.arange(len(lengths)), lengths)
        device = self._device()
        sampler = WindowSampler(len(future), False, self.seed, *self._rank())
        return WindowLoader(
            self._values_on(device), future.to(device), self.context_len, 0, self.eval_batch_size, sampler
        )

    def train_dataloader(self) -> WindowLoader:
        return self.loader("train")

    def val_dataloader(self) -> WindowLoader | list[WindowLoader]:
        if not self.train_eval:
            return self.loader("val")
        return [self.loader(split) for split in VAL_SPLITS]

    def test_dataloader(self) -> WindowLoader:
        return self.loader("test")


class SyntheticData(HeatmapData):
    """The embedded synthetic data set (:func:`heatforecast.data.synthetic.make_synthetic`)."""

    # The angle grid and scale are the data module's own settings; the rest are the generator's.
    OWN = frozenset({"bin_width", "angle_start", "scale", "circular"})

    def __init__(self, generator: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.generator = dict(generator or {})  # make_synthetic's arguments (n_bins, seed, ...)
        check_settings("generator", self.generator, make_synthetic, self.OWN)

    @property
    def source(self) -> str:
        return "synthetic data"

    def load(self) -> Heatmaps:
        try:
            array = make_synthetic(
                bin_width=self.bin_width,
                angle_start=self.angle_start,
                scale=self.scale,
                circular=self.circular,
                **self.generator,
            )
        except ValueError as err:  # names the generator's setting ("n_bins must be >= 2; got 0")
            where = "data" if str(err).split(" ")[0] in self.OWN else "data.generator"
            raise DataError(f"{where}.{err}") from err
        angles = angle_grid(array.shape[-1], self.angle_start, self.bin_width)
        return Heatmaps(list(array), [str(i) for i in range(len(array))], angles)


class FileData(HeatmapData):
    """Heatmaps from .csv, .parquet, .npy or .npz files: a file, a folder or a glob pattern
    (format: data/README.md)."""

    def __init__(
        self,
        path: str,
        n_bins: int | None = None,
        max_gap: float | None = 1.5,
        split_at_gaps: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not path:
            raise DataError("data.path is empty; expected a .csv, .parquet, .npy or .npz file, or a folder")
        if max_gap is not None and not max_gap > 1:
            raise DataError(f"data.max_gap={max_gap}; expected a number above 1 (or null: no check)")
        if split_at_gaps and max_gap is None:
            raise DataError("data.split_at_gaps=true with data.max_gap=null; expected a max_gap to find gaps")
        self.path, self.n_bins_expected = path, n_bins
        self.max_gap, self.split_at_gaps = max_gap, split_at_gaps

    @property
    def source(self) -> str:
        return str(self.path)

    def load(self) -> Heatmaps:
        files = data_files(self.path)
        folder = Path(self.path)
        if folder.is_dir() and (nested := subfolder_files(folder)) and rank_zero_only.rank == 0:
            # A folder means its own files (data/README.md); say what that leaves out, not guess it in.
            print(
                f"note: data.path={self.path} reads the {len(files)} heatmap file(s) in that folder, not the "
                f"{len(nested)} in its subfolders ({nested[0].relative_to(folder)}"
                f"{', ...' if len(nested) > 1 else ''}); data.path='{self.path}/**/*' reads them all",
                file=sys.stderr,
            )
        return read_many(
            files,
            scale=self.scale,
            bin_width=self.bin_width,
            angle_start=self.angle_start,
            n_bins=self.n_bins_expected,
            max_gap=self.max_gap,
            split_at_gaps=self.split_at_gaps,
        )
