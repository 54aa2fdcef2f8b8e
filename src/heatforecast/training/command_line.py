"""train.py's and evaluate.py's command lines before Hydra reads them, and the resolvers their config
uses. Hydra and OmegaConf only: a mistyped override or ``--help`` is answered without waiting for torch
and Lightning to load."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import OmegaConf


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
