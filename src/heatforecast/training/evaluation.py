"""evaluate.py's job: score a checkpoint on its own or other data, or forecast what comes next."""

from __future__ import annotations

import copy
import glob
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.tensorboard import SummaryWriter

from heatforecast.data import HeatmapData, Scaler
from heatforecast.data.files import file_type
from heatforecast.forecasts import (
    FORECAST_FILES,
    FORECAST_SUFFIXES,
    SCORED,
    forecast_future,
    per_series,
    predict,
    write_figures,
    write_forecasts,
    write_per_series,
)
from heatforecast.metrics import PeakSettings
from heatforecast.training.checkpoints import DATA_ADDED_LATER, load_checkpoint, restore_forecaster
from heatforecast.training.command_line import override_key
from heatforecast.training.config import (
    CheckpointError,
    ConfigError,
    check_added_settings,
    check_finite,
    check_keys,
    check_metric,
    check_present,
    check_required,
    peak_settings,
)
from heatforecast.training.report import summarize, write_result

WINDOW_KEYS = ("context_len", "horizon", "scale", "bin_width", "angle_start", "circular")  # fixed by training


def evaluation_data(
    cfg: DictConfig, trained: DictConfig, overrides: list[str], ckpt: str
) -> tuple[DictConfig, bool]:
    """The data config to score a checkpoint on, and whether the command names other data than the
    checkpoint's (an option, a file or generator settings; :func:`other_series` tells what it holds).

    ``trained`` is the checkpoint's data config, ``overrides`` the command's (``data=file``,
    ``data.path=...``, ...). A data option on the command line (``data=file``) gives its config, with
    WINDOW_KEYS the checkpoint's unless the command set them; so does ``data.path`` alone where the
    checkpoint's data is not read from files (as ``data=file``). Otherwise it is the checkpoint's data
    config with the command's ``data.KEY=VALUE`` applied. A WINDOW_KEYS value that differs from
    training stops with CheckpointError, and so does the checkpoint's own data file gone missing."""
    given = [override_key(o) for o in overrides]
    chosen = "data" in given
    named = chosen or any(key.startswith(("data.path", "data.generator")) for key in given)
    if not chosen and "data.path" in given and "path" not in trained:
        # Inside the entry point Hydra is initialised, so the file option composes as `data=file` would
        # (with_file_settings gave the file settings the ++ that sets them on either option).
        typed = [o for o, k in zip(overrides, given) if k.startswith("data.")]
        cfg = compose("evaluate", ["data=file", *typed])
        chosen = True
    if chosen:
        data_cfg = copy.deepcopy(cfg.data)
        with open_dict(data_cfg):
            for key in (k for k in WINDOW_KEYS if f"data.{k}" not in given):
                data_cfg[key] = trained.get(key, DATA_ADDED_LATER.get(key))
    else:
        data_cfg = copy.deepcopy(trained)
        for key in (k for k in given if k.startswith("data.")):
            OmegaConf.update(data_cfg, key.removeprefix("data."), OmegaConf.select(cfg, key), force_add=True)
    check_keys(data_cfg, "data")
    check_finite(OmegaConf.to_container(data_cfg, resolve=False), "data")
    check_required(data_cfg)
    for key in WINDOW_KEYS:
        was, now = (c.get(key, DATA_ADDED_LATER.get(key)) for c in (trained, data_cfg))
        if now != was:
            raise CheckpointError(
                f"{ckpt}: trained with data.{key}={was}; this evaluation has data.{key}={now} "
                "(expected the same)"
            )
    path = data_cfg.get("path")
    if not named and path and not glob.has_magic(path) and not Path(path).exists():
        raise CheckpointError(
            f"{ckpt}: trained on {path}, which is not there now; expected data.path=<where that data is "
            "now> (a copy that holds the same series is still scored on its test split)"
        )
    return data_cfg, named


def evaluation_peaks(cfg: DictConfig, trained: DictConfig, overrides: list[str]) -> PeakSettings | None:
    """ospa_deg's settings to score a checkpoint with where the command sets any (None: its run's,
    which :func:`restore_forecaster` takes): the run's (``trained``, the checkpoint's config) with the
    command's ``peaks.KEY=VALUE`` applied. A run made before the settings existed used the defaults,
    which this config holds with the command's keys applied, as it does a whole ``peaks=...``."""
    keys = [key for key in map(override_key, overrides) if key.split(".")[0] == "peaks"]
    if not keys:
        return None
    if "peaks" in keys or "peaks" not in trained:
        return peak_settings(cfg.peaks)
    node = copy.deepcopy(trained.peaks)
    for key in keys:
        OmegaConf.update(node, key.removeprefix("peaks."), OmegaConf.select(cfg, key), force_add=True)
    return peak_settings(node)


def check_out(out: Path) -> None:
    """Stop before any scoring unless ``out`` names a forecast file that can be written, making its
    folder: an unwritable one was a traceback after the whole evaluation."""
    if file_type(out) not in FORECAST_SUFFIXES:
        raise ConfigError(f"out={out}: expected a {FORECAST_FILES} file")
    if out.is_dir():
        raise ConfigError(f"out={out}: a folder; expected a file, e.g. out={out / 'forecasts.npz'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"out={out}: cannot make its folder {out.parent} ({err.strerror})") from err


def other_series(datamodule: HeatmapData, ckpt: dict[str, Any], named: bool) -> bool:
    """Whether a set-up datamodule holds other series than the checkpoint was trained on (scored on all
    their windows, not a test split). The checkpoint's own data (``named`` false) never does. Data the
    command named is compared by the checkpoint's digests of its training series, so the training data
    is known under another file name or option too; a checkpoint saved before it kept them takes named
    data as other series. Says so where named data holds some training series beside new ones."""
    trained = ckpt["hyper_parameters"].get("data_fingerprints")
    if not named or not trained:
        # Not named: the checkpoint's own data config. Generated on another machine, its last bits may
        # differ (numpy picks its vectorised math by CPU), which makes no other data.
        return named
    prints, ids = datamodule.heatmaps.fingerprints, datamodule.heatmaps.ids
    if sorted(prints) == sorted(trained):
        print(
            f"note: {datamodule.source} holds the series the model was trained on; by default its "
            "test split is scored"
        )
        return False
    known = set(trained)  # once, not per series
    if seen := [sid for sid, f in zip(ids, prints) if f in known]:
        print(
            f"note: the model was trained on {len(seen)} of the {len(ids)} series in {datamodule.source} "
            f"({', '.join(seen[:5])}{', ...' if len(seen) > 5 else ''}): every window of those includes "
            "training windows; score the others on their own to keep them out"
        )
    return True


# What evaluate.py reads from its command line; the rest of its config (model, loss, optim, trainer, seed,
# ...) is the checkpoint's.
EVALUATE_READS = ("ckpt_path", "split", "predict", "out", "optimized_metric", "peaks", "data", "paths")
# Data settings that only training reads: evaluate.py scores every window of a split, in order,
# unaugmented, in batches of data.eval_batch_size.
TRAINING_ONLY_DATA = ("batch_size", "drop_last", "augment", "train_eval", "seed")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score a checkpoint on a split of its own data (default: test) or of another file (default: all
    windows), beside persistence; write metrics.json, figures and, with ``predict=true``, the forecasts.
    With ``predict=future``, forecast the steps after each series' last frame instead (nothing to score).
    """
    check_present(cfg, EVALUATE_READS)
    if cfg.predict not in (False, True, "future"):
        raise ConfigError(
            f"predict={cfg.predict!r}; expected false, true (write the scored windows' forecasts) or "
            "future (forecast the steps after each series' end)"
        )
    check_added_settings(cfg)
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    keys = [override_key(o).split(".") for o in overrides]
    if ignored := [o for o, k in zip(overrides, keys, strict=True) if k[0] not in EVALUATE_READS]:
        raise ConfigError(
            f"{ignored[0]}: evaluate.py takes the model, loss and training settings from the checkpoint, "
            f"so this would be ignored; expected settings of {', '.join(EVALUATE_READS)} only"
        )
    if unread := [k for k in keys if k[0] == "data" and len(k) > 1 and k[1] in TRAINING_ONLY_DATA]:
        raise ConfigError(
            f"data.{unread[0][1]}: a training setting, which evaluate.py would ignore: it scores every "
            "window of the split in order, unaugmented, in batches of data.eval_batch_size; expected "
            "other data settings"
        )
    check_metric(cfg.optimized_metric)
    if cfg.split not in (None, "test", "val", "train", "all"):
        raise ConfigError(
            f"split={cfg.split}; expected test, val, train or all (or null: the test split of the "
            "checkpoint's data, all windows of other data)"
        )
    future = cfg.predict == "future"
    if future and cfg.split is not None:
        raise ConfigError(f"split={cfg.split} with predict=future; expected no split (nothing is scored)")
    if cfg.out:
        check_out(Path(cfg.out))
    if not cfg.ckpt_path:
        raise ConfigError(
            "ckpt_path is not set; expected a checkpoint written by train.py: python evaluate.py "
            "ckpt_path=logs/runs/<time>/<run>/checkpoints/<file>.ckpt (its best is metrics.json's "
            "best_checkpoint)"
        )
    ckpt = load_checkpoint(cfg.ckpt_path)
    stored = OmegaConf.create(ckpt["hyper_parameters"]["config"])
    peaks = evaluation_peaks(cfg, stored, overrides)
    data_cfg, named = evaluation_data(cfg, stored.data, overrides, str(cfg.ckpt_path))
    datamodule: HeatmapData = instantiate(data_cfg)
    datamodule.scaler = Scaler(ckpt["hyper_parameters"]["scale_factor"])  # the training scaler
    datamodule.setup("predict" if future else None)
    trained_bins = ckpt["state_dict"]["angles"].numel()
    if datamodule.n_bins != trained_bins:
        raise CheckpointError(
            f"{cfg.ckpt_path}: trained on {trained_bins} angle bins; {datamodule.source} has "
            f"{datamodule.n_bins} (expected the same)"
        )
    module = restore_forecaster(ckpt, peaks)
    output_dir = Path(cfg.paths.output_dir)
    if future:
        return forecast_future(module, datamodule, output_dir, Path(cfg.out) if cfg.out else None)
    new_data = other_series(datamodule, ckpt, named)
    if not new_data and list(data_cfg.splits) != list(stored.data.splits):
        print(
            f"note: data.splits={list(data_cfg.splits)}, trained with {list(stored.data.splits)}: the "
            "scored split may hold steps the model was trained on"
        )
    split = cfg.split or ("all" if new_data else "test")
    out = Path(cfg.out) if cfg.out else output_dir / "forecasts.npz"
    # What the forecast file writes, of every window: a .npz the target and references too.
    keep = () if not cfg.predict else SCORED if file_type(out) == ".npz" else ("forecast",)
    scored = predict(module, datamodule.loader(split), keep)
    windows = len(scored.windows["series"])
    what = "every window" if split == "all" else f"the {split} split"
    print(f"scored: {what} of {datamodule.source}, {windows:,} windows")
    panels = {"test": module.metrics["test"].compute()}
    optimized = f"test/{cfg.optimized_metric.partition('/')[2]}"
    result = summarize(panels, optimized, datamodule, module.metrics["test"].peak_settings, ("test",))
    result.update(checkpoint=str(cfg.ckpt_path), split=split, data=datamodule.source)
    result["per_series"] = per_series(panels["test"]["windows"], datamodule.heatmaps.ids, module.scale_factor)
    writer = SummaryWriter(str(output_dir))
    write_result(result, output_dir, SimpleNamespace(experiment=writer))
    write_per_series(result["per_series"], output_dir)
    write_figures(scored.first_series, datamodule, output_dir, writer)
    writer.close()
    print(f"written to {output_dir}: metrics.json, per_series.csv, figures (PNG and TensorBoard events)")
    if cfg.predict:
        write_forecasts(out, scored.windows, datamodule)
        print(f"forecasts: {out}")
    return result
