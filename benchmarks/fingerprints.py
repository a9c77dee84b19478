"""Fingerprints of every command's numeric output at small settings: run before and after a
refactor that promises identical behaviour, and diff the two JSON files.

    python benchmarks/fingerprints.py fingerprints_before.json [--readme]
    python benchmarks/fingerprints.py fingerprints_after.json --compare fingerprints_before.json

Each output file is reduced to the SHA-256 of its arrays (bytes and shapes) and of its
attributes minus the ones that name times, paths or the running command. --readme adds the
README's main command (minutes on a CPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# attributes that legitimately differ between two runs of the same command
VOLATILE = (
    "input_sha256",
    "input_file",  # the checkout the input was read from
    "created",
    "time",
    "date",
    "command",
    "path",
    "host",
    "duration",
    "seconds",
    "elapsed",
    "rate",
)

SMALL = [
    "simulate-obs obs_lensing.h5 --forward-model lensing --prior gaussian --shape 24 32 --seed 1",
    "simulate-obs obs_noise.h5 --forward-model noise --prior gaussian --shape 24 24 --noise-std 0.5",
    "simulate-obs obs_inpaint.h5 --forward-model inpainting --prior gaussian --shape 24 24 --seed 2 "
    "--noise-std 0.3",
    "simulate-obs obs_blur.h5 --forward-model blur --prior gaussian --shape 24 24 --psf-fwhm-pixels 2 "
    "--noise-std 0.3",
    "simulate-obs obs_down.h5 --forward-model downsample --prior gaussian --shape 24 24 "
    "--downsample-factor 2 --noise-std 0.3",
    "simulate-obs obs_smooth.h5 --forward-model smoothing --prior gaussian --shape 24 24 "
    "--smoothing-kind gaussian --smoothing-radius-pixels 2 --noise-std 0.3",
    "simulate-obs obs_counts.h5 --forward-model galaxy_counts --prior gaussian --shape 16 16",
    "reconstruct obs_lensing.h5 --prior gaussian --num-samples 4 --steps 12 -o post_lensing.h5",
    "reconstruct obs_noise.h5 --prior gaussian --num-samples 4 --steps 12 -o post_noise.h5",
    "reconstruct obs_inpaint.h5 --prior gaussian --num-samples 4 --steps 12 -o post_inpaint.h5",
    "reconstruct obs_blur.h5 --prior gaussian --num-samples 4 --steps 12 -o post_blur.h5",
    "reconstruct obs_down.h5 --prior gaussian --num-samples 4 --steps 12 -o post_down.h5",
    "reconstruct obs_smooth.h5 --prior gaussian --num-samples 4 --steps 12 -o post_smooth.h5",
    "reconstruct obs_counts.h5 --prior gaussian --num-samples 4 --steps 12 -o post_counts.h5",
    "reconstruct obs_inpaint.h5 --prior gaussian --sampler split_gibbs --num-samples 4 --steps 12 "
    "-o post_sg.h5",
    "reconstruct obs_inpaint.h5 --prior gaussian --sampler dps --num-samples 4 --steps 12 "
    "-o post_dps.h5",
    "reconstruct obs_inpaint.h5 --prior gaussian --sampler smc --num-samples 8 --steps 12 "
    "-o post_smc.h5",
    "reconstruct obs_inpaint.h5 --prior gaussian --num-samples 4 --steps 12 --corrector-steps 1 "
    "--batch-size 3 -o post_pc.h5",
    "reconstruct obs_lensing.h5 --num-samples 2 --steps 8 -o post_default_prior.h5",
    "simulate grf sims_grf.h5 --num 3 --shape 16 16 --seed 3",
    "simulate lognormal sims_ln.h5 --num 3 --shape 16 16",
    "simulate convergence sims_kappa.h5 --num 3 --shape 16 16",
    "simulate density sims_density.h5 --num 2 --shape 16 16",
    "simulate grf sims_cond.h5 --num 4 --shape 16 16 --amplitude-range 0.5 2 --slope-range -2.5 -1",
    "log-likelihood sims_grf.h5 --prior gaussian --reference 4 -o ll.json",
    "calibrate --forward-model inpainting --prior gaussian --from-prior --num-tests 2 "
    "--num-samples 8 --steps 12 --shape 16 16 --noise-std 0.3 -o calib",
    "report post_inpaint.h5 -o post_report",
]
ENTRY = "import sys; from posterior_diffusion.cli import main; sys.exit(main(sys.argv[1:]))"
README = ["reconstruct {root}/examples/data/lensing_obs.h5 -o lensing_posterior.h5"]


def attr_digest(attrs) -> str:
    items = []
    for key in sorted(attrs):
        if any(word in key.lower() for word in VOLATILE):
            continue
        value = attrs[key]
        if isinstance(value, bytes):
            value = value.decode()
        value = drop_volatile(value)
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        items.append(f"{key}={np.asarray(value).tolist()!r}")
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def drop_volatile(value):
    if isinstance(value, dict):
        return {
            k: drop_volatile(v)
            for k, v in value.items()
            if not any(word in k.lower() for word in VOLATILE)
        }
    if isinstance(value, list):
        return [drop_volatile(v) for v in value]
    if isinstance(value, str) and value.startswith("{"):  # provenance nests JSON in strings
        try:
            return drop_volatile(json.loads(value))
        except ValueError:
            return value
    return value


def array_digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(str(array.shape).encode() + array.tobytes()).hexdigest()[:16]


def h5_fingerprint(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        out["/"] = attr_digest(f.attrs)

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = array_digest(obj[()])
            out[name + "@attrs"] = attr_digest(obj.attrs)

        f.visititems(visit)
    return out


def json_fingerprint(path: Path) -> str:
    data = drop_volatile(json.loads(path.read_text()))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def csv_fingerprint(path: Path) -> str:
    """The table without its volatile columns (e.g. seconds per test)."""
    rows = [line.split(",") for line in path.read_text().splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if not any(w in name.lower() for w in VOLATILE)]
    text = "\n".join(",".join(row[i] for i in keep if i < len(row)) for row in rows)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(folder: Path) -> dict:
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.suffix in (".h5", ".hdf5"):
            out[rel] = h5_fingerprint(path)
        elif path.suffix == ".json":
            out[rel] = json_fingerprint(path)
        elif path.suffix == ".csv":
            out[rel] = csv_fingerprint(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--readme", action="store_true")
    parser.add_argument("--compare", metavar="BEFORE", help="list what differs from BEFORE")
    parser.add_argument("--keep", metavar="DIR", help="run in DIR (new) and keep the outputs")
    args = parser.parse_args()
    commands = SMALL + (README if args.readme else [])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp) / "run"
        folder.mkdir(exist_ok=False, parents=True)  # a kept folder must start empty
        codes = {}
        for command in commands:
            argv = shlex.split(command.format(root=ROOT)) + ["--no-progress"] * (
                not command.startswith(("simulate", "report"))
            )
            run = subprocess.run(
                [sys.executable, "-c", ENTRY, *argv],
                cwd=folder,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )
            codes[command] = run.returncode
            print(f"rc {run.returncode}  {command}", flush=True)
            if run.returncode:
                print(run.stderr.strip().splitlines()[-1:], flush=True)
        result = {"exit_codes": codes, "outputs": fingerprint(folder)}
    Path(args.output).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.compare:
        differences = compare(json.loads(Path(args.compare).read_text()), result)
        print("\n".join(differences) or "identical to " + args.compare)
        sys.exit(1 if differences else 0)


def compare(before: dict, after: dict) -> list[str]:
    """What differs, over the commands and outputs both runs made."""
    out = []
    for command, code in after["exit_codes"].items():
        if command in before["exit_codes"] and before["exit_codes"][command] != code:
            out.append(f"exit code {before['exit_codes'][command]} -> {code}: {command}")
    for name, digest in after["outputs"].items():
        if name not in before["outputs"]:
            out.append(f"new output {name}")
        elif before["outputs"][name] != digest:
            old = before["outputs"][name]
            parts = (
                [k for k in digest if old.get(k) != digest[k]] if isinstance(digest, dict) else []
            )
            out.append(f"differs: {name} {parts}")
    missing = set(before["outputs"]) - set(after["outputs"])
    skipped = {n for n in missing if n.startswith("lensing_posterior")}  # --readme only
    out += [f"missing output {n}" for n in sorted(missing - skipped)]
    return out


if __name__ == "__main__":
    main()
