"""Score a checkpoint beside persistence: `python evaluate.py ckpt_path=PATH [data=file data.path=FILE]`."""

import hydra
from omegaconf import DictConfig

from heatforecast.training import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
