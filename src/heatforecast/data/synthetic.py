"""Synthetic angle-energy heatmaps: moving sources over a noise floor.

Each series holds up to ``max_sources`` sources. A source's angle moves with inertia (its velocity is a
slow random walk) and turns back at the edges of the angle range (or, with ``circular``, goes on round
the circle); sources appear and disappear, and their
width and strength drift. The frame is the sum of Gaussian bumps over an exponential noise floor, values
under ``threshold`` are set to exactly 0 (as thresholded real spectra are), optionally in dB.

The motion is what makes the problem worth a model: persistence misses every moving peak by
``velocity * h`` degrees at horizon h, which EMD sees and MSE cannot.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def make_synthetic(
    n_series: int = 16,
    n_steps: int = 500,
    n_bins: int = 181,
    bin_width: float = 1.0,
    angle_start: float = 0.0,
    max_sources: int = 3,
    max_speed: float = 2.5,
    birth_rate: float = 0.01,
    death_rate: float = 0.005,
    noise_floor: float = 0.02,
    threshold: float = 0.05,
    scale: str = "linear",
    circular: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Return heatmaps of shape (n_series, n_steps, n_bins), float32, deterministic for a seed.

    Speeds are in degrees per step; rates are per source and step; ``noise_floor`` is the mean of the
    exponential floor and ``threshold`` the value under which energy is set to 0 (linear scale only;
    dB data keeps the floor, 10 log10(energy + noise_floor)). With ``circular`` angles are taken
    modulo 360 degrees: sources cross 360/0 and their bumps wrap round.
    """
    if scale not in ("linear", "db"):
        raise ValueError(f"scale must be 'linear' or 'db'; got {scale!r}")
    # 2 bins: a bin width to measure; seeds: numpy's generator takes none below 0
    least = {"n_series": 1, "n_steps": 1, "n_bins": 2, "max_sources": 1, "seed": 0}
    given = {
        "n_series": n_series,
        "n_steps": n_steps,
        "n_bins": n_bins,
        "max_sources": max_sources,
        "seed": seed,
    }
    for name, value in given.items():  # null was a TypeError from the comparison
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be a whole number; got {value!r}")
        if value < least[name]:
            raise ValueError(f"{name} must be >= {least[name]}; got {value}")
    reals = {
        "bin_width": bin_width,
        "angle_start": angle_start,
        "max_speed": max_speed,
        "birth_rate": birth_rate,
        "death_rate": death_rate,
        "noise_floor": noise_floor,
        "threshold": threshold,
    }
    for name, value in reals.items():  # the same, before the range checks below
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a number; got {value!r}")
    for name, value in {"bin_width": bin_width, "noise_floor": noise_floor}.items():
        if not 0 < value < math.inf:  # NaN fails both comparisons
            raise ValueError(f"{name} must be a finite number > 0; got {value}")
    for name, value in {"birth_rate": birth_rate, "death_rate": death_rate}.items():
        if not 0 <= value <= 1:
            raise ValueError(f"{name} is a probability per source and step; expected 0..1, got {value}")
    if not 0 <= max_speed < math.inf:
        raise ValueError(f"max_speed must be a finite number >= 0 (degrees per step); got {max_speed}")
    for name, value in {"angle_start": angle_start, "threshold": threshold}.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number; got {value}")
    rng = np.random.default_rng(seed)
    shape = (n_series, max_sources)
    lo, hi = angle_start, angle_start + bin_width * (n_bins - 1)
    angles = np.linspace(lo, hi, n_bins)

    def spawn(n: int) -> tuple[np.ndarray, ...]:
        theta = rng.uniform(lo, hi, n)
        speed = rng.uniform(-max_speed, max_speed, n)
        width = rng.uniform(2.0, 6.0, n) * max(bin_width, 1.0)
        log_amp = rng.uniform(np.log(0.5), np.log(2.0), n)
        return theta, speed, width, log_amp

    theta, speed, width, log_amp = (a.reshape(shape) for a in spawn(n_series * max_sources))
    alive = rng.random(shape) < 0.7
    alive[:, 0] = True  # every series starts with at least one source
    out = np.empty((n_series, n_steps, n_bins), dtype=np.float64)
    for t in range(n_steps):
        born = ~alive & (rng.random(shape) < birth_rate)
        if born.any():
            theta[born], speed[born], width[born], log_amp[born] = spawn(int(born.sum()))
        alive = (alive & (rng.random(shape) >= death_rate)) | born
        speed = np.clip(speed + rng.normal(0.0, 0.05, shape), -max_speed, max_speed)
        theta = theta + speed
        if circular:
            theta = lo + (theta - lo) % 360.0
        else:  # reflect at the edges: the source turns back instead of leaving the field of view
            below, above = theta < lo, theta > hi
            theta = np.where(below, 2 * lo - theta, np.where(above, 2 * hi - theta, theta))
            speed = np.where(below | above, -speed, speed)
        width = np.clip(width * np.exp(rng.normal(0.0, 0.02, shape)), 1.5, 10.0)
        log_amp = np.clip(log_amp + rng.normal(0.0, 0.03, shape), np.log(0.2), np.log(4.0))
        offset = angles - theta[..., None]
        if circular:
            offset = (offset + 180.0) % 360.0 - 180.0  # the shorter way round
        bumps = np.exp(-0.5 * (offset / width[..., None]) ** 2)
        energy = (alive * np.exp(log_amp))[..., None] * bumps
        out[:, t] = energy.sum(1) + rng.exponential(noise_floor, (n_series, n_bins))
    if scale == "db":
        return (10.0 * np.log10(out + noise_floor)).astype(np.float32)
    out[out < threshold] = 0.0
    return out.astype(np.float32)
