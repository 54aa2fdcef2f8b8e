"""Forecast metrics, in data units, for a model and for three reference forecasts on the same windows:
persistence (the last frame), linear (a linear map over time fitted to the train split by least
squares, models.LeastSquaresLinear) and drift (the last frame moved on at its recent speed, models.Drift).

Per vector (p forecast, t target, both (..., A) in the data's own units; angles in degrees):

- ``mse``  mean_a (p_a - t_a)^2            - ``mae``  mean_a |p_a - t_a|
- ``emd``  Wasserstein-1 in degrees         - ``cramer``  d sum_a (CDF_p - CDF_t)^2
- ``cosine``  1 - cos(p, t)                 - ``kl``  KL(t distribution || p distribution)
- ``peak_err_deg``  |angle(argmax p) - angle(argmax t)|
- ``ospa_deg``  the OSPA distance (p = 1, cutoff c) between the peak sets X of p and Y of t (:func:`peaks`),
  with m = |X| <= n = |Y| (or the other way round):
  (min over injections pi of sum_i min(|x_i - y_pi(i)|, c) + c (n - m)) / n, 0 when both are empty.
  A peak placed within c of its match costs its distance; one missed or made up costs c: every source,
  not only the strongest one that the argmax sees.

With ``circular`` (an angle axis that wraps around, 0..360 data) emd and cramer take their circular
forms (:func:`losses.emd`, :func:`losses.cramer`) and the angle between two peaks is the shorter way round
the circle, min(|delta|, 360 - |delta|).

Over a split (per horizon step and overall), each is the mean over windows, except
``mass_rel_err`` = sum |E(p) - E(t)| / sum E(t), E the total energy of a frame (a ratio of sums, so
all-zero frames do not divide by zero), and the skills ``skill_emd``, ``skill_mse`` =
1 - forecaster / persistence. Distribution metrics use the losses' mapping (:func:`losses.distribution`).
:func:`skill_interval` says how far a skill can be trusted: a paired cluster bootstrap over windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from heatforecast import losses

VECTOR_METRICS = ("mse", "mae", "emd", "cramer", "cosine", "kl", "peak_err_deg", "ospa_deg")
SKILL_METRICS = ("emd", "mse")  # skill_emd, skill_mse
SKILL_ROWS = [VECTOR_METRICS.index(name) for name in SKILL_METRICS]  # their rows in vector_metrics
METRICS = (*VECTOR_METRICS, "mass_rel_err", *(f"skill_{name}" for name in SKILL_METRICS))
UNIT_POWER = {"mse": 2, "mae": 1}  # how the vector metrics scale with the energy unit; the rest do not


def unit_factors(unit: float) -> list[float]:
    """What each of VECTOR_METRICS computed on data divided by ``unit`` is multiplied by to give it in
    data units."""
    return [unit ** UNIT_POWER.get(name, 0) for name in VECTOR_METRICS]


def higher_is_better(name: str) -> bool:
    """Whether metric ``name`` improves upwards: the skills (1 - model / reference) do; every other
    metric is an error."""
    return name.startswith("skill_")


# peaks.max_count's largest value: ospa's work grows as max_count 2^max_count (bench_losses.py times it).
MAX_PEAK_COUNT = 8


@dataclass(frozen=True)
class PeakSettings:
    """How ``ospa_deg`` reads a frame as a list of sources (``peaks:`` in conf/train.yaml): its local
    maxima within ``within_db`` of its highest bin, ``distance_deg`` apart or more (of two closer ones the
    higher is kept), at most ``max_count``, highest first (:func:`peaks`); a missed or made-up one costs
    ``cutoff_deg``, and so does a matched pair further apart (:func:`ospa`).

    The defaults suit the synthetic data: within 3 dB (half the power) keeps the sources and drops the
    noise floor's spikes; 5 degrees drops the noise's ripples on a source's top (1-3 bins apart); the
    cutoff is beyond a source's 10-step move at its largest speed (2.5 degrees a step). Runs compare on
    ospa_deg only with the same settings.
    """

    within_db: float = 3.0
    distance_deg: float = 5.0
    max_count: int = 4
    cutoff_deg: float = 30.0

    def __post_init__(self) -> None:
        for name, zero in (("within_db", True), ("distance_deg", True), ("cutoff_deg", False)):
            losses.check_number(f"peaks.{name}", getattr(self, name), zero)
        count = self.max_count
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PEAK_COUNT:
            raise ValueError(
                f"peaks.max_count={count!r}; expected a whole number 1..{MAX_PEAK_COUNT} (ospa_deg's exact "
                "matching of two frames' peaks grows as max_count 2^max_count)"
            )

    def find(
        self, x: Tensor, angles: Tensor, scale: str, circular: bool, bin_width: float | None = None
    ) -> tuple[Tensor, Tensor]:
        """:func:`peaks` of ``x`` (..., A) with these settings."""
        return peaks(x, angles, scale, circular, self.max_count, self.within_db, self.distance_deg, bin_width)


DEFAULT_PEAKS = PeakSettings()

FORECASTERS = ("model", "persistence", "linear", "drift")  # the panels, in the order update() takes them
MIN_SERIES = 10  # the fewest series skill intervals resample whole; below, blocks of each series
MIN_UNITS = 5  # below this many series or blocks, no interval: a bootstrap over so few says nothing
RESAMPLE_CHUNK = 2**22  # draws held at once by skill_interval (32 MB of int64, as much of counts)


def _angle_gap(a: Tensor, b: Tensor, circular: bool, turn: float = 360.0) -> Tensor:
    """|a - b|, the shorter way round a circle of ``turn`` (degrees, or bins) when ``circular``."""
    gap = (a - b).abs()
    return torch.minimum(gap, turn - gap) if circular else gap


def peaks(
    x: Tensor,
    angles: Tensor,
    scale: str = "linear",
    circular: bool = False,
    k: int = PeakSettings.max_count,
    within_db: float = PeakSettings.within_db,
    distance_deg: float = PeakSettings.distance_deg,
    bin_width: float | None = None,
) -> tuple[Tensor, Tensor]:
    """The angles of the (up to) ``k`` highest peaks of each vector x (..., A): (..., k) angles, highest
    first, and (..., k) whether each was found.

    A peak is a run of equal bins (most often one bin) with a lower bin on either side, placed at the
    run's middle (the left one of two middles); on a non-circular axis a run that reaches an end bin is
    no peak. It must be within ``within_db`` of the vector's highest bin (linear energy: at least
    10^(-within_db/10) of it). Of peaks closer than ``distance_deg`` only the highest is kept, highest
    first. These are the peaks of ``scipy.signal.find_peaks(x, height=..., distance=...)`` (distance in
    bins), which the tests compare with. ``bin_width``: angles[1] - angles[0], if the caller has it
    (reading it from a GPU tensor waits for the GPU).
    """
    n = x.shape[-1]
    width = float(angles[1] - angles[0]) if bin_width is None else bin_width
    # bf16 and float16 would round the height floor and lose bin numbers (bf16's past 256)
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    # last[i]: the last bin of the run of equal bins that starts at i (inf where it never ends: a run
    # reaching a non-circular end, or a flat circle), by a reversed running minimum. Bin numbers are
    # floats, exact to 2^24 bins: integer tensors cost conversions for the same result.
    ahead = torch.cat([x, x], -1) if circular else x
    steps = torch.arange(ahead.shape[-1] - 1, device=x.device, dtype=x.dtype)
    last = steps.masked_fill(ahead[..., 1:] == ahead[..., :-1], torch.inf).flip(-1).cummin(-1).values.flip(-1)
    if not circular:  # the last bin's run ends at the axis' end
        last = torch.cat([last, torch.full_like(last[..., :1], torch.inf)], -1)
    last = last[..., :n]
    ends = last < torch.inf
    after = ahead.gather(-1, torch.where(ends, last + 1, 0).long())
    if circular:
        before = x.roll(1, -1)
    else:  # the first bin has no bin before it: never a peak
        before = torch.cat([torch.full_like(x[..., :1], torch.inf), x[..., :-1]], -1)
    top = x.amax(-1, keepdim=True)
    floor = top - within_db if scale == "db" else top * 10 ** (-within_db / 10)
    is_peak = (x > before) & ends & (after < x) & (x >= floor)
    bins = torch.arange(n, device=x.device, dtype=x.dtype)
    middle = torch.where(is_peak, ((bins + last) / 2).floor(), bins)  # runs do not overlap: one a bin
    if circular:
        middle = torch.where(middle >= n, middle - n, middle)
    height = torch.full_like(x, -torch.inf).scatter_reduce(
        -1, middle.long(), torch.where(is_peak, x, -torch.inf), "amax"
    )
    # Peaks up to `near` bins apart are closer than distance_deg. Two peaks are at least 2 bins apart, so
    # each peak kept drops at most near // 2 on either side: the k kept are among the `keep` highest,
    # and the greedy choice runs over those alone.
    near = max(math.ceil(distance_deg / width - 1e-6) - 1, 0)  # 0: each peak drops itself only
    keep = min(n, (k - 1) * (1 + 2 * (near // 2)) + 1)
    candidate, at = height.topk(keep, -1)  # highest first
    left = candidate > -torch.inf
    found, where = [], []
    for _ in range(k):
        first = left.float().argmax(-1, keepdim=True)  # the highest left (index 0 where none is)
        found.append(left.gather(-1, first)[..., 0])
        chosen = at.gather(-1, first)
        where.append(angles[chosen[..., 0]])
        left = left & (_angle_gap(at, chosen, circular, turn=n) > near)
    return torch.stack(where, -1), torch.stack(found, -1)


@cache
def _assignment_steps(k: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """The moves of :func:`ospa`'s dynamic program over k rows and columns, one pair per row i: for
    each set of i + 1 columns (bit masks in increasing order), the positions of its i-column subsets
    among the sets of i columns and the column each leaves out, (C(k, i + 1), i + 1) each. Made once per
    device: a copy to a GPU at every batch would wait for the GPU each time."""
    layers = [[mask for mask in range(1 << k) if mask.bit_count() == size] for size in range(k + 1)]
    steps = []
    for row in range(k):
        position = {mask: n for n, mask in enumerate(layers[row])}
        columns = [[c for c in range(k) if mask >> c & 1] for mask in layers[row + 1]]
        before = [[position[mask ^ 1 << c] for c in cs] for mask, cs in zip(layers[row + 1], columns)]
        steps.append((torch.tensor(before, device=device), torch.tensor(columns, device=device)))
    return steps


def ospa(
    pred: tuple[Tensor, Tensor],
    target: tuple[Tensor, Tensor],
    cutoff: float = PeakSettings.cutoff_deg,
    circular: bool = False,
) -> Tensor:
    """The OSPA distance (order 1; module docstring) between two sets of peaks given as :func:`peaks`
    gives them, (angles, found) of shape (..., k) each; returns (...). Exact: the cheapest matching of
    the sets padded to k points (a padded point costs ``cutoff`` against a peak and 0 against another
    padded one, which gives OSPA's cost of the peaks left unmatched), by a dynamic program over the
    subsets of columns: best[taken], the least cost of matching the first |taken| rows to the columns in
    ``taken``, is the least over c in ``taken`` of best[taken - c] + cost[|taken| - 1, c]. That is
    k 2^(k-1) moves, where trying all k! matchings takes k k! (720 x 6 at k = 6); gathers and minima
    only, which are deterministic on a GPU too."""
    (a, has_a), (b, has_b) = pred, target
    k = a.shape[-1]
    pairs = has_a[..., :, None] & has_b[..., None, :]
    one_sided = has_a[..., :, None] ^ has_b[..., None, :]
    gap = _angle_gap(a[..., :, None], b[..., None, :], circular).clamp(max=cutoff)
    cost = torch.where(pairs, gap, torch.where(one_sided, cutoff, 0.0))  # (..., k, k)
    best = cost.new_zeros((*cost.shape[:-2], 1))  # no column taken yet: nothing paid
    for row, (before, columns) in enumerate(_assignment_steps(k, a.device)):
        best = (best[..., before] + cost[..., row, columns]).amin(-1)  # the sets of row + 1 columns
    total = best[..., 0]  # every column taken
    larger = torch.maximum(has_a.sum(-1), has_b.sum(-1))
    return torch.where(larger > 0, total / larger.clamp(min=1), 0.0)


def vector_metrics(
    pred: Tensor,
    target: Tensor,
    angles: Tensor,
    scale: str = "linear",
    eps: float = 1e-3,
    circular: bool = False,
    peak_settings: PeakSettings = DEFAULT_PEAKS,
    bin_width: float | None = None,
    target_peaks: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """The per-vector metrics stacked along a new first axis: (len(VECTOR_METRICS), ...), ospa_deg with
    ``peak_settings``. ``bin_width`` (angles[1] - angles[0]) and ``target_peaks`` (:func:`peaks` of
    ``target``) where the caller has them: reading the width off a GPU tensor waits for the GPU, and
    :class:`ForecastMetrics` scores four forecasts against one target."""
    losses.check_pair(pred, target)
    width = float(angles[1] - angles[0]) if bin_width is None else bin_width
    if target_peaks is None:
        target_peaks = peak_settings.find(target, angles, scale, circular, width)
    found = peak_settings.find(pred, angles, scale, circular, width)
    peak = _angle_gap(angles[pred.argmax(-1)], angles[target.argmax(-1)], circular)
    sources = ospa(found, target_peaks, peak_settings.cutoff_deg, circular)
    return torch.stack(
        [
            losses.mse(pred, target),
            losses.l1(pred, target),
            losses.emd(pred, target, width, scale, eps, circular),
            losses.cramer(pred, target, width, scale, eps, circular),
            losses.cosine(pred, target, eps),
            losses.kl(pred, target, scale, eps),
            peak,
            sources,
        ]
    )


def _drop_stored_angles(module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *_: Any) -> None:
    state_dict.pop(prefix + "angles", None)


class ForecastMetrics(Metric):
    """Accumulates the metric panels of a forecast and of the references (persistence, linear, drift),
    over (B, H, A) batches.

    States are sums on the metric's device (no host sync per batch) and are summed across DDP ranks.
    ``eps`` is the per-bin floor of the distribution mapping, in data units; ``circular`` for an angle
    axis that wraps around; ``peak_settings`` how ospa_deg finds the sources. With ``keep_windows`` it
    also keeps every window's metrics (means over the horizon, the SKILL_METRICS at each horizon step,
    and its energy sums) with its series and first target step, gathered from all ranks, for
    :func:`skill_intervals` and :func:`series_panels`.

    ``unit`` (linear energy only; the data scaler's factor) is divided out of every batch before its
    metrics and put back, in float64, into mse and mae: in data units such as 1e-25 W or 1e21 counts
    the squares behind mse and cosine leave float32's range (mse 0 or inf, cosine NaN).
    """

    full_state_update = False

    def __init__(
        self,
        angles: Tensor,
        horizon: int,
        scale: str = "linear",
        eps: float = 1e-3,
        circular: bool = False,
        keep_windows: bool = False,
        unit: float = 1.0,
        peak_settings: PeakSettings = DEFAULT_PEAKS,
    ) -> None:
        super().__init__()
        if not unit > 0 or (scale == "db" and unit != 1):
            # The dB distribution mapping is defined in dB units: dividing them would change it.
            raise ValueError(f"unit must be > 0, and 1 for dB data; got {unit!r} with scale={scale!r}")
        self.scale, self.eps, self.horizon, self.circular = scale, eps, horizon, circular
        self.unit = float(unit)
        self.keep_windows, self.peak_settings = keep_windows, peak_settings
        # Not stored in checkpoints: the Forecaster keeps the angles. Those saved before 2026-11-28 hold
        # a copy per panel, and none for panels added later (train_eval), so loading drops it.
        self.register_buffer("angles", angles.detach().clone().float(), persistent=False)
        self.register_load_state_dict_pre_hook(_drop_stored_angles)
        self.bin_width = float(angles[1] - angles[0])  # read once, here, not off the GPU at every batch
        n, k = len(VECTOR_METRICS), len(FORECASTERS)  # first index: FORECASTERS
        self.add_state("sums", torch.zeros(k, n, horizon, dtype=torch.float64), "sum")
        self.add_state("mass_gap", torch.zeros(k, horizon, dtype=torch.float64), "sum")
        self.add_state("mass", torch.zeros(horizon, dtype=torch.float64), "sum")
        self.add_state("count", torch.zeros(horizon, dtype=torch.float64), "sum")
        if keep_windows:  # lists of batches, concatenated (and gathered across ranks) by compute()
            self.add_state("window_values", [], "cat")  # (W, k, n)
            self.add_state("window_steps", [], "cat")  # (W, k, len(SKILL_METRICS), H)
            self.add_state("window_mass", [], "cat")  # (W, k + 1): mass_gap's sums over H, then mass's
            self.add_state("window_ids", [], "cat")  # (W, 2): series, first target step

    def update(
        self,
        pred: Tensor,
        target: Tensor,
        persistence: Tensor,
        linear: Tensor,
        drift: Tensor,
        series: Tensor | None = None,
        time: Tensor | None = None,
    ) -> None:
        """Add a batch of (B, H, A) forecasts; ``series`` and ``time`` (B,) name each window (needed
        with ``keep_windows``)."""
        if self.keep_windows and (series is None or time is None):
            raise ValueError("keep_windows needs each window's series and time")
        unit, eps = self.unit, self.eps / self.unit
        target = target.float() / unit
        mass = losses.total_energy(target, self.scale)
        per_window, per_step, gaps = [], [], []
        settings, width = self.peak_settings, self.bin_width
        target_peaks = settings.find(target, self.angles, self.scale, self.circular, width)
        for i, forecast in enumerate(f.float() / unit for f in (pred, persistence, linear, drift)):
            values = vector_metrics(
                forecast, target, self.angles, self.scale, eps, self.circular, settings, width, target_peaks
            )
            self.sums[i] += values.double().sum(1)
            gap = (losses.total_energy(forecast, self.scale) - mass).abs()
            self.mass_gap[i] += gap.double().sum(0)
            if self.keep_windows:
                per_window.append(values.mean(-1))
                per_step.append(values[SKILL_ROWS])
                gaps.append(gap.sum(-1))
        self.mass += mass.double().sum(0)
        self.count += target.shape[0]
        if self.keep_windows:
            self.window_values.append(torch.stack(per_window).permute(2, 0, 1))
            self.window_steps.append(torch.stack(per_step).permute(2, 0, 1, 3))
            self.window_mass.append(torch.stack([*gaps, mass.sum(-1)], 1))
            self.window_ids.append(torch.stack([series, time], 1).long())

    def compute(self) -> dict[str, dict[str, Tensor]]:
        """Panels keyed by FORECASTERS (overall scalars) and "<forecaster>_per_horizon" (tensors of
        shape (H,)); every skill is against persistence. With ``keep_windows``, also "windows":
        ``values`` (W, len(FORECASTERS), len(VECTOR_METRICS)), ``steps`` (W, len(FORECASTERS),
        len(SKILL_METRICS), H) and ``mass`` (W, len(FORECASTERS) + 1), all computed on data divided by
        ``unit`` (kept so, in float32, for their memory: skills are ratios, and :func:`series_panels`
        takes the unit), ``series`` and ``time`` (W,)."""
        units = unit_factors(self.unit)
        out = {}
        for per_horizon in (False, True):
            # Overall values are ratios of sums over all horizon steps, not means of ratios.
            reduce = (lambda x: x) if per_horizon else (lambda x: x.sum(-1))
            panels = {}
            for i, who in enumerate(FORECASTERS):
                count = reduce(self.count)
                panel = {n: reduce(self.sums[i, j]) / count * units[j] for j, n in enumerate(VECTOR_METRICS)}
                panel["mass_rel_err"] = reduce(self.mass_gap[i]) / reduce(self.mass)
                panels[who] = panel
            for who, panel in _with_skills(panels).items():
                out[who + ("_per_horizon" if per_horizon else "")] = panel
        if self.keep_windows and len(self.window_ids):
            ids = dim_zero_cat(self.window_ids)
            out["windows"] = {
                "values": dim_zero_cat(self.window_values),
                "steps": dim_zero_cat(self.window_steps),
                "mass": dim_zero_cat(self.window_mass),
                "series": ids[:, 0],
                "time": ids[:, 1],
            }
        return out


def _with_skills(panels: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Adds the skills against persistence to the panels of FORECASTERS (in place; returns them)."""
    for panel in panels.values():
        for name in SKILL_METRICS:
            panel[f"skill_{name}"] = 1 - panel[name] / panels["persistence"][name]
    return panels


def _group_sums(values: Tensor, inverse: Tensor) -> Tensor:
    """Sums of ``values`` (W, ...) by group, ``inverse`` (W,) giving each window's group 0..G-1:
    (G, ...) in float64, on the CPU."""
    zeros = torch.zeros(int(inverse.max()) + 1, *values.shape[1:], dtype=torch.float64)
    return zeros.index_add_(0, inverse.cpu(), values.cpu().double())


def series_panels(windows: dict[str, Tensor], unit: float = 1.0) -> dict[int, dict[str, Any]]:
    """Each series' overall panels on its own windows, keyed by series index, from the windows
    :meth:`ForecastMetrics.compute` keeps (``unit``: that metric's): ``windows`` (their count), then a
    panel (0-d tensors, in data units) per FORECASTERS. The same as a ForecastMetrics fed only that
    series' windows: every window has H steps, so the mean over its (window, step) pairs is the mean
    of the window means; mass_rel_err is the series' ratio of sums."""
    index, inverse, counts = windows["series"].cpu().unique(return_inverse=True, return_counts=True)
    means = _group_sums(windows["values"], inverse) / counts[:, None, None]  # (series, k, n)
    means *= torch.tensor(unit_factors(unit), dtype=torch.float64)  # into data units
    mass = _group_sums(windows["mass"], inverse)  # (series, k + 1)
    out = {}
    for g, series in enumerate(index.tolist()):
        panels = {}
        for i, who in enumerate(FORECASTERS):
            # 0-d tensors, as compute() gives: a series with no error of persistence divides by zero.
            panels[who] = dict(zip(VECTOR_METRICS, means[g, i].unbind()))
            panels[who]["mass_rel_err"] = mass[g, i] / mass[g, -1]
        out[series] = {"windows": int(counts[g]), **_with_skills(panels)}
    return out


def skill_interval(
    model: Tensor,
    reference: Tensor,
    groups: Tensor,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """The skill ``1 - sum(model) / sum(reference)`` of per-window metric values (W,), and its
    ``level`` percentile interval from a paired cluster bootstrap; for values (W, ...) (``model`` and
    ``reference`` broadcast against each other), each column's.

    Windows that share frames or a source are not independent, so the bootstrap draws whole groups
    (``groups`` (W,): one id per window, e.g. its series) with replacement, ``resamples`` times, each
    window keeping its model and reference values together; every column uses the same draws.
    Deterministic for a ``seed``. CPU tensors. Returns skill, low and high, each of shape (...).
    """
    _, inverse = groups.unique(return_inverse=True)
    n_groups = int(inverse.max()) + 1
    sums = torch.stack(
        torch.broadcast_tensors(_group_sums(model, inverse), _group_sums(reference, inverse)), 1
    )
    generator = torch.Generator().manual_seed(seed)
    # Resamples in chunks, so that the (chunk, G) draws stay near RESAMPLE_CHUNK numbers however many
    # groups there are (a recording of 10 M windows makes 250 k blocks); the draws are the same.
    chunk = max(1, min(resamples, RESAMPLE_CHUNK // n_groups))
    drawn = []
    for start in range(0, resamples, chunk):
        draws = torch.randint(n_groups, (min(chunk, resamples - start), n_groups), generator=generator)
        counts = sums.new_zeros(draws.shape).scatter_add_(1, draws, sums.new_ones(draws.shape))
        drawn.append(torch.tensordot(counts, sums, dims=([1], [0])))  # (chunk, 2, ...): resampled sums
    drawn = torch.cat(drawn)
    skills = 1 - drawn[:, 0] / drawn[:, 1]
    tail = (1 - level) / 2
    low, high = torch.quantile(skills, torch.tensor([tail, 1 - tail], dtype=skills.dtype), dim=0)
    totals = sums.sum(0)
    return 1 - totals[0] / totals[1], low, high


def skill_intervals(windows: dict[str, Tensor], span: int) -> dict[str, Any]:
    """Every per-window metric's skill against each reference (1 - model / reference,
    positive where the model is better), with a 95 % interval from :func:`skill_interval`, from
    ``windows`` as :meth:`ForecastMetrics.compute` keeps them. The bootstrap draws whole series when
    there are at least MIN_SERIES; otherwise consecutive blocks of ``span`` steps of each series
    (``span`` = L + H, one window's frames, so only neighbouring blocks share frames). With fewer than
    MIN_UNITS series or blocks, ``low`` and ``high`` are None: the skill alone. ``per_horizon`` holds
    the SKILL_METRICS' skills and intervals at each horizon step (lists of H), from the same resamples,
    and ``ahead_steps``: how many steps from the first have their interval above 0 (None without
    intervals), the lead time up to which the model is surely ahead of the reference."""
    series, time = windows["series"].cpu(), windows["time"].cpu()
    whole = len(series.unique()) >= MIN_SERIES
    # One id per group; for blocks, series * (the most blocks a series has) + block.
    groups = series if whole else series * (int(time.max()) // span + 1) + time // span
    out: dict[str, Any] = {
        "level": 0.95,
        "resamples": 2000,
        "unit": "series" if whole else "block",
        "block_steps": None if whole else span,
        "units": len(groups.unique()),
    }
    trusted = out["units"] >= MIN_UNITS

    def intervals(per_window: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Model against each reference, every column at once (one set of draws): (skill, low, high)
        per reference, each of the shape of per_window[:, 0]."""
        found = skill_interval(per_window[:, :1], per_window[:, 1:], groups, out["level"], out["resamples"])
        return list(zip(*(v.unbind(0) for v in found)))

    def cell(skill: Tensor, low: Tensor, high: Tensor) -> dict[str, Any]:
        skill, low, high = skill.tolist(), low.tolist(), high.tolist()  # floats, or lists over the steps
        return {"skill": skill, "low": low if trusted else None, "high": high if trusted else None}

    overall, by_step = intervals(windows["values"].cpu()), intervals(windows["steps"].cpu())
    out["per_horizon"] = {}
    for who, (skill, low, high), (step_skill, step_low, step_high) in zip(FORECASTERS[1:], overall, by_step):
        out[who] = {name: cell(skill[i], low[i], high[i]) for i, name in enumerate(VECTOR_METRICS)}
        # At each horizon step: where the model's lead holds, and where it is within the noise.
        out["per_horizon"][who] = {
            name: cell(step_skill[i], step_low[i], step_high[i]) for i, name in enumerate(SKILL_METRICS)
        }
        for steps in out["per_horizon"][who].values():  # the lead time: steps 1..k all ahead
            if (lows := steps["low"]) is None:
                steps["ahead_steps"] = None
            else:
                steps["ahead_steps"] = next((h for h, low in enumerate(lows) if not low > 0), len(lows))
    return out
