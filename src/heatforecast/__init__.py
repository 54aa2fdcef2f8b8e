"""heatforecast: forecast angle-energy heatmaps with swappable losses and honest baselines."""

__version__ = "0.1.0"
