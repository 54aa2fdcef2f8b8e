"""The metric panel: circular forms for an angle axis that wraps around."""

from __future__ import annotations

import torch

from heatforecast import losses
from heatforecast.metrics import VECTOR_METRICS, ForecastMetrics, vector_metrics


def test_circular_metrics_measure_the_shorter_way_round() -> None:
    angles = torch.arange(0.0, 360.0, 10.0)  # 36 bins of 10 degrees
    pred, target = torch.zeros(1, 36, dtype=torch.float64), torch.zeros(1, 36, dtype=torch.float64)
    pred[0, 35], target[0, 1] = 1.0, 1.0  # peaks at 350 and 10 degrees: 20 apart on the circle
    line = dict(zip(VECTOR_METRICS, vector_metrics(pred, target, angles, eps=1e-12)))
    circle = dict(zip(VECTOR_METRICS, vector_metrics(pred, target, angles, eps=1e-12, circular=True)))
    assert line["peak_err_deg"].item() == 340.0 and circle["peak_err_deg"].item() == 20.0
    assert abs(line["emd"].item() - 340.0) < 1e-6
    assert abs(circle["emd"].item() - 20.0) < 1e-6
    torch.testing.assert_close(circle["cramer"], losses.cramer(pred, target, 10.0, eps=1e-12, circular=True))
    assert circle["cramer"].item() < line["cramer"].item()
    for name in ("mse", "mae", "cosine", "kl"):  # bin by bin: the same on a line and a circle
        torch.testing.assert_close(line[name], circle[name])


def test_metric_panel_passes_circular_to_every_update() -> None:
    angles = torch.arange(0.0, 360.0, 10.0)
    pred, target = torch.zeros(2, 3, 36), torch.zeros(2, 3, 36)
    pred[..., 35], target[..., 1] = 1.0, 1.0
    panels = {}
    for circular in (False, True):
        metrics = ForecastMetrics(angles, horizon=3, eps=1e-12, circular=circular)
        metrics.update(pred, target, persistence=target, drift=target)
        panels[circular] = metrics.compute()["model"]
    assert panels[False]["peak_err_deg"].item() == 340.0 and panels[True]["peak_err_deg"].item() == 20.0
    assert abs(panels[True]["emd"].item() - 20.0) < 1e-4
