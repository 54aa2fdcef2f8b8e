"""Models: the transformer's angle embedding wraps round for circular data; the drift baseline; the
least-squares linear reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from heatforecast.models import DLinear, Drift, LeastSquaresLinear, TransformerForecaster


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


def moving_source(centres: Tensor, n_bins: int, width: float = 2.0, circular: bool = False) -> Tensor:
    """Frames (T, A) of one Gaussian source at each of ``centres`` (bins), wrapped round if circular."""
    delta = torch.arange(n_bins, dtype=torch.float32) - centres[:, None]
    if circular:
        delta = torch.remainder(delta + n_bins / 2, n_bins) - n_bins / 2
    return torch.exp(-0.5 * (delta / width) ** 2)


@pytest.mark.parametrize("speed", [0.7, -1.6, 0.15])  # bins a step: between bins, backwards, slow
def test_drift_follows_a_source_moving_at_constant_speed(speed: float) -> None:
    frames = moving_source(30 + speed * torch.arange(12.0), 60)
    forecast = Drift(horizon=4, lag=2)(frames[None, :8])[0]
    np.testing.assert_allclose(forecast.numpy(), frames[8:].numpy(), atol=0.03)
    persistence = frames[7].expand(4, -1)
    assert (forecast - frames[8:]).abs().max() < 0.2 * (persistence - frames[8:]).abs().max()


def test_drift_keeps_still_new_and_empty_frames_in_place() -> None:
    still = moving_source(torch.full((6,), 30.0), 60)
    appearing = torch.cat([torch.zeros(5, 60), moving_source(torch.tensor([30.0]), 60)])
    empty = torch.zeros(6, 60)
    x = torch.stack([still, appearing, empty])
    forecast = Drift(horizon=3, lag=2)(x)
    torch.testing.assert_close(forecast, x[:, -1:].expand(-1, 3, -1))  # as persistence


def test_drift_wraps_round_only_on_a_circle() -> None:
    steps = torch.arange(12.0)
    frames = moving_source(torch.remainder(26 + steps, 36), 36, circular=True)  # 10-degree bins
    options = dict(horizon=4, lag=2, bin_width=10.0, max_speed=20.0)
    wrapped = Drift(**options, circular=True)(frames[None, :8])[0]  # peaks at bins 34, 35, 0, 1
    np.testing.assert_allclose(wrapped.numpy(), frames[8:].numpy(), atol=0.03)
    flat = Drift(**options)(frames[None, :8])[0]
    assert flat[2:, :2].max() < 0.5 < wrapped[2:, :2].min()  # the peak does not come round the edge


def test_transformer_on_a_drift_base_starts_as_the_drift_forecast() -> None:
    torch.manual_seed(0)
    x = moving_source(20 + 0.7 * torch.arange(8.0), 60)[None]
    options = dict(n_bins=60, context_len=8, horizon=4, d_model=8, n_layers=1, n_heads=2, patch=3)
    model = TransformerForecaster(**options, base="drift", scale="db")  # db: no softplus on the output
    torch.testing.assert_close(model(x), Drift(horizon=4)(x))  # the residual head starts at zero
    assert (model(x) - x[:, -1:]).abs().max() > 0.5  # not persistence: the source has moved on
    with pytest.raises(ValueError, match="model.base must be 'last' or 'drift'"):
        TransformerForecaster(**options, base="drift", residual=False)


def test_least_squares_linear_is_numpys_least_squares_fit_whatever_the_batching() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 6, 7, generator=gen), torch.rand(40, 3, 7, generator=gen)
    whole = LeastSquaresLinear(6, 3).fit([(x, y)])
    batched = LeastSquaresLinear(6, 3).fit([(x[:7], y[:7]), (x[7:30], y[7:30]), (x[30:], y[30:])])
    rows = np.c_[x.transpose(1, 2).reshape(-1, 6).numpy(), np.ones(40 * 7)]  # (window, bin) rows
    solution = np.linalg.lstsq(rows, y.transpose(1, 2).reshape(-1, 3).numpy(), rcond=None)[0]
    for fitted in (whole, batched):
        np.testing.assert_allclose(fitted.weight.numpy(), solution[:-1].T, atol=1e-4)
        np.testing.assert_allclose(fitted.bias.numpy(), solution[-1], atol=1e-4)
    torch.testing.assert_close(whole.weight, batched.weight)


def test_least_squares_linear_recovers_a_linear_process_and_starts_as_persistence() -> None:
    x = torch.rand(8, 5, 4)
    assert torch.equal(LeastSquaresLinear(5, 2)(x), x[:, -1:].expand(-1, 2, -1))  # before fit
    # Targets made by a known map over time (the same for every bin) plus an offset: recovered.
    weight, bias = torch.randn(2, 5), torch.tensor([0.5, -1.0])
    y = torch.einsum("hl,bla->bha", weight, x) + bias[:, None]
    fitted = LeastSquaresLinear(5, 2).fit([(x, y)])
    torch.testing.assert_close(fitted.weight, weight, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fitted.bias, bias, atol=1e-4, rtol=1e-4)
    # Constant data has no unique fit; the ridge term still gives a finite one.
    flat = LeastSquaresLinear(5, 2).fit([(torch.ones(3, 5, 4), torch.ones(3, 2, 4))])
    assert torch.isfinite(flat.weight).all() and torch.allclose(
        flat(torch.ones(1, 5, 4)), torch.ones(1, 2, 4)
    )
    with pytest.raises(ValueError, match="no windows to fit"):
        LeastSquaresLinear(5, 2).fit([])


def test_least_squares_linear_forecasts_in_float32_under_bf16_autocast() -> None:
    x = torch.rand(2, 5, 4)
    reference = LeastSquaresLinear(5, 2).fit([(x, x[:, :2] * 1.37)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = reference(x)
    assert inside.dtype == torch.float32 and torch.equal(inside, reference(x))


@pytest.mark.parametrize("kernel", [-1, 0, 4])
def test_dlinear_refuses_a_kernel_that_is_not_an_odd_positive_width(kernel: int) -> None:
    with pytest.raises(ValueError, match=f"model.kernel must be an odd number >= 1; got {kernel}"):
        DLinear(8, 4, kernel=kernel)


@pytest.mark.parametrize("tokens", ["angle", "time"])
def test_an_empty_batch_gives_an_empty_forecast(tokens: str) -> None:
    # Forecaster.forecast of a (0, L, A) batch stopped in a view that could not infer its -1.
    model = TransformerForecaster(37, 8, 4, d_model=16, n_layers=1, n_heads=2, tokens=tokens).eval()
    torch.manual_seed(0)
    x = torch.rand(3, 8, 37)
    assert model(x[:0]).shape == (0, 4, 37)
    torch.testing.assert_close(model(x)[:1], model(x[:1]))  # a window's forecast, alone or not
