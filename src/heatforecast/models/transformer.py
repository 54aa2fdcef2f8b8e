"""Transformer forecaster: the last L frames in, all H future frames out in one shot."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from heatforecast.models.baselines import Drift


class TransformerForecaster(nn.Module):
    """A pre-norm transformer encoder over one of two kinds of tokens (``tokens``):

    - ``time``: one token per context step. Each frame (A bins) is embedded into d_model by a linear
      map; H learned query tokens follow the L context tokens; a learned position is added per token;
      a linear head turns each query token into a frame of A bins.
    - ``angle``: one token per ``patch`` adjacent angle bins. A convolution over angle (``kernel``
      bins wide, stride ``patch``, the L context steps as input channels) embeds each patch's recent
      history and its neighbours'; a learned angle embedding is added; attention runs across angles,
      so energy can move from bin to bin; a linear head gives each patch's bins their H future values.

    With ``circular`` (an angle axis that wraps around) the angle convolution pads circularly, so bins
    near 0 and 360 degrees see each other as neighbours. With ``residual`` the head predicts the change
    from a baseline forecast, ``base``: the last observed frame (persistence) or :class:`Drift`'s
    constant-velocity forecast. For ``scale=linear`` the output passes through softplus, so energy is
    non-negative.

    Args:
        n_bins: A, read from the data.
        context_len, horizon: L and H.
        d_model, n_layers, n_heads, dropout: the encoder's size.
        tokens: ``time`` or ``angle``.
        patch: angle bins per token (``tokens=angle``); larger is faster, coarser.
        kernel: width in bins of the angle embedding's convolution (``tokens=angle``).
        residual: forecast = baseline + head output (else head output alone).
        base: the residual's baseline, ``last`` (the last frame) or ``drift`` (:class:`Drift` with its
            default lag and speed; ``bin_width`` converts its speed to bins).
        scale: ``linear`` (non-negative output) or ``db`` (unconstrained).
        circular: pad the angle convolution circularly (``tokens=angle``).
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
        tokens: str = "angle",
        patch: int = 1,
        kernel: int = 9,
        residual: bool = True,
        scale: str = "linear",
        circular: bool = False,
        base: str = "last",
        bin_width: float = 1.0,
    ) -> None:
        super().__init__()
        for key, value in dict(
            d_model=d_model, n_layers=n_layers, n_heads=n_heads, patch=patch, kernel=kernel
        ).items():
            if value < 1:
                raise ValueError(f"model.{key} must be >= 1; got {value}")
        if not 0 <= dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1); got {dropout}")
        if d_model % n_heads:
            raise ValueError(f"model.d_model ({d_model}) must be divisible by model.n_heads ({n_heads})")
        if tokens not in ("time", "angle"):
            raise ValueError(f"model.tokens must be 'time' or 'angle'; got {tokens!r}")
        if base not in ("last", "drift") or (base == "drift" and not residual):
            raise ValueError(f"model.base must be 'last' or 'drift' (with model.residual=true); got {base!r}")
        self.horizon, self.tokens, self.patch = horizon, tokens, patch
        self.residual, self.positive = residual, scale == "linear"
        self.drift = Drift(horizon, bin_width=bin_width, circular=circular) if base == "drift" else None
        self.pad_mode = "circular" if circular else "constant"
        if tokens == "time":
            self.embed = nn.Linear(n_bins, d_model)
            self.queries = nn.Parameter(torch.zeros(horizon, d_model))
            n_tokens, n_out = context_len + horizon, n_bins
        else:
            if kernel < patch:
                raise ValueError(f"model.kernel ({kernel}) must be >= model.patch ({patch})")
            # Pad so that each patch's window is centred on it and the bins fill whole patches.
            left = (kernel - patch) // 2
            self.pad = (left, kernel - patch - left + (-n_bins) % patch)
            self.embed = nn.Conv1d(context_len, d_model, kernel, stride=patch)
            n_tokens, n_out = math.ceil(n_bins / patch), horizon * patch
        self.position = nn.Parameter(torch.randn(n_tokens, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            4 * d_model,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_out)
        if residual:  # start as persistence: the head adds nothing until it has learned something
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.tokens == "time":
            batch, context_len, _ = x.shape
            tokens = torch.cat([self.embed(x), self.queries.expand(batch, -1, -1)], dim=1)
            hidden = self.encoder(tokens + self.position)
            out = self.head(self.norm(hidden[:, context_len:]))
        else:
            batch, _, n_bins = x.shape
            tokens = self.embed(F.pad(x, self.pad, self.pad_mode)).transpose(1, 2)  # (B, A/patch, d_model)
            hidden = self.encoder(tokens + self.position)
            out = self.head(self.norm(hidden))  # (B, A/patch, H * patch)
            # The token count spelt out, not -1: a view of an empty batch cannot infer it.
            out = out.view(batch, out.shape[1], self.horizon, self.patch).permute(0, 2, 1, 3)
            out = out.flatten(2)[..., :n_bins]  # (B, H, A)
        if self.residual:
            out = out + (x[:, -1:] if self.drift is None else self.drift(x))
        # softplus(z) ~ z for z >> 0 (beta = 5 keeps the bend small), never negative.
        return F.softplus(out, beta=5.0) if self.positive else out
