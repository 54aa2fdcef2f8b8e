"""Write the synthetic data set to a file: `python scripts/make_synthetic.py OUT.{csv,parquet,npy,npz}`
(or `OUT.csv.gz`: a CSV compressed by its suffix).

The options are make_synthetic's (see heatforecast.data.synthetic); the defaults are those of
conf/data/synthetic.yaml, so `data=file data.path=OUT` trains on the same series as `data=synthetic`.
"""

from __future__ import annotations

import argparse
import inspect

import numpy as np

from heatforecast.data import make_synthetic, write_heatmaps
from heatforecast.data.files import angle_grid

# What each of make_synthetic's arguments means, for --help (the defaults come from its signature).
HELP = {
    "n_series": "independent recordings",
    "n_steps": "time steps (frames) per series",
    "n_bins": "angle bins per frame",
    "bin_width": "degrees between bins",
    "angle_start": "angle of the first bin, degrees",
    "max_sources": "most sources alive at once",
    "max_speed": "fastest source, degrees per step",
    "birth_rate": "chance per empty source slot and step that a source appears",
    "death_rate": "chance per source and step that it vanishes",
    "noise_floor": "mean of the exponential noise floor",
    "threshold": "linear energy below this is set to exactly 0 (thresholded spectra)",
    "scale": "linear energy, or db: 10 log10(energy + noise_floor)",
    "circular": "angles wrap at 360 degrees (sources cross 360/0)",
    "seed": "the data set itself",
}


def arguments() -> argparse.ArgumentParser:
    """The command line main() reads (tests/test_docs.py parses the documented ones with it)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("out", help="output file; the suffix picks the format")
    for name, param in inspect.signature(make_synthetic).parameters.items():
        flag, text = f"--{name.replace('_', '-')}", HELP[name]
        if isinstance(param.default, bool):  # --circular / --no-circular (bool("False") would be True)
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=param.default, help=text)
        elif name == "scale":
            parser.add_argument(flag, choices=("linear", "db"), default=param.default, help=text)
        else:
            parser.add_argument(flag, type=type(param.default), default=param.default, help=text)
    return parser


def main() -> None:
    parser = arguments()
    args = vars(parser.parse_args())
    out = args.pop("out")
    try:
        heatmaps = make_synthetic(**args)
        write_heatmaps(out, heatmaps, angle_grid(heatmaps.shape[-1], args["angle_start"], args["bin_width"]))
    except (ValueError, OSError) as err:  # a bad setting, file type (DataError is a ValueError) or folder
        parser.error(str(err))  # one line, not a traceback
    zeros = float(np.mean(heatmaps == 0))
    print(f"wrote {out}: {heatmaps.shape} (series, steps, bins), {zeros:.0%} exact zeros")


if __name__ == "__main__":
    main()
