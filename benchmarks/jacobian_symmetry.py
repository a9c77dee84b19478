"""How far a trained denoiser's Jacobian is from symmetric, per noise level.

An exact Tweedie denoiser has a symmetric Jacobian (sigma^2 dD/dx = Cov[x0 | x_sigma]); a network's
need not, and `guided` multiplies by its transpose (`Prior.linearize`, one vector-Jacobian
product). Per noise level: |J v - J^T v| / |(J + J^T) v / 2| for white v at prior draws plus
noise (median and largest over maps). `symmetrise_jacobian(prior)` makes a prior's covariance
products use (J + J^T) / 2 instead (a Jacobian-vector product by double backward on top of the
vector-Jacobian one), for `self_consistency.py --symmetrise-jacobian`.

    OMP_NUM_THREADS=1 python benchmarks/jacobian_symmetry.py --prior PRIOR.pt
"""

from __future__ import annotations

import argparse
import types

import torch
from common import cpu_threads

from posterior_diffusion.priors.base import append_dims
from posterior_diffusion.priors.network import NetworkPrior

LEVELS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # noise levels in data std


def products_on_graph(d: torch.Tensor, x_in: torch.Tensor, v: torch.Tensor):
    """(J v, J^T v) of d = D(x_in) with its graph kept: J v by double backward,
    d(J^T u . v)/du."""
    with torch.enable_grad():
        u = torch.zeros_like(d, requires_grad=True)
        (jt_u,) = torch.autograd.grad(d, x_in, u, create_graph=True, retain_graph=True)
        (jv,) = torch.autograd.grad(jt_u, u, v, retain_graph=True)
        (jt_v,) = torch.autograd.grad(d, x_in, v, retain_graph=True)
    return jv.detach(), jt_v


def denoised_with_graph(prior, x: torch.Tensor, sigma):
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        return prior.denoise(x_in, sigma), x_in


def symmetrise_jacobian(prior) -> None:
    """Make `prior.linearize` use sigma^2 (J + J^T) / 2 (in place; benchmarks only)."""

    def linearize(self, x, sigma):
        d, x_in = denoised_with_graph(self, x, sigma)
        sigma2 = append_dims(torch.as_tensor(sigma, dtype=x.dtype, device=x.device), x.ndim) ** 2

        def cov(v):
            jv, jt_v = products_on_graph(d, x_in, v)
            return sigma2 * 0.5 * (jv + jt_v)

        return d.detach(), cov

    prior.linearize = types.MethodType(linearize, prior)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prior", required=True)
    parser.add_argument("--maps", type=int, default=8)
    args = parser.parse_args()
    cpu_threads()
    prior = NetworkPrior.from_file(args.prior)
    shape = tuple(int(n) for n in prior.metadata["field_shape"])
    x0 = prior.sample(args.maps, generator=torch.Generator().manual_seed(1), field_shape=shape)
    x0 = x0.float()
    noise = torch.Generator().manual_seed(2)
    for level in LEVELS:
        sigma = level * prior.data_std()
        x = x0 + sigma * torch.randn(x0.shape, generator=noise)
        v = torch.randn(x0.shape, generator=noise)
        jv, jt_v = products_on_graph(*denoised_with_graph(prior, x, sigma), v)
        ratio = (jv - jt_v).flatten(1).norm(dim=1) / (0.5 * (jv + jt_v)).flatten(1).norm(dim=1)
        print(
            f"{level:5.1f} data std: |Jv - J^T v| / |sym v| median {float(ratio.median()):.3f}, "
            f"largest {float(ratio.max()):.3f}"
        )


if __name__ == "__main__":
    main()
