"""A run's results: metrics.json's content, the test-by-horizon figure and the plain-text panels."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from heatforecast.data import HeatmapData
from heatforecast.metrics import (
    FORECASTERS,
    METRICS,
    MIN_UNITS,
    VECTOR_METRICS,
    PeakSettings,
    skill_intervals,
)
from heatforecast.plots import horizon_figure, plt


def summarize(
    panels: dict[str, Any],
    optimized: str,
    datamodule: HeatmapData,
    peak_settings: PeakSettings,
    splits: tuple[str, ...] = ("val", "test"),
) -> dict[str, Any]:
    """The metrics.json content from the module's final panels (DESIGN.md's shape), with the test
    skills' intervals (their bootstrap blocks span one window of ``datamodule``, L + H steps) and the
    settings ospa_deg was scored with (``peaks``: runs compare on it only where they are the same)."""
    out: dict[str, Any] = {"optimized_metric": optimized, "peaks": dataclasses.asdict(peak_settings)}
    for who in FORECASTERS:
        out[who] = {s: {k: float(v) for k, v in panels[s][who].items()} for s in splits}
        for s in splits:
            per_h = panels[s][f"{who}_per_horizon"]
            # reshape: torchmetrics hands back a one-step horizon (data.horizon=1) as a 0-d tensor
            out[who][f"{s}_per_horizon"] = {k: v.reshape(-1).tolist() for k, v in per_h.items()}
    split, _, metric = optimized.partition("/")
    out["value"] = out["model"][split][metric]
    out["intervals"] = skill_intervals(panels["test"]["windows"], datamodule.context_len + datamodule.horizon)
    return out


def write_result(result: dict[str, Any], output_dir: Path, logger: Any = None) -> None:
    """metrics.json, the test-by-horizon figure (PNG and TensorBoard), and the panel on stdout."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = output_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(_finite_or_null(result), indent=2, allow_nan=False))
    tmp.replace(output_dir / "metrics.json")  # atomic: a reader never sees half a file
    per_horizon = {who: result[who]["test_per_horizon"] for who in FORECASTERS}
    skills = result.get("intervals", {}).get("per_horizon")
    fig = horizon_figure(per_horizon, ("emd", "mse", "peak_err_deg", "kl"), skills)
    fig.savefig(output_dir / "test_by_horizon.png", dpi=100)
    writer = getattr(logger, "experiment", None)
    if hasattr(writer, "add_figure"):
        writer.add_figure("test/by_horizon", fig)
    plt.close(fig)
    print(panel_table(result))


def _finite_or_null(value: Any) -> Any:
    """``value`` with null for each float in it that is not finite: strict JSON (RFC 8259) has no NaN
    or infinity. Python's json would write the tokens NaN and -Infinity, which JavaScript's JSON.parse
    refuses and jq 1.6 reads as -1.8e308. A skill against a persistence that is exact (1 - x / 0) is
    the one such value a finished run has."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def read_result(path: Path) -> dict[str, Any]:
    """A metrics.json as write_result wrote it, with NaN again for the nulls of numbers that were not
    finite: ``value``, every panel and per-horizon list, and the intervals' skills (an interval's
    ``low`` and ``high`` stay null: no interval, from too few units or a skill that is not defined)."""
    result = json.loads(path.read_text())
    result["value"] = _nan_for_null(result.get("value"))
    for who in FORECASTERS:
        for split, panel in result.get(who, {}).items():
            result[who][split] = {name: _nan_for_null(v) for name, v in panel.items()}
    intervals = result.get("intervals", {})
    for cells in [
        *(intervals.get(who, {}) for who in FORECASTERS[1:]),
        *intervals.get("per_horizon", {}).values(),
    ]:
        for cell in cells.values():
            cell["skill"] = _nan_for_null(cell["skill"])
    return result


def _nan_for_null(value: Any) -> Any:
    """A number of metrics.json, or a list of them, with NaN for null."""
    if isinstance(value, list):
        return [math.nan if v is None else v for v in value]
    return math.nan if value is None else value


def panel_table(result: dict[str, Any]) -> str:
    """A plain-text test panel: the model beside the references, the skills and, when the result has
    them, their intervals. An evaluation's is headed by the split it scored (metrics.json keeps the
    panel under "test" whatever it was)."""
    panels = [result[who]["test"] for who in FORECASTERS]
    split = result.get("split", "test")
    heading = "all windows" if split == "all" else f"{split} metric"
    lines = [f"{heading:<14}" + "".join(f"{who:>13}" for who in FORECASTERS)]
    for name in METRICS:
        if not name.startswith("skill_"):
            lines.append(f"{name:<14}" + "".join(f"{panel[name]:>13.4g}" for panel in panels))
    skills = [
        f"{who}: {result[who]['test']['skill_emd']:+.3f}, {result[who]['test']['skill_mse']:+.3f}"
        for who in FORECASTERS[2:]
    ]
    model = result["model"]["test"]
    lines.append(
        f"skill_emd {model['skill_emd']:+.3f}   skill_mse {model['skill_mse']:+.3f}   ({'; '.join(skills)})"
    )
    if seen := result["model"].get("train_eval"):  # data.train_eval: the same checkpoint on train windows
        val = result["model"]["val"]
        lines.append(
            f"train windows vs val (data.train_eval): emd {seen['emd']:.4g} vs {val['emd']:.4g}, "
            f"skill_emd {seen['skill_emd']:+.3f} vs {val['skill_emd']:+.3f}"
        )
    if intervals := result.get("intervals"):
        lines.append(interval_table(intervals))
    if fit := result.get("fit"):
        resumed = f" (resumed from {fit['resumed_from']})" if fit.get("resumed_from") else ""
        memory = f", peak GPU memory {fit['peak_memory_mb']:,.0f} MB" if fit["peak_memory_mb"] else ""
        if not fit["samples"]:
            lines.append(f"fit{resumed}: no samples trained")
        else:
            lines.append(
                f"fit{resumed}: {fit['samples']:,} samples in {fit['seconds']:.1f} s on {fit['device']} "
                f"({fit['precision']}): {fit['samples_per_s']:,.0f} samples/s with validation{memory}"
            )
    return "\n".join(lines)


def interval_table(intervals: dict[str, Any]) -> str:
    """The skills with their intervals, a row per metric, a column per reference."""
    refs = FORECASTERS[1:]
    units = f"{intervals['units']} series"
    if intervals["unit"] == "block":
        units = f"{intervals['units']} blocks of {intervals['block_steps']} steps"
    if intervals["units"] < MIN_UNITS:
        return f"skill intervals: none, the test windows make only {units} (fewer than {MIN_UNITS})"
    lines = [
        f"skill of the model, {intervals['level']:.0%} interval (bootstrap over {units}):",
        f"{'':<14}" + "".join(f"{'vs ' + who:>26}" for who in refs),
    ]
    for name in VECTOR_METRICS:
        cells = "".join(
            f"{c['skill']:>+10.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"
            for c in (intervals[who][name] for who in refs)
        )
        lines.append(f"{name:<14}{cells}")
    for name, by_ref in _by_metric(intervals.get("per_horizon", {})).items():
        verdicts = "; ".join(f"vs {who}: {_verdict(cell)}" for who, cell in by_ref.items())
        lines.append(f"skill_{name} by horizon step: {verdicts}")
    return "\n".join(lines)


def _by_metric(per_horizon: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{reference: {metric: cell}} -> {metric: {reference: cell}}."""
    out: dict[str, dict[str, Any]] = {}
    for who, cells in per_horizon.items():
        for name, cell in cells.items():
            out.setdefault(name, {})[who] = cell
    return out


def _verdict(cell: dict[str, Any]) -> str:
    """Which horizon steps the model is ahead at (interval above 0), behind at (below 0), or not told
    apart from the reference at, as step ranges: "ahead at 1-6, not told apart at 7-10"."""
    groups: dict[str, list[int]] = {"ahead": [], "behind": [], "not told apart": []}
    for step, (low, high) in enumerate(zip(cell["low"], cell["high"]), start=1):
        groups["ahead" if low > 0 else "behind" if high < 0 else "not told apart"].append(step)
    return ", ".join(f"{what} at {_ranges(steps)}" for what, steps in groups.items() if steps)


def _ranges(steps: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    runs: list[list[int]] = []
    for step in steps:
        if runs and step == runs[-1][-1] + 1:
            runs[-1].append(step)
        else:
            runs.append([step])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
