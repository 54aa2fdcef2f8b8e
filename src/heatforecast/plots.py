"""Figures a person would rather look at than read: forecast windows, error by horizon, peak tracks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are written to files and TensorBoard, never shown
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import Tensor


def forecast_figure(x: Tensor, y: Tensor, pred: Tensor, angles: Tensor) -> plt.Figure:
    """Time x angle images of one window: context + target, context + forecast, and the error."""
    x, y, pred, angles = (t.detach().float().cpu() for t in (x, y, pred, angles))
    truth, forecast = torch.cat([x, y]), torch.cat([x, pred])
    error = forecast - truth
    extent = (float(angles[0]), float(angles[-1]), len(truth) - len(x), -len(x))
    # Axes placed by hand, not by constrained_layout: this figure is drawn at every validation epoch,
    # and the layout solver took two thirds of its drawing time.
    fig = plt.figure(figsize=(12, 4))
    bottom, height, width = 0.12, 0.8, 0.255
    axes = [fig.add_axes((0.055, bottom, width, height))]
    axes += [fig.add_axes((left, bottom, width, height), sharey=axes[0]) for left in (0.32, 0.655)]
    bars = [fig.add_axes((left, bottom + 0.1 * height, 0.01, 0.8 * height)) for left in (0.585, 0.92)]
    vmin, vmax = float(truth.min()), float(truth.max())
    for ax, img, title in ((axes[0], truth, "target"), (axes[1], forecast, "forecast")):
        im = ax.imshow(img, aspect="auto", extent=extent, vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_title(title)
    fig.colorbar(im, cax=bars[0])
    lim = float(error.abs().max()) or 1.0
    im = axes[2].imshow(error, aspect="auto", extent=extent, vmin=-lim, vmax=lim, cmap="RdBu_r")
    axes[2].set_title("forecast - target")
    fig.colorbar(im, cax=bars[1])
    for ax in axes[1:]:
        ax.tick_params(labelleft=False)
    for ax in axes:
        ax.axhline(0, color="white", lw=0.8, ls="--")
        ax.set_xlabel("angle (deg)")
    axes[0].set_ylabel("step (0 = first forecast)")
    return fig


def future_figure(x: Tensor, pred: Tensor, angles: Tensor, title: str) -> plt.Figure:
    """Time x angle image of the last observed frames and the forecast that follows them."""
    x, pred, angles = (t.detach().float().cpu() for t in (x, pred, angles))
    frames = torch.cat([x, pred])
    extent = (float(angles[0]), float(angles[-1]), len(pred), -len(x))
    fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
    im = ax.imshow(frames, aspect="auto", extent=extent, cmap="viridis")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.axhline(0, color="white", lw=0.8, ls="--")
    ax.set_title(title)
    ax.set_xlabel("angle (deg)")
    ax.set_ylabel("step (< 0 observed, >= 0 forecast)")
    return fig


def horizon_figure(
    per_horizon: dict[str, dict[str, list[float]]],
    metrics: tuple[str, ...],
    skills: dict[str, dict[str, dict[str, list[float] | None]]] | None = None,
    skill_metric: str = "emd",
) -> plt.Figure:
    """Each metric against the horizon step, one line per forecaster (model, persistence, ...); with
    ``skills`` (metrics.json's ``intervals["per_horizon"]``: {reference: {metric: {"skill", "low",
    "high"}}}, lists over the steps), a last panel of the model's skill_<skill_metric> against each
    reference, its interval shaded where there is one."""
    names = (*metrics, "skill") if skills else metrics
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), constrained_layout=True)
    axes = np.atleast_1d(axes)
    colours = {who: f"C{i}" for i, who in enumerate(per_horizon)}  # a forecaster keeps its colour
    for ax, name in zip(axes, metrics):
        for who, panel in per_horizon.items():
            values = panel[name]
            ax.plot(range(1, len(values) + 1), values, marker="o", label=who, color=colours[who])
        ax.set_title(name)
    if skills:
        ax, cells = axes[-1], {who: by_metric[skill_metric] for who, by_metric in skills.items()}
        for who, cell in cells.items():
            steps = range(1, len(cell["skill"]) + 1)
            ax.plot(steps, cell["skill"], marker="o", label=f"vs {who}", color=colours.get(who))
            if cell["low"] is not None:
                ax.fill_between(steps, cell["low"], cell["high"], alpha=0.2, color=colours.get(who))
        ax.axhline(0, color="k", lw=0.8)
        shaded = any(cell["low"] is not None for cell in cells.values())
        ax.set_title(f"skill_{skill_metric}" + (" (95 % interval)" if shaded else ""))
        ax.legend()
    for ax in axes:
        ax.set_xlabel("horizon step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend()
    return fig


def peak_track_figure(
    target: Tensor, forecast: Tensor, references: dict[str, Tensor], angles: Tensor, title: str
) -> plt.Figure:
    """Angle of the strongest bin over time: truth, the reference forecasts (persistence, ...) and
    the forecast (one horizon step)."""
    angles = angles.cpu()
    fig, ax = plt.subplots(figsize=(9, 3.5), constrained_layout=True)
    tracks = [(target, "target", "k-")]
    tracks += [(frames, name, f"C{i + 1}o") for i, (name, frames) in enumerate(references.items())]
    for frames, label, style in [*tracks, (forecast, "forecast", "C0x")]:
        ax.plot(angles[frames.cpu().argmax(-1)].numpy(), style, label=label, ms=4, mfc="none")
    ax.set_xlabel("window (time order)")
    ax.set_ylabel("peak angle (deg)")
    ax.set_title(title)
    ax.legend()
    return fig
