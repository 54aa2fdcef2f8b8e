"""Write the synthetic data set to a file: `python scripts/make_synthetic.py OUT.{csv,parquet,npy,npz}`.

The options are make_synthetic's (see heatforecast.data.synthetic); the defaults are those of
conf/data/synthetic.yaml, so `data=file data.path=OUT` trains on the same series as `data=synthetic`.
"""

from __future__ import annotations

import argparse
import inspect

import numpy as np

from heatforecast.data import make_synthetic, write_heatmaps
from heatforecast.data.files import angle_grid


def arguments() -> argparse.ArgumentParser:
    """The command line main() reads (tests/test_docs.py parses the documented ones with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output file; the suffix picks the format")
    for name, param in inspect.signature(make_synthetic).parameters.items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(param.default, bool):  # --circular / --no-circular (bool("False") would be True)
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=param.default)
        else:
            parser.add_argument(flag, type=type(param.default), default=param.default)
    return parser


def main() -> None:
    parser = arguments()
    args = vars(parser.parse_args())
    out = args.pop("out")
    try:
        heatmaps = make_synthetic(**args)
        write_heatmaps(out, heatmaps, angle_grid(heatmaps.shape[-1], args["angle_start"], args["bin_width"]))
    except ValueError as err:  # a bad setting or file type (DataError is one): one line, not a traceback
        parser.error(str(err))
    zeros = float(np.mean(heatmaps == 0))
    print(f"wrote {out}: {heatmaps.shape} (series, steps, bins), {zeros:.0%} exact zeros")


if __name__ == "__main__":
    main()
