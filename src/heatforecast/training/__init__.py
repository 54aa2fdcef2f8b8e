"""From a Hydra config to a trained, scored run (train.py) or a scored checkpoint (evaluate.py).

config.py checks what the user typed before anything is built; build.py makes the model, the
LightningModule and the Trainer; fit.py runs train.py's job and evaluation.py evaluate.py's;
checkpoints.py reads, rebuilds and resumes checkpoints; report.py writes metrics.json and the panels.
This package is the only part of heatforecast that knows about Hydra.
"""

from heatforecast.training.build import build_model, build_module, build_trainer
from heatforecast.training.checkpoints import load_forecaster
from heatforecast.training.config import (
    USER_ERRORS,
    CheckpointError,
    ConfigError,
    error_message,
    unquoted_value,
    with_file_settings,
    with_implied_settings,
)
from heatforecast.training.evaluation import evaluate
from heatforecast.training.fit import run

__all__ = [
    "USER_ERRORS",
    "CheckpointError",
    "ConfigError",
    "build_model",
    "build_module",
    "build_trainer",
    "error_message",
    "evaluate",
    "load_forecaster",
    "run",
    "unquoted_value",
    "with_file_settings",
    "with_implied_settings",
]
