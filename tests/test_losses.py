"""Losses: oracles (scipy, POT), the forum example, gradients, edge cases, configs."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import ot
import pytest
import scipy.optimize
import scipy.stats
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st

from heatforecast import losses

CONF = Path(__file__).resolve().parents[1] / "conf"
LOSS_NAMES = sorted(p.stem for p in (CONF / "loss").glob("*.yaml"))
REQUIRED = [
    "mse",
    "cumsum_mse",
    "cosine",
    "emd",
    "kl",
    "cramer",
    "cumsum_mse_over_cos",
    "huber",
    "l1",
    "combo",
]


def loss_from_config(name: str, scale: str = "linear", bin_width: float = 1.0) -> torch.nn.Module:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"loss={name}", f"data.scale={scale}", f"data.bin_width={bin_width}"],
        )
    return instantiate(cfg.loss)


def all_losses(scale: str = "linear") -> dict[str, torch.nn.Module]:
    return {name: loss_from_config(name, scale) for name in LOSS_NAMES}


def test_every_required_name_has_a_config() -> None:
    assert set(REQUIRED) <= set(LOSS_NAMES)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_config_instantiates_and_runs_on_a_batch(name: str) -> None:
    torch.manual_seed(0)
    loss = loss_from_config(name)
    pred, target = torch.rand(8, 10, 181), torch.rand(8, 10, 181)
    value = loss(pred, target)
    assert value.shape == () and torch.isfinite(value)
    loss.reduction = "none"
    per_vector = loss(pred, target)
    assert per_vector.shape == (8, 10)
    assert torch.allclose(per_vector.mean(), value, rtol=1e-5)


def test_combo_terms_are_the_loss_configs_and_can_be_swapped_added_and_dropped() -> None:
    # conf/loss/combo.yaml takes its terms from loss/*.yaml: the overrides its header gives.
    overrides = ["loss=combo", "loss@loss.terms.emd=cramer", "+loss@loss.terms.kl=kl", "+loss.weights.kl=0.5",
                 "~loss@loss.terms.mse", "~loss.weights.mse", "data.scale=db"]  # fmt: skip
    with initialize_config_dir(str(CONF), version_base="1.3"):
        combo = instantiate(compose("train", overrides).loss)
    assert {k: type(v) for k, v in combo.terms.items()} == {"emd": losses.Cramer, "kl": losses.KL}
    torch.manual_seed(0)
    pred, target = torch.randn(4, 3, 181), torch.randn(4, 3, 181)
    cramer, kl = loss_from_config("cramer", "db"), loss_from_config("kl", "db")
    torch.testing.assert_close(combo(pred, target), cramer(pred, target) + 0.5 * kl(pred, target))


def test_emd_matches_scipy_and_pot_batched() -> None:
    gen = torch.Generator().manual_seed(1)
    pred = torch.rand(4, 10, 181, generator=gen, dtype=torch.float64) ** 4
    target = torch.rand(4, 10, 181, generator=gen, dtype=torch.float64) ** 4
    bin_width = 0.5
    angles = np.arange(181) * bin_width
    ours = losses.emd(pred, target, bin_width=bin_width, eps=1e-12).numpy().reshape(-1)
    p, t = pred.reshape(-1, 181).numpy(), target.reshape(-1, 181).numpy()
    oracle = [scipy.stats.wasserstein_distance(angles, angles, a, b) for a, b in zip(p, t)]
    np.testing.assert_allclose(ours, oracle, rtol=1e-5)
    grid = np.tile(angles[:, None], (1, len(p)))  # POT batches along the second axis
    u, v = (p / p.sum(1, keepdims=True)).T, (t / t.sum(1, keepdims=True)).T
    pot = ot.wasserstein_1d(grid, grid, u, v, p=1)
    np.testing.assert_allclose(ours, pot, rtol=1e-5)


def test_w2_matches_pot_batched() -> None:
    gen = torch.Generator().manual_seed(3)
    pred = torch.rand(4, 10, 181, generator=gen, dtype=torch.float64) ** 4
    target = torch.rand(4, 10, 181, generator=gen, dtype=torch.float64) ** 4
    pred[0, 0], target[0, 0] = 0.0, 0.0  # point masses: the quantile functions' steps coincide
    pred[0, 0, [10, 30]], target[0, 0, 20] = 1.0, 2.0
    bin_width = 0.5
    angles = np.arange(181) * bin_width
    ours = losses.w2(pred, target, bin_width=bin_width, eps=1e-12).numpy().reshape(-1)
    p, t = pred.reshape(-1, 181).numpy(), target.reshape(-1, 181).numpy()
    grid = np.tile(angles[:, None], (1, len(p)))
    u, v = (p / p.sum(1, keepdims=True)).T, (t / t.sum(1, keepdims=True)).T
    pot = ot.wasserstein_1d(grid, grid, u, v, p=2) ** 0.5  # POT gives W2 squared
    np.testing.assert_allclose(ours, pot, rtol=1e-5)
    assert ours[0] == pytest.approx(5.0)  # two half lobes 10 degrees either side of the target


def test_w2_charges_a_split_source_more_than_emd_does() -> None:
    # The target is a source at 80 or at 100 degrees, alike: one peak at 90 and two half lobes at 80
    # and 100 cost EMD the same on average; W2 charges the split more (its docstring's example).
    def delta(*angles: int) -> torch.Tensor:
        x = torch.zeros(181, dtype=torch.float64)
        x[list(angles)] = 1.0
        return x

    targets = torch.stack([delta(80), delta(100)])
    one_peak, split = delta(90).expand(2, -1), delta(80, 100).expand(2, -1)
    assert losses.emd(one_peak, targets, eps=1e-12).mean().item() == pytest.approx(10.0)
    assert losses.emd(split, targets, eps=1e-12).mean().item() == pytest.approx(10.0)
    assert losses.w2(one_peak, targets, eps=1e-12).mean().item() == pytest.approx(10.0)
    assert losses.w2(split, targets, eps=1e-12).mean().item() == pytest.approx(200**0.5)


def test_circular_emd_is_the_minimum_over_cyclic_shifts() -> None:
    gen = torch.Generator().manual_seed(2)
    n = 36  # 0..350 deg in 10 deg bins
    pred = torch.rand(6, n, generator=gen, dtype=torch.float64) ** 3
    target = torch.rand(6, n, generator=gen, dtype=torch.float64) ** 3
    ours = losses.emd(pred, target, bin_width=10.0, eps=1e-12, circular=True)
    gap = losses.cdf_gap(pred, target, "linear", 1e-12)
    # W1 on the circle = min over constants c of sum |gap - c|; the minimum is at one of the gaps.
    brute = (gap[:, :, None] - gap[:, None, :]).abs().sum(1).min(-1).values * 10.0
    torch.testing.assert_close(ours, brute)
    u, v = pred / pred.sum(-1, keepdim=True), target / target.sum(-1, keepdim=True)
    positions = np.arange(n) / n
    pot = [ot.binary_search_circle(positions, positions, a, b, p=1) for a, b in zip(u.numpy(), v.numpy())]
    np.testing.assert_allclose(ours.numpy(), 360.0 * np.ravel(pot), rtol=1e-4)
    # A peak at 350 deg is 20 deg from one at 10 deg on the circle, 340 deg on the line.
    a, b = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    a[35], b[1] = 1.0, 1.0
    assert losses.emd(a, b, 10.0, eps=1e-12, circular=True).item() == pytest.approx(20.0)
    assert losses.emd(a, b, 10.0, eps=1e-12).item() == pytest.approx(340.0)


def test_circular_cramer_is_watsons_form_and_ignores_where_the_circle_is_cut() -> None:
    gen = torch.Generator().manual_seed(12)
    pred = torch.rand(5, 36, generator=gen, dtype=torch.float64) ** 3
    target = torch.rand(5, 36, generator=gen, dtype=torch.float64) ** 3
    ours = losses.cramer(pred, target, bin_width=10.0, eps=1e-12, circular=True)
    gap = losses.cdf_gap(pred, target, "linear", 1e-12).numpy()
    oracle = [10.0 * scipy.optimize.minimize_scalar(lambda c, g=g: ((g - c) ** 2).sum()).fun for g in gap]
    np.testing.assert_allclose(ours.numpy(), oracle, rtol=1e-9)
    for shift in (1, 7, 20):  # cutting the circle elsewhere rolls both vectors alike
        rolled = pred.roll(shift, -1), target.roll(shift, -1)
        for fn in (losses.cramer, losses.emd):
            torch.testing.assert_close(
                fn(*rolled, 10.0, eps=1e-12, circular=True), fn(pred, target, 10.0, eps=1e-12, circular=True)
            )
    linear = losses.cramer(pred.roll(7, -1), target.roll(7, -1), 10.0, eps=1e-12)
    assert not torch.allclose(
        linear, losses.cramer(pred, target, 10.0, eps=1e-12)
    )  # the line's form depends on the cut


def test_kl_matches_scipy_entropy() -> None:
    gen = torch.Generator().manual_seed(3)
    pred = torch.rand(5, 181, generator=gen, dtype=torch.float64) + 0.01
    target = torch.rand(5, 181, generator=gen, dtype=torch.float64) + 0.01
    ours = losses.kl(pred, target, eps=1e-12).numpy()
    oracle = [scipy.stats.entropy(t, p) for p, t in zip(pred.numpy(), target.numpy())]
    np.testing.assert_allclose(ours, oracle, rtol=1e-6)


def test_kl_db_is_kl_of_normalised_linear_power() -> None:
    gen = torch.Generator().manual_seed(4)
    pred_db = torch.randn(3, 181, generator=gen, dtype=torch.float64) * 10
    target_db = torch.randn(3, 181, generator=gen, dtype=torch.float64) * 10
    ours = losses.kl(pred_db, target_db, scale="db").numpy()
    power = lambda x: 10 ** (x.numpy() / 10)  # noqa: E731
    oracle = [scipy.stats.entropy(t, p) for p, t in zip(power(pred_db), power(target_db))]
    np.testing.assert_allclose(ours, oracle, rtol=1e-6)


def test_cosine_matches_torch_and_is_zero_for_two_zero_vectors() -> None:
    gen = torch.Generator().manual_seed(5)
    pred, target = torch.randn(4, 10, 181, generator=gen), torch.randn(4, 10, 181, generator=gen)
    expected = 1 - F.cosine_similarity(pred, target, dim=-1)
    torch.testing.assert_close(losses.cosine(pred, target), expected)
    zero = torch.zeros(2, 181)
    assert torch.equal(losses.cosine(zero, zero), torch.zeros(2))
    assert losses.cosine(zero, torch.ones(2, 181)).eq(1).all()


def test_cramer_is_the_squared_cdf_gap() -> None:
    gen = torch.Generator().manual_seed(6)
    pred, target = torch.rand(3, 181, generator=gen), torch.rand(3, 181, generator=gen)
    p, t = pred / pred.sum(-1, keepdim=True), target / target.sum(-1, keepdim=True)
    expected = 2.0 * (p.cumsum(-1) - t.cumsum(-1)).square().sum(-1)
    torch.testing.assert_close(losses.cramer(pred, target, 2.0, eps=1e-12), expected)


def test_forum_example_distance_aware_vs_blind_losses() -> None:
    target = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    near = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])  # one bin off
    far = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])  # two bins off
    for name in ("emd", "cramer", "cumsum_mse"):
        loss = loss_from_config(name)
        assert loss(near, target) < loss(far, target), name
    for name in ("mse", "cosine", "kl"):
        loss = loss_from_config(name)
        torch.testing.assert_close(loss(near, target), loss(far, target), msg=name)
    assert losses.emd(near, target).item() == pytest.approx(1.0, rel=1e-2)
    assert losses.emd(far, target).item() == pytest.approx(2.0, rel=1e-2)


def test_mass_weight_adds_the_energy_gap() -> None:
    target = torch.tensor([0.0, 1.0, 2.0, 1.0])
    pred = 3 * target  # same shape, three times the energy
    assert losses.emd(pred, target, eps=1e-9).item() == pytest.approx(0.0, abs=1e-6)
    with_mass = losses.emd(pred, target, eps=1e-9, mass_weight=0.5).item()
    assert with_mass == pytest.approx(0.5 * 8.0, rel=1e-5)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradcheck_float64(name: str) -> None:
    loss = loss_from_config(name).double()
    gen = torch.Generator().manual_seed(7)
    pred = (torch.rand(2, 3, 12, generator=gen, dtype=torch.float64) + 0.1).requires_grad_()
    target = torch.rand(2, 3, 12, generator=gen, dtype=torch.float64) + 0.1
    assert torch.autograd.gradcheck(lambda p: loss(p, target), (pred,), eps=1e-6, atol=1e-5)


EDGE_CASES = {
    "all zero": (torch.zeros(4, 181), torch.zeros(4, 181)),
    "zero pred": (torch.zeros(4, 181), torch.rand(4, 181)),
    "zero target": (torch.rand(4, 181), torch.zeros(4, 181)),
    "one-hot": (
        F.one_hot(torch.tensor([0, 50, 90, 180]), 181).float(),
        F.one_hot(torch.tensor([180, 51, 10, 0]), 181).float(),
    ),
    "negative pred": (torch.rand(4, 181) - 0.7, torch.rand(4, 181)),
}


@pytest.mark.parametrize("case", EDGE_CASES)
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_finite_values_and_bounded_gradients(name: str, case: str) -> None:
    loss = loss_from_config(name)
    pred, target = (t.clone() for t in EDGE_CASES[case])
    pred.requires_grad_()
    value = loss(pred, target)
    value.backward()
    assert torch.isfinite(value), (name, case)
    assert torch.isfinite(pred.grad).all(), (name, case)
    assert pred.grad.abs().max() < 1e4, (name, case, pred.grad.abs().max())


def forum_frame() -> torch.Tensor:
    path = Path(__file__).resolve().parents[2] / "shared" / "examples" / "forum_vector.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return torch.tensor(np.loadtxt(path, delimiter=",", skiprows=1), dtype=torch.float32)


@pytest.mark.parametrize("name", ["emd", "kl", "cramer", "w2", "combo"])
def test_forum_frame_as_db_gives_finite_losses_and_gradients(name: str) -> None:
    frame = forum_frame()  # the real frame a user posted: zeros and negative dB values
    target = frame.expand(2, -1)
    pred = (frame.roll(5) + 0.5).expand(2, -1).clone().requires_grad_()
    loss = loss_from_config(name, scale="db")
    value = loss(pred, target)
    value.backward()
    assert torch.isfinite(value) and value > 0
    assert torch.isfinite(pred.grad).all()
    # 0 dB is a real power of 1: the dB mapping spreads mass over the zero bins, unlike linear.
    probs = losses.distribution(frame, "db")
    assert probs.sum().item() == pytest.approx(1.0, rel=1e-5)
    assert (probs[1:100] > 0).all()


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.floats(-60, 30, allow_nan=False), min_size=8, max_size=8),
    st.lists(st.floats(-60, 30, allow_nan=False), min_size=8, max_size=8),
)
def test_db_distribution_losses_are_finite_for_any_db_values(a: list, b: list) -> None:
    pred = torch.tensor(a, requires_grad=True)
    target = torch.tensor(b)
    for fn in (losses.emd, losses.cramer, losses.w2, losses.kl):
        value = fn(pred, target, scale="db")
        (grad,) = torch.autograd.grad(value, pred)
        assert torch.isfinite(value) and value >= -1e-6
        assert torch.isfinite(grad).all()


def test_bad_inputs_say_what_was_expected() -> None:
    loss = losses.EMD()
    with pytest.raises(ValueError, match=r"same shape \(\.\.\., A\)"):
        loss(torch.rand(2, 181), torch.rand(2, 180))
    with pytest.raises(ValueError, match="angle axis last"):
        loss(torch.tensor(1.0), torch.tensor(1.0))
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.MSE(reduction="sum")
    with pytest.raises(ValueError, match="scale must be one of"):
        losses.KL(scale="log")
    with pytest.raises(ValueError, match="terms and weights must name the same losses"):
        losses.Combo({"emd": losses.EMD()}, {"mse": 1.0})
    with pytest.raises(ValueError, match=r"weights \{'emd': 0, 'mse': 0\} are all 0, .* nothing trains"):
        losses.Combo({"emd": losses.EMD(), "mse": losses.MSE()}, {"emd": 0, "mse": 0})  # was: trained on 0
    for cosine in (losses.Cosine, losses.CumsumMSEOverCos):  # was: NaN for all-zero vectors
        with pytest.raises(ValueError, match="eps must be a finite number > 0; got 0"):
            cosine(eps=0)
    with pytest.raises(ValueError, match="delta must be a finite number > 0; got -1"):
        losses.Huber(delta=-1)  # was: torch's, at the first batch
    with pytest.raises(ValueError, match="mass_weight must be a finite number >= 0 .*; got -0.1"):
        losses.EMD(mass_weight=-0.1)  # was: taken, rewarding an energy error
    with pytest.raises(ValueError, match="loss w2 has no circular form .* use loss=emd or loss=cramer"):
        losses.W2(circular=True)
    # NaN and inf passed the plain sign checks: every batch's loss was NaN or inf (or, for the cosine's
    # eps, the constant 1), which the fit noticed only as a non-finite loss.
    for bad in (math.nan, math.inf):
        for build, name in [
            (lambda v: losses.KL(eps=v), "eps"),
            (lambda v: losses.Cosine(eps=v), "eps"),
            (lambda v: losses.EMD(bin_width=v), "bin_width"),
            (lambda v: losses.EMD(mass_weight=v), "mass_weight"),
            (lambda v: losses.Huber(delta=v), "delta"),
        ]:
            with pytest.raises(ValueError, match=f"{name} must be a finite number >=? 0.*; got {bad}"):
                build(bad)
        with pytest.raises(ValueError, match=rf"weights \{{'mse': {bad}\}}; expected finite numbers >= 0"):
            losses.Combo({"emd": losses.EMD(), "mse": losses.MSE()}, {"emd": 1.0, "mse": bad})


def test_unknown_loss_name_lists_the_available_ones() -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as info:
        loss_from_config("wasserstein")
    message = str(info.value)
    assert "wasserstein" in message and "emd" in message and "kl" in message


@pytest.mark.parametrize("scale", ["linear", "db"])
@pytest.mark.parametrize("kind", ["emd", "emd_circular", "cramer", "cramer_circular", "kl"])
def test_hand_written_backward_matches_autograd_of_the_formula(kind: str, scale: str) -> None:
    gen = torch.Generator().manual_seed(8)
    pred = (torch.rand(3, 4, 20, generator=gen, dtype=torch.float64) * 2 - 0.3).requires_grad_()
    target = torch.rand(3, 4, 20, generator=gen, dtype=torch.float64).requires_grad_()
    if kind == "kl":
        ours = losses.kl(pred, target, scale)
        log_p, log_q = losses.log_distribution(pred, scale), losses.log_distribution(target, scale)
        reference = (log_q.exp() * (log_q - log_p)).sum(-1)
    elif kind.startswith("cramer"):
        circular = kind == "cramer_circular"
        ours = losses.cramer(pred, target, 0.5, scale, circular=circular)
        gap = losses.cdf_gap(pred, target, scale)
        if circular:  # the mean is not detached: its gradient term is zero, which this checks
            gap = gap - gap.mean(-1, keepdim=True)
        reference = 0.5 * gap.square().sum(-1)
    else:
        circular = kind == "emd_circular"
        ours = losses.emd(pred, target, 0.5, scale, circular=circular)
        gap = losses.cdf_gap(pred, target, scale)
        if circular:
            gap = gap - gap.detach().median(-1, keepdim=True).values
        reference = 0.5 * gap.abs().sum(-1)
    weights = torch.rand(3, 4, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad((ours * weights).sum(), (pred, target))
    expected = torch.autograd.grad((reference * weights).sum(), (pred, target))
    torch.testing.assert_close(ours, reference)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


def test_loss_vs_shift_shows_which_losses_see_a_peak_s_distance_and_its_magnitude(tmp_path: Path) -> None:
    # scripts/loss_vs_shift.py: every conf/loss option, as train.py builds it, against a peak moved by
    # d degrees and a target scaled by a. The README's table says which see what; these are its cells.
    spec = importlib.util.spec_from_file_location(
        "loss_vs_shift", CONF.parent / "scripts" / "loss_vs_shift.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    values = script.loss_values()
    shift = values[values.kind == "shift"].pivot(index="x", columns="loss", values="value")
    magnitude = values[values.kind == "magnitude"].pivot(index="x", columns="loss", values="value")
    assert sorted(shift.columns) == LOSS_NAMES
    assert (shift.loc[0.0].abs() < 1e-5).all() and (magnitude.loc[1.0].abs() < 1e-5).all()
    # Blind to distance: once the peaks stop overlapping, 60 degrees off costs what 30 does.
    for name in ("mse", "l1", "huber", "cosine", "kl"):
        assert shift.loc[60.0, name] == pytest.approx(shift.loc[30.0, name], rel=1e-4), name
    # Distance-aware: EMD and W2 are the shift itself (in degrees), the others keep growing with it.
    for name in ("emd", "w2"):
        assert shift[name].to_numpy() == pytest.approx(shift.index.to_numpy(), rel=2e-3, abs=1e-3), name
    for name in ("cramer", "cumsum_mse", "cumsum_mse_over_cos", "emd_mse", "combo"):
        assert np.all(np.diff(shift[name].to_numpy()) > 0), name
    # Magnitude: the distribution losses barely see it (their eps floor only), MSE and cumsum-MSE do.
    for name in ("emd", "cramer", "kl", "cosine"):
        assert magnitude.loc[2.0, name] < 1e-3 * shift.loc[60.0, name], name
    for name in ("mse", "cumsum_mse", "l1", "emd_mse"):
        assert magnitude.loc[2.0, name] > 0.01 * shift.loc[60.0, name], name
    script.plot(values, tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 10_000
    # dB data: more energy adds the same dB to every bin, which the softmax of the distribution losses
    # does not see at all, and MSE sees as that many dB squared.
    values = script.loss_values("db")
    shift = values[values.kind == "shift"].pivot(index="x", columns="loss", values="value")
    magnitude = values[values.kind == "magnitude"].pivot(index="x", columns="loss", values="value")
    assert magnitude["mse"].to_numpy() == pytest.approx(
        (10 * np.log10(magnitude.index.to_numpy())) ** 2, rel=1e-4
    )
    for name in ("emd", "cramer", "kl", "w2"):
        assert magnitude[name].abs().max() < 1e-4 * shift.loc[60.0, name], name
        assert np.all(np.diff(shift[name].to_numpy()[:30]) > 0), name  # up to 30 degrees: KL saturates later
    for name in ("emd", "cramer", "w2"):
        assert np.all(np.diff(shift[name].to_numpy()) > 0), name
    for name in ("mse", "l1", "huber", "cosine", "kl"):
        assert shift.loc[60.0, name] == pytest.approx(shift.loc[30.0, name], rel=1e-4), name
