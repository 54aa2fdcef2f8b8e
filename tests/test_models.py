"""Models: the transformer's angle embedding wraps round for circular data."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from heatforecast.models import TransformerForecaster


def first_token(model: TransformerForecaster, x: Tensor) -> Tensor:
    """The angle embedding of the first patch (bins 0..2), before attention mixes the tokens."""
    return model.embed(F.pad(x, model.pad, model.pad_mode))[0, :, 0]


def test_circular_angle_embedding_sees_across_360_degrees() -> None:
    torch.manual_seed(0)
    x = torch.zeros(1, 4, 36)
    x[0, :, 35] = 1.0  # energy in the last bin only (350 degrees on a 36-bin circle)
    reach = {}
    for circular in (False, True):
        model = TransformerForecaster(36, 4, 2, d_model=8, n_layers=1, n_heads=2, patch=3, circular=circular)
        reach[circular] = (first_token(model, x) - first_token(model, torch.zeros_like(x))).abs().max()
        assert model(x).shape == (1, 2, 36)
    # Bin 35 neighbours bin 0 only on the circle, so only there does it reach the first patch's token.
    assert reach[False].item() == 0.0 and reach[True].item() > 1e-3
