"""Transformer forecaster: the last L frames in, all H future frames out in one shot."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TransformerForecaster(nn.Module):
    """Time steps as tokens; H learned query tokens appended after the L context tokens.

    1. Embed each frame (A bins) into d_model with a linear map, add a learned position per token.
    2. A pre-norm transformer encoder attends over all L + H tokens.
    3. A linear head turns each of the H query tokens into a frame of A bins.
    With ``residual`` the head predicts the change from the last observed frame. For ``scale=linear``
    the output passes through softplus, so energy is non-negative.

    Args:
        n_bins: A, read from the data.
        context_len, horizon: L and H.
        d_model, n_layers, n_heads, dropout: the encoder's size.
        residual: forecast = last frame + head output (else head output alone).
        scale: ``linear`` (non-negative output) or ``db`` (unconstrained).
    """

    def __init__(
        self,
        n_bins: int,
        context_len: int,
        horizon: int,
        d_model: int = 128,
        n_layers: int = 3,
        n_heads: int = 4,
        dropout: float = 0.1,
        residual: bool = True,
        scale: str = "linear",
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"model.d_model ({d_model}) must be divisible by model.n_heads ({n_heads})")
        self.horizon, self.residual, self.positive = horizon, residual, scale == "linear"
        self.embed = nn.Linear(n_bins, d_model)
        self.queries = nn.Parameter(torch.zeros(horizon, d_model))
        self.position = nn.Parameter(torch.randn(context_len + horizon, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, 4 * d_model, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_bins)
        if residual:  # start as persistence: the head adds nothing until it has learned something
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        batch, context_len, _ = x.shape
        tokens = torch.cat([self.embed(x), self.queries.expand(batch, -1, -1)], dim=1)
        hidden = self.encoder(tokens + self.position[: context_len + self.horizon])
        out = self.head(self.norm(hidden[:, context_len:]))
        if self.residual:
            out = out + x[:, -1:]
        # softplus(z) ~ z for z >> 0 (beta = 5 keeps the bend small), never negative.
        return F.softplus(out, beta=5.0) if self.positive else out
