"""Forecasting models: plain nn.Modules mapping (B, L, A) context to (B, H, A) forecasts."""

from heatforecast.models.baselines import DLinear, Drift, LeastSquaresLinear, Persistence
from heatforecast.models.transformer import TransformerForecaster

__all__ = ["DLinear", "Drift", "LeastSquaresLinear", "Persistence", "TransformerForecaster"]
