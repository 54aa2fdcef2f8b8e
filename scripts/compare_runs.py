"""Compare every run under some folders: `python scripts/compare_runs.py logs/multiruns/... [--by seed]`.

Finds each run (a folder with `.hydra/overrides.yaml`, evaluate.py's passed over), reads its
`metrics.json` and TensorBoard events, and prints a markdown table (one row per run, or per group
with `--by seed`: mean +- std over seeds), sorted by `--sort`, with rows for the references scored
on the same windows (persistence, the least-squares linear map, drift; a set for each set of windows
when the runs used other data), and how each run trained (its best val metric, that epoch, the last
val against the best, the change of the train loss and of the metric on train windows, and the best
checkpoint's skill_emd on train windows and on val); without `--by`, also each run's 95 % intervals of
skill_emd against each reference, and up to which horizon step its EMD lead over each holds (every
step's interval above 0). Runs without metrics.json are listed as `crashed or running`, not fatal.
Writes the table as CSV, the val curves as PNG, and the test metrics against the horizon step (every
run beside the references) as `<png>_by_horizon.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from heatforecast.metrics import DEFAULT_PEAKS, METRICS, higher_is_better
from heatforecast.training.command_line import override_key
from heatforecast.training.report import read_result

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLUMNS = ["emd", "peak_err_deg", "ospa_deg", "mse", "kl", "mass_rel_err", "skill_emd"]
ADDED = {"ospa_deg"}  # metrics that runs made before them lack: NaN there
# From the curves; train_eval_pct: the change of the metric on train windows (data.train_eval).
TRAINING = ["best_val", "best_epoch", "val_after_best_pct", "train_loss_pct", "train_eval_pct"]
# The best checkpoint's skill_emd on the train windows of data.train_eval and on val (metrics.json):
# how much of what a run learnt on the windows it trained on holds on windows it did not see.
SEEN = {"train_eval_skill": "train_eval", "val_skill": "val"}
REFERENCES = ("persistence", "linear", "drift")  # forecasts every run is scored beside, on the same windows
INTERVALS = {f"skill_emd vs {ref} 95%": ref for ref in REFERENCES}  # from metrics.json's intervals
# How many horizon steps from the first the model's EMD lead holds (metrics.json's ahead_steps).
LEADS = {f"ahead of {ref} to step": ref for ref in REFERENCES}
# What a run shows on the terminal, where it writes and whether it was resumed change none of its
# results: not part of a run's label, so runs that differ only there share a --by group (train.py leaves
# them out of folder names too), and a sweep's jobs resumed with ckpt_path=last keep their labels.
NOT_RESULTS = (
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "ckpt_path", "paths.log_dir",
    "paths.output_dir",
)  # fmt: skip


def find_runs(folders: list[Path]) -> tuple[list[Path], int]:
    """The training runs under ``folders`` (folders with .hydra/overrides.yaml), and how many
    evaluate.py folders were passed over: those score a checkpoint and have no training to compare
    (under `logs/` they sit beside the runs, failed commands' folders included)."""
    found = {p.parent.parent for f in folders for p in f.rglob(".hydra/overrides.yaml")}
    evaluations = {run for run in found if job_name(run) == "evaluate"}
    return sorted(found - evaluations), len(evaluations)


def job_name(run: Path) -> str | None:
    """The Hydra job that made a run folder: the script's name (train, evaluate), from .hydra/hydra.yaml."""
    try:
        config = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())
        return config["hydra"]["job"]["name"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):  # no such file, or not Hydra's: a run
        return None


def curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the run's TensorBoard events, as (step, value) lists."""
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def diagnosis(scalars: dict[str, list[tuple[int, float]]], metric: str) -> dict[str, float]:
    """How a run trained, from its curves: its best val/METRIC (the lowest; the highest for a skill_*)
    and the epoch of it (0-based, as in the checkpoint names), how far the fit's last val/METRIC is from
    that best (%), and how much the epoch train loss and train_eval/METRIC (the train windows of
    data.train_eval; NaN without them) changed from the first epoch to the last (%). Train scores still
    improving while val sits well away from its best is overfitting; a train loss that falls while
    train_eval/METRIC does not is a loss that misses the metric. metrics.json scores the best
    checkpoint, not the last."""
    out = dict.fromkeys(TRAINING, math.nan)
    train = scalars.get("train/loss_epoch", [])
    val = scalars.get(f"val/{metric}", [])
    if train:  # train.py re-validates the best checkpoint after the fit: that point is not an epoch
        val = [(step, v) for step, v in val if step <= train[-1][0]] or val
        out["train_loss_pct"] = 100 * (train[-1][1] / train[0][1] - 1)
        if seen := [v for step, v in scalars.get(f"train_eval/{metric}", []) if step <= train[-1][0]]:
            out["train_eval_pct"] = 100 * (seen[-1] / seen[0] - 1)
    if val:
        best = max if higher_is_better(metric) else min
        step, out["best_val"] = best(val, key=lambda point: point[1])
        out["best_epoch"] = dict(scalars.get("epoch", [])).get(step, math.nan)
        out["val_after_best_pct"] = 100 * (val[-1][1] / out["best_val"] - 1)
    return out


def score(panel: dict[str, float], name: str) -> float:
    """A test panel's metric; NaN for one of ADDED in a run made before it (any other missing metric
    is a file of another shape: KeyError)."""
    return panel.get(name, math.nan) if name in ADDED else panel[name]


def read_run(run: Path, metric: str) -> dict:
    given = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    overrides = [o for o in given if override_key(o) not in NOT_RESULTS]
    row: dict = {"run": ",".join(overrides) or "(defaults)", "overrides": overrides, "path": str(run)}
    metrics_file = run / "metrics.json"
    row["curves"] = curves(run)
    row.update(diagnosis(row["curves"], metric))
    if not metrics_file.is_file():
        row["status"] = "crashed or running"
        return row
    try:
        metrics = read_result(metrics_file)
        # What every finished run's file holds (DESIGN.md); a file of another shape is not a run's.
        panels = {who: metrics[who]["test"] for who in ("model", "persistence")}
        scores = {c: score(panels["model"], c) for c in COLUMNS}
    except json.JSONDecodeError:
        row["status"] = "unreadable metrics.json"
        return row
    except (KeyError, TypeError, AttributeError):
        row["status"] = "metrics.json without the model's and persistence's test panels"
        return row
    row["status"] = "ok"
    row.update(scores)
    row["peaks"] = metrics.get("peaks", dataclasses.asdict(DEFAULT_PEAKS))  # older runs: the defaults
    for column, split in SEEN.items():  # runs made before data.train_eval lack its panel
        row[column] = metrics["model"].get(split, {}).get("skill_emd", math.nan)
    for column, ref in INTERVALS.items():  # runs made before the intervals lack them
        if cell := metrics.get("intervals", {}).get(ref, {}).get("emd"):
            if cell["low"] is not None:
                interval = f"[{cell['low']:+.3f}, {cell['high']:+.3f}]"
            else:  # a skill that is not finite (persistence exact: 1 - x / 0) has none either
                interval = "(too few windows)" if math.isfinite(cell["skill"]) else "(not defined)"
            row[column] = f"{cell['skill']:+.3f} {interval}"
    for ref in REFERENCES:  # runs made before the per-step intervals lack them
        if cell := metrics.get("intervals", {}).get("per_horizon", {}).get(ref, {}).get("emd"):
            row.setdefault("lead", {})[ref] = (cell["ahead_steps"], len(cell["skill"]))
    row["per_horizon"] = metrics["model"]["test_per_horizon"]
    for ref in REFERENCES:
        if ref in metrics:
            row[ref] = {c: score(metrics[ref]["test"], c) for c in COLUMNS}
            row[f"{ref}_per_horizon"] = metrics[ref]["test_per_horizon"]
    return row


def scored_by(rows: list[dict], ref: str) -> dict | None:
    """The first run whose metrics.json holds reference ``ref`` (older runs lack drift and linear)."""
    return next((r for r in rows if ref in r), None)


def same_windows(rows: list[dict], by: str | None) -> list[tuple[str, list[dict]]]:
    """The finished runs grouped by the windows they were scored on (told apart by their persistence
    panel, which depends on nothing else) and the peak settings of their ospa_deg, each with a label for
    its reference rows: "same windows" when there is one group, else "windows of RUN" (and how many
    other runs share them)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(json.dumps([r["persistence"], r.get("peaks")], sort_keys=True), []).append(r)
    if len(groups) == 1:
        return [("same windows", rows)]
    labels = []
    for members in groups.values():
        names = list(dict.fromkeys(group_name(r, by) for r in members))
        more = f" and {len(names) - 1} more" if len(names) > 1 else ""
        labels.append((f"windows of {names[0]}{more}", members))
    return labels


def lead(row: dict, ref: str, as_text: bool) -> str | float:
    """The run's lead over ``ref`` in horizon steps: "7 of 10" (or "(too few windows)"), or the number
    of steps for averaging (NaN without intervals); NaN for runs made before the per-step intervals."""
    if (found := row.get("lead", {}).get(ref)) is None:
        return math.nan
    steps, horizon = found
    if not as_text:
        return math.nan if steps is None else steps
    return "(too few windows)" if steps is None else f"{steps} of {horizon}"


def group_name(row: dict, by: str | None) -> str:
    """The run's label; with `by`, its overrides without `by=...` (runs differing only there group)."""
    if not by:
        return row["run"]
    return ",".join(o for o in row["overrides"] if not o.startswith(f"{by}=")) or "(defaults)"


def table(rows: list[dict], by: str | None, sort: str) -> pd.DataFrame:
    ok = [r for r in rows if r["status"] == "ok"]
    # An interval is one run's: a group of seeds has none (its spread is the ± std); its lead time, in
    # steps, is averaged like the metrics.
    columns = ["run", "status", *TRAINING, *SEEN, *COLUMNS, *([] if by else INTERVALS)]
    frame = pd.DataFrame([{k: r.get(k, math.nan) for k in columns} for r in rows])
    for column, ref in LEADS.items():
        frame[column] = [lead(r, ref, as_text=not by) for r in rows]
    if by:
        # Group runs that differ only in `by` (e.g. the seed): mean +- std.
        frame["run"] = [group_name(r, by) for r in rows]
        done = frame[frame.status == "ok"]
        averaged = [*TRAINING, *SEEN, *COLUMNS, *LEADS]
        stats = done.groupby("run")[averaged].agg(["mean", "std"])
        out = pd.DataFrame(index=stats.index)
        for c in averaged:
            out[c] = [f"{m:.4g} ± {s:.2g}" if s == s else f"{m:.4g}" for m, s in stats[c].to_numpy()]
        out["n"] = done.groupby("run").size()
        out["status"] = "ok"
        sign = -1 if higher_is_better(sort) else 1  # the best first
        out = out.reset_index().sort_values(
            "run", key=lambda s: sign * stats.loc[s, (sort, "mean")].to_numpy()
        )
        failed = frame[frame.status != "ok"]
        frame = pd.concat([out, failed[["run", "status"]]], ignore_index=True)
    else:
        frame = frame.sort_values(sort, ascending=not higher_is_better(sort), na_position="last")
    # Runs scored on other windows (other data, splits or windows) get reference rows of their own.
    for label, members in same_windows(ok, by):
        for ref in REFERENCES:
            if (source := scored_by(members, ref)) is None:
                continue
            row = pd.DataFrame(source[ref], index=[0]).assign(run=f"{ref} ({label})", status="ok")
            if by:
                row = row.astype(object).map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)
            frame = pd.concat([frame, row], ignore_index=True)
    return frame


def plot(rows: list[dict], tags: list[str], by: str | None, out: Path) -> None:
    """Val curves of every run, one chart per tag; runs of one group share a colour."""
    groups = sorted({group_name(r, by) for r in rows})
    colours = {g: plt.cm.tab20(i % 20) for i, g in enumerate(groups)}
    fig, axes = plt.subplots(1, len(tags), figsize=(6 * len(tags), 4.5), squeeze=False)
    for ax, tag in zip(axes[0], tags):
        labelled = set()
        for r in rows:
            points = r["curves"].get(tag, [])
            if points:
                group = group_name(r, by)
                steps, values = zip(*points)
                label = None if group in labelled else group[:60]
                labelled.add(group)
                ax.plot(steps, values, marker=".", color=colours[group], label=label)
        ax.set_title(tag)
        ax.set_xlabel("step")
    fig.legend(
        *axes[0][0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_horizons(rows: list[dict], metrics: list[str], by: str | None, out: Path) -> None:
    """Test metrics against the horizon step (mean over each group's runs), persistence dashed, linear
    dash-dotted, drift dotted (in a lighter grey for each further set of windows)."""
    ok = [r for r in rows if r["status"] == "ok"]
    groups: dict[str, list[dict]] = {}
    for r in ok:
        groups.setdefault(group_name(r, by), []).append(r)
    windows = same_windows(ok, by)
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        for i, (group, members) in enumerate(sorted(groups.items())):
            values = np.mean([m["per_horizon"][name] for m in members], axis=0)
            ax.plot(
                range(1, len(values) + 1), values, marker=".", color=plt.cm.tab20(i % 20), label=group[:60]
            )
        for (label, members), grey in zip(windows, itertools.cycle(("k", "0.45", "0.7"))):
            for ref, style in zip(REFERENCES, ("--", "-.", ":"), strict=True):
                if (source := scored_by(members, ref)) is not None:
                    values = source[f"{ref}_per_horizon"][name]
                    tag = ref if len(windows) == 1 else f"{ref}, {label}"[:60]
                    ax.plot(range(1, len(values) + 1), values, style, color=grey, lw=2, label=tag)
        ax.set_title(f"test {name}")
        ax.set_xlabel("horizon step")
    fig.legend(
        *axes[0][0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)


def arguments() -> argparse.ArgumentParser:
    """The command line main() reads (tests/test_docs.py parses the documented ones with it)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("folders", nargs="+", type=Path, help="multirun folders (or run folders) to compare")
    parser.add_argument(
        "--metric", default="emd", choices=METRICS, help="the val metric whose best value is shown"
    )
    parser.add_argument("--sort", default="emd", choices=COLUMNS, help="test metric to sort by, best first")
    parser.add_argument("--by", default=None, help="aggregate over this override key, e.g. seed")
    parser.add_argument("--csv", type=Path, default=Path("comparison.csv"), help="the table, written here")
    parser.add_argument(
        "--png", type=Path, default=Path("comparison.png"), help="val curves (and <png>_by_horizon.png)"
    )
    return parser


def main() -> None:
    parser = arguments()
    args = parser.parse_args()
    missing = [str(f) for f in args.folders if not f.exists()]
    if missing:
        parser.error(f"no such folder: {', '.join(missing)}")
    runs, evaluations = find_runs(args.folders)
    if evaluations:
        print(f"note: passed over {evaluations} evaluate.py folder(s): they score a checkpoint, not a run")
    if not runs:
        parser.error(
            f"no runs (folders with .hydra/overrides.yaml) under {', '.join(map(str, args.folders))}"
        )
    rows = [read_run(r, args.metric) for r in runs]
    keys = sorted({o.split("=", 1)[0] for r in rows for o in r["overrides"]})
    if args.by and args.by not in keys:
        parser.error(
            f"--by {args.by}: no run has an override {args.by}=...; their override keys: {', '.join(keys)}"
        )
    names = {
        "best_val": f"best val/{args.metric}",
        "val_after_best_pct": f"last val/{args.metric} vs best %",
        "train_loss_pct": "train loss change %",
        "train_eval_pct": f"train_eval/{args.metric} change %",
        "train_eval_skill": "skill_emd train windows",
        "val_skill": "skill_emd val",
    }
    frame = table(rows, args.by, args.sort).rename(columns=names)
    # Blank where a row has no value (the references train nothing and have no intervals); the CSV too.
    shown = frame.astype(object).where(frame.notna(), None)
    print(shown.to_markdown(index=False, floatfmt=".4g", missingval=""))
    frame.to_csv(args.csv, index=False)
    plot(rows, [f"val/{args.metric}", "val/loss"], args.by, args.png)
    by_horizon = args.png.with_name(f"{args.png.stem}_by_horizon.png")
    plot_horizons(rows, ["emd", "peak_err_deg", "mse"], args.by, by_horizon)
    print(f"\nwrote {args.csv}, {args.png} and {by_horizon}")
    if unfinished := sum(r["status"] == "crashed or running" for r in rows):
        print(
            f"{unfinished} run(s) without metrics.json: a sweep cut short resumes job by job with its "
            "command plus hydra.sweep.dir=<its folder> ckpt_path=last (a single run: hydra.run.dir=)"
        )


if __name__ == "__main__":
    main()
