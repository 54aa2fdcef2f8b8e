"""train.py's and evaluate.py's command lines before Hydra reads them, and the resolvers their config
uses. Hydra and OmegaConf only: a mistyped override or ``--help`` is answered without waiting for torch
and Lightning to load."""

from __future__ import annotations

import difflib
import hashlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class CommandLineError(ValueError):
    """A command line Hydra would refuse, or misread, said in one line."""


def checked_command_line(args: list[str], conf_dir: Path, config_name: str) -> list[str]:
    """An entry point's command line as Hydra is to read it (train: :func:`with_implied_settings`;
    evaluate: :func:`with_file_settings`), once it passes the checks whose messages say more than
    Hydra's: an unquoted ``=`` in a value (:func:`unquoted_value`) and an option or key the config
    lacks (:func:`unknown_setting`). Raises CommandLineError with the message."""
    if message := unquoted_value(args):
        raise CommandLineError(message)
    args = with_file_settings(args, conf_dir) if config_name == "evaluate" else with_implied_settings(args)
    if message := unknown_setting(args, conf_dir, config_name):
        raise CommandLineError(message)
    return args


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


def unknown_setting(args: list[str], conf_dir: Path, config_name: str) -> str | None:
    """A message for the first override that picks an option a group does not have (``loss=emdd``)
    or sets a key the config does not have (``trainer.max_epoch=3``), or None. Hydra's own take
    several lines, and for a key suggest adding it with ``+``: for a typo, the wrong advice. The
    config is composed here as Hydra will compose it (a multirun's: :func:`first_job`, then
    :func:`other_options`); whatever else fails is left for Hydra to report."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in args):
        return None  # --help, --cfg, ...: Hydra's own
    typed = [a for a in args if not a.startswith("-")]
    multirun = len(typed) < len(args)
    try:
        with initialize_config_dir(str(conf_dir.resolve()), version_base="1.3"):
            if not multirun:
                compose(config_name, typed)
            else:
                job = first_job(config_name, typed)
                for each in [job, *other_options(job, typed)]:
                    compose(config_name, each)
    except MissingConfigException as err:  # an option no config file of the group holds
        return _unknown_option(err, typed)
    except ConfigCompositionException as err:
        missing = err.__cause__
        if isinstance(missing, OmegaConfBaseException) and "not in struct" in str(missing):
            return _unknown_key(missing, typed, multirun)
    except Exception:  # a parse error, ...: Hydra's message says what is wrong
        return None
    return None


def _unknown_option(err: MissingConfigException, typed: list[str]) -> str | None:
    group, _, option = (err.missing_cfg_file or "").rpartition("/")
    arg = next((a for a in typed if override_key(a) == group), None)
    if arg is None or err.options is None:
        return None  # not an option of the command line's
    options = [o for o in err.options if not o.startswith("_")]  # _windows, _optuna: parts of others
    listed = ", ".join(options)
    return f"{arg}: {group} has no option {option!r}{nearest(option, options)}; expected one of: {listed}"


def _unknown_key(missing: OmegaConfBaseException, typed: list[str], multirun: bool) -> str | None:
    arg = next((a for a in typed if override_key(a) == missing.full_key), None)
    if arg is None or not isinstance(node := missing.parent_node, DictConfig):
        return None  # not a key of the command line's
    where, _, name = missing.full_key.rpartition(".")
    keys = sorted(str(k) for k in node if not str(k).startswith("_") and (where or k != "hydra"))
    # Keys that conf/ leaves out a part's target may still take: check_keys checks those added.
    add = f"; to add another argument of {node['_target_']}: +{arg}" if "_target_" in node else ""
    expected = f"expected one of: {', '.join(keys)}" if keys else "conf/ sets none there"
    group = missing.full_key.split(".")[0]
    if multirun and any(  # -m loss=emd,cramer loss.circular=true
        o.is_sweep_override() and o.key_or_group == group
        for o in OverridesParser.create().parse_overrides(typed)
    ):
        add += (
            f"; a multirun first composes its config with the default {group}, then each job with "
            f"its own: ++{arg} sets the key in both"
        )
    return f"{arg}: {where or 'the config'} has no setting {name!r}{nearest(name, keys)}; {expected}{add}"


def first_job(config_name: str, args: list[str]) -> list[str]:
    """The overrides of a multirun's first job, in an initialised Hydra. On the way, the config Hydra
    composes for the sweep itself: the command's overrides without its sweeps. Then the job's: the
    basic sweeper's ``params`` (``experiment=loss_study``'s losses) and the command line's, which win,
    each sweep at its first value (``loss=mse,emd`` -> ``loss=mse``). Optuna's params are search
    spaces, Optuna's to sample."""
    parser = OverridesParser.create()
    fixed = [a for a in args if not parser.parse_override(a).is_sweep_override()]
    sweeper = compose(config_name, fixed, return_hydra_config=True).hydra.sweeper
    given = {override_key(a) for a in args}
    basic = sweeper._target_.endswith(".BasicSweeper")
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items() if basic and k not in given]
    job = []
    for arg in [*params, *args]:
        override = parser.parse_override(arg)
        if override.is_sweep_override():
            arg = f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}"
        job.append(arg)
    return job


def other_options(job: list[str], args: list[str]) -> Iterator[list[str]]:
    """``job``, a multirun's first, with each other option of each config group that ``args`` sweep
    (``loss=mse,emd``: ``loss=emd``), in an initialised Hydra. Hydra meets an option that does not
    exist, or a key it lacks, only when its job starts, after the jobs before it have trained."""
    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create()
    start = len(job) - len(args)  # first_job puts the sweeper's params before the command's own
    for i, arg in enumerate(args):
        override = parser.parse_override(arg)
        if override.is_sweep_override() and loader.get_group_options(override.key_or_group):
            for option in list(override.sweep_string_iterator())[1:]:
                at = start + i
                yield [*job[:at], f"{override.get_key_element()}={option}", *job[at + 1 :]]


def nearest(name: str, names: Iterable[str]) -> str:
    """`` (did you mean 'max_epochs'?)`` for the one of ``names`` closest to a mistyped ``name``, else ''."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.65)  # 0.6 offered depth -> patch
    return f" (did you mean {close[0]!r}?)" if close else ""


def override_key(override: str) -> str:
    """The key a command-line override sets: ``+data.max_gap=null`` -> ``data.max_gap``."""
    return override.split("=", 1)[0].lstrip("+~")


def override_keys(args: list[str]) -> list[str]:
    """The key each command-line argument sets ("" for Hydra's own flags such as ``-m``, ``--cfg``)."""
    return [override_key(a) if not a.startswith("-") else "" for a in args]


# Settings that moved, by their old key: a command (or a job script) that sets one keeps working.
RENAMED = {
    # last.ckpt has had a callback of its own since 2026-11-28 (conf/callbacks/default.yaml)
    "callbacks.model_checkpoint.every_n_train_steps": "callbacks.last_checkpoint.every_n_train_steps",
}


def with_implied_settings(args: list[str]) -> list[str]:
    """train.py's command line with the keys of RENAMED under their new names (typed plain or with the
    ``+`` Hydra suggests for a key it does not know), and ``data=file`` added where it sets
    ``data.path`` but no data option: the default data is generated and reads no file, and Hydra's
    own refusal names only the key."""
    keys = override_keys(args)
    for i, key in enumerate(keys):
        if key in RENAMED and not args[i].startswith("~"):
            print(f"note: {key} is now {RENAMED[key]}", file=sys.stderr)
            args = [*args[:i], RENAMED[key] + args[i].lstrip("+")[len(key) :], *args[i + 1 :]]
    if "data.path" in keys and "data" not in keys:
        print("note: data.path without a data option: reading it as data=file", file=sys.stderr)
        # Beside data.path, not at the end: after a flag's value (--cfg job) argparse takes no overrides.
        at = keys.index("data.path") + 1
        return [*args[:at], "data=file", *args[at:]]
    return args


def with_file_settings(args: list[str], conf_dir: Path) -> list[str]:
    """evaluate.py's command line with ``++`` before the settings of data=file (the keys of
    ``conf_dir``/data/file.yaml: ``data.path``, ``data.max_gap``, ...), typed plain or with the ``+``
    Hydra suggests: its config starts from the default data, which lacks them (Hydra said "Key
    'max_gap' is not in struct"), while the data evaluated may be the checkpoint's files or, with
    ``data.path``, another file read as data=file, which has them (``evaluation_data``). ``++`` sets
    them either way; on a data option that takes no such setting (``data=synthetic data.path=F``)
    ``check_keys`` then names it."""
    keys = override_keys(args)
    own = OmegaConf.load(conf_dir / "data" / "file.yaml")
    settings = {f"data.{key}" for key in own if key not in ("defaults", "_target_")}
    plus = [k in settings and not a.startswith("~") for a, k in zip(args, keys)]
    return [f"++{a.lstrip('+')}" if add else a for a, add in zip(args, plus)]


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


def metric_mode(metric: str, higher: str = "max", lower: str = "min") -> str:
    """Which way ``metric`` (``val/NAME``) improves: ``higher`` for the skills (1 - model / persistence),
    ``lower`` for every other metric (errors). conf/ sets the checkpoint's and early stopping's ``mode``
    and Optuna's ``direction`` with it, so ``optimized_metric=val/skill_emd`` needs nothing else."""
    from heatforecast.metrics import higher_is_better  # torch: only once a config is resolved

    return higher if higher_is_better(metric.partition("/")[2]) else lower


OmegaConf.register_new_resolver("metric_mode", metric_mode, replace=True)
