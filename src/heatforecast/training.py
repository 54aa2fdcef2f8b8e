"""From a Hydra config to a trained, scored run: build objects, fit, validate/test, metrics.json."""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import os
import pickle
import platform
import re
import sys
import types
import typing
import warnings
import zipfile
from pathlib import Path
from time import perf_counter
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import InstantiationException, OverrideParseException
from hydra.types import RunMode
from hydra.utils import get_class, get_object, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher, _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.tensorboard import SummaryWriter

from heatforecast.data import DataError, HeatmapData, Scaler
from heatforecast.forecasts import (
    FORECAST_SUFFIXES,
    forecast_future,
    per_series,
    predict,
    write_figures,
    write_forecasts,
    write_per_series,
)
from heatforecast.metrics import (
    FORECASTERS,
    METRICS,
    MIN_UNITS,
    VECTOR_METRICS,
    higher_is_better,
    skill_intervals,
)
from heatforecast.models import LeastSquaresLinear
from heatforecast.module import Forecaster, NonFiniteLossError
from heatforecast.plots import horizon_figure, plt


class ConfigError(ValueError):
    """The run's config asks for something that cannot work."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unsafe, unreadable, or made for other data."""


# Errors a user causes (bad data, config or checkpoint): the entry points print error_message() alone.
USER_ERRORS = (DataError, ConfigError, CheckpointError, NonFiniteLossError, InstantiationException)


def error_message(err: Exception) -> str:
    """The line an entry point prints for one of USER_ERRORS. Hydra wraps what a configured class
    raised as "Error in call to target 'CLASS':" and the exception's repr on a second line; the class's
    own message already names the setting, so it comes first, on one line, with the class after it."""
    if isinstance(err, InstantiationException) and err.__cause__ is not None:
        target = str(err).split("'")[1] if str(err).count("'") >= 2 else "a configured class"
        return f"{err.__cause__} (raised by {target})"
    return str(err)


def unquoted_value(args: list[str]) -> str | None:
    """A message for the first command-line override that Hydra cannot parse because its value holds
    ``=`` (a run folder's path does: ``1_loss=emd``), or None. Hydra's own says only "mismatched input"."""
    parser = OverridesParser.create()
    for arg in args:
        key, _, value = arg.partition("=")
        if "=" not in value:
            continue
        try:
            parser.parse_overrides([arg])
        except OverrideParseException:
            return (
                f"{arg}: Hydra reads '=' and ',' in a value as its own syntax; expected the value quoted, "
                f"as in {as_override(key, value)}"
            )
    return None


def override_key(override: str) -> str:
    """The key a command-line override sets: ``+data.max_gap=null`` -> ``data.max_gap``."""
    return override.split("=", 1)[0].lstrip("+~")


def with_data_option(args: list[str]) -> list[str]:
    """train.py's command line with ``data=file`` added where it sets ``data.path`` but no data option:
    the default data is generated and reads no file, and Hydra's own refusal names only the key."""
    keys = [override_key(a) for a in args if not a.startswith("-")]
    if "data.path" in keys and "data" not in keys:
        print("note: data.path without a data option: reading it as data=file", file=sys.stderr)
        return [*args, "data=file"]
    return args


def absolute_path(path: str) -> str:
    """``path`` (a file, folder or glob pattern) from the working directory, ``~`` expanded."""
    return os.path.abspath(os.path.expanduser(path))


def as_override(key: str, value: object) -> str:
    """``key=value`` as it must be typed on a command line: quoted where Hydra would parse the value."""
    text = str(value)
    return f"\"{key}='{text}'\"" if any(c in text for c in "=,") else f"{key}={text}"


def run_name(overrides: str) -> str:
    """A folder name from a run's overrides (``hydra.job.override_dirname``): slashes become
    underscores, and a name too long for a file system is cut and suffixed with a hash."""
    name = overrides.replace("/", "_")
    if len(name) <= 150:
        return name
    return f"{name[:140]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


OmegaConf.register_new_resolver("run_name", run_name, replace=True)

# Two lines every run printed that say nothing about it: Lightning's advertisement for its cloud
# logger, and its own use of a torch API that torch deprecated (lightning/pytorch/utilities/_pytree.py).
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
    lambda record: not str(record.msg).startswith("💡 Tip")
)
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def metric_mode(metric: str, higher: str = "max", lower: str = "min") -> str:
    """Which way ``metric`` (``val/NAME``) improves: ``higher`` for the skills (1 - model / persistence),
    ``lower`` for every other metric (errors). conf/ sets the checkpoint's and early stopping's ``mode``
    and Optuna's ``direction`` with it, so ``optimized_metric=val/skill_emd`` needs nothing else."""
    return higher if higher_is_better(metric.partition("/")[2]) else lower


OmegaConf.register_new_resolver("metric_mode", metric_mode, replace=True)


# torch.compile's modes (None: its default) that a fit was run with on a GPU (docs/performance.md);
# max-autotune (CUDA graphs plus kernel autotuning) never was, so it is not offered.
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune-no-cudagraphs")


# Data keys that checkpoints made before they existed lack, with what those runs meant.
DATA_ADDED_LATER = {"circular": False}


HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
# Where the **kwargs of another library's classes in conf/ go, so that their keys are checked too.
PASSED_ON = {TensorBoardLogger: SummaryWriter}


def _arguments(target: Any) -> dict[str, Any] | None:
    """The keyword arguments ``target`` (a class or function) takes, each with its type annotation
    (None where unknown); None if it takes any. A heatforecast class's ``**kwargs`` go to its parent's
    ``__init__``, so the parents' count too; another library's ``**kwargs`` may go anywhere, so its
    targets take any key."""
    names: dict[str, Any] = {}
    chain = (
        [c.__init__ for c in target.__mro__ if "__init__" in vars(c)] if inspect.isclass(target) else [target]
    )
    for function in chain:
        params = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # an annotation that does not resolve outside its library: left unchecked
            hints = {}
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names |= {p.name: hints.get(p.name) for p in params if p.kind in kinds and p.name not in names}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
        if target in PASSED_ON:
            return names | (_arguments(PASSED_ON[target]) or {})
        if not getattr(function, "__module__", "").startswith("heatforecast."):
            return None
    return None


def _type_error(value: Any, annotation: Any) -> str | None:
    """What ``value`` should have been, if ``annotation`` allows only int, float, bool, str or None
    and the value is none of them ("an integer or null"); None if it fits or the annotation is another."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    allowed = typing.get_args(annotation) if union else (annotation,)
    if not set(allowed) <= {int, float, bool, str, type(None)}:
        return None
    if isinstance(value, str) and value.startswith("${"):
        return None  # an interpolation, resolved later
    fits = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
        type(None): value is None,
    }
    if any(fits[t] for t in allowed):
        return None
    words = {int: "an integer", float: "a number", bool: "true or false", str: "text", type(None): "null"}
    return " or ".join(words[t] for t in allowed)


def check_keys(cfg: DictConfig | Any, path: str = "") -> None:
    """Stop, naming the key, if a config node with a ``_target_`` holds a key its target does not take
    (a misspelt ``+model.dropuot=0.1``, or ``data.generator`` left over under ``data=file``) or a value
    that the key's plain type annotation does not allow (``trainer.max_epochs=ten``), before anything
    is built: some nodes are only instantiated late in a run (the optimizer), or not at all."""
    node = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
    if isinstance(node, list):
        for i, item in enumerate(node):
            check_keys(item, f"{path}[{i}]")
        return
    if not isinstance(node, dict):
        return
    if isinstance(target := node.get("_target_"), str):
        try:
            target_object = get_object(target)
        except (ImportError, AttributeError, ValueError) as err:
            key = f"{path}._target_" if path else "_target_"
            raise ConfigError(
                f"{key}={target}: cannot be imported; expected the dotted path of a class or function "
                "(package.module.Name)"
            ) from err
        try:
            accepted = _arguments(target_object)
        except (TypeError, ValueError):  # no signature to read (a builtin): left to instantiate()
            accepted = None
        for name, value in node.items() if accepted is not None else ():
            key = f"{path}.{name}" if path else name
            if name in HYDRA_KEYS:
                continue
            if name not in accepted:
                raise ConfigError(
                    f"{key}: {target} takes no such setting; expected one of: {', '.join(sorted(accepted))} "
                    f"(to drop a key that another config set, add ~{key} to the command)"
                )
            if expected := _type_error(value, accepted[name]):
                raise ConfigError(f"{key}={value!r}: {target} expects {expected} there")
    for key, value in node.items():
        if key not in HYDRA_KEYS:
            check_keys(value, f"{path}.{key}" if path else str(key))


# Config nodes whose keys heatforecast reads by name (the top level is ""): a key added there with +
# is read by nothing unless an interpolation refers to it. Other nodes are checked by their targets.
READ_BY_NAME = ("", "optim", "paths")


def check_added_settings(cfg: DictConfig | dict) -> None:
    """Stop if the command added with ``+`` a setting that nothing reads: a top-level, ``optim.`` or
    ``paths.`` key that no interpolation refers to (``+seeed=3``: Hydra suggests the ``+`` when a key
    does not exist, and the run would then ignore it). Keys added inside a part's config are
    :func:`check_keys`'s; added config groups (``+experiment=...``) are nodes, not values."""
    if not HydraConfig.initialized():
        return
    plain = OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg
    interpolations = json.dumps(plain)  # where "${...}" references stand, unresolved
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0]
        if not key.startswith("+") or key.startswith("++") or any(c in key for c in "/@"):
            continue
        key = key[1:]
        parent, _, name = key.rpartition(".")
        node = plain.get(parent) if parent else plain
        if parent not in READ_BY_NAME or not isinstance(node, dict):
            continue
        if not parent and isinstance(node.get(name), dict):
            continue  # a config group
        if "${" + key + "}" in interpolations or "${" + key + "." in interpolations:
            continue  # a variable for interpolations elsewhere
        settings = sorted(k for k, v in node.items() if k != name and (parent or not isinstance(v, dict)))
        where = f"a setting {name!r} to {parent}" if parent else f"a top-level setting {name!r}"
        raise ConfigError(
            f"{override}: adds {where} that nothing reads; expected one of: {', '.join(settings)} "
            "(set without +), or a key inside a part, e.g. +trainer.KEY=VALUE"
        )


def check_config(cfg: DictConfig) -> None:
    """A training config's checks that need nothing built: a launcher without -m, added settings, the
    seed, every part's keys and their plain-typed values, a schedule without a run length, a GPU
    trainer without a GPU, and every callback entry being a callback (a misspelt
    ``+callbacks.early_stoping.patience=2`` makes a new entry with no class)."""
    launcher = _choice("hydra/launcher")
    if launcher not in (None, "basic") and HydraConfig.get().mode != RunMode.MULTIRUN:
        raise ConfigError(
            f"hydra/launcher={launcher} without -m: Hydra hands jobs to a launcher in a multirun only, so "
            f"this would run here; expected python train.py -m hydra/launcher={launcher} ... (one job too)"
        )
    plain = OmegaConf.to_container(cfg, resolve=False)  # once, for all the checks below
    check_added_settings(plain)
    if expected := _type_error(cfg.seed, int):
        raise ConfigError(f"seed={cfg.seed!r}: expected {expected}")
    for group in ("data", "model", "loss"):
        if not isinstance(plain.get(group), dict) or "_target_" not in plain[group]:
            raise ConfigError(
                f"{group}={_choice(group) or '...'} names no class to build (no _target_); expected an "
                f"option of conf/{group}/ that does (files starting with _ are shared settings)"
            )
    check_keys(plain)
    if cfg.trainer.get("limit_val_batches") == 0:
        raise ConfigError(
            f"trainer.limit_val_batches={cfg.trainer.limit_val_batches} turns validation off, but the "
            f"checkpoint kept, early stopping and sweepers read optimized_metric={cfg.optimized_metric}; "
            "expected a positive number or fraction of val batches"
        )
    if (
        cfg.optim.get("scheduler")
        and cfg.trainer.get("max_epochs") == -1
        and cfg.trainer.get("max_steps", -1) == -1
    ):
        raise ConfigError(
            "trainer.max_epochs=-1 with no trainer.max_steps: the run has no set length, which the one-cycle "
            "schedule (optim.scheduler) spreads its warm-up and decay over; expected trainer.max_steps=N "
            "too, or optim.scheduler=null (a constant learning rate, early stopping ends the run)"
        )
    if cfg.trainer.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        cpu_only = "" if torch.version.cuda else " (a CPU-only build: README 'Install' gives a CUDA one)"
        raise ConfigError(
            f"trainer.accelerator={cfg.trainer.accelerator} (trainer=gpu or ddp), but torch "
            f"{torch.__version__}{cpu_only} sees no CUDA GPU; on this machine use trainer=cpu"
        )
    callbacks = plain["callbacks"]
    for name, callback in callbacks.items():
        if callback is not None and not (isinstance(callback, dict) and "_target_" in callback):
            have = ", ".join(k for k, v in callbacks.items() if v is not None and k != name)
            raise ConfigError(
                f"callbacks.{name}: no _target_; expected a callback config (its class in _target_) or "
                f"null to turn one off; the callbacks: {have}"
            )


def build_model(cfg: DictConfig, n_bins: int) -> torch.nn.Module:
    """Instantiate ``cfg.model``, giving it the data's bin count if it takes one."""
    params = inspect.signature(get_class(cfg.model._target_)).parameters
    return instantiate(cfg.model, **({"n_bins": n_bins} if "n_bins" in params else {}))


def build_module(cfg: DictConfig, datamodule: HeatmapData) -> Forecaster:
    """The LightningModule for a set-up datamodule, with the linear reference fitted to its train split."""
    model, loss = build_model(cfg, datamodule.n_bins), instantiate(cfg.loss)
    for name, part in loss.named_modules():
        # A CDF loss that wraps while the metrics do not (or the reverse) would select checkpoints on a
        # metric that disagrees with the training loss about what a 0/360 degree miss costs.
        if getattr(part, "circular", datamodule.circular) != datamodule.circular:
            where = f"loss.{name}" if name else "loss"
            wraps, data_wraps = str(part.circular).lower(), str(datamodule.circular).lower()
            raise ConfigError(
                f"{where}.circular={wraps} but data.circular={data_wraps}; expected the same: set "
                "data.circular (the losses, metrics and model follow it)"
            )
    if cfg.compile:  # in place, so state_dict keys stay those of the plain modules
        mode = None if cfg.compile is True else cfg.compile
        if mode not in COMPILE_MODES:
            modes = ", ".join(COMPILE_MODES[1:])
            raise ConfigError(f"compile={cfg.compile!r}; expected true, false or a mode: {modes}")
        model.compile(mode=mode)
        loss.compile(mode=mode)  # fuses the elementwise passes of the distribution losses
    trainable = any(p.requires_grad for p in model.parameters())
    loss_name = _choice("loss") or cfg.loss._target_.rsplit(".", 1)[-1]
    linear = linear_reference(datamodule)
    try:  # the module checks nonfinite and val_figure_every
        module = Forecaster(
            model=model,
            loss=loss,
            optimizer=instantiate(cfg.optim.optimizer) if trainable else None,
            scheduler=instantiate(cfg.optim.scheduler) if trainable and cfg.optim.scheduler else None,
            angles=datamodule.angles,
            scale_factor=datamodule.scaler.factor,
            scale=datamodule.scale,
            linear=linear,
            circular=datamodule.circular,
            loss_name=loss_name,
            nonfinite=cfg.nonfinite,
            val_figure_every=cfg.val_figure_every,
            config=OmegaConf.to_container(cfg, resolve=True),
        )
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if module.optimizer_factory is not None:
        # The optimizer and schedule check their settings (a negative lr, ...) when built, which
        # Lightning does only once the fit has started: built here once, they stop the run before it.
        try:
            module.build_optimizers(total_steps=100)
        except ValueError as err:
            raise ConfigError(f"optim: {err}") from err
    return module


def linear_reference(datamodule: HeatmapData) -> LeastSquaresLinear:
    """The linear reference fitted to a set-up datamodule's train windows (all of them, in order)."""
    return LeastSquaresLinear(datamodule.context_len, datamodule.horizon).fit(datamodule.in_order("train"))


def build_trainer(cfg: DictConfig, extra_callbacks: tuple[L.Callback, ...] = ()) -> L.Trainer:
    """The configured Trainer with the configured logger and callbacks, plus ``extra_callbacks``.

    Without a logger (``~logger``) the learning-rate monitor, which only writes to it, is left out.
    """
    logger = instantiate(cfg.logger) if cfg.get("logger") is not None else False  # None: Lightning's own
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    if not logger:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return instantiate(cfg.trainer, logger=logger, callbacks=[*callbacks, *extra_callbacks])


def _choice(group: str) -> str | None:
    """The option picked for a config group (``loss=emd`` -> "emd"), when run through Hydra."""
    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def _resolve_ckpt(cfg: DictConfig, output_dir: Path) -> str | None:
    last = output_dir / "checkpoints" / "last.ckpt"
    if cfg.ckpt_path in (None, ""):
        # A submitit job (hydra/launcher=slurm or submitit_local) that was preempted or reached its time
        # limit is requeued and runs again in its own run folder: a last.ckpt there is its earlier attempt's.
        if os.environ.get("SUBMITIT_EXECUTOR") and last.is_file():
            print(f"resuming: this submitit job was requeued; continuing from {last}", flush=True)
            return str(last)
        earlier = [*sorted((output_dir / "checkpoints").glob("*.ckpt")), *output_dir.glob("metrics.json")]
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
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: no checkpoint at {path}; to resume, pass the run's folder as "
            "hydra.run.dir=<run dir> with ckpt_path=last, or a .ckpt file"
        )
    return str(path)


# Settings a resumed run may give otherwise than the run it continues: where it writes and what it
# shows, the callbacks that watch it, its checks, where the data lives, evaluation batches, and the
# device and precision it runs on (not the number of processes: each holds its share's data position).
RESUME_MAY_CHANGE = (
    "paths", "ckpt_path", "callbacks", "logger", "val_figure_every", "nonfinite", "compile",
    "data.on_device", "data.eval_batch_size",
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


def _check_resume(cfg: DictConfig, ckpt_path: str) -> None:
    """Stop if a resumed run's settings differ from those its checkpoint was trained with (outside
    RESUME_MAY_CHANGE and the keys set from paths): it would continue the weights, optimizer, one-cycle
    schedule and data position of another run, and fail mid-fit or silently mix the two. Keys one of
    the two configs lacks (added to conf/ since) are not compared."""
    trained = _flat(read_checkpoint(ckpt_path)["hyper_parameters"]["config"])
    now = _flat(OmegaConf.to_container(cfg, resolve=True))
    for flat in (trained, now):  # a relative data.path names the same data as its absolute form
        if isinstance(flat.get("data.path"), str):
            flat["data.path"] = absolute_path(flat["data.path"])
    located = {
        k for k, v in _flat(OmegaConf.to_container(cfg, resolve=False)).items() if "${paths." in str(v)
    }
    exempt = located | {k for k in now if any(k == p or k.startswith(p + ".") for p in RESUME_MAY_CHANGE)}
    changed = sorted(k for k in trained.keys() & now.keys() - exempt if trained[k] != now[k])
    if changed:
        shown = "; ".join(f"{k}: {trained[k]!r} -> {now[k]!r}" for k in changed[:5])
        more = f" (and {len(changed) - 5} more)" if len(changed) > 5 else ""
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: this command's settings differ from the run it resumes: {shown}"
            f"{more}; expected that run's settings (its .hydra/overrides.yaml), as a resume continues its "
            "weights, optimizer, schedule and data position"
        )


def _check_metric(name: str, splits: tuple[str, ...] = ("val", "test")) -> None:
    split, _, metric = name.partition("/")
    if split not in splits or metric not in METRICS:
        expected = " or ".join(f"{s}/NAME" for s in splits)
        why = ""
        if split == "test" and "test" not in splits:  # a real split, which training must not see
            why = "; training picks checkpoints and stops on it, which the test split must not steer"
        raise ConfigError(
            f"optimized_metric={name!r}; expected {expected} with NAME one of {', '.join(METRICS)}{why}"
        )


def _custom_scalars(logger: Any) -> None:
    """TensorBoard layout: train vs val loss, and each val metric beside the references', in one chart."""
    writer = getattr(logger, "experiment", None)
    if not hasattr(writer, "add_custom_scalars"):
        return
    layout = {
        "loss": {"train vs val": ["Multiline", ["^train/loss_epoch$", "^val/loss$"]]},
        "val: model vs the references": {
            m: ["Multiline", [f"^val/{m}$", *(f"^val/{who}/{m}$" for who in FORECASTERS[1:])]]
            for m in METRICS
        },
    }
    writer.add_custom_scalars(layout)


def _check_processes(cfg: DictConfig, trainer: L.Trainer) -> None:
    """Refuse what several DDP processes cannot do, before any of them starts."""
    if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher) and trainer.num_devices > 1:
        raise ConfigError(
            f"trainer.strategy={cfg.trainer.get('strategy')}: processes started by multiprocessing keep "
            "the metric panels, and this process, which writes metrics.json, gets none of them; expected "
            "trainer.strategy=ddp"
        )
    if cfg.nonfinite == "skip" and trainer.world_size > 1:
        raise ConfigError(
            f"nonfinite=skip with {trainer.world_size} DDP processes; expected nonfinite=raise or off: "
            "Lightning cannot skip a training step in distributed training"
        )
    starts_processes = (
        isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher)
        and not trainer.strategy.cluster_environment.creates_processes_externally
        and trainer.num_devices > 1
    )
    if starts_processes and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            f"trainer.strategy={cfg.trainer.get('strategy')} with {trainer.num_devices} processes in a "
            "multirun (-m) that runs its jobs here: Lightning starts each extra process by running the "
            "command line again, which would run the whole sweep again; expected one DDP run per command "
            "(no -m), or hydra/launcher=slurm, where SLURM starts the processes"
        )


def run(cfg: DictConfig) -> float:
    """Train (unless the model has no parameters), score val and test, write metrics.json.

    Returns the value of ``cfg.optimized_metric`` for the best checkpoint (what sweepers minimise).
    """
    _check_metric(cfg.optimized_metric, ("val",))
    check_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = _resolve_ckpt(cfg, output_dir)
    if ckpt_path is not None:
        _check_resume(cfg, ckpt_path)
    if cfg.data.get("path"):
        # Absolute in the checkpoint's config, so evaluate.py finds the data from any folder.
        cfg.data.path = absolute_path(cfg.data.path)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    trainer = build_trainer(cfg)  # draws no random numbers, so the model's init is as before
    _check_processes(cfg, trainer)  # before the data is read

    datamodule: HeatmapData = instantiate(cfg.data)
    datamodule.setup()
    datamodule.check_splits()  # before any training, not after it
    module = build_module(cfg, datamodule)
    logger = trainer.logger
    if trainer.is_global_zero:
        _custom_scalars(logger)

    best, fit = None, None
    if module.optimizer_factory is not None:
        fit = timed_fit(trainer, module, datamodule, ckpt_path)
        best = trainer.checkpoint_callback.best_model_path or None
    trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
    trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)

    result = summarize(module.panels, cfg.optimized_metric, datamodule)
    result.update(best_checkpoint=best, seed=cfg.seed, fit=fit, versions=versions())
    if trainer.is_global_zero:
        write_result(result, output_dir, logger)
        final = {f"hp/{s}_{m}": result["model"][s][m] for s in ("val", "test") for m in METRICS}
        for who, cells in result["intervals"]["per_horizon"].items():  # when there are intervals
            if (steps := cells["emd"]["ahead_steps"]) is not None:
                final[f"hp/test_steps_ahead_of_{who}"] = steps
        if logger is not None:
            logger.log_hyperparams(_hparams(cfg), metrics=final)
            logger.finalize("success")
    return result["value"]


def write_result(result: dict[str, Any], output_dir: Path, logger: Any = None) -> None:
    """metrics.json, the test-by-horizon figure (PNG and TensorBoard), and the panel on stdout."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = output_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(output_dir / "metrics.json")  # atomic: a reader never sees half a file
    per_horizon = {who: result[who]["test_per_horizon"] for who in FORECASTERS}
    skills = result.get("intervals", {}).get("per_horizon")
    fig = horizon_figure(per_horizon, ("emd", "mse", "peak_err_deg", "kl"), skills)
    fig.savefig(output_dir / "test_by_horizon.png", dpi=100)
    writer = getattr(logger, "experiment", None)
    if hasattr(writer, "add_figure"):
        writer.add_figure("test/by_horizon", fig)
    plt.close(fig)
    print(panel_table(result))


def summarize(
    panels: dict[str, Any],
    optimized: str,
    datamodule: HeatmapData,
    splits: tuple[str, ...] = ("val", "test"),
) -> dict[str, Any]:
    """The metrics.json content from the module's final panels (DESIGN.md's shape), with the test
    skills' intervals (their bootstrap blocks span one window of ``datamodule``, L + H steps)."""
    out: dict[str, Any] = {"optimized_metric": optimized}
    for who in FORECASTERS:
        out[who] = {s: {k: float(v) for k, v in panels[s][who].items()} for s in splits}
        for s in splits:
            per_h = panels[s][f"{who}_per_horizon"]
            # reshape: torchmetrics hands back a one-step horizon (data.horizon=1) as a 0-d tensor
            out[who][f"{s}_per_horizon"] = {k: v.reshape(-1).tolist() for k, v in per_h.items()}
    split, _, metric = optimized.partition("/")
    out["value"] = out["model"][split][metric]
    out["intervals"] = skill_intervals(panels["test"]["windows"], datamodule.context_len + datamodule.horizon)
    return out


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's config for the TensorBoard hparams tab, with each group's chosen option."""
    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("paths", None)
    params.pop("callbacks", None)
    for group in ("data", "model", "loss", "trainer"):
        if (choice := _choice(group)) is not None:
            params[f"{group}_choice"] = choice
    return params


def timed_fit(
    trainer: L.Trainer, module: Forecaster, datamodule: HeatmapData, ckpt_path: str | None
) -> dict[str, Any]:
    """Fit, and return its training throughput (validation epochs and checkpoints included) and the
    device's peak memory."""
    device = trainer.strategy.root_device
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.init()  # the allocator's statistics exist only once CUDA is initialised
        torch.cuda.reset_peak_memory_stats(device)
    start = perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    seconds = perf_counter() - start
    samples = module.samples_trained * trainer.world_size
    return {
        "device": torch.cuda.get_device_name(device) if cuda else device.type,
        "precision": str(trainer.precision),
        "samples": samples,
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 1),
        "peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
    }


def versions() -> dict[str, str]:
    import hydra
    import lightning
    import numpy

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "hydra": hydra.__version__,
        "numpy": numpy.__version__,
    }


def panel_table(result: dict[str, Any]) -> str:
    """A plain-text test panel: the model beside the references, the skills and, when the result has
    them, their intervals."""
    panels = [result[who]["test"] for who in FORECASTERS]
    lines = [f"{'test metric':<14}" + "".join(f"{who:>13}" for who in FORECASTERS)]
    for name in METRICS:
        if not name.startswith("skill_"):
            lines.append(f"{name:<14}" + "".join(f"{panel[name]:>13.4g}" for panel in panels))
    skills = [
        f"{who}: {result[who]['test']['skill_emd']:+.3f}, {result[who]['test']['skill_mse']:+.3f}"
        for who in FORECASTERS[2:]
    ]
    model = result["model"]["test"]
    lines.append(
        f"skill_emd {model['skill_emd']:+.3f}   skill_mse {model['skill_mse']:+.3f}   ({'; '.join(skills)})"
    )
    if intervals := result.get("intervals"):
        lines.append(interval_table(intervals))
    if fit := result.get("fit"):
        memory = f", peak GPU memory {fit['peak_memory_mb']:,.0f} MB" if fit["peak_memory_mb"] else ""
        lines.append(
            f"fit: {fit['samples']:,} samples in {fit['seconds']:.1f} s on {fit['device']} "
            f"({fit['precision']}): {fit['samples_per_s']:,.0f} samples/s with validation{memory}"
        )
    return "\n".join(lines)


def interval_table(intervals: dict[str, Any]) -> str:
    """The skills with their intervals, a row per metric, a column per reference."""
    refs = FORECASTERS[1:]
    units = f"{intervals['units']} series"
    if intervals["unit"] == "block":
        units = f"{intervals['units']} blocks of {intervals['block_steps']} steps"
    if intervals["units"] < MIN_UNITS:
        return f"skill intervals: none, the test windows make only {units} (fewer than {MIN_UNITS})"
    lines = [
        f"skill of the model, {intervals['level']:.0%} interval (bootstrap over {units}):",
        f"{'':<14}" + "".join(f"{'vs ' + who:>26}" for who in refs),
    ]
    for name in VECTOR_METRICS:
        cells = "".join(
            f"{c['skill']:>+10.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"
            for c in (intervals[who][name] for who in refs)
        )
        lines.append(f"{name:<14}{cells}")
    for name, by_ref in _by_metric(intervals.get("per_horizon", {})).items():
        verdicts = "; ".join(f"vs {who}: {_verdict(cell)}" for who, cell in by_ref.items())
        lines.append(f"skill_{name} by horizon step: {verdicts}")
    return "\n".join(lines)


def _by_metric(per_horizon: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{reference: {metric: cell}} -> {metric: {reference: cell}}."""
    out: dict[str, dict[str, Any]] = {}
    for who, cells in per_horizon.items():
        for name, cell in cells.items():
            out.setdefault(name, {})[who] = cell
    return out


def _verdict(cell: dict[str, Any]) -> str:
    """Which horizon steps the model is ahead at (interval above 0), behind at (below 0), or not told
    apart from the reference at, as step ranges: "ahead at 1-6, not told apart at 7-10"."""
    groups: dict[str, list[int]] = {"ahead": [], "behind": [], "not told apart": []}
    for step, (low, high) in enumerate(zip(cell["low"], cell["high"]), start=1):
        groups["ahead" if low > 0 else "behind" if high < 0 else "not told apart"].append(step)
    return ", ".join(f"{what} at {_ranges(steps)}" for what, steps in groups.items() if steps)


def _ranges(steps: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    runs: list[list[int]] = []
    for step in steps:
        if runs and step == runs[-1][-1] + 1:
            runs[-1].append(step)
        else:
            runs.append([step])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A heatforecast checkpoint (:func:`read_checkpoint`); one saved before runs kept the linear
    reference gets it fitted to its training data's train split."""
    ckpt = read_checkpoint(path)
    if "linear.weight" not in ckpt["state_dict"]:
        _fit_linear_reference(ckpt, Path(path))
    return ckpt


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a heatforecast checkpoint without running code: torch.load(weights_only=True) only
    unpickles tensors and plain containers, and the config inside is plain data."""
    path = Path(path)
    if path.is_dir():
        inside = [p for p in (path / "checkpoints" / "last.ckpt", path / "last.ckpt") if p.is_file()]
        hint = f", e.g. {as_override('ckpt_path', inside[0])}" if inside else ""
        raise CheckpointError(
            f"ckpt_path={path}: a folder; expected a .ckpt file{hint} (written by train.py)"
        )
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path}: no such file")
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


def restore_forecaster(ckpt: dict[str, Any]) -> Forecaster:
    """The trained Forecaster of a checkpoint (:func:`load_checkpoint`), in eval mode on the CPU."""
    stored = OmegaConf.create(ckpt["hyper_parameters"]["config"])
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
        config=ckpt["hyper_parameters"]["config"],
    )
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


def load_forecaster(path: str | Path) -> Forecaster:
    """A trained forecaster from a train.py checkpoint, for use in Python:
    ``load_forecaster(path).forecast(last_frames)`` gives the next H frames, in data units."""
    return restore_forecaster(load_checkpoint(path))


WINDOW_KEYS = ("context_len", "horizon", "scale", "bin_width", "angle_start", "circular")  # fixed by training


def evaluation_data(
    cfg: DictConfig, trained: DictConfig, overrides: list[str], ckpt: str
) -> tuple[DictConfig, bool]:
    """The data config to score a checkpoint on, and whether it holds other series than the training
    data (then scored on all windows by default, else on the test split).

    ``trained`` is the checkpoint's data config, ``overrides`` the command's (``data=file``,
    ``data.path=...``, ...). A data option on the command line (``data=file``) gives its config, with
    WINDOW_KEYS the checkpoint's unless the command set them; so does ``data.path`` alone where the
    checkpoint's data is not read from files (as ``data=file``). Otherwise it is the checkpoint's data
    config with the command's ``data.KEY=VALUE`` applied. Other series: another option, file or
    generator setting. A WINDOW_KEYS value that differs from training stops with CheckpointError."""
    given = [override_key(o) for o in overrides]
    chosen = "data" in given
    new_data = chosen or any(key.startswith(("data.path", "data.generator")) for key in given)
    if not chosen and "data.path" in given and "path" not in trained:
        # Inside the entry point Hydra is initialised, so the file option composes as `data=file` would.
        # A file setting was typed with + (`+data.max_gap=null`: the default data has no such key),
        # which the file option already has: ++ sets it either way.
        typed = [re.sub(r"^\+(?=data\.)", "++", o) for o, k in zip(overrides, given) if k.startswith("data.")]
        cfg = compose("evaluate", ["data=file", *typed])
        chosen = True
    if chosen:
        data_cfg = copy.deepcopy(cfg.data)
        with open_dict(data_cfg):
            if data_cfg.get("path", "") is None:  # evaluate.yaml's data.path, unset: not this option's
                del data_cfg["path"]
            for key in (k for k in WINDOW_KEYS if f"data.{k}" not in given):
                data_cfg[key] = trained.get(key, DATA_ADDED_LATER.get(key))
    else:
        data_cfg = copy.deepcopy(trained)
        for key in (k for k in given if k.startswith("data.")):
            OmegaConf.update(data_cfg, key.removeprefix("data."), OmegaConf.select(cfg, key), force_add=True)
    check_keys(data_cfg, "data")
    for key in WINDOW_KEYS:
        was, now = (c.get(key, DATA_ADDED_LATER.get(key)) for c in (trained, data_cfg))
        if now != was:
            raise CheckpointError(
                f"{ckpt}: trained with data.{key}={was}; this evaluation has data.{key}={now} "
                "(expected the same)"
            )
    if not new_data and list(data_cfg.splits) != list(trained.splits):
        print(
            f"note: data.splits={list(data_cfg.splits)}, trained with {list(trained.splits)}: the scored "
            "split may hold steps the model was trained on"
        )
    return data_cfg, new_data


# What evaluate.py reads from its command line; the rest of its config (model, loss, optim, trainer, seed,
# ...) is the checkpoint's.
EVALUATE_READS = ("ckpt_path", "split", "predict", "out", "optimized_metric", "data", "paths")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score a checkpoint on a split of its own data (default: test) or of another file (default: all
    windows), beside persistence; write metrics.json, figures and, with ``predict=true``, the forecasts.
    With ``predict=future``, forecast the steps after each series' last frame instead (nothing to score).
    """
    if cfg.predict not in (False, True, "future"):
        raise ConfigError(
            f"predict={cfg.predict!r}; expected false, true (write the scored windows' forecasts) or "
            "future (forecast the steps after each series' end)"
        )
    check_added_settings(cfg)
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    if ignored := [o for o in overrides if override_key(o).split(".")[0] not in EVALUATE_READS]:
        raise ConfigError(
            f"{ignored[0]}: evaluate.py takes the model, loss and training settings from the checkpoint, "
            f"so this would be ignored; expected settings of {', '.join(EVALUATE_READS)} only"
        )
    _check_metric(cfg.optimized_metric)
    if cfg.split not in (None, "test", "val", "train", "all"):
        raise ConfigError(
            f"split={cfg.split}; expected test, val, train or all (or null: the test split of the "
            "checkpoint's data, all windows of other data)"
        )
    future = cfg.predict == "future"
    if future and cfg.split is not None:
        raise ConfigError(f"split={cfg.split} with predict=future; expected no split (nothing is scored)")
    if cfg.out and Path(cfg.out).suffix not in FORECAST_SUFFIXES:
        raise ConfigError(f"out={cfg.out}: expected a {' or '.join(FORECAST_SUFFIXES)} file")
    if not cfg.ckpt_path:
        raise ConfigError(
            "ckpt_path is not set; expected a checkpoint written by train.py: python evaluate.py "
            "ckpt_path=logs/runs/<time>/<run>/checkpoints/last.ckpt"
        )
    ckpt = load_checkpoint(cfg.ckpt_path)
    stored = OmegaConf.create(ckpt["hyper_parameters"]["config"])
    data_cfg, new_data = evaluation_data(cfg, stored.data, overrides, str(cfg.ckpt_path))
    datamodule: HeatmapData = instantiate(data_cfg)
    datamodule.scaler = Scaler(ckpt["hyper_parameters"]["scale_factor"])  # the training scaler
    datamodule.setup("predict" if future else None)
    trained_bins = ckpt["state_dict"]["angles"].numel()
    if datamodule.n_bins != trained_bins:
        raise CheckpointError(
            f"{cfg.ckpt_path}: trained on {trained_bins} angle bins; {datamodule.source} has "
            f"{datamodule.n_bins} (expected the same)"
        )
    module = restore_forecaster(ckpt)
    output_dir = Path(cfg.paths.output_dir)
    if future:
        return forecast_future(module, datamodule, output_dir, Path(cfg.out) if cfg.out else None)
    split = cfg.split or ("all" if new_data else "test")
    forecasts = predict(module, datamodule.loader(split))
    # The panel below is headed "test" whatever was scored (metrics.json's shape): say what it was.
    what = "every window" if split == "all" else f"the {split} split"
    print(f"scored: {what} of {datamodule.source}, {len(forecasts['series']):,} windows")
    panels = {"test": module.metrics["test"].compute()}
    result = summarize(panels, f"test/{cfg.optimized_metric.partition('/')[2]}", datamodule, ("test",))
    result.update(checkpoint=str(cfg.ckpt_path), split=split, data=datamodule.source)
    result["per_series"] = per_series(module, forecasts, datamodule.heatmaps.ids)
    writer = SummaryWriter(str(output_dir))
    write_result(result, output_dir, SimpleNamespace(experiment=writer))
    write_per_series(result["per_series"], output_dir)
    write_figures(forecasts, datamodule, output_dir, writer)
    writer.close()
    if cfg.predict:
        out = Path(cfg.out) if cfg.out else output_dir / "forecasts.npz"
        write_forecasts(out, forecasts, datamodule)
        print(f"forecasts: {out}")
    return result
