"""Score a checkpoint beside persistence: `python evaluate.py ckpt_path=PATH [data=file data.path=FILE]`."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# Hydra alone: --help and a mistyped override are answered before torch and Lightning load.
from heatforecast.training.command_line import unknown_setting, unquoted_value, with_file_settings

CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from heatforecast.training import USER_ERRORS, error_message, evaluate

    try:
        evaluate(cfg)
    except USER_ERRORS as err:  # a clear message, not a traceback
        sys.exit(f"error: {error_message(err)}")


if __name__ == "__main__":
    if message := unquoted_value(sys.argv[1:]):  # before Hydra, whose parser cannot say what is wrong
        sys.exit(f"error: {message}")
    sys.argv[1:] = with_file_settings(sys.argv[1:], CONF)
    if message := unknown_setting(sys.argv[1:], CONF, "evaluate"):
        sys.exit(f"error: {message}")
    main()
