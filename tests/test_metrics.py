"""The metric panel: circular forms for an angle axis that wraps around; skill intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from scipy import optimize, signal, stats
from torch import Tensor

from heatforecast import losses
from heatforecast.data import make_synthetic
from heatforecast.metrics import (
    DEFAULT_PEAKS,
    FORECASTERS,
    MAX_PEAK_COUNT,
    MIN_SERIES,
    SKILL_METRICS,
    VECTOR_METRICS,
    ForecastMetrics,
    PeakSettings,
    ospa,
    peaks,
    series_panels,
    skill_interval,
    skill_intervals,
    vector_metrics,
)
from heatforecast.training.report import interval_table

from .conftest import CONF
from .test_losses import forum_frame


def test_circular_metrics_measure_the_shorter_way_round() -> None:
    angles = torch.arange(0.0, 360.0, 10.0)  # 36 bins of 10 degrees
    pred, target = torch.zeros(1, 36, dtype=torch.float64), torch.zeros(1, 36, dtype=torch.float64)
    pred[0, 35], target[0, 1] = 1.0, 1.0  # peaks at 350 and 10 degrees: 20 apart on the circle
    line = dict(zip(VECTOR_METRICS, vector_metrics(pred, target, angles, eps=1e-12)))
    circle = dict(zip(VECTOR_METRICS, vector_metrics(pred, target, angles, eps=1e-12, circular=True)))
    assert line["peak_err_deg"].item() == 340.0 and circle["peak_err_deg"].item() == 20.0
    # On a line the forecast's top is its end bin, no peak: the target's peak is missed, at the cutoff.
    assert line["ospa_deg"].item() == DEFAULT_PEAKS.cutoff_deg and circle["ospa_deg"].item() == 20.0
    assert abs(line["emd"].item() - 340.0) < 1e-6
    assert abs(circle["emd"].item() - 20.0) < 1e-6
    torch.testing.assert_close(circle["cramer"], losses.cramer(pred, target, 10.0, eps=1e-12, circular=True))
    assert circle["cramer"].item() < line["cramer"].item()
    for name in ("mse", "mae", "cosine", "kl"):  # bin by bin: the same on a line and a circle
        torch.testing.assert_close(line[name], circle[name])


def test_metric_panel_passes_circular_to_every_update() -> None:
    angles = torch.arange(0.0, 360.0, 10.0)
    pred, target = torch.zeros(2, 3, 36), torch.zeros(2, 3, 36)
    pred[..., 35], target[..., 1] = 1.0, 1.0
    panels = {}
    for circular in (False, True):
        metrics = ForecastMetrics(angles, horizon=3, eps=1e-12, circular=circular)
        metrics.update(pred, target, persistence=target, linear=target, drift=target)
        panels[circular] = metrics.compute()["model"]
    assert panels[False]["peak_err_deg"].item() == 340.0 and panels[True]["peak_err_deg"].item() == 20.0
    assert abs(panels[True]["emd"].item() - 20.0) < 1e-4


def scipy_peaks(frame: np.ndarray, scale: str, circular: bool) -> list[int]:
    """The bins of scipy.signal.find_peaks's peaks with the metric's height and distance, highest
    first. A circular frame is laid out three times over and the middle copy's peaks are taken."""
    top = frame.max()
    within = DEFAULT_PEAKS.within_db
    height = top - within if scale == "db" else top * 10 ** (-within / 10)
    n = len(frame)
    laid = np.tile(frame, 3) if circular else frame
    found, _ = signal.find_peaks(laid, height=height, distance=DEFAULT_PEAKS.distance_deg)  # 1-degree bins
    if circular:
        found = found[(found >= n) & (found < 2 * n)] - n
    return found[np.argsort(-frame[found], kind="stable")].tolist()


@pytest.mark.parametrize(
    ("scale", "circular"),
    [("linear", False), ("db", False), ("linear", True)],
    ids=["linear", "dB", "circular"],
)
def test_peaks_are_scipy_find_peaks_highest_first(scale: str, circular: bool) -> None:
    n_bins = 360 if circular else 181
    frames = make_synthetic(2, 150, n_bins, scale=scale, circular=circular, seed=5).reshape(-1, n_bins)
    angles = torch.arange(float(n_bins))
    where, found = peaks(torch.from_numpy(frames), angles, scale, circular)
    counts = []
    for frame, at, ok in zip(frames, where, found, strict=True):
        want = scipy_peaks(frame.astype(np.float64), scale, circular)
        counts.append(len(want))
        assert at[ok].long().tolist() == want[:4] and ok.tolist() == sorted(ok.tolist(), reverse=True)
    assert 1 <= min(counts) and max(counts) >= 2  # frames with one source and with several


@pytest.mark.parametrize("circular", [False, True], ids=["line", "circle"])
def test_flat_topped_peaks_are_placed_as_scipy_places_them(circular: bool) -> None:
    # Whole numbers make runs of equal bins: a flat top is one peak at its middle, a shelf on the way
    # up is none, and (on a line) neither is a run that reaches an end bin.
    frames = np.random.default_rng(2).integers(0, 4, (300, 40)).astype(np.float64)
    frames[0] = [0, 1, 2, 2, 3, *[0] * 32, 2, 2, 2]  # a shelf, then a run to the end
    frames[1] = 1.0  # flat: no peak
    angles = torch.arange(40.0)
    every_peak = {"k": 20, "within_db": math.inf, "distance_deg": 0}  # 0: no peak drops another
    where, found = peaks(torch.from_numpy(frames), angles, circular=circular, **every_peak)
    for frame, at, ok in zip(frames, where, found, strict=True):
        laid = np.tile(frame, 3) if circular else frame
        want = signal.find_peaks(laid)[0]
        if circular:
            want = want[(want >= 40) & (want < 80)] - 40
        assert sorted(at[ok].long().tolist()) == sorted(want.tolist())
    assert where[0][found[0]].tolist() == ([4.0, 38.0] if circular else [4.0]) and not found[1].any()


def test_peaks_of_bf16_frames_are_those_of_the_same_values_in_float32() -> None:
    # Under bf16 autocast a forecast may come as bf16, whose whole numbers stop being exact past 256:
    # bin positions of a 360-bin circle must not be computed in it.
    frames = torch.from_numpy(make_synthetic(2, 60, 360, circular=True, seed=3)).reshape(-1, 360).bfloat16()
    angles = torch.arange(360.0)
    got, want = peaks(frames, angles, circular=True), peaks(frames.float(), angles, circular=True)
    assert torch.equal(got[1], want[1]) and torch.equal(got[0][got[1]], want[0][want[1]])


def test_peaks_of_the_forum_frame_in_db_are_scipys_and_skip_its_end_bin() -> None:
    frame = forum_frame()  # 182 values in dB; its highest, 0.27 dB, is the first bin: no peak
    angles = torch.arange(float(len(frame)))
    where, found = peaks(frame, angles, "db")
    assert frame.argmax().item() == 0 and 0.0 not in where[found].tolist()
    assert where[found].long().tolist() == scipy_peaks(frame.double().numpy(), "db", False)[:4]


@pytest.mark.parametrize("k", [1, 4, MAX_PEAK_COUNT])
def test_ospa_is_the_optimal_assignment_with_a_cutoff(k: int) -> None:
    gen = np.random.default_rng(3)
    n, cutoff = 400, 30.0
    a, b = gen.uniform(0, 360, (2, n, k))
    near = max(1, k // 2)  # peaks of b placed near peaks of a in half the pairs, the rest anywhere
    b[: n // 2, :near] = (a[: n // 2, :near] + gen.normal(0, 15, (n // 2, near))) % 360
    has_a, has_b = gen.random((2, n, k)) < 0.6  # empty sets included
    for circular in (False, True):
        got = ospa(
            (torch.from_numpy(a), torch.from_numpy(has_a)),
            (torch.from_numpy(b), torch.from_numpy(has_b)),
            cutoff,
            circular,
        )
        for i in range(n):
            x, y = a[i][has_a[i]], b[i][has_b[i]]
            gap = np.abs(x[:, None] - y[None])
            cost = np.minimum(np.minimum(gap, 360 - gap) if circular else gap, cutoff)
            rows, cols = optimize.linear_sum_assignment(cost)
            larger = max(len(x), len(y))
            want = (cost[rows, cols].sum() + cutoff * abs(len(x) - len(y))) / larger if larger else 0.0
            assert got[i].item() == pytest.approx(want, abs=1e-9), (i, circular)


def test_ospa_counts_a_missed_source_that_the_argmax_does_not_see() -> None:
    angles = torch.arange(181.0)

    target = bumps(angles, (40.0, 1.0), (120.0, 0.8))  # two sources
    one_found = bumps(angles, (44.0, 1.0))  # the strongest 4 degrees off; the other missed
    both_found = bumps(angles, (44.0, 1.0), (118.0, 0.8))
    panel = {
        name: dict(zip(VECTOR_METRICS, vector_metrics(f[None], target[None], angles)))
        for name, f in (("one", one_found), ("both", both_found))
    }
    assert panel["one"]["peak_err_deg"].item() == panel["both"]["peak_err_deg"].item() == 4.0
    assert panel["one"]["ospa_deg"].item() == pytest.approx((4.0 + DEFAULT_PEAKS.cutoff_deg) / 2)
    assert panel["both"]["ospa_deg"].item() == pytest.approx((4.0 + 2.0) / 2)


def bumps(angles: Tensor, *sources: tuple[float, float], width: float = 3.0) -> Tensor:
    """Gaussian sources (angle, height) of ``width`` degrees over ``angles``."""
    return sum(amp * torch.exp(-0.5 * ((angles - at) / width) ** 2) for at, amp in sources)


@pytest.mark.parametrize(
    ("target_sources", "settings", "default_ospa", "ospa_with"),
    [
        # Two sources 4 degrees apart are one peak at 5 degrees' distance, two at 2.
        (((40.0, 1.0), (44.0, 0.9)), {"distance_deg": 2.0}, 0.0, 15.0),
        # A source 5.2 dB below the strongest is no peak within 3 dB, and one within 6 dB.
        (((40.0, 1.0), (120.0, 0.3)), {"within_db": 6.0}, 0.0, 15.0),
        # With at most one peak a frame, only the strongest source counts.
        (((40.0, 1.0), (120.0, 0.8)), {"max_count": 1}, 15.0, 0.0),
        # The missed source costs the cutoff.
        (((40.0, 1.0), (120.0, 0.8)), {"cutoff_deg": 10.0}, 15.0, 5.0),
    ],
    ids=["distance", "within_db", "max_count", "cutoff"],
)
def test_peak_settings_decide_which_sources_ospa_counts(
    target_sources: tuple, settings: dict, default_ospa: float, ospa_with: float
) -> None:
    angles = torch.arange(181.0)
    target = bumps(angles, *target_sources, width=1.0)[None, None]  # (1, 1, A): one window of one step
    pred = bumps(angles, target_sources[0], width=1.0)[None, None]  # the strongest source alone, in place
    chosen = PeakSettings(**settings)
    for peak_settings, want in ((DEFAULT_PEAKS, default_ospa), (chosen, ospa_with)):
        values = dict(zip(VECTOR_METRICS, vector_metrics(pred, target, angles, peak_settings=peak_settings)))
        assert values["ospa_deg"].item() == pytest.approx(want)
        panel = ForecastMetrics(angles, horizon=1, peak_settings=peak_settings)
        panel.update(pred, target, persistence=target, linear=target, drift=target)
        assert panel.compute()["model"]["ospa_deg"].item() == pytest.approx(want)


def test_the_default_peak_settings_are_those_of_conf_train_yaml() -> None:
    with initialize_config_dir(str(CONF), version_base=None):
        assert instantiate(compose("train").peaks) == DEFAULT_PEAKS


@pytest.mark.parametrize(
    "settings",
    [
        {"max_count": True},
        {"max_count": 4.0},
        {"distance_deg": math.nan},
        {"cutoff_deg": -1.0},
        {"within_db": "3"},
    ],
)
def test_peak_settings_refuse_what_no_frame_can_mean(settings: dict) -> None:
    with pytest.raises(ValueError, match=f"^peaks.{next(iter(settings))}[= ]"):
        PeakSettings(**settings)
    assert PeakSettings(within_db=0, distance_deg=0, max_count=6).max_count == 6  # the bounds are taken


@pytest.mark.parametrize("unit", [1e-25, 1e21])
def test_panels_in_tiny_or_huge_energy_units_are_the_panels_of_the_same_data_near_1(unit: float) -> None:
    # Received power in watts (1e-25) or summed counts (1e21): squared in float32, the first gives
    # mse 0 and the second inf, and cosine NaN; the data scaler's factor, as ``unit``, keeps them apart.
    horizon, n_bins = 3, 40
    gen = torch.Generator().manual_seed(4)
    target, pred, persistence = torch.rand(3, 12, horizon, n_bins, generator=gen)
    series, time = torch.arange(12) % 3, torch.arange(12)
    angles = torch.arange(n_bins * 1.0)
    panels = {}
    for scale in (1.0, unit):
        metrics = ForecastMetrics(angles, horizon, eps=1e-3 * scale, keep_windows=True, unit=scale)
        batch = [t * scale for t in (pred, target, persistence, pred, persistence)]
        metrics.update(*batch, series, time)
        panels[scale] = metrics.compute()
    powers = {"mse": 2, "mae": 1}  # how a metric scales with the unit; the others do not
    for who in FORECASTERS:
        for name, value in panels[1.0][who].items():
            want = value.double() * unit ** powers.get(name, 0)
            torch.testing.assert_close(panels[unit][who][name], want, rtol=1e-5, atol=0, msg=f"{who} {name}")
    windows, near_1 = panels[unit]["windows"], panels[1.0]["windows"]
    for key in ("values", "steps", "mass"):  # kept in the unit, as float32 (memory)
        torch.testing.assert_close(windows[key], near_1[key], rtol=1e-5, atol=0)
    per_series, per_series_near_1 = series_panels(windows, unit), series_panels(near_1)
    for index, series in per_series.items():  # in data units
        for name, value in series["model"].items():
            want = per_series_near_1[index]["model"][name] * unit ** powers.get(name, 0)
            close = {"atol": 1e-6} if name.startswith("skill_") else {"atol": 0}  # 1 - ratio near 0
            torch.testing.assert_close(value, want, rtol=1e-5, **close, msg=f"{index} {name}")
    with pytest.raises(ValueError, match="1 for dB data"):
        ForecastMetrics(angles, horizon, scale="db", unit=unit)


def interval_1d(*args: Tensor, **kwargs: int) -> list[float]:
    """skill_interval of (W,) values, as floats: skill, low, high."""
    return [v.item() for v in skill_interval(*args, **kwargs)]


def test_skill_interval_of_a_model_exactly_half_the_reference_is_that_skill_alone() -> None:
    reference = torch.rand(50, generator=torch.Generator().manual_seed(0)) + 0.1
    skill, low, high = interval_1d(reference / 2, reference, torch.arange(50) % 7)
    assert skill == pytest.approx(0.5) and low == pytest.approx(0.5) and high == pytest.approx(0.5)


def test_skill_interval_matches_scipy_bootstrap_when_every_window_is_its_own_group() -> None:
    rng = np.random.default_rng(1)
    reference = rng.gamma(2.0, 1.0, 400)
    model = reference * rng.uniform(0.5, 1.2, 400)
    skill, low, high = interval_1d(
        torch.from_numpy(model), torch.from_numpy(reference), torch.arange(400), resamples=20000
    )
    assert skill == pytest.approx(1 - model.sum() / reference.sum())
    oracle = stats.bootstrap(
        (model, reference),
        lambda m, r, axis: 1 - m.sum(axis) / r.sum(axis),
        paired=True,
        vectorized=True,
        n_resamples=20000,
        method="percentile",
        random_state=0,
    ).confidence_interval
    width = oracle.high - oracle.low
    assert low == pytest.approx(oracle.low, abs=0.05 * width)
    assert high == pytest.approx(oracle.high, abs=0.05 * width)
    assert low < skill < high


def test_skill_interval_widens_when_windows_move_together() -> None:
    """Windows of one series share its luck: resampling them one by one would claim false certainty."""
    groups = torch.arange(20).repeat_interleave(30)  # 20 series of 30 windows
    luck = torch.randn(20, generator=torch.Generator().manual_seed(2))[groups]  # one per series
    reference = torch.ones(600)
    model = 0.8 + 0.2 * luck + 0.01 * torch.randn(600, generator=torch.Generator().manual_seed(3))
    found = interval_1d(model, reference, groups)
    _, naive_low, naive_high = interval_1d(model, reference, torch.arange(600))
    assert found[2] - found[1] > 3 * (naive_high - naive_low)
    assert interval_1d(model, reference, groups) == found  # seeded: the same interval every time
    assert interval_1d(model, reference, groups, seed=1)[1:] != found[1:]


def test_skill_interval_over_many_groups_draws_in_chunks_the_same_resamples() -> None:
    groups = torch.arange(30_000) // 3  # 10,000 groups: resamples drawn 419 at a time
    gen = torch.Generator().manual_seed(6)
    reference = torch.rand(30_000, generator=gen, dtype=torch.float64) + 0.5
    model = reference * (0.5 + torch.rand(30_000, generator=gen, dtype=torch.float64))
    # The bootstrap in one piece: every resample's group counts at once.
    draws = torch.randint(10_000, (2000, 10_000), generator=torch.Generator().manual_seed(0))
    ones = torch.ones(2000, 10_000, dtype=torch.float64)
    counts = torch.zeros(2000, 10_000, dtype=torch.float64).scatter_add_(1, draws, ones)
    sums = torch.stack([model, reference]).view(2, 10_000, 3).sum(-1)
    drawn = counts @ sums.T
    levels = torch.tensor([0.025, 0.975], dtype=torch.float64)
    expected = torch.quantile(1 - drawn[:, 0] / drawn[:, 1], levels)
    assert interval_1d(model, reference, groups)[1:] == pytest.approx(expected.tolist(), rel=1e-12)


def test_each_series_panels_equal_a_panel_fed_only_that_series_windows() -> None:
    horizon, n_bins = 4, 30
    gen = torch.Generator().manual_seed(3)
    target, pred = torch.rand(2, 30, horizon, n_bins, generator=gen)
    pred[:, :, ::3] = 0.0  # exact zeros, as in sparse spectra
    series = torch.randint(3, (30,), generator=gen) * 5  # interleaved, ids not 0..2
    series[:3] = 7  # a series whose persistence is exact: its skills divide by zero, as the overall's
    target[:3] = pred[:3]
    references = (pred, 0.5 * pred + 0.5 * target, target.roll(2, -1))  # persistence, linear, drift
    time = torch.arange(30)
    angles = torch.arange(n_bins * 1.0)
    metrics = ForecastMetrics(angles, horizon, eps=1e-3, keep_windows=True)
    for half in (slice(0, 13), slice(13, None)):
        metrics.update(
            target[half] * 0.9, target[half], *(r[half] for r in references), series[half], time[half]
        )
    got = series_panels(metrics.compute()["windows"])
    assert sorted(got) == [0, 5, 7, 10] and sum(p["windows"] for p in got.values()) == 30
    for index, panels in got.items():
        mine = series == index
        alone = ForecastMetrics(angles, horizon, eps=1e-3)
        alone.update(target[mine] * 0.9, target[mine], *(r[mine] for r in references))
        want = alone.compute()
        assert panels["windows"] == int(mine.sum())
        for who in FORECASTERS:
            assert set(panels[who]) == set(want[who])
            for name, value in want[who].items():
                torch.testing.assert_close(
                    panels[who][name],
                    value,
                    rtol=1e-6,
                    atol=1e-9,
                    equal_nan=True,
                    msg=f"{index} {who} {name}",
                )
    assert torch.isinf(got[7]["model"]["skill_emd"]) and got[7]["persistence"]["emd"] == 0


def test_the_test_panel_keeps_each_window_and_resamples_whole_series_when_there_are_enough() -> None:
    n_series, horizon, n_bins = MIN_SERIES, 3, 20
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(4 * n_series, horizon, n_bins, generator=gen)
    persistence = torch.rand(4 * n_series, horizon, n_bins, generator=gen)
    series, time = torch.arange(n_series).repeat_interleave(4), torch.arange(4).repeat(n_series)
    metrics = ForecastMetrics(torch.arange(n_bins * 1.0), horizon, keep_windows=True)
    with pytest.raises(ValueError, match="keep_windows needs each window's series and time"):
        metrics.update(persistence, target, persistence, 3 * persistence, 2 * persistence)
    for half in (slice(0, 20), slice(20, None)):  # two batches: the windows are concatenated
        # The model is persistence (no skill, and no doubt about it); linear and drift, at three and
        # two times its values, miss by far more.
        p = persistence[half]
        metrics.update(p, target[half], p, 3 * p, 2 * p, series[half], time[half])
    panels = metrics.compute()
    windows = panels["windows"]
    assert windows["values"].shape == (4 * n_series, 4, len(VECTOR_METRICS))
    assert torch.equal(windows["series"], series) and torch.equal(windows["time"], time)
    for i, who in enumerate(FORECASTERS):  # the windows' order is the panels'
        assert windows["values"][:, i, 0].mean() == pytest.approx(panels[who]["mse"].item(), rel=1e-6)
    intervals = skill_intervals(windows, span=5)
    assert (intervals["unit"], intervals["units"], intervals["block_steps"]) == ("series", n_series, None)
    assert set(intervals["persistence"]) == set(VECTOR_METRICS)
    assert intervals["persistence"]["emd"] == {"skill": 0.0, "low": 0.0, "high": 0.0}
    assert intervals["drift"]["mse"]["low"] > 0.5 and intervals["linear"]["mse"]["low"] > 0.5
    few = skill_intervals({k: v[:12] for k, v in windows.items()}, span=2)  # 3 series of steps 0..3
    assert (few["unit"], few["units"], few["block_steps"]) == ("block", 6, 2)
    assert few["drift"]["mse"]["low"] is not None
    fewer = skill_intervals({k: v[:8] for k, v in windows.items()}, span=4)  # 2 series, 1 block each
    assert (
        fewer["units"] == 2 and fewer["drift"]["mse"]["low"] is None and fewer["drift"]["mse"]["high"] is None
    )
    assert fewer["drift"]["mse"]["skill"] > 0.5  # the skill itself is still given
    # Each horizon step's skills, from each window's values at that step.
    assert windows["steps"].shape == (4 * n_series, 4, len(SKILL_METRICS), horizon)
    emd = VECTOR_METRICS.index("emd")
    assert torch.allclose(windows["steps"][:, :, 0].mean(-1), windows["values"][:, :, emd])
    step_skill = intervals["per_horizon"]["drift"]["mse"]["skill"]
    by_step = 1 - panels["model_per_horizon"]["mse"] / panels["drift_per_horizon"]["mse"]
    assert step_skill == pytest.approx(by_step.tolist(), rel=1e-6)
    no_skill = dict.fromkeys(("skill", "low", "high"), [0.0] * horizon)  # the model is persistence
    assert intervals["per_horizon"]["persistence"]["emd"] == no_skill | {"ahead_steps": 0}
    assert intervals["per_horizon"]["drift"]["mse"]["ahead_steps"] == horizon
    assert fewer["per_horizon"]["drift"]["emd"]["low"] is None
    assert fewer["per_horizon"]["drift"]["emd"]["ahead_steps"] is None


def test_the_lead_time_ends_at_the_first_step_whose_interval_is_not_above_zero() -> None:
    windows, horizon = 40, 4
    reference = torch.rand(windows, horizon, generator=torch.Generator().manual_seed(5)) + 0.5
    model = reference / 2
    model[:, 2] = reference[:, 2]  # no skill at step 3; ahead again at step 4
    steps = torch.stack([model, reference, reference], 1)[:, :, None].expand(-1, -1, len(SKILL_METRICS), -1)
    found = skill_intervals(
        {
            "values": steps.mean(-1)[:, :, :1].expand(-1, -1, len(VECTOR_METRICS)),
            "steps": steps,
            "series": torch.arange(windows) % MIN_SERIES,
            "time": torch.arange(windows) // MIN_SERIES,
        },
        span=5,
    )
    cell = found["per_horizon"]["persistence"]["emd"]
    assert cell["skill"] == pytest.approx([0.5, 0.5, 0.0, 0.5])
    assert cell["ahead_steps"] == 2


def test_skill_interval_of_many_columns_is_each_columns_own_interval() -> None:
    gen = torch.Generator().manual_seed(4)
    reference = torch.rand(90, 4, generator=gen) + 0.5
    model = reference * (0.6 + torch.rand(90, 4, generator=gen))
    groups = torch.arange(90) % 12
    skill, low, high = skill_interval(model, reference, groups)
    assert skill.shape == low.shape == high.shape == (4,)
    for j in range(4):  # the same resamples for every column: each equals its own 1-D interval
        column = [v.item() for v in skill_interval(model[:, j], reference[:, j], groups)]
        assert column == pytest.approx([skill[j].item(), low[j].item(), high[j].item()], rel=1e-12)


def test_the_printed_panel_says_at_which_steps_the_model_is_ahead_or_behind() -> None:
    cell = {"skill": 0.1, "low": -0.1, "high": 0.3}
    steps = {  # steps 1-3 above 0, 4 and 6 straddle it, 5 and 7-8 below it
        "skill": [0.3, 0.2, 0.1, 0.0, -0.2, 0.0, -0.3, -0.4],
        "low": [0.1, 0.1, 0.01, -0.1, -0.3, -0.2, -0.5, -0.6],
        "high": [0.5, 0.3, 0.2, 0.1, -0.1, 0.1, -0.1, -0.2],
    }
    intervals = {"level": 0.95, "unit": "series", "units": 12, "block_steps": None}
    intervals |= {who: dict.fromkeys(VECTOR_METRICS, cell) for who in FORECASTERS[1:]}
    intervals["per_horizon"] = {"persistence": {"emd": steps}, "drift": {"emd": {**steps, "low": [0.1] * 8}}}
    text = interval_table(intervals)
    assert (
        "skill_emd by horizon step: vs persistence: ahead at 1-3, behind at 5, 7-8, "
        "not told apart at 4, 6; vs drift: ahead at 1-8" in text
    )
