"""What a trained Forecaster forecasts, and writing it down: its forecasts over a loader's windows,
each series' panels, the steps after each series' end, forecast files (.npz, .parquet, .csv) and
figures.

No Hydra here: heatforecast.training's evaluate() reads the config and calls these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from heatforecast.data import HeatmapData
from heatforecast.data.files import angle_names, file_type
from heatforecast.metrics import FORECASTERS, series_panels
from heatforecast.module import Forecaster
from heatforecast.plots import forecast_figure, future_figure, peak_track_figure, plt

FORECAST_SUFFIXES = (".npz", ".parquet", ".csv")  # evaluate.py out= (as file_type names them: .csv.gz too)
FORECAST_FILES = f"{', '.join(FORECAST_SUFFIXES[:-1])} or {FORECAST_SUFFIXES[-1]}"  # for messages


SCORED = ("forecast", "target", *FORECASTERS[1:])  # the (W, H, A) tensors of a scored window


class FirstSeries(NamedTuple):
    """What :func:`write_figures` draws of the first series scored: its first window, and the last
    horizon step of each of its windows (the peak track)."""

    series: int  # its index
    time: int  # the first window's first target step
    window: dict[str, Tensor]  # forecast and target of the first window, (H, A)
    last_step: dict[str, Tensor]  # forecast, target and each reference at the last horizon step, (W, A)


class Scored(NamedTuple):
    """:func:`predict`'s result."""

    windows: dict[str, Tensor]  # the kept tensors of every window, (W, H, A), with series and time (W,)
    first_series: FirstSeries


@torch.no_grad()
def predict(module: Forecaster, loader: Any, keep: tuple[str, ...] = SCORED) -> Scored:
    """Run the model over a loader, updating the module's test metrics (which keep each window's,
    for :func:`per_series`).

    Tensors are in data units. Of every window it keeps only the ``keep`` of SCORED (the forecast,
    the target, each reference's forecast), with its series and first target step: the five take 36
    KB a window at 10 x 181 bins, and only a forecast file needs them (a .npz all five, .parquet and
    .csv the forecast)."""
    parts: dict[str, list[Tensor]] = {}
    track: dict[str, list[Tensor]] = {}
    first = None
    for x, y, series, time in loader:
        _, forecast, target, references = module.score("test", x, y, series, time)
        batch = {"forecast": forecast, "target": target, **references}
        if first is None:
            window = {k: batch[k][0].cpu() for k in ("forecast", "target")}
            first = (int(series[0]), int(time[0]), window)
        in_first = series == first[0]
        for key in SCORED:
            track.setdefault(key, []).append(batch[key][in_first, -1].cpu())
        for key, value in {**{k: batch[k] for k in keep}, "series": series, "time": time}.items():
            parts.setdefault(key, []).append(value.cpu())
    last_step = {k: torch.cat(v) for k, v in track.items()}
    return Scored({k: torch.cat(v) for k, v in parts.items()}, FirstSeries(*first, last_step))


def per_series(windows: dict[str, Tensor], ids: list[str], unit: float) -> dict[str, Any]:
    """The test panels of each series on its own windows (``windows``: the test panel's, as
    ForecastMetrics.compute keeps them, and ``unit`` its unit), model beside the references: which
    recordings the model helps on and which it does not."""
    return {
        ids[index]: {"windows": panels["windows"]}
        | {who: {k: float(v) for k, v in panels[who].items()} for who in FORECASTERS}
        for index, panels in series_panels(windows, unit).items()
    }


def write_per_series(panels: dict[str, Any], output_dir: Path, show: bool = True) -> None:
    """per_series.csv (a row per series: windows, then the model's and each reference's metrics),
    and, with ``show`` and several series, the series with the lowest skill_emd on stdout."""
    table = pd.DataFrame.from_dict(
        {
            sid: {"windows": p["windows"]}
            | p["model"]
            | {f"persistence_{k}": v for k, v in p["persistence"].items() if not k.startswith("skill_")}
            | {f"{who}_{k}": v for who in FORECASTERS[2:] for k, v in p[who].items()}
            for sid, p in panels.items()
        },
        orient="index",
    ).rename_axis("series")
    table.to_csv(output_dir / "per_series.csv")
    if not show or len(table) == 1:
        return  # with one series, the panel above is that series'
    shown = table.sort_values("skill_emd")[
        ["windows", "emd", *(f"{w}_emd" for w in FORECASTERS[1:]), "skill_emd"]
    ]
    worst = f"{min(len(shown), 10)} of {len(shown)} with the lowest skill_emd"
    print(f"per series ({worst}; all in per_series.csv):")
    print(shown.head(10).to_string(float_format=lambda v: f"{v:.4g}"))


@torch.no_grad()
def forecast_future(
    module: Forecaster, datamodule: HeatmapData, output_dir: Path, out: Path | None
) -> dict[str, Any]:
    """Forecast the ``horizon`` steps after each series' last frame; write them (``out``, default
    forecasts.npz in ``output_dir``) and an image of the first series' last frames and forecast."""
    parts: dict[str, list[Tensor]] = {"forecast": [], "series": [], "time": []}
    for i, batch in enumerate(datamodule.predict_dataloader()):
        _, _, series, time = batch
        for key, value in zip(parts, (module.predict_step(batch, i), series, time)):
            parts[key].append(value.cpu())
    forecasts = {k: torch.cat(v) for k, v in parts.items()}
    out = out or output_dir / "forecasts.npz"
    write_forecasts(out, forecasts, datamodule)
    output_dir.mkdir(parents=True, exist_ok=True)
    first = datamodule.heatmaps.series[0][-datamodule.context_len :]
    fig = future_figure(
        torch.from_numpy(first),
        forecasts["forecast"][0],
        datamodule.angles,
        f"series {datamodule.heatmaps.ids[0]!r}: forecast from step {int(forecasts['time'][0])}",
    )
    fig.savefig(output_dir / "future.png", dpi=100)
    plt.close(fig)
    print(
        f"forecasts of the {datamodule.horizon} step{'s' * (datamodule.horizon > 1)} after each of "
        f"{len(forecasts['series'])} series: {out}"
    )
    return {"forecasts": str(out), "series": len(forecasts["series"]), "data": datamodule.source}


def write_figures(first: FirstSeries, datamodule: HeatmapData, output_dir: Path, writer: Any) -> None:
    """A forecast window (time x angle) and the peak-angle track of the first series at the last
    horizon step, where the forecast and the references differ most."""
    values = datamodule.heatmaps.series[first.series]
    context = torch.from_numpy(values[first.time - datamodule.context_len : first.time])
    window, track = first.window, first.last_step
    figures = {
        "window": forecast_figure(context, window["target"], window["forecast"], datamodule.angles),
        "peak_track": peak_track_figure(
            track["target"],
            track["forecast"],
            {ref: track[ref] for ref in FORECASTERS[1:]},
            datamodule.angles,
            f"series {datamodule.heatmaps.ids[first.series]!r}, {datamodule.horizon} steps ahead",
        ),
    }
    for name, fig in figures.items():
        fig.savefig(output_dir / f"{name}.png", dpi=100)
        writer.add_figure(f"eval/{name}", fig)
        plt.close(fig)


def write_forecasts(out: Path, forecasts: dict[str, Tensor], datamodule: HeatmapData) -> None:
    """Forecasts in data units. .npz: arrays forecast (W, H, A), series, time and step (of the first
    target frame), angles, and for scored windows the target and the references' forecasts
    (persistence, linear, drift; (W, H, A) each). .parquet and .csv: one row per window and horizon
    step: series, time, horizon, step, then the model's bins. ``step`` counts frames from each series'
    first (0); ``time`` is the file's time of that frame (extended by the median step beyond the
    data), or the step when the file has none."""
    heatmaps = datamodule.heatmaps
    series = forecasts["series"].numpy()
    ids = np.array(heatmaps.ids)[series]
    step = forecasts["time"].numpy()
    forecast = forecasts["forecast"].numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    kind = file_type(out)  # a .csv.gz is compressed by pandas, by its suffix
    if kind == ".npz":
        time = heatmaps.time_of(series, step)
        angles = datamodule.angles.numpy()
        scored = {k: forecasts[k].numpy() for k in SCORED[1:] if k in forecasts}
        np.savez_compressed(out, forecast=forecast, **scored, series=ids, time=time, step=step, angles=angles)
    elif kind in (".parquet", ".csv"):
        n_windows, horizon, n_bins = forecast.shape
        frame = pd.DataFrame(forecast.reshape(-1, n_bins), columns=angle_names(datamodule.angles.numpy()))
        ahead = np.tile(np.arange(1, horizon + 1), n_windows)
        steps = np.repeat(step, horizon) + ahead - 1
        frame.insert(0, "step", steps)
        frame.insert(0, "horizon", ahead)
        frame.insert(0, "time", heatmaps.time_of(np.repeat(series, horizon), steps))
        frame.insert(0, "series", np.repeat(ids, horizon))
        if kind == ".csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
    else:
        raise ValueError(f"out={out}: expected a {FORECAST_FILES} file")
