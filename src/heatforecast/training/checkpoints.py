"""train.py's checkpoints: read without running code, rebuilt into a forecaster, resumed from."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from heatforecast.data import DataError, HeatmapData, Scaler
from heatforecast.metrics import DEFAULT_PEAKS, PeakSettings
from heatforecast.models import LeastSquaresLinear
from heatforecast.module import Forecaster
from heatforecast.training.build import build_model, linear_reference
from heatforecast.training.command_line import as_override
from heatforecast.training.config import (
    CheckpointError,
    ConfigError,
    absolute_path,
    check_keys,
    peak_settings,
)
from heatforecast.training.report import read_result

# Data keys that checkpoints made before they existed lack, with what those runs meant.
DATA_ADDED_LATER = {"circular": False}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a heatforecast checkpoint without running code: torch.load(weights_only=True) only
    unpickles tensors and plain containers, and the config inside is plain data."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"ckpt_path={path}: a folder; expected a .ckpt file written by train.py{_files_in(path)}"
        )
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path}: no such file")
    if not zipfile.is_zipfile(path):  # what torch.save writes; torch reads other files as old pickles,
        # and a CSV or a text file met its unpickler as a KeyError or IndexError traceback
        raise CheckpointError(
            f"{path}: cannot be read as a checkpoint (truncated, or not written by torch.save: it is no "
            "zip archive)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: refused: it holds Python objects that could run code when loaded ({reason}); "
            "heatforecast only loads tensors and plain data (torch.load(weights_only=True))"
        ) from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"{path}: cannot be read as a checkpoint (truncated or corrupt?): {err}"
        ) from err
    if (
        not isinstance(ckpt, dict)
        or "config" not in ckpt.get("hyper_parameters", {})
        or "state_dict" not in ckpt
    ):
        raise CheckpointError(f"{path}: not a heatforecast checkpoint (no stored run config)")
    return ckpt


def last_checkpoint(run_dir: Path) -> Path:
    """Where a run keeps its latest state (callbacks.last_checkpoint), for ckpt_path=last."""
    return run_dir / "checkpoints" / "last.ckpt"


def _files_in(folder: Path) -> str:
    """A hint naming the checkpoints in a run folder (or its checkpoints/ folder): the best, which its
    metrics.json names, and last.ckpt, those that are there."""
    try:
        best = json.loads((folder / "metrics.json").read_text()).get("best_checkpoint")
    except (OSError, ValueError, AttributeError):  # no metrics.json (a run cut short), or another file
        best = None
    last = next((p for p in (last_checkpoint(folder), folder / "last.ckpt") if p.is_file()), None)
    named = {"the best, whose panels metrics.json holds": best, "the latest": last}
    found = [
        f"{as_override('ckpt_path', p)} ({what})" for what, p in named.items() if p and Path(p).is_file()
    ]
    return f", e.g. {' or '.join(found)}" if found else ""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A heatforecast checkpoint (:func:`read_checkpoint`); one saved before runs kept the linear
    reference gets it fitted to its training data's train split."""
    ckpt = read_checkpoint(path)
    stored = ckpt["hyper_parameters"]["config"]
    for part in ("model", "loss"):  # their classes, before anything is read or built
        try:
            check_keys(stored[part], part)
        except ConfigError as err:
            raise CheckpointError(f"{path}: the run's {part} cannot be rebuilt here: {err}") from err
    if "linear.weight" not in ckpt["state_dict"]:
        _fit_linear_reference(ckpt, Path(path))
    return ckpt


def _fit_linear_reference(ckpt: dict[str, Any], path: Path) -> None:
    """Add the linear reference to a checkpoint saved before runs kept it: fitted, as the run would have
    fitted it, to the train split of the data it was trained on (its stored data config and scaler)."""
    stored = OmegaConf.create(ckpt["hyper_parameters"]["config"])
    try:
        trained_on: HeatmapData = instantiate(stored.data)
        trained_on.scaler = Scaler(ckpt["hyper_parameters"]["scale_factor"])
        trained_on.setup()
    except (DataError, InstantiationException) as err:
        raise CheckpointError(
            f"{path}: saved before runs kept the linear reference, which is fitted to the train split of "
            f"the data it was trained on, and that data cannot be read now: {err}"
        ) from err
    linear = linear_reference(trained_on)
    ckpt["state_dict"] |= {"linear.weight": linear.weight, "linear.bias": linear.bias}
    print(
        f"{path}: saved before runs kept the linear reference; fitted it to {trained_on.source}'s train split"
    )


def restore_forecaster(ckpt: dict[str, Any], peaks: PeakSettings | None = None) -> Forecaster:
    """The trained Forecaster of a checkpoint (:func:`load_checkpoint`), in eval mode on the CPU, scoring
    ospa_deg with ``peaks`` (None: the run's settings)."""
    stored = OmegaConf.create(ckpt["hyper_parameters"]["config"])
    if peaks is None:  # a run made before the settings existed used the defaults
        peaks = peak_settings(stored.peaks) if "peaks" in stored else DEFAULT_PEAKS
    angles, linear = ckpt["state_dict"]["angles"], ckpt["state_dict"]["linear.weight"]
    module = Forecaster(
        model=build_model(stored, angles.numel()),
        loss=instantiate(stored.loss),
        optimizer=None,
        scheduler=None,
        angles=angles,
        scale_factor=ckpt["hyper_parameters"]["scale_factor"],
        scale=stored.data.scale,
        linear=LeastSquaresLinear(linear.shape[1], linear.shape[0]),  # load_state_dict fills it
        circular=stored.data.get("circular", DATA_ADDED_LATER["circular"]),
        peak_settings=peaks,
        config=ckpt["hyper_parameters"]["config"],
    )
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


def load_forecaster(path: str | Path) -> Forecaster:
    """A trained forecaster from a train.py checkpoint, for use in Python:
    ``load_forecaster(path).forecast(last_frames)`` gives the next H frames, in data units."""
    return restore_forecaster(load_checkpoint(path))


def resolve_ckpt(cfg: DictConfig, output_dir: Path, sweep: bool = False) -> str | None:
    """The checkpoint the run in ``output_dir`` continues from ``cfg.ckpt_path`` (None: a new run).

    In a multirun (``sweep``), ``ckpt_path=last`` resumes a sweep cut short: a job whose folder holds no
    run yet had not started, and starts now, saying so (in a single run, that is a wrong folder).
    """
    last = last_checkpoint(output_dir)
    earlier = [*sorted((output_dir / "checkpoints").glob("*.ckpt")), *output_dir.glob("metrics.json")]
    if cfg.ckpt_path in (None, ""):
        # A submitit job (hydra/launcher=slurm or submitit_local) that was preempted or reached its time
        # limit is requeued and runs again in its own run folder: a last.ckpt there is its earlier attempt's.
        if os.environ.get("SUBMITIT_EXECUTOR") and last.is_file():
            print(f"resuming: this submitit job was requeued; continuing from {last}", flush=True)
            return str(last)
        if earlier:
            raise ConfigError(
                f"the run folder {output_dir} already holds a run ({', '.join(p.name for p in earlier)}); a "
                "new run there would mix its checkpoints, TensorBoard events and metrics.json with that "
                "one's, and ckpt_path=last would continue the older run; expected ckpt_path=last to continue "
                "it, or another hydra.run.dir (hydra.sweep.dir with -m), or to remove the folder first"
            )
        return None
    path = last if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if not path.is_file():
        if sweep and cfg.ckpt_path == "last" and not earlier:
            print(f"note: ckpt_path=last: this sweep job had not started (no {last}); it starts now")
            return None
        if cfg.ckpt_path == "last" and (output_dir / "multirun.yaml").is_file():
            raise ConfigError(
                f"ckpt_path=last: {output_dir} is a sweep's folder (it holds multirun.yaml), not a run's; "
                f"expected the sweep's command again with -m hydra.sweep.dir={output_dir} ckpt_path=last, "
                "or one of its job folders as hydra.run.dir"
            )
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: no checkpoint at {path}; to resume, pass the run's folder as "
            "hydra.run.dir=<run dir> with ckpt_path=last (a multirun's folder as hydra.sweep.dir), or a "
            ".ckpt file"
        )
    return str(path)


def finished_run(output_dir: Path, ckpt_path: str) -> dict[str, Any] | None:
    """The metrics.json of the run in ``output_dir`` when ``ckpt_path`` is that run's last.ckpt and the run
    had finished (train.py writes metrics.json last, atomically); None otherwise."""
    if Path(ckpt_path).resolve() != last_checkpoint(output_dir).resolve():
        return None
    try:
        return read_result(output_dir / "metrics.json")
    except FileNotFoundError:
        return None


# Settings a resumed run may give otherwise than the run it continues: where it writes and what it
# shows, the callbacks that watch it, its checks, where the data lives, evaluation batches, the share of
# train windows validation scores (drawing no random numbers, it leaves the fit as it is), the device and
# precision it runs on (not the number of processes: each holds its share's data position), and the
# kernels of the optimizer's step (fused or not: the same update, rounded otherwise).
RESUME_MAY_CHANGE = (
    "paths", "ckpt_path", "callbacks", "logger", "val_figure_every", "nonfinite", "compile",
    "data.on_device", "data.eval_batch_size", "data.train_eval", "optim.optimizer.fused",
    "trainer.accelerator", "trainer.precision", "trainer.deterministic", "trainer.enable_progress_bar",
    "trainer.enable_model_summary", "trainer.log_every_n_steps",
)  # fmt: skip


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {"a.b.c": leaf}."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    return {
        k: v
        for key, value in node.items()
        for k, v in _flat(value, f"{prefix}.{key}" if prefix else key).items()
    }


class Resumed(NamedTuple):
    """What a resumed run needs of its checkpoint beside the weights and states Lightning restores."""

    step: int  # the optimizer steps it had made (its global_step)
    series: list[str] | None  # digests of the series it was trained on (None: it predates them)
    stopped: bool  # a callback (early stopping) had stopped the fit when it was saved


def check_resume(cfg: DictConfig, ckpt_path: str) -> Resumed:
    """Stop if a resumed run's settings differ from those its checkpoint was trained with (outside
    RESUME_MAY_CHANGE and the keys set from paths): it would continue the weights, optimizer, one-cycle
    schedule and data position of another run, and fail mid-fit or silently mix the two. Keys one of
    the two configs lacks (added to conf/ since) are not compared. The digests of the series it was
    trained on are what :func:`check_resumed_data` compares with the data read now; with them,
    ``data.path`` may change (the data moved)."""
    ckpt = read_checkpoint(ckpt_path)
    stored = ckpt["hyper_parameters"]
    trained = _flat(stored["config"])
    now = _flat(OmegaConf.to_container(cfg, resolve=True))
    for flat in (trained, now):  # a relative data.path names the same data as its absolute form
        if isinstance(flat.get("data.path"), str):
            flat["data.path"] = absolute_path(flat["data.path"])
    located = {
        k for k, v in _flat(OmegaConf.to_container(cfg, resolve=False)).items() if "${paths." in str(v)
    }
    exempt = located | {k for k in now if any(k == p or k.startswith(p + ".") for p in RESUME_MAY_CHANGE)}
    if stored.get("data_fingerprints"):
        exempt.add("data.path")
    changed = sorted(k for k in trained.keys() & now.keys() - exempt if trained[k] != now[k])
    if changed:
        shown = "; ".join(f"{k}: {trained[k]!r} -> {now[k]!r}" for k in changed[:5])
        more = f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: this command's settings differ from the run it resumes: {shown}"
            f"{more}; expected that run's settings (its .hydra/overrides.yaml), as a resume continues its "
            "weights, optimizer, schedule and data position"
        )
    return Resumed(ckpt["global_step"], stored.get("data_fingerprints"), ckpt.get("fit_stopped", False))


def check_resumed_data(trained: list[str], datamodule: HeatmapData, ckpt_path: str) -> None:
    """Stop if a resumed run's data holds other series than the run it continues trained on (``trained``,
    their digests): a file changed in place, or another file where the data was moved."""
    if sorted(datamodule.heatmaps.fingerprints) != sorted(trained):
        raise ConfigError(
            f"ckpt_path={ckpt_path}: {datamodule.source} holds other series than the run it resumes was "
            "trained on (changed, or another file); expected that data, as a resume continues its data "
            "position and its scaler"
        )
