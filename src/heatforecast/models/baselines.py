"""Baselines with the forecaster's interface: (B, L, A) context -> (B, H, A) forecast, data units."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Persistence(nn.Module):
    """Repeats the last observed frame for every horizon step. Has no parameters; needs no training."""

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon

    def forward(self, x: Tensor) -> Tensor:
        return x[:, -1:].expand(-1, self.horizon, -1)


class DLinear(nn.Module):
    """DLinear (Zeng et al., 2023): context = trend (moving average over time) + remainder; each part
    is mapped from L steps to H steps by one linear layer over time, shared by all angle bins.

    y[:, h, a] = sum_l W_trend[h, l] trend[:, l, a] + W_rem[h, l] rem[:, l, a] + b[h]
    Initialised as persistence (every output step copies the last frame), so training starts at the
    baseline it must beat.
    """

    def __init__(self, context_len: int, horizon: int, kernel: int = 9) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"model.kernel must be odd; got {kernel}")
        self.kernel, self.horizon = kernel, horizon
        self.trend = nn.Linear(context_len, horizon)
        self.remainder = nn.Linear(context_len, horizon)
        with torch.no_grad():
            for layer in (self.trend, self.remainder):
                layer.weight.zero_()
                layer.weight[:, -1] = 1.0
                layer.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        # Moving average over time with edge padding (replicate), as in DLinear.
        pad = self.kernel // 2
        padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], 1)
        trend = padded.unfold(1, self.kernel, 1).mean(-1)
        rem = x - trend
        out = self.trend(trend.transpose(1, 2)) + self.remainder(rem.transpose(1, 2))
        return out.transpose(1, 2)
