"""Forecasting models: plain nn.Modules mapping (B, L, A) context to (B, H, A) forecasts."""

from heatforecast.models.baselines import DLinear, Persistence
from heatforecast.models.transformer import TransformerForecaster

__all__ = ["DLinear", "Persistence", "TransformerForecaster"]
