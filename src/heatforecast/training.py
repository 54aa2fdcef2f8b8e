"""From a Hydra config to a trained, scored run: build objects, fit, validate/test, metrics.json."""

from __future__ import annotations

import hashlib
import inspect
import json
import platform
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from heatforecast.data import HeatmapData
from heatforecast.metrics import METRICS
from heatforecast.module import Forecaster


class ConfigError(ValueError):
    """The run's config asks for something that cannot work."""


def run_name(overrides: str) -> str:
    """A folder name from a run's overrides (``hydra.job.override_dirname``): slashes become
    underscores, and a name too long for a file system is cut and suffixed with a hash."""
    name = overrides.replace("/", "_")
    if len(name) <= 150:
        return name
    return f"{name[:140]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


OmegaConf.register_new_resolver("run_name", run_name, replace=True)


def build_model(cfg: DictConfig, n_bins: int) -> torch.nn.Module:
    """Instantiate ``cfg.model``, giving it the data's bin count if it takes one."""
    params = inspect.signature(get_class(cfg.model._target_)).parameters
    return instantiate(cfg.model, **({"n_bins": n_bins} if "n_bins" in params else {}))


def build_module(cfg: DictConfig, datamodule: HeatmapData) -> Forecaster:
    """The LightningModule for a set-up datamodule."""
    model = build_model(cfg, datamodule.n_bins)
    if cfg.compile:
        model = torch.compile(model)
    trainable = any(p.requires_grad for p in model.parameters())
    loss_name = _choice("loss") or cfg.loss._target_.rsplit(".", 1)[-1]
    return Forecaster(
        model=model,
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optim.optimizer) if trainable else None,
        scheduler=instantiate(cfg.optim.scheduler) if trainable and cfg.optim.scheduler else None,
        angles=datamodule.angles,
        scale_factor=datamodule.scaler.factor,
        scale=datamodule.scale,
        loss_name=loss_name,
        nonfinite=cfg.nonfinite,
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def _choice(group: str) -> str | None:
    """The option picked for a config group (``loss=emd`` -> "emd"), when run through Hydra."""
    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def _resolve_ckpt(cfg: DictConfig, output_dir: Path) -> str | None:
    if cfg.ckpt_path in (None, ""):
        return None
    path = output_dir / "checkpoints" / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: no checkpoint at {path}; to resume, pass the run's folder as "
            "hydra.run.dir=<run dir> with ckpt_path=last, or a .ckpt file"
        )
    return str(path)


def _check_metric(name: str) -> tuple[str, str]:
    split, _, metric = name.partition("/")
    if split not in ("val", "test") or metric not in METRICS:
        raise ConfigError(
            f"optimized_metric={name!r}; expected val/NAME or test/NAME with NAME one of {', '.join(METRICS)}"
        )
    return split, metric


def _custom_scalars(logger: Any) -> None:
    """TensorBoard layout: train vs val loss, and each val metric beside persistence's, in one chart."""
    writer = getattr(logger, "experiment", None)
    if not hasattr(writer, "add_custom_scalars"):
        return
    layout = {
        "loss": {"train vs val": ["Multiline", ["^train/loss_epoch$", "^val/loss$"]]},
        "val: model vs persistence": {
            m: ["Multiline", [f"^val/{m}$", f"^val/persistence/{m}$"]] for m in METRICS
        },
    }
    writer.add_custom_scalars(layout)


def run(cfg: DictConfig) -> float:
    """Train (unless the model has no parameters), score val and test, write metrics.json.

    Returns the value of ``cfg.optimized_metric`` for the best checkpoint (what sweepers minimise).
    """
    split, metric = _check_metric(cfg.optimized_metric)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = _resolve_ckpt(cfg, output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule: HeatmapData = instantiate(cfg.data)
    datamodule.setup()
    module = build_module(cfg, datamodule)
    logger = instantiate(cfg.logger)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
    if trainer.is_global_zero:
        _custom_scalars(logger)

    best = None
    if module.optimizer_factory is not None:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        best = trainer.checkpoint_callback.best_model_path or None
    trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
    trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)

    result = summarize(module.panels, cfg.optimized_metric, split, metric)
    result.update(best_checkpoint=best, seed=cfg.seed, versions=versions())
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "metrics.json").write_text(json.dumps(result, indent=2))
        final = {f"hp/{s}_{m}": result["model"][s][m] for s in ("val", "test") for m in METRICS}
        logger.log_hyperparams(_hparams(cfg), metrics=final)
        logger.finalize("success")
        print(panel_table(result))
    return result["value"]


def summarize(panels: dict[str, Any], optimized: str, split: str, metric: str) -> dict[str, Any]:
    """The metrics.json content from the module's final val/test panels."""
    out: dict[str, Any] = {"optimized_metric": optimized}
    for who in ("model", "persistence"):
        out[who] = {s: {k: float(v) for k, v in panels[s][who].items()} for s in ("val", "test")}
        for s in ("val", "test"):
            per_h = panels[s][f"{who}_per_horizon"]
            out[who][f"{s}_per_horizon"] = {k: [float(x) for x in v] for k, v in per_h.items()}
    out["value"] = out["model"][split][metric]
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
    """A plain-text test panel: the model beside persistence, and the skill."""
    model, pers = result["model"]["test"], result["persistence"]["test"]
    lines = [f"{'test metric':<14}{'model':>12}{'persistence':>14}"]
    for name in METRICS:
        if name.startswith("skill_"):
            continue
        lines.append(f"{name:<14}{model[name]:>12.4g}{pers[name]:>14.4g}")
    lines.append(f"skill_emd {model['skill_emd']:+.3f}   skill_mse {model['skill_mse']:+.3f}")
    return "\n".join(lines)
