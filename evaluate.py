"""Score a checkpoint beside persistence: `python evaluate.py ckpt_path=PATH [data=file data.path=FILE]`."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# Hydra alone: --help and a mistyped override are answered before torch and Lightning load.
from heatforecast.training.command_line import CommandLineError, checked_command_line

CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from heatforecast.training import USER_ERRORS, error_message, evaluate

    try:
        evaluate(cfg)
    except USER_ERRORS as err:  # a clear message, not a traceback
        sys.exit(f"error: {error_message(err)}")


if __name__ == "__main__":
    try:
        sys.argv[1:] = checked_command_line(sys.argv[1:], CONF, "evaluate")
    except CommandLineError as err:  # before Hydra, whose messages for these say less
        sys.exit(f"error: {err}")
    main()
