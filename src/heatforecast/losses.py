"""Training losses over angle-energy vectors.

Every loss compares a prediction ``p`` and a target ``t`` of shape ``(..., A)``: the last axis is angle
(A bins of ``bin_width`` degrees). Each is a plain function returning one value per vector, shape
``(...)``, plus a thin ``nn.Module`` whose ``reduction`` is ``"mean"`` (the mean over every leading dim,
a scalar) or ``"none"`` (the per-vector values).

Distribution losses (``emd``, ``cramer``, ``w2``, ``kl``) first map each vector to a distribution over
bins with :func:`log_distribution`, one differentiable mapping documented there.

``eps`` arguments are in the units the loss sees. During training that is the scaled data, whose train
mean per bin is 1 for linear energy, so ``eps=1e-3`` is a 0.1 % floor per bin; it bounds gradients near
all-zero vectors, where every scale-invariant quantity (a normalised vector, a cosine) is singular.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_EPS = 1e-3
# Temperature that turns dB into normalised linear power: softmax(x / T) = 10^(x/10) / sum 10^(x/10).
DB_TEMPERATURE = 10.0 / math.log(10.0)
SCALES = ("linear", "db")


def check_pair(pred: Tensor, target: Tensor) -> None:
    """Stop with a clear message unless pred and target are both shaped (..., A) alike."""
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape (..., A); got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    if pred.dim() < 1 or pred.shape[-1] < 2:
        raise ValueError(
            f"expected the angle axis last, shape (..., A) with A >= 2 bins; got {tuple(pred.shape)}"
        )


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")


def _is_number(value: float, zero: bool = False) -> bool:
    """Whether ``value`` is a finite number > 0 (>= 0 with ``zero``): NaN and inf pass a plain
    ``value <= 0`` test, and a loss built with them is NaN or inf (or constant) at every batch."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return real and math.isfinite(value) and (value >= 0 if zero else value > 0)


def check_number(name: str, value: float, zero: bool = False, why: str = "") -> None:
    """Stop with a ValueError naming ``name`` unless ``value`` is a finite number > 0 (>= 0 with
    ``zero``); ``why`` is added to the message."""
    if not _is_number(value, zero):
        raise ValueError(f"{name} must be a finite number {'>=' if zero else '>'} 0{why}; got {value}")


def log_distribution(x: Tensor, scale: str = "linear", eps: float = DEFAULT_EPS) -> Tensor:
    """Log of the distribution over bins that a vector stands for.

    - ``linear`` (non-negative energy): ``q = max(x, 0) + eps``, ``P = q / sum_a q``. Negative values
      count as no energy; ``eps`` keeps all-zero vectors (uniform) and their gradients finite.
    - ``db`` (10 log10 power): ``P = softmax(x / T)`` with ``T = 10 / ln 10``, exactly the normalised
      linear power ``10^(x/10) / sum 10^(x/10)``; 0 dB is a real power of 1, not "no energy".
    """
    _check_scale(scale)
    if scale == "db":
        return F.log_softmax(x / DB_TEMPERATURE, dim=-1)
    q = x.clamp_min(0.0) + eps
    return q.log() - q.sum(-1, keepdim=True).log()


def distribution(x: Tensor, scale: str = "linear", eps: float = DEFAULT_EPS) -> Tensor:
    """The distribution over bins of :func:`log_distribution`, summing to 1 along the last axis."""
    _check_scale(scale)
    return _normalise(x, scale, eps)[0]


def _normalise(x: Tensor, scale: str, eps: float) -> tuple[Tensor, Tensor]:
    """(P, S): the distribution of :func:`distribution` and its normaliser (sum of q; 1 for dB)."""
    if scale == "db":
        return torch.softmax(x / DB_TEMPERATURE, dim=-1), x.new_ones(())
    q = x.clamp_min(0.0).add_(eps)
    total = q.sum(-1, keepdim=True)
    return q.div_(total), total


def _normalise_backward(grad: Tensor, x: Tensor, probs: Tensor, total: Tensor, scale: str) -> Tensor:
    """Gradient w.r.t. x given the gradient w.r.t. the distribution P of x (overwrites ``grad``)."""
    dot = (grad.unsqueeze(-2) @ probs.unsqueeze(-1)).squeeze(-1)  # sum_a grad_a P_a, without a temporary
    centred = grad.sub_(dot)
    if scale == "db":
        return centred.mul_(probs).div_(DB_TEMPERATURE)
    return centred.div_(total).masked_fill_(x < 0, 0.0)  # clamp_min(0) passes gradient at x >= 0


def _lower_median(x: Tensor) -> Tensor:
    """The lower of the two middle values along the last axis (keepdim), as ``torch.median`` gives.

    On a CUDA tensor under ``torch.use_deterministic_algorithms`` (``trainer.deterministic=true``)
    torch.median refuses to run, as its index may be any of tied values; the value is the same, so a
    sort gives it there. Elsewhere median is kept: on a CPU it takes a third of a sort's time.
    """
    if x.is_cuda and torch.are_deterministic_algorithms_enabled():
        return x.sort(-1).values.narrow(-1, (x.shape[-1] - 1) // 2, 1)
    return x.median(-1, keepdim=True).values


class _CdfDistance(torch.autograd.Function):
    """d * sum_a f(CDF_p(a) - CDF_t(a) - c) with f = |.| (power 1, EMD) or (.)^2 (power 2, Cramer).
    When circular, c is the constant that minimises the sum (the gap's median for power 1, its mean for
    power 2), held constant in backward (exact: the sum's derivative in c is zero there); else c = 0.

    The backward is written out (the gradient of a CDF entry reaches every bin below it, so
    d/dP_a = sum_{b >= a} f'(gap_b)). Working in place where a buffer is ours keeps it to a few passes
    over memory and two or three large allocations each way (scripts/bench_losses.py measures it).
    """

    @staticmethod
    def forward(ctx, pred, target, bin_width, scale, eps, power, circular) -> Tensor:  # noqa: ANN001
        p, p_total = _normalise(pred, scale, eps)
        t, t_total = _normalise(target, scale, eps)
        target_grad = ctx.needs_input_grad[1]
        # Without a target gradient, t's buffer becomes the gap: one large allocation fewer.
        gap = (p - t if target_grad else t.neg_().add_(p)).cumsum_(-1)
        if circular:
            gap -= _lower_median(gap) if power == 1 else gap.mean(-1, keepdim=True)
        ctx.save_for_backward(pred, p, p_total, gap, *((target, t, t_total) if target_grad else ()))
        ctx.params = (bin_width, scale, power)
        if power == 1:
            # Not vector_norm(ord=1): on the CPU it took 5-10x as long as abs().sum() (torch 2.13).
            return bin_width * gap.abs().sum(-1)
        return bin_width * torch.linalg.vector_norm(gap, ord=2, dim=-1).square()

    @staticmethod
    def backward(ctx, grad_out) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        pred, p, p_total, gap, *target_saved = ctx.saved_tensors
        bin_width, scale, power = ctx.params
        g = (gap.sign() if power == 1 else 2 * gap).mul_((bin_width * grad_out).unsqueeze(-1))
        g = g.cumsum(-1).neg_().add_(g).add_(g.sum(-1, keepdim=True))  # reverse cumulative sum
        grad_target = None
        if target_saved:
            target, t, t_total = target_saved
            grad_target = _normalise_backward(g.neg(), target, t, t_total, scale)
        grad_pred = _normalise_backward(g, pred, p, p_total, scale) if ctx.needs_input_grad[0] else None
        return grad_pred, grad_target, None, None, None, None, None


def cdf_gap(pred: Tensor, target: Tensor, scale: str = "linear", eps: float = DEFAULT_EPS) -> Tensor:
    """CDF_P - CDF_Q along angle, P and Q the distributions of pred and target."""
    return (distribution(pred, scale, eps) - distribution(target, scale, eps)).cumsum(-1)


def total_energy(x: Tensor, scale: str = "linear") -> Tensor:
    """Total energy of each vector: sum_a x_a (linear), or sum_a 10^(x_a/10) (dB)."""
    _check_scale(scale)
    return x.sum(-1) if scale == "linear" else torch.exp(x / DB_TEMPERATURE).sum(-1)


# --- per-vector loss functions -------------------------------------------------------------------


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """mean_a (p_a - t_a)^2"""
    return (pred - target).square().mean(-1)


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """mean_a |p_a - t_a|"""
    return (pred - target).abs().mean(-1)


def huber(pred: Tensor, target: Tensor, delta: float = 1.0) -> Tensor:
    """mean_a huber_delta(p_a - t_a), as torch.nn.functional.huber_loss."""
    return F.huber_loss(pred, target, reduction="none", delta=delta).mean(-1)


def cumsum_mse(pred: Tensor, target: Tensor) -> Tensor:
    """mean_a (P_a - T_a)^2 with P, T the cumulative sums of p, t along angle (raw values)."""
    return (pred - target).cumsum(-1).square().mean(-1)


def cosine(pred: Tensor, target: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """1 - <p, t> / (max(|p|, eps) max(|t|, eps)) along angle, no abs; 0 when both are zero."""
    norms = pred.norm(dim=-1).clamp_min(eps) * target.norm(dim=-1).clamp_min(eps)
    loss = 1.0 - (pred * target).sum(-1) / norms
    both_zero = (pred == 0).all(-1) & (target == 0).all(-1)
    return torch.where(both_zero, torch.zeros_like(loss), loss)


def emd(
    pred: Tensor,
    target: Tensor,
    bin_width: float = 1.0,
    scale: str = "linear",
    eps: float = DEFAULT_EPS,
    circular: bool = False,
    mass_weight: float = 0.0,
) -> Tensor:
    """Wasserstein-1 distance in degrees between the bin distributions P, Q of p and t.

    ``d * sum_a |CDF_P(a) - CDF_Q(a)|`` (closed form on a grid, d = bin_width). With ``circular``
    (0..360 data) the CDFs may be offset by any constant c and the distance is
    ``d * min_c sum_a |CDF_P - CDF_Q - c|``, reached at the median of the gap; that shift is treated
    as a constant in backward. ``mass_weight`` w adds ``w * |E(p) - E(t)|``, E the total energy
    (:func:`total_energy`; in dB for dB data), so magnitude counts as well as position.
    """
    _check_scale(scale)
    out = _CdfDistance.apply(pred, target, bin_width, scale, eps, 1, circular)
    if mass_weight:
        if scale == "db":
            mass_gap = DB_TEMPERATURE * (
                torch.logsumexp(pred / DB_TEMPERATURE, -1) - torch.logsumexp(target / DB_TEMPERATURE, -1)
            )
        else:
            mass_gap = pred.sum(-1) - target.sum(-1)
        out = out + mass_weight * mass_gap.abs()
    return out


def cramer(
    pred: Tensor,
    target: Tensor,
    bin_width: float = 1.0,
    scale: str = "linear",
    eps: float = DEFAULT_EPS,
    circular: bool = False,
) -> Tensor:
    """Cramer distance ("squared EMD"): d * sum_a (CDF_P(a) - CDF_Q(a))^2, in degrees.

    With ``circular`` (0..360 data): ``d * min_c sum_a (CDF_P - CDF_Q - c)^2``, reached at the mean of
    the gap (Watson's U^2 form, which does not depend on where the circle is cut).
    """
    _check_scale(scale)
    return _CdfDistance.apply(pred, target, bin_width, scale, eps, 2, circular)


def w2(
    pred: Tensor, target: Tensor, bin_width: float = 1.0, scale: str = "linear", eps: float = DEFAULT_EPS
) -> Tensor:
    """Wasserstein-2 distance in degrees between the bin distributions P, Q of p and t, each bin's
    mass at its centre: ``sqrt(int_0^1 (F_P^-1(u) - F_Q^-1(u))^2 du)``, F^-1 the quantile functions.

    Exact on the grid: the 2A CDF levels of P and Q, merged in order, cut [0, 1] into intervals on
    each of which both quantile functions stay on one bin; on the k-th, the bins differ by
    ``D_k = (levels of P below it) - (levels of Q below it)``, so ``W2^2 = d^2 sum_k du_k D_k^2``
    (d = bin_width). Unlike EMD (W1), W2 charges a source split into lobes more than one peak
    between them: with the target at 80 or 100 degrees alike, two half lobes there cost EMD 10 degrees
    on average, as one peak at 90 does, and cost W2 14.1 against 10 (W2^2's optimum is the mean of the
    targets' quantile functions: one peak per source). No circular form: on a circle the quantile
    functions depend on where it is cut.
    """
    cdf_p = distribution(pred, scale, eps).cumsum(-1)
    cdf_t = distribution(target, scale, eps).cumsum(-1)
    levels, order = torch.cat([cdf_p, cdf_t], -1).sort(-1)
    step = torch.where(order < pred.shape[-1], 1.0, -1.0)  # a level of P raises D, one of Q lowers it
    gap = step.cumsum(-1).sub_(step)  # D on the interval that ends at each level
    du = torch.diff(levels, dim=-1, prepend=levels.new_zeros(()).expand(*levels.shape[:-1], 1))
    squared = (du * gap.square()).sum(-1) * bin_width**2
    # sqrt's derivative is infinite at 0 (identical distributions): there the gradient is 0.
    zero = squared <= 0
    return torch.where(zero, 0.0, squared.masked_fill(zero, 1.0).sqrt())


def kl(pred: Tensor, target: Tensor, scale: str = "linear", eps: float = DEFAULT_EPS) -> Tensor:
    """KL(Q || P) = sum_a Q_a (log Q_a - log P_a), Q the target's and P the prediction's distribution,
    computed from log-probabilities (no log of a rounded-to-zero probability).

    For linear energy, with q = max(x, 0) + eps and S = sum_a q: log P_a = log q_a - log S, and
    KL = sum_a Q_a (log q_target,a - log q_pred,a) - log S_target + log S_pred (as sum_a Q_a = 1).
    """
    _check_scale(scale)
    if scale == "db":
        log_p = log_distribution(pred, scale, eps)
        log_q = log_distribution(target, scale, eps)
        return F.kl_div(log_p, log_q, reduction="none", log_target=True).sum(-1)
    return _KLLinear.apply(pred, target, eps)


class _KLLinear(torch.autograd.Function):
    """:func:`kl` for linear energy with the backward written out, in place where a buffer is ours:
    with Q = q_t / S_t, dKL/dq_p = -Q / q_p + 1 / S_p and dKL/dq_t = (log q_t - log q_p - KL_cross) / S_t,
    KL_cross = sum_a Q_a (log q_t,a - log q_p,a)."""

    @staticmethod
    def forward(ctx, pred, target, eps) -> Tensor:  # noqa: ANN001
        q_pred, q_target = pred.clamp_min(0.0).add_(eps), target.clamp_min(0.0).add_(eps)
        total_pred, total_target = q_pred.sum(-1), q_target.sum(-1)
        log_ratio = q_target.log().sub_(q_pred.log())
        cross = (log_ratio * q_target).sum(-1).div_(total_target)
        ctx.save_for_backward(pred, target, q_pred, q_target, total_pred, total_target, cross)
        return cross - total_target.log() + total_pred.log()

    @staticmethod
    def backward(ctx, grad_out) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        pred, target, q_pred, q_target, total_pred, total_target, cross = ctx.saved_tensors
        g = grad_out.unsqueeze(-1)
        grad_pred = grad_target = None
        if ctx.needs_input_grad[0]:
            grad_pred = (
                q_target.div(q_pred).div_(-total_target.unsqueeze(-1)).add_(1 / total_pred.unsqueeze(-1))
            )
            grad_pred = grad_pred.mul_(g).masked_fill_(pred < 0, 0.0)
        if ctx.needs_input_grad[1]:
            grad_target = q_target.log().sub_(q_pred.log()).sub_(cross.unsqueeze(-1))
            grad_target = grad_target.div_(total_target.unsqueeze(-1)).mul_(g).masked_fill_(target < 0, 0.0)
        return grad_pred, grad_target, None


def cumsum_mse_over_cos(pred: Tensor, target: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """The forum loss, kept to compare against: mse(P, T) / (10 * |cos(P, T)|), P, T cumulative sums.

    The division blows up as cos -> 0 (clamped at eps here so it stays finite), abs() rewards
    anti-aligned vectors, and the cosine of cumulative sums depends on where the energy is.
    """
    cp, ct = pred.cumsum(-1), target.cumsum(-1)
    cos = 1.0 - cosine(cp, ct, eps)
    return mse(cp, ct) / (10.0 * cos.abs().clamp_min(eps))


# --- modules -------------------------------------------------------------------------------------

REDUCTIONS = ("mean", "none")


class VectorLoss(nn.Module):
    """Base: ``forward(pred, target)`` checks shapes, then reduces :meth:`per_vector` over leading dims."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
        self.reduction = reduction

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        check_pair(pred, target)
        values = self.per_vector(pred, target)
        return values.mean() if self.reduction == "mean" else values


class MSE(VectorLoss):
    """mean_a (p_a - t_a)^2"""

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        return mse(pred, target)


class L1(VectorLoss):
    """mean_a |p_a - t_a|"""

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        return l1(pred, target)


class Huber(VectorLoss):
    """mean_a huber_delta(p_a - t_a)"""

    def __init__(self, delta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        check_number("delta", delta)  # torch says so only at the first batch, as a traceback
        self.delta = delta

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        return huber(pred, target, self.delta)


class CumsumMSE(VectorLoss):
    """mean_a (P_a - T_a)^2, P and T cumulative sums along angle."""

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        return cumsum_mse(pred, target)


class Cosine(VectorLoss):
    """1 - cos(p, t) along angle; 0 when both are zero."""

    def __init__(self, eps: float = DEFAULT_EPS, reduction: str = "mean") -> None:
        super().__init__(reduction)
        check_number("eps", eps)  # the floor under the norms: all-zero vectors would divide by zero
        self.eps = eps

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        return cosine(pred, target, self.eps)


class CumsumMSEOverCos(Cosine):
    """mse(P, T) / (10 |cos(P, T)|) on cumulative sums: the forum loss, kept as a reference."""

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        return cumsum_mse_over_cos(pred, target, self.eps)


class DistributionLoss(VectorLoss):
    """Base of the losses that compare the bin distributions of p and t (:func:`distribution`):
    ``scale`` says how a vector maps to one, ``eps`` is the floor that keeps all-zero vectors finite."""

    def __init__(self, scale: str = "linear", eps: float = DEFAULT_EPS, reduction: str = "mean") -> None:
        super().__init__(reduction)
        _check_scale(scale)
        check_number("eps", eps)
        self.scale, self.eps = scale, eps


class KL(DistributionLoss):
    """KL(target distribution || predicted distribution), in log space."""

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        return kl(pred, target, self.scale, self.eps)


class CdfLoss(DistributionLoss):
    """Base of the losses on the CDFs of the bin distributions, in degrees: ``bin_width`` is d;
    ``circular`` for an angle axis that wraps around (0..360 data), refused by a loss without a
    circular form (``has_circular_form``)."""

    has_circular_form = True

    def __init__(
        self,
        bin_width: float = 1.0,
        scale: str = "linear",
        eps: float = DEFAULT_EPS,
        circular: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(scale, eps, reduction)
        check_number("bin_width", bin_width)
        if circular and not self.has_circular_form:
            raise ValueError(
                f"loss {type(self).__name__.lower()} has no circular form (on a circle its quantile "
                "functions depend on where the circle is cut); for data.circular=true use loss=emd or "
                "loss=cramer, which have one"
            )
        self.bin_width, self.circular = bin_width, circular


class Cramer(CdfLoss):
    """d * sum_a (CDF_p - CDF_t)^2, in degrees (see :func:`cramer` for ``circular``)."""

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        return cramer(pred, target, self.bin_width, self.scale, self.eps, self.circular)


class EMD(CdfLoss):
    """Wasserstein-1 in degrees: d * sum_a |CDF_p - CDF_t| (see :func:`emd` for the options)."""

    def __init__(
        self,
        bin_width: float = 1.0,
        scale: str = "linear",
        eps: float = DEFAULT_EPS,
        circular: bool = False,
        mass_weight: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(bin_width, scale, eps, circular, reduction)
        check_number(
            "mass_weight", mass_weight, zero=True, why=" (a negative weight rewards an energy error)"
        )
        self.mass_weight = mass_weight

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        return emd(pred, target, self.bin_width, self.scale, self.eps, self.circular, self.mass_weight)


class W2(CdfLoss):
    """Wasserstein-2 in degrees: sqrt(int_0^1 (F_p^-1(u) - F_t^-1(u))^2 du) (see :func:`w2`), from the
    quantile functions of the CDFs. ``circular=True`` is refused: W2 has no form that does not depend
    on where a circle is cut."""

    has_circular_form = False

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        return w2(pred, target, self.bin_width, self.scale, self.eps)


class Combo(VectorLoss):
    """sum_k w_k * loss_k(p, t): e.g. emd for position plus mse for magnitude.

    ``terms`` maps a name to a loss module, ``weights`` the same names to their weights.
    """

    def __init__(
        self, terms: dict[str, VectorLoss], weights: dict[str, float], reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        if not terms or set(terms) != set(weights):
            raise ValueError(
                f"combo loss: terms and weights must name the same losses; got terms "
                f"{sorted(terms)} and weights {sorted(weights)}"
            )
        if bad := {name: w for name, w in weights.items() if not _is_number(float(w), zero=True)}:
            raise ValueError(
                f"combo loss: weights {bad}; expected finite numbers >= 0 (a negative weight rewards that "
                "term's error)"
            )
        if not any(float(w) > 0 for w in weights.values()):
            raise ValueError(
                f"combo loss: weights {dict(weights)} are all 0, so the loss is 0 whatever the forecast and "
                "nothing trains; expected at least one above 0"
            )
        self.terms = nn.ModuleDict(terms)
        self.weights = {name: float(w) for name, w in weights.items()}

    def per_vector(self, pred: Tensor, target: Tensor) -> Tensor:
        return sum(self.weights[k] * term.per_vector(pred, target) for k, term in self.terms.items())
