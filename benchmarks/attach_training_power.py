"""Give a prior file trained before `training_power` was recorded the power spectrum of its
training maps, so `guided` uses it at high noise (samplers/guided.py).

The data file must be the one the prior was trained on: its checksum is checked against the
prior's `data_checksum`. The spectrum is measured over all maps of the file (training and
validation alike, as the split is not recorded), which the metadata says:

    python benchmarks/attach_training_power.py PRIOR.pt DATA.h5 -o PRIOR_WITH_POWER.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import refuse

from posterior_diffusion.io.fields import field_array, open_file
from posterior_diffusion.priors.prior_file import load_record, make_record, save_record
from posterior_diffusion.training.data import DATASET, RANKS, field_statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prior", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    if args.output.exists():
        refuse(f"{args.output}: exists; choose another output")
    metadata, state, _ = load_record(args.prior)
    with open_file(args.data) as store:
        fields = field_array(store, args.data, DATASET, RANKS)
        stats = field_statistics(fields, np.arange(fields.shape[0]), str(args.data))
    if stats["checksum"] != metadata["data_checksum"]:
        refuse(f"{args.data}: not the data {args.prior} was trained on (checksum)")
    metadata["training_power"] = stats["power"]
    metadata["training_power_maps"] = "all maps of data_file, attached after training"
    save_record(make_record(state, metadata), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
