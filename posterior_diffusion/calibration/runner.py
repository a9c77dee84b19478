"""Running a calibration: draw held-out (truth, observation) pairs, sample, diagnose, save, resume.

Everything is checked, and test 0's observation is simulated, before any test file is written,
so bad input fails fast. Tests run one after the other; each is saved as soon as it finishes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from posterior_diffusion.defaults import DEFAULT_FIELD_SHAPE
from posterior_diffusion.io import Observation
from posterior_diffusion.io.attrs import to_json
from posterior_diffusion.observing import (
    observation_model,
    observe_field,
    pixel_scale,
    simulate_observation,
    simulation_mask,
    simulation_params,
)
from posterior_diffusion.priors import Prior
from posterior_diffusion.priors.resolve import resolve_prior
from posterior_diffusion.provenance import file_sha256, provenance
from posterior_diffusion.reconstruction import ReconstructionRequest, draw_members, prepare
from posterior_diffusion.samplers import SAMPLERS
from posterior_diffusion.samplers.run import check_run_settings, choose_sampler
from posterior_diffusion.survey import (
    Survey,
    noise_seed,
    observe_like,
    simulate_like,
    survey_for,
    truth_prior,
)

from . import held_out
from .settings import (
    FORMAT_VERSION,
    CalibrationRequest,
    array_sha256,
    observation_seed,
    stream_seed,
)
from .store import ResultStore
from .truths import SimulationsFile


class CalibrationInterrupted(KeyboardInterrupt):
    """Ctrl-C during a calibration; the finished tests stay in `folder` for a rerun to resume."""

    def __init__(self, finished: int, requested: int, folder: Path):
        super().__init__(f"interrupted with {finished} of {requested} tests finished")
        self.finished, self.requested, self.folder = finished, requested, folder


@dataclass
class CalibrationRun:
    """A finished run: its settings and provenance, and every test's diagnostics."""

    request: CalibrationRequest
    settings: dict[str, Any]  # what a resumed run must share
    provenance: dict[str, Any]  # what made the report
    tests: list[dict[str, np.ndarray]]  # per-test arrays; maps only for test 0
    meta: list[dict[str, Any]]  # per-test seeds, timings, cost
    computed: int  # tests computed by this call (the others were loaded)
    store: ResultStore
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every test is finished (a shard may end before the others)."""
        return len(self.tests) == self.request.num_tests


def shard_tests(num: int, shard: tuple[int, int] | None) -> list[int]:
    """The tests a run computes: all, or with shard (i, n) those with index % n == i, plus test
    0 in every shard (its one-point-PDF edges bin every test; the first copy written is kept)."""
    if shard is None:
        return list(range(num))
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"--shard I/N needs 0 <= I < N, got {i}/{n}")
    return [index for index in range(num) if index == 0 or index % n == i]


class _Plan:
    """The resolved pieces of a request: prior, mask, truths, sampler, settings."""

    def __init__(self, request: CalibrationRequest):
        self.request = r = request
        check_run_settings(r.num_samples, r.steps, r.seed, r.batch_size, r.device)
        if r.num_tests < 1:
            raise ValueError(f"number of tests must be >= 1, got {r.num_tests}")
        if r.num_samples < 2:
            raise ValueError(f"calibration needs >= 2 samples per test, got {r.num_samples}")
        out = Path(r.output_dir)
        if out.exists() and not out.is_dir():
            raise ValueError(f"{out}: exists and is not a directory")
        if not out.resolve().parent.is_dir():
            raise ValueError(f"{out}: parent directory '{out.parent}' does not exist")

        self.simulations = None if r.simulations is None else SimulationsFile(r.simulations)
        self.survey = None if r.survey is None else _survey(r)
        if self.survey is not None:
            h, w = self.survey.spatial_shape
            if self.simulations is not None:
                num, sim_h, sim_w = self.simulations.shape
                if sim_h < h or sim_w < w:
                    raise ValueError(
                        f"{r.simulations}: maps are {sim_h} x {sim_w}, smaller than the survey's "
                        f"{h} x {w} patch ({r.survey})"
                    )
                if num < r.num_tests:
                    raise ValueError(
                        f"{r.simulations}: dataset 'fields' holds {num} maps, fewer than the "
                        f"{r.num_tests} tests asked for"
                    )
        elif self.simulations is not None:
            num, h, w = self.simulations.shape
            if r.shape is not None and tuple(r.shape) != (h, w):
                raise ValueError(
                    f"{r.simulations}: maps are {h} x {w} but --shape asks for "
                    f"{r.shape[0]} x {r.shape[1]}"
                )
            if num < r.num_tests:
                raise ValueError(
                    f"{r.simulations}: dataset 'fields' holds {num} maps, fewer than the "
                    f"{r.num_tests} tests asked for"
                )
        else:
            h, w = r.shape or DEFAULT_FIELD_SHAPE
        if min(h, w) < 2:
            raise ValueError(f"field shape must be at least 2 x 2 pixels, got {h} x {w}")
        self.field_shape = (1, int(h), int(w))
        attrs = r.attrs if self.survey is None else self.survey.simulation_attrs()
        noise_map = r.noise_std is not None or (
            self.survey is not None and self.survey.observation.noise_std is not None
        )
        self.params = simulation_params(r.forward_model, attrs, noise_map)
        self.prior = self._prior()
        self.truth_prior = (
            None if self.survey is None else truth_prior(self.survey, r.prior, r.power_spectrum)
        )
        self.mask = self._mask()
        self.first = self.observation(0)  # validates every forward-model input
        self.model = observation_model(self.first, None)
        self.sampler = choose_sampler(r.sampler, self.model)
        self.options = SAMPLERS[self.sampler].with_defaults(
            r.sampler_options, self.prior, self.model
        )
        SAMPLERS[self.sampler].check_options(self.options)
        self.steps = int(r.steps or SAMPLERS[self.sampler].steps_for(self.options))
        self.settings = self._settings()

    def _prior(self) -> Prior:
        r = self.request
        prior = resolve_prior(r.prior, r.power_spectrum, self.field_shape, pixel_scale(self.params))
        if not prior.can_sample:
            raise ValueError(
                f"prior '{prior.identity().get('name')}' cannot draw fields; calibration needs "
                "prior draws (truths, TARP reference points)"
            )
        return prior

    def _mask(self) -> np.ndarray | None:
        r = self.request
        if self.survey is not None:
            return self.survey.observation.mask
        if r.mask is not None:
            return np.asarray(r.mask, dtype=np.float64)
        # Drawn once with the run's seed, as `simulate-obs --seed S` draws it: every test shares
        # it, so the coverage maps show how coverage behaves in and around the holes.
        return simulation_mask(
            r.forward_model, self.params, self.field_shape, r.mask_fraction, r.mask_border, r.seed
        )

    def observation(self, index: int) -> Observation:
        """Test `index`'s observation, truth included; reproducible from (seed, index) alone."""
        r = self.request
        seed = observation_seed(r.seed, index)
        if self.survey is not None:
            if self.simulations is None:
                return simulate_like(self.survey, self.truth_prior, seed=seed, command=r.command)
            return observe_like(
                self.survey, self.simulations.field(index), noise_seed(seed), command=r.command
            )
        if self.simulations is None:
            return simulate_observation(
                r.forward_model,
                shape=self.field_shape,
                attrs=r.attrs,
                prior=self.prior,
                mask=self.mask,
                noise_std=r.noise_std,
                seed=seed,
                command=r.command,
            )
        return observe_field(
            self.simulations.field(index),
            r.forward_model,
            attrs=r.attrs,
            mask=self.mask,
            noise_std=r.noise_std,
            seed=seed,
            command=r.command,
        )

    def reference(self, index: int) -> np.ndarray:
        """Test `index`'s TARP reference point: a prior draw independent of everything else."""
        generator = torch.Generator().manual_seed(
            stream_seed(self.request.seed, index, "reference")
        )
        with torch.no_grad():
            draw = self.prior.sample(1, generator, field_shape=self.field_shape)
            return draw[0].to(torch.float64).cpu().numpy()  # the prior may sit on a GPU

    def _settings(self) -> dict[str, Any]:
        r = self.request
        identity = self.prior.identity()
        truths: Any = "prior draws"
        if self.simulations is not None:
            truths = {"simulations_sha256": file_sha256(self.simulations.path)}
        raw = {
            "format_version": FORMAT_VERSION,
            "truths": truths,
            # The checksum names the prior whatever path it was given by; else its identity.
            "prior": identity.get("checksum") or identity,
            "forward_model": self.model.params(),
            "forward_model_attrs": self.params,
            "mask_sha256": array_sha256(self.mask),
            "noise_std": r.noise_std,
            "survey_sha256": None if self.survey is None else self.survey.sha256,
            "sampler": self.sampler,
            "steps": self.steps,
            "num_samples": r.num_samples,
            "seed": r.seed,
            "field_shape": list(self.field_shape),
        }
        if self.options:  # only when any: runs stored before options existed still resume
            raw["sampler_options"] = self.options
        return json.loads(to_json(raw))  # the types a stored copy reads back as

    def provenance(self) -> dict[str, Any]:
        r = self.request
        record = provenance(
            command=r.command,
            seed=r.seed,
            prior_identity=self.prior.identity(),
            forward_model_params=self.model.params(),
        )
        record.update(
            sampler=self.sampler,
            sampler_settings=dict(steps=self.steps, num_samples=r.num_samples, **self.options),
            prior=self.prior.identity(),
            forward_model_params=self.model.params(),
            forward_model_attrs=self.params,
            truths="prior draws" if self.simulations is None else str(self.simulations.path),
            num_tests=r.num_tests,
            field_shape=list(self.field_shape),
            mask_observed_fraction=None if self.mask is None else float(self.mask.mean()),
            device=r.device,
        )
        if self.simulations is not None:
            record["simulations_sha256"] = self.settings["truths"]["simulations_sha256"]
        if self.survey is not None:
            domain = (
                self.survey.domain_shape if self.simulations is None else self.simulations.shape[1:]
            )
            record.update(self.survey.provenance(), truth_domain=[int(n) for n in domain])
        return record


def _survey(r: CalibrationRequest) -> Survey:
    """The request's survey, refusing settings that the survey itself fixes."""
    fixed = {"shape": r.shape, "mask": r.mask, "noise_std": r.noise_std,
             "forward-model parameters": r.attrs or None}  # fmt: skip
    return survey_for(r.survey, r.forward_model, fixed)


def _run_test(plan: _Plan, index: int, edges: np.ndarray | None):
    """Sample and diagnose test `index`; returns its arrays and meta."""
    r = plan.request
    start = time.perf_counter()
    obs = plan.first if index == 0 else plan.observation(index)
    sampler_seed = stream_seed(r.seed, index, "sampler")
    # A sky observation is padded by `reconstruct` (docs/sky.md), which rebuilds the prior on
    # the padded grid from its name: pass the name, so the run calibrated is the one users run.
    # (Passing the resolved object turned padding off: a 0.01-0.02 coverage difference.)
    by_name = bool(obs.attrs.get("wcs_header")) and not isinstance(r.prior, Prior)
    ensemble = prepare(
        ReconstructionRequest(
            obs,
            forward_model=r.forward_model,
            prior=r.prior if by_name else plan.prior,
            power_spectrum=r.power_spectrum if by_name else None,
            sampler=plan.sampler,
            num_samples=r.num_samples,
            steps=plan.steps,
            sampler_options=plan.options,
            seed=sampler_seed,
            device=r.device,
            batch_size=r.batch_size,
            progress=False,
        )
    )
    draws = draw_members(ensemble)
    samples = draws.samples.reshape(r.num_samples, *plan.field_shape)
    truth = np.asarray(obs.truth, dtype=np.float64)
    # A padded run's model works on the padded grid; the diagnostics need the patch's.
    model = ensemble.model if ensemble.padded is None else observation_model(obs, None)
    arrays = held_out.diagnose(
        samples,
        truth,
        obs.y,
        obs.mask,
        model,
        plan.prior,
        plan.reference(index),
        held_out.pdf_edges(truth, samples) if edges is None else edges,
        projection_seed=r.seed,
        rank_seed=stream_seed(r.seed, index, "ranks"),
        exact_seed=stream_seed(r.seed, index, "exact"),
    )
    meta = {
        "index": index,
        "observation_seed": observation_seed(r.seed, index),
        "sampler_seed": sampler_seed,
        "nfe_per_sample": draws.info.get("nfe_per_sample"),
        "padded_shape": None if ensemble.padded is None else list(ensemble.padded.y.shape[-2:]),
        "sampling_seconds": draws.info.get("seconds"),
        "seconds": time.perf_counter() - start,
    }
    return arrays, meta


def run_calibration(request: CalibrationRequest) -> CalibrationRun:
    """Run (or resume) every test of `request` and load all their results."""
    num = request.num_tests
    todo = shard_tests(num, request.shard)
    plan = _Plan(request)
    store = ResultStore(Path(request.output_dir) / "tests", plan.settings)
    Path(request.output_dir).mkdir(exist_ok=True)
    store.prepare()
    edges = None
    if store.finished(0):
        edges = store.load(0)[0]["pdf_edges"]
    computed = 0
    bar = tqdm(
        total=len(todo),
        initial=sum(store.finished(index) for index in todo),
        unit="test",
        desc="calibrate",
        disable=not request.progress,
        dynamic_ncols=True,
    )
    try:
        for index in todo:
            if store.finished(index):
                continue
            arrays, meta = _run_test(plan, index, edges)
            # Shards may finish test 0 at once: the first copy stays, and its edges bin every
            # test (copies can differ in float32 round-off between hosts or thread counts).
            store.save(index, arrays, meta, keep_existing=index == 0)
            if edges is None:
                edges = store.load(0)[0]["pdf_edges"]
            computed += 1
            bar.update(1)
    except KeyboardInterrupt:
        raise CalibrationInterrupted(store.count_finished(num), num, store.folder) from None
    finally:
        bar.close()
    tests, meta = [], []
    if store.count_finished(num) < num:  # other shards still running: no report yet
        return CalibrationRun(request, plan.settings, plan.provenance(), [], [], computed, store)
    for index in range(num):
        skip = () if index == 0 else held_out.MAP_KEYS
        arrays, info = store.load(index, skip=skip)
        tests.append(arrays)
        meta.append(info)
    notes = []
    extra = sorted(store.folder.glob("test_*.npz"))[num:]
    if extra:
        notes.append(f"{len(extra)} further finished tests in {store.folder} were not used")
    return CalibrationRun(
        request=request,
        settings=plan.settings,
        provenance=plan.provenance(),
        tests=tests,
        meta=meta,
        computed=computed,
        store=store,
        notes=notes,
    )
