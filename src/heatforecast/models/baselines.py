"""Baselines with the forecaster's interface: (B, L, A) context -> (B, H, A) forecast, data units."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


class Persistence(nn.Module):
    """Repeats the last observed frame for every horizon step. Has no parameters; needs no training."""

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon

    def forward(self, x: Tensor) -> Tensor:
        return x[:, -1:].expand(-1, self.horizon, -1)


class Drift(nn.Module):
    """Constant velocity over angle: the last frame, shifted by v * h bins at horizon step h, where v is
    the shift that best aligns the frame ``lag`` steps back with the last one, divided by ``lag``.

    The shift s maximises the cross-correlation C(s) = sum_a x_last[a] x_back[a - s] (each frame less
    its mean over angle) over integer |s| <= max_speed * lag (in bins), refined to a fraction of a bin
    by a parabola through C(s-1), C(s), C(s+1); the forecast interpolates linearly between bins,
    replicating the edge bins (wrapping round with ``circular``). One velocity per window: a
    tracker's answer to "where does the energy go next". Has no parameters; needs no training.
    Given ``context_len``, a ``lag`` the context cannot hold is refused; without it (the references)
    a shorter context uses the longest lag it holds, and a single frame gives persistence.
    """

    def __init__(
        self,
        horizon: int,
        lag: int = 2,
        max_speed: float = 4.0,
        bin_width: float = 1.0,
        circular: bool = False,
        context_len: int | None = None,
    ) -> None:
        super().__init__()
        if lag < 1 or not 0 < max_speed < math.inf:  # NaN fails both comparisons
            raise ValueError(
                f"model.lag must be >= 1 and model.max_speed a finite number > 0; got {lag}, {max_speed}"
            )
        if context_len is not None and lag >= context_len:
            raise ValueError(
                f"model.lag={lag} compares the last frame with the one {lag} steps back, which a context "
                f"of data.context_len={context_len} frames does not hold; expected lag < context_len"
            )
        self.horizon, self.lag, self.circular = horizon, lag, circular
        self.max_bins = max(1, round(max_speed / bin_width * lag))  # the largest shift searched

    def forward(self, x: Tensor) -> Tensor:
        last, lag = x[:, -1], min(self.lag, x.shape[1] - 1)
        if lag == 0:  # a context of one frame shows no motion
            return last.unsqueeze(1).expand(-1, self.horizon, -1)
        shifts = torch.arange(-self.max_bins, self.max_bins + 1, device=x.device)
        # Frames less their means, so a level shared by all bins (a dB noise floor) does not decide.
        now, back = (f - f.mean(-1, keepdim=True) for f in (last, x[:, -1 - lag]))
        corr = (now.unsqueeze(1) * self.shifted(back, shifts.to(x.dtype))).sum(-1)  # (B, 2S+1)
        # Move only where some shift aligns strictly better than none (not for empty or static frames).
        still = corr.new_full(corr.shape[:1], self.max_bins, dtype=torch.long)
        best = torch.where(corr.amax(-1) > corr[:, self.max_bins], corr.argmax(-1), still)
        at = best.clamp(1, len(shifts) - 2).unsqueeze(-1)
        left, mid, right = (corr.gather(-1, at + k).squeeze(-1) for k in (-1, 0, 1))
        curve = left - 2 * mid + right  # < 0 at a peak
        offset = (0.5 * (left - right) / curve.clamp(max=-1e-12)).clamp(-0.5, 0.5)
        interior = (best == at.squeeze(-1)) & (curve < 0)  # the parabola has a peak there
        velocity = (shifts[best] + torch.where(interior, offset, 0.0)) / lag  # bins per step
        steps = torch.arange(1, self.horizon + 1, device=x.device, dtype=x.dtype)
        return self.shifted(last, velocity.unsqueeze(-1) * steps)  # (B, H, A)

    def shifted(self, frame: Tensor, shift: Tensor) -> Tensor:
        """``frame`` (B, A) moved by ``shift`` bins towards higher angles, (K,) or (B, K) -> (B, K, A):
        out[a] = frame[a - shift], linear between bins; edges replicate, or wrap round if circular."""
        n_bins = frame.shape[-1]
        source = torch.arange(n_bins, device=frame.device, dtype=frame.dtype) - shift.unsqueeze(-1)
        below = source.floor()
        frac = source - below
        index = below.long()
        if self.circular:
            lo, hi = index % n_bins, (index + 1) % n_bins
        else:
            lo, hi = index.clamp(0, n_bins - 1), (index + 1).clamp(0, n_bins - 1)
        rows = frame.unsqueeze(1).expand(-1, source.shape[-2], -1)
        lo, hi = lo.expand_as(rows), hi.expand_as(rows)
        return (1 - frac) * rows.gather(-1, lo) + frac * rows.gather(-1, hi)


class DLinear(nn.Module):
    """DLinear (Zeng et al., 2023): context = trend (moving average over time) + remainder; each part
    is mapped from L steps to H steps by one linear layer over time, shared by all angle bins.

    y[:, h, a] = sum_l W_trend[h, l] trend[:, l, a] + W_rem[h, l] rem[:, l, a] + b[h]
    Initialised as persistence (every output step copies the last frame), so training starts at the
    baseline it must beat.
    """

    def __init__(self, context_len: int, horizon: int, kernel: int = 9) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"model.kernel must be an odd number >= 1; got {kernel}")
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


class LeastSquaresLinear(nn.Module):
    """The linear reference: one linear map over time from the L context steps to each of the H
    forecast steps, shared by all angle bins, fitted in closed form instead of trained.

    y[:, h, a] = sum_l W[h, l] x[:, l, a] + b[h], with (W, b) minimising
    sum over windows, bins and steps of (y - t)^2 + lam (|W|^2 + |b|^2) (ridge regression over the
    rows (x[:, a], 1) of every window's bins; lam = 1e-6 x the mean of the normal matrix's diagonal,
    only so that constant data still has a solution). DLinear's trend and remainder layers together are
    such a map, so this is the squared-error optimum of the map DLinear learns by gradient steps on the
    run's loss. Until :meth:`fit` it is persistence.
    """

    def __init__(self, context_len: int, horizon: int) -> None:
        super().__init__()
        weight = torch.zeros(horizon, context_len)
        weight[:, -1] = 1.0
        self.register_buffer("weight", weight)
        self.register_buffer("bias", torch.zeros(horizon))

    @property
    def horizon(self) -> int:
        return self.weight.shape[0]

    @torch.no_grad()
    def fit(self, windows: Iterable[tuple[Tensor, Tensor]]) -> LeastSquaresLinear:
        """Fit to batches of windows (x (B, L, A), y (B, H, A)), accumulating the normal equations in
        float64, so the result does not depend on how the windows are batched (up to rounding)."""
        horizon, context_len = self.weight.shape
        gram = torch.zeros(context_len + 1, context_len + 1, dtype=torch.float64)
        cross = torch.zeros(context_len + 1, horizon, dtype=torch.float64)
        for x, y in windows:
            rows = x.detach().double().cpu().transpose(1, 2).reshape(-1, context_len)  # (B A, L)
            rows = torch.cat([rows, rows.new_ones(len(rows), 1)], 1)
            gram += rows.T @ rows
            cross += rows.T @ y.detach().double().cpu().transpose(1, 2).reshape(-1, horizon)
        if not gram[-1, -1] > 0:
            raise ValueError("LeastSquaresLinear.fit: no windows to fit")
        ridge = 1e-6 * gram.diagonal().mean()
        solution = torch.linalg.solve(gram + ridge * torch.eye(len(gram), dtype=gram.dtype), cross)
        self.weight.copy_(solution[:-1].T)
        self.bias.copy_(solution[-1])
        return self

    def forward(self, x: Tensor) -> Tensor:
        # In float32 whatever autocast says: a reference's score must not move with the run's precision.
        with torch.autocast(x.device.type, enabled=False):
            return torch.einsum("hl,bla->bha", self.weight, x.float()) + self.bias[:, None]
