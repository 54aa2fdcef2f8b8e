"""From a Hydra config to a trained, scored run (train.py) or a scored checkpoint (evaluate.py).

command_line.py checks and rewrites the entry points' command lines before Hydra reads them;
config.py checks what the user typed before anything is built; build.py makes the model, the
LightningModule and the Trainer; fit.py runs train.py's job and evaluation.py evaluate.py's;
checkpoints.py reads, rebuilds and resumes checkpoints; report.py writes metrics.json and the panels.
This package is the only part of heatforecast that knows about Hydra.
"""

from importlib import import_module
from typing import Any

# The resolvers conf/ uses (run_name, metric_mode): a config composed by any user of this package resolves.
from heatforecast.training import command_line  # noqa: F401

# Where each name lives, imported on first use: command_line needs Hydra alone, the rest torch and
# Lightning, which take seconds to load that `python train.py --help` or a mistyped override need not wait.
_SOURCES = {
    "USER_ERRORS": "config",
    "CheckpointError": "config",
    "ConfigError": "config",
    "build_model": "build",
    "build_module": "build",
    "build_trainer": "build",
    "error_message": "config",
    "evaluate": "evaluation",
    "load_forecaster": "checkpoints",
    "run": "fit",
    "unknown_setting": "command_line",
    "unquoted_value": "command_line",
    "with_file_settings": "command_line",
    "with_implied_settings": "command_line",
}
__all__ = sorted(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_SOURCES[name]}"), name)
