"""How many ensemble members fit in memory at once: estimate before sampling, pick the batch size.

A member's footprint is what autograd keeps for one `linearize` of the prior (the graph that
covariance products run back through; guided and dps keep one alive per step) plus the sampler's
field-sized state and FFT temporaries. The graph is measured, not guessed: one batch-1 linearize
on the target device with a saved-tensors hook that adds up the bytes autograd stores.
"""

from __future__ import annotations

import contextlib
import os

import torch

from .priors.base import Prior

# Field-sized tensors a sampler holds per member (state, denoised estimates, CG vectors, complex
# FFT buffers at twice the size): guided holds about 16, this allows twice that.
STATE_COPIES = 32
# Backward passes hold gradient buffers beside the saved activations. With 1.5 the estimate was
# 1.2x the measured CUDA peak for guided but 0.76x for dps (256 x 256, U-Net prior, H100), so 2.
BACKWARD_FACTOR = 2.0
# Share of the free memory the ensemble may take (the rest: allocator slack, other work).
MEMORY_FRACTION = 0.7


def graph_bytes(prior: Prior, field_shape, device, dtype=torch.float64) -> int:
    """Bytes autograd saves for one member's `prior.linearize`.

    A prior without parameters is analytic (its covariance products are FFT filters whose
    buffers the state allowance covers), so it is not probed: 0.
    """
    if next(prior.parameters(), None) is None:
        return 0
    x = torch.randn((1, *field_shape), device=device, dtype=dtype)
    sigma = float(prior.sigma_max()) ** 0.5 * float(prior.sigma_min()) ** 0.5
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            storage = t.untyped_storage()
            seen[(storage.data_ptr(), t.device.index or 0)] = storage.nbytes()
        return t

    # A compiled network would compile again for this batch-1 probe (a minute on a GPU): run it
    # eagerly; the saved activations are the same.
    eager = getattr(torch.compiler, "set_stance", None)
    with eager("force_eager") if eager else contextlib.nullcontext():
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            prior.linearize(x, sigma)
    return sum(seen.values())


def bytes_per_member(prior: Prior, field_shape, device, dtype=torch.float64) -> int:
    """Estimated peak bytes one ensemble member adds while a guided or dps sampler runs."""
    numel = 1
    for n in field_shape:
        numel *= int(n)
    state = STATE_COPIES * numel * torch.empty((), dtype=dtype).element_size()
    return int(BACKWARD_FACTOR * graph_bytes(prior, field_shape, device, dtype) + state)


def available_bytes(device) -> int:
    """Free memory on `device`: the CUDA allocator's view, or the host's MemAvailable."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def fitting_batch_size(
    prior: Prior, field_shape, device, dtype=torch.float64, fraction: float = MEMORY_FRACTION
) -> tuple[int, int]:
    """(largest batch that fits in `fraction` of the free memory, estimated bytes per member)."""
    per_member = max(bytes_per_member(prior, field_shape, device, dtype), 1)
    return max(1, int(fraction * available_bytes(device)) // per_member), per_member
