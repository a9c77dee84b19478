"""Give a prior file trained before `training_power` was recorded the power spectrum of its
training maps, so `guided` uses it at high noise (samplers/guided.py).

The data file must be the one the prior was trained on: its checksum is checked against the
prior's `data_checksum`. The spectrum is measured over all maps of the file (training and
validation alike, as the split is not recorded), which the metadata says:

    python benchmarks/attach_training_power.py PRIOR.pt DATA.h5 -o PRIOR_WITH_POWER.pt

`--statistic fixed_mean` attaches instead the mean every map of the data shares (`fixed_mean`,
which `train` records since; the prior then holds its maps' mean exactly: NetworkPrior.
with_fixed_mean), leaving the power spectrum as it was; it refuses data whose maps' means differ:

    python benchmarks/attach_training_power.py posterior_diffusion/data/density_prior.pt \
        data/density_64.h5 --statistic fixed_mean -o density_prior_fixed_mean.pt

`--regenerated` accepts data regenerated with the prior's recorded command whose checksum differs
from the recorded one but whose training maps (the split of `train`'s data module, from
`--val-fraction` and `--split-seed` as in the prior's config) have the mean and std the prior
recorded, to 1e-9 relative; the spectrum is then the training maps', as `train` records it, and
the metadata says so. (The shipped default prior's regenerated maps agree to 1e-12 with a
different checksum; not the simulator's code, which regenerates them bit for bit at the commit
that shipped the prior: docs/default_prior.md.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import refuse

from posterior_diffusion.io.fields import field_array, open_file
from posterior_diffusion.priors.prior_file import load_record, make_record, save_record
from posterior_diffusion.training.data import (
    DATASET,
    RANKS,
    field_statistics,
    train_val_split,
)


def same_moments(stats: dict, metadata: dict, rtol: float = 1e-9) -> bool:
    """The data's mean and std agree with those the prior recorded from its training maps."""
    mean_ok = np.allclose(stats["mean"], metadata["data_mean"], rtol=rtol, atol=0)
    return bool(mean_ok and abs(stats["std"] / metadata["data_std"] - 1) < rtol)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prior", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--statistic", choices=("power", "fixed_mean"), default="power")
    parser.add_argument("--regenerated", action="store_true")
    parser.add_argument("--val-fraction", type=float, default=0.02)
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args()
    if args.output.exists():
        refuse(f"{args.output}: exists; choose another output")
    metadata, state, _ = load_record(args.prior)
    with open_file(args.data) as store:
        fields = field_array(store, args.data, DATASET, RANKS)
        num = fields.shape[0]
        indices = np.arange(num)
        if args.regenerated:  # the training maps, split as `train` splits them
            indices, _ = train_val_split(num, args.val_fraction, args.split_seed)
        stats = field_statistics(fields, indices, str(args.data))
    how = "all maps of data_file, attached after training"
    if args.regenerated:
        if not same_moments(stats, metadata):
            refuse(f"{args.data}: its training maps' mean and std differ from {args.prior}'s")
        how = (
            f"training maps of data_file regenerated (checksum {stats['checksum'][:16]}..., "
            "mean and std agreeing), attached after training"
        )
    elif stats["checksum"] != metadata["data_checksum"]:
        refuse(f"{args.data}: not the data {args.prior} was trained on (checksum)")
    if args.statistic == "fixed_mean":
        if stats["fixed_mean"] is None:
            refuse(f"{args.data}: its maps' means differ, so there is no fixed mean to attach")
        metadata["fixed_mean"] = stats["fixed_mean"]
        metadata["fixed_mean_maps"] = how
    else:
        metadata["training_power"] = stats["power"]
        metadata["training_power_maps"] = how
    save_record(make_record(state, metadata), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
