"""Train and score a forecaster: `python train.py [loss=emd] [model=linear] [-m loss=mse,emd ...]`."""

import hydra
from omegaconf import DictConfig

from heatforecast.training import run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run(cfg)


if __name__ == "__main__":
    main()
