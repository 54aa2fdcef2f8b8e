"""How each training loss answers a misplaced peak and a wrong magnitude, built as train.py builds it
from conf/loss/: `python scripts/loss_vs_shift.py [--scale db] [--out docs/figures/loss_vs_shift]`.

The target is one Gaussian peak (sigma 3 degrees, at 90 on 0..180 in 1-degree bins). In linear energy
it is scaled as training scales such data (a mean bin of 1); with --scale db it is 10 log10 of that
peak's power (1 at its top) over a floor of -30 dB, in dB units, as training sees dB data. It is
compared with (1) the same peak moved by d = 0..60 degrees and (2) the target's energy times
a = 1/4..4 (in dB: 10 log10 a added to every bin). Prints each loss at a few of those, and writes every
value as CSV (<out>.csv) and both curves as PNG (<out>.png), each loss divided by its value for the
peak moved 60 degrees. A loss blind to how far a peak is misplaced is flat once the two peaks stop
overlapping (about 2.5 sigma); one blind to magnitude is 0 at every a.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

CONF = Path(__file__).resolve().parent.parent / "conf"
N_BINS, CENTRE, SIGMA = 181, 90.0, 3.0
DB_FLOOR = 1e-3  # -30 dB below the peak's top, where --scale db puts the floor
SHIFTS = np.arange(61)  # degrees
MAGNITUDES = 2.0 ** np.linspace(-2, 2, 41)
SHOWN_SHIFTS, SHOWN_MAGNITUDES = (1, 3, 10, 15, 20, 30, 60), (0.5, 2.0)  # the README reads these


def training_losses(scale: str) -> dict[str, torch.nn.Module]:
    """Every option of conf/loss/ with its defaults, on the default data settings (1-degree bins) with
    ``data.scale=scale``, as `python train.py loss=NAME data.scale=SCALE` builds it."""
    names = sorted(p.stem for p in (CONF / "loss").glob("*.yaml") if not p.stem.startswith("_"))
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return {
            name: instantiate(compose("train", [f"loss={name}", f"data.scale={scale}"]).loss)
            for name in names
        }


def peak(centre: float) -> torch.Tensor:
    """The peak's power, 1 at its top."""
    angles = torch.arange(N_BINS, dtype=torch.float32)
    return torch.exp(-0.5 * ((angles - centre) / SIGMA) ** 2)


def loss_values(scale: str = "linear") -> pd.DataFrame:
    """A row per loss, kind (shift, magnitude) and x (degrees, or the factor a): the loss's value."""
    if scale == "db":
        target = 10 * torch.log10(peak(CENTRE) + DB_FLOOR)
        moved = torch.stack([10 * torch.log10(peak(CENTRE + float(d)) + DB_FLOOR) for d in SHIFTS])
        scaled = torch.stack([target + 10 * np.log10(a) for a in MAGNITUDES])
    else:  # the mean bin 1, as the training scaler makes it
        height = N_BINS / float(peak(CENTRE).sum())
        target = height * peak(CENTRE)
        moved = torch.stack([height * peak(CENTRE + float(d)) for d in SHIFTS])
        scaled = torch.stack([float(a) * target for a in MAGNITUDES])
    rows = []
    for name, loss in training_losses(scale).items():
        loss.reduction = "none"  # a value per compared vector
        with torch.no_grad():
            for kind, xs, preds in (("shift", SHIFTS, moved), ("magnitude", MAGNITUDES, scaled)):
                values = loss(preds, target.expand_as(preds))
                rows += [(name, kind, float(x), float(v)) for x, v in zip(xs, values, strict=True)]
    return pd.DataFrame(rows, columns=["loss", "kind", "x", "value"])


def plot(values: pd.DataFrame, path: Path, scale: str = "linear") -> None:
    """Both curves of every loss, each divided by its value for the peak moved furthest: on the same
    axis, a loss's answer to a wrong magnitude reads against its answer to a misplaced peak."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    furthest = values[(values.kind == "shift") & (values.x == SHIFTS[-1])].set_index("loss").value
    colours = plt.cm.tab20(np.linspace(0, 1, 20))
    for i, (name, curves) in enumerate(values.groupby("loss")):
        style = {"color": colours[i % 20], "ls": ("-", "--")[i % 2], "label": name}
        for ax, kind in zip(axes, ("shift", "magnitude"), strict=True):
            curve = curves[curves.kind == kind]
            ax.plot(curve.x, curve.value / furthest[name], **style)
    axes[0].axvline(2.5 * SIGMA, color="grey", ls=":", lw=1)
    axes[0].set(
        xlabel="peak moved by (degrees)",
        title=f"{scale}: a misplaced peak (sigma {SIGMA:g} degrees; dotted: they stop overlapping)",
    )
    axes[1].set_xscale("log", base=2)
    axes[1].set(
        xlabel="forecast = target's energy x a", title="a wrong magnitude (flat at 0: the loss cannot see it)"
    )
    for ax in axes:
        ax.set_ylabel(f"loss / its value for a peak moved {SHIFTS[-1]} degrees")
    axes[1].legend(fontsize=8, ncol=2)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=["linear", "db"], default="linear", help="as data.scale")
    parser.add_argument(
        "--out", type=Path, default=Path("loss_vs_shift"), help="writes <out>.csv and <out>.png"
    )
    return parser


def main() -> None:
    args = arguments().parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    values = loss_values(args.scale)
    table = values.pivot_table(index="loss", columns=["kind", "x"], values="value")
    shown = {f"moved {d} deg": table[("shift", float(d))] for d in SHOWN_SHIFTS}
    shown |= {f"x{a:g}": table[("magnitude", a)] for a in SHOWN_MAGNITUDES}
    print(pd.DataFrame(shown).to_markdown(floatfmt=".4g"))
    values.to_csv(args.out.with_suffix(".csv"), index=False)
    plot(values, args.out.with_suffix(".png"), args.scale)
    print(f"\nwrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
