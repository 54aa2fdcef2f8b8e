"""Data: synthetic generator, file ingestion and the windowing LightningDataModules."""

from heatforecast.data.datamodule import (
    Augment,
    FileData,
    HeatmapData,
    Scaler,
    SyntheticData,
    make_windows,
)
from heatforecast.data.files import DataError, Heatmaps, read_heatmaps, write_heatmaps
from heatforecast.data.synthetic import make_synthetic

__all__ = [
    "Augment",
    "DataError",
    "FileData",
    "HeatmapData",
    "Heatmaps",
    "Scaler",
    "SyntheticData",
    "make_synthetic",
    "make_windows",
    "read_heatmaps",
    "write_heatmaps",
]
