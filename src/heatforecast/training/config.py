"""What a user types: the errors a user can cause, and the checks of a config that run before anything
is built."""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import types
import typing
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_object, instantiate
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError
from torch.utils.tensorboard import SummaryWriter

from heatforecast.data import DataError
from heatforecast.metrics import METRICS, PeakSettings
from heatforecast.module import ForecastShapeError, NonFiniteLossError
from heatforecast.training.command_line import nearest


class ConfigError(ValueError):
    """The run's config asks for something that cannot work."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unsafe, unreadable, or made for other data."""


# Errors a user causes (bad data, config or checkpoint): the entry points print error_message() alone.
USER_ERRORS = (
    DataError, ConfigError, CheckpointError, NonFiniteLossError, ForecastShapeError, InstantiationException
)  # fmt: skip


def error_message(err: Exception) -> str:
    """The line an entry point prints for one of USER_ERRORS. Hydra wraps what a configured class
    raised as "Error in call to target 'CLASS':" and the exception's repr on a second line; the class's
    own message already names the setting, so it comes first, on one line, with the class after it."""
    if isinstance(err, InstantiationException) and err.__cause__ is not None:
        target = str(err).split("'")[1] if str(err).count("'") >= 2 else "a configured class"
        return f"{err.__cause__} (raised by {target})"
    return str(err)


def absolute_path(path: str) -> str:
    """``path`` (a file, folder or glob pattern) from the working directory, ``~`` expanded."""
    return os.path.abspath(os.path.expanduser(path))


def in_multirun() -> bool:
    """Whether this runs as a job of a multirun (-m), when run through Hydra."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def choice(group: str) -> str | None:
    """The option picked for a config group (``loss=emd`` -> "emd"), when run through Hydra."""
    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def check_present(cfg: DictConfig, keys: tuple[str, ...]) -> None:
    """Stop, naming it, at the first of ``keys`` (settings and config groups that the entry point reads
    by name, dotted for nested ones) that the command deleted (``~seed``, ``~optim.scheduler``): each
    met the run as an omegaconf traceback somewhere inside it."""
    absent = object()
    if missing := [key for key in keys if OmegaConf.select(cfg, key, default=absent) is absent]:
        raise ConfigError(
            f"{missing[0]} is not set (deleted with ~{missing[0]}?), and the run reads it; expected its "
            f"setting or option from conf/ (without ~{missing[0]})"
        )


def peak_settings(node: Any) -> PeakSettings:
    """ospa_deg's settings from a ``peaks`` config node: its keys checked (:func:`check_keys`), then its
    values (by PeakSettings, as Hydra builds it); ``peaks=null`` is no node and is refused."""
    if not OmegaConf.is_dict(node):
        raise ConfigError(
            f"peaks={node}; expected ospa_deg's settings (conf/train.yaml's peaks:), set one by one "
            "(peaks.max_count=2)"
        )
    check_keys(node, "peaks")
    return instantiate(node)


def check_metric(name: str, splits: tuple[str, ...] = ("val", "test")) -> None:
    """Stop unless ``name`` (optimized_metric) is ``SPLIT/NAME`` with a split of ``splits`` and a metric
    of the panel."""
    split, _, metric = str(name).partition("/")  # null was an AttributeError
    if split not in splits or metric not in METRICS:
        expected = " or ".join(f"{s}/NAME" for s in splits)
        why = ""
        if split == "test" and "test" not in splits:  # a real split, which training must not see
            why = "; training picks checkpoints and stops on it, which the test split must not steer"
        raise ConfigError(
            f"optimized_metric={name!r}; expected {expected} with NAME one of {', '.join(METRICS)}{why}"
        )


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
        for p in params:
            if p.kind in kinds and p.name not in names:
                names[p.name] = _with_default(hints.get(p.name), p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
        if target in PASSED_ON:
            return names | (_arguments(PASSED_ON[target]) or {})
        if not getattr(function, "__module__", "").startswith("heatforecast."):
            return None
    return None


def _with_default(hint: Any, default: Any) -> Any:
    """A parameter's annotation (as typing.get_type_hints resolved it), Optional where its default is None:
    whatever the annotation says, the parameter takes None."""
    return hint | None if default is None and hint is not None else hint


def _null_refused(annotation: Any) -> bool:
    """Whether ``annotation`` is known and has no place for None (:func:`_arguments` makes a parameter
    whose default is None Optional)."""
    if annotation is None or annotation is typing.Any:
        return False
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return type(None) not in (typing.get_args(annotation) if union else (annotation,))


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


def _import(target: str) -> Any:
    """hydra.utils.get_object without the lines it logs when the import fails: check_keys says it in one."""
    hydra_log = logging.getLogger("hydra.utils")
    disabled, hydra_log.disabled = hydra_log.disabled, True
    try:
        return get_object(target)
    finally:
        hydra_log.disabled = disabled


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
            target_object = _import(target)
        except (ImportError, AttributeError, ValueError) as err:
            key = f"{path}._target_" if path else "_target_"
            module = target.split(".")[0]
            where = ""
            if isinstance(err.__cause__, ModuleNotFoundError) and err.__cause__.name == module:
                where = (
                    f" (no module named {module!r}: code of one's own must be importable: a module in "
                    "the folder of the script that runs, such as train.py's, an installed package, or "
                    "a folder on PYTHONPATH)"
                )
            raise ConfigError(
                f"{key}={target}: cannot be imported{where}; expected the dotted path of a class or "
                "function (package.module.Name)"
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
                    f"{key}: {target} takes no such setting{nearest(name, accepted)}; expected one of: "
                    f"{', '.join(sorted(accepted))} "
                    f"(to drop a key that another config set, add ~{key} to the command)"
                )
            if expected := _type_error(value, accepted[name]):
                raise ConfigError(f"{key}={value!r}: {target} expects {expected} there")
            if value is None and _null_refused(accepted[name]):  # one the above cannot spell (a tensor)
                raise ConfigError(f"{key}=null: {target} takes no null there; expected a value")
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
            f"{override}: adds {where} that nothing reads{nearest(name, settings)}; expected one of: "
            f"{', '.join(settings)} "
            "(set without +), or a key inside a part, e.g. +trainer.KEY=VALUE"
        )


def check_finite(plain: Any, key: str = "") -> None:
    """Stop at the first number in a config (a plain container, or a value under ``key``) that is NaN or
    inf (``loss.eps=nan``): no setting means one, and the run would meet it as NaN losses, an overflow
    deep inside a part, or a schedule that never warms up."""
    if isinstance(plain, dict):
        for name, value in plain.items():
            check_finite(value, f"{key}.{name}" if key else str(name))
    elif isinstance(plain, list):
        for i, value in enumerate(plain):
            check_finite(value, f"{key}[{i}]")
    elif isinstance(plain, float) and not math.isfinite(plain):
        raise ConfigError(f"{key}={plain}: expected a finite number (null where a setting may be unset)")


SEED_MAX = 2**32 - 1  # seed_everything seeds numpy, whose generator takes 0..2**32 - 1

# Lightning's names (and short forms) of the precisions that keep the batches as read: float32, with
# or without autocast. The model's output is cast to float32 for the losses and metrics either way.
PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16", "16-mixed", "16")


# The least value of the Trainer's counting settings that Lightning takes without dividing by zero or
# silently turning them around (a negative gradient_clip_val flips every gradient: ascent). None passes.
TRAINER_LEAST = {
    "max_epochs": -1,  # -1: no end
    "max_steps": -1,
    "accumulate_grad_batches": 1,
    "check_val_every_n_epoch": 1,
    "log_every_n_steps": 0,  # 0: never
    "gradient_clip_val": 0,
    "limit_train_batches": 0,
}


# The same for callbacks, by class: EarlyStopping takes a negative min_delta as a margin that counts a
# worse score as an improvement, and a negative patience as 0.
CALLBACK_LEAST = {EarlyStopping: {"patience": 0, "min_delta": 0}}


def _below(value: Any, least: float) -> bool:
    """Whether ``value`` is a number (not a bool or None) below ``least``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value < least


def _check_trainer_counts(trainer: DictConfig) -> None:
    for key, least in TRAINER_LEAST.items():
        if _below(value := trainer.get(key), least):
            raise ConfigError(f"trainer.{key}={value}; expected >= {least}")


def check_required(cfg: DictConfig) -> None:
    """Stop, naming it, at the first setting a config file marks required (``???``) that nothing set
    (``data=file`` without ``data.path``); building it would fail deep in Hydra's instantiate."""
    if missing := sorted(OmegaConf.missing_keys(cfg)):
        raise ConfigError(
            f"{missing[0]} is required and not set (??? in its config file); expected {missing[0]}=VALUE"
        )


def check_config(cfg: DictConfig) -> None:
    """A training config's checks that need nothing built: a launcher without -m, added settings, the
    seed, every part's keys and their plain-typed, finite values, a schedule without a run length, the
    precision, a GPU trainer without a GPU, and every callback entry being a callback (a misspelt
    ``+callbacks.early_stoping.patience=2`` makes a new entry with no class)."""
    launcher = choice("hydra/launcher")
    if launcher not in (None, "basic") and not in_multirun():
        raise ConfigError(
            f"hydra/launcher={launcher} without -m: Hydra hands jobs to a launcher in a multirun only, so "
            f"this would run here; expected python train.py -m hydra/launcher={launcher} ... (one job too)"
        )
    plain = OmegaConf.to_container(cfg, resolve=False)  # once, for all the checks below
    check_added_settings(plain)
    check_finite(plain)
    if expected := _type_error(cfg.seed, int):
        raise ConfigError(f"seed={cfg.seed!r}: expected {expected}")
    if not 0 <= cfg.seed <= SEED_MAX:
        raise ConfigError(f"seed={cfg.seed}: expected 0..{SEED_MAX} (what numpy's generator takes)")
    for group in ("data", "model", "loss", "trainer"):  # before interpolations into them are resolved
        if not isinstance(plain.get(group), dict) or "_target_" not in plain[group]:
            raise ConfigError(
                f"{group}={choice(group) or '...'} names no class to build (no _target_); expected an "
                f"option of conf/{group}/ that does (files starting with _ are shared settings)"
            )
    try:  # ~data.context_len leaves model.context_len=${data.context_len} pointing at nothing
        OmegaConf.to_container(cfg, resolve=True)
    except InterpolationKeyError as err:
        raise ConfigError(
            f"{err.full_key}: {str(err).splitlines()[0]}, which it is set from (deleted with ~?); expected "
            "that setting"
        ) from None
    check_required(cfg)
    check_keys(plain)
    peak_settings(cfg.peaks)  # its values, before any data is read
    if (limit := cfg.trainer.get("limit_val_batches")) is not None and limit <= 0:
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
    _check_trainer_counts(cfg.trainer)
    for key in ("limit_train_batches", "max_steps"):
        if cfg.optim.get("scheduler") and cfg.trainer.get(key) == 0:
            raise ConfigError(
                f"trainer.{key}=0 trains nothing, and the one-cycle schedule (optim.scheduler) has no steps "
                "to spread over; expected a positive number (trainer.max_epochs=0 scores the untrained "
                "model)"
            )
    if str(cfg.trainer.get("precision", "32-true")) not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={cfg.trainer.precision}; expected 32-true, bf16-mixed or 16-mixed: the "
            "losses and metrics take float32 batches, which another '-true' precision converts (bf16-true "
            "would score rounded targets, not comparable with other runs)"
        )
    if (  # Lightning runs 16-mixed as bf16-mixed on a CPU, which scales no loss
        str(cfg.trainer.get("precision")) in ("16-mixed", "16")
        and cfg.trainer.get("accelerator") != "cpu"
        and cfg.trainer.get("gradient_clip_val")
        and OmegaConf.select(cfg, "optim.optimizer.fused")
    ):
        raise ConfigError(
            f"optim.optimizer.fused=true with trainer.precision={cfg.trainer.precision} and "
            f"trainer.gradient_clip_val={cfg.trainer.gradient_clip_val}: a fused optimizer removes "
            "16-mixed's loss scale inside its step, so the gradients cannot be clipped before it; expected "
            "trainer.precision=bf16-mixed, trainer.gradient_clip_val=0 or optim.optimizer.fused=null"
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
        target = get_object(callback["_target_"]) if callback is not None else None
        for cls, least in CALLBACK_LEAST.items():
            if not (isinstance(target, type) and issubclass(target, cls)):
                continue
            for key, value in least.items():
                if _below(given := cfg.callbacks[name].get(key), value):
                    raise ConfigError(f"callbacks.{name}.{key}={given}; expected >= {value}")
