"""Metropolis-adjusted Langevin moves at one noise level, towards p(x_sigma | y).

`guided` approximates p(x0 | x_sigma) by a Gaussian at every level; on a non-Gaussian prior that
biases whole maps (docs/samplers.md, "Against its own prior"), most where sigma is large and
p(x0 | x_sigma) is nearly the prior. These moves act at one lower level sigma, on the target

    pi(x) ∝ p_sigma(x) N(y_w; B D(x, sigma), I + B C_sigma B^T),   C_sigma = sigma^2 P / (P + sigma^2)

with p_sigma the prior noised to sigma (score (D - x) / sigma^2, the prior's own), D its denoiser
and P the prior's variance per Fourier mode (`Prior.second_moment_power`). For a Gaussian prior
this is p(x_sigma | y) exactly; for others only the spread of p(x0 | x_sigma) inside the
likelihood is approximated, by a stationary one, an error that vanishes as sigma -> 0, while the
prior's shape enters exactly through p_sigma and D. Below the level `guided` continues.

The acceptance needs log p_sigma(x') - log p_sigma(x), which a denoiser does not give; it is
taken as the line integral of the score along the segment (the line-integral energy of Sjöberg
et al. 2023, "MCMC-correction of score-based diffusion models") by 4-point Gauss-Lobatto: the
two end nodes are evaluated anyway, the two inner ones cost a denoiser call each. The trapezoid
rule on the end nodes alone, used before, is exact for a Gaussian prior but not where a move
crosses between modes: 40 moves at sigma = 0.5 from 1,024 exact draws of the eight-amplitude
mixture (`references/problems.py`, "loguniform") emptied its two faintest components (their
share 0.264 -> 0.008) and raised the mean power by 24%; with Gauss-Lobatto 0.240 (binomial se
0.014) and +1.3% (`benchmarks/move_invariance.py`). The gradient of the likelihood term needs
dD/dx^T, one vector-Jacobian product: four prior evaluations per move. The proposal is
preconditioned by a Fourier-diagonal guess of the target's covariance. Each member adapts its own
step (towards acceptance 0.57, Roberts and Rosenthal 1998) during the first half of the moves,
from its own stream only, so a member does not depend on its batch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from forward_models.fourier import fourier_filter

from ..likelihood import WhitenedLinearGaussian
from ..linalg import conjugate_gradient_with_image
from ..priors.base import Prior

# Prior evaluations per member and move with the scale moves (a Langevin and a scale proposal;
# measured: 100 moves added 804 per sample on the 24 x 32 lensing problems).
EVALUATIONS_PER_MOVE = 8
TARGET_ACCEPTANCE = 0.574  # optimal MALA acceptance for product targets (Roberts & Rosenthal)
# Below this the step adaptation failed (a rough or non-conservative learned score): the moves
# then barely move the members, and the run says so.
LOW_ACCEPTANCE = 0.2


class RefinementWarning(UserWarning):
    """The refinement moves were rarely accepted: the ensemble is guided's, barely refined."""


def check_acceptance(statistics: MoveStatistics) -> None:
    rate = statistics.as_dict()["acceptance"]
    if not rate >= LOW_ACCEPTANCE:
        warnings.warn(
            f"refinement moves at sigma = {statistics.sigma:.3g} accepted {rate:.0%} of "
            f"proposals (below {LOW_ACCEPTANCE:.0%}): the members barely moved from guided's",
            RefinementWarning,
            stacklevel=3,
        )


@dataclass
class MoveStatistics:
    """Acceptance of the moves over the run (every member, every move after adaptation)."""

    moves: int = 0  # per member
    sigma: float = float("nan")  # the level they act at
    proposed: int = 0
    accepted: int = 0
    scale_proposed: int = 0
    scale_accepted: int = 0
    steps: list[float] = field(default_factory=list)  # members' final step sizes

    def add(self, other: MoveStatistics) -> None:
        self.moves, self.sigma = other.moves, other.sigma
        self.proposed += other.proposed
        self.accepted += other.accepted
        self.scale_proposed += other.scale_proposed
        self.scale_accepted += other.scale_accepted
        self.steps.extend(other.steps)

    def as_dict(self) -> dict:
        rate = self.accepted / self.proposed if self.proposed else float("nan")
        scale = self.scale_accepted / self.scale_proposed if self.scale_proposed else float("nan")
        steps = sorted(self.steps) or [float("nan")]
        return {
            "moves": self.moves,
            "sigma": self.sigma,
            "acceptance": rate,
            "scale_acceptance": scale,
            "step_size_range": [steps[0], steps[-1]],
        }


def dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-member inner products, shape (members,)."""
    return (a * b).flatten(1).sum(1)


def noised_posterior_mala(
    prior: Prior,
    likelihood: WhitenedLinearGaussian,
    sigma: float,
    moves: int,
    randn: Callable[[], Tensor],
    rand: Callable[[], Tensor],
    statistics: MoveStatistics | None = None,
    initial_step: float = 0.1,
    scale_moves: bool = True,
    randn_scalar: Callable[[], Tensor] | None = None,
    power_scale: float = 1.0,
    energy: str = "lobatto",
    wiener_mean: bool = False,
    on_move: Callable[[Tensor], None] | None = None,
) -> Callable[[Tensor], Tensor]:
    """x (members at level sigma) -> x after `moves` MALA moves on p(x_sigma | y).

    `randn()` draws one standard normal field per member, `rand()` one uniform per member, each
    from the member's own stream. `power_scale` multiplies the prior's spectrum in C_sigma (the
    `twisted` sampler's fitted amplitude). `energy` "trapezoid" (end nodes only) is kept for
    `benchmarks/move_invariance.py`, which measures why it is not the default. `wiener_mean`
    puts W x (W = P / (P + sigma^2), the Wiener filter) in the data term's mean instead of
    D(x): the `twisted` sampler's twist at high noise levels, which its moves must keep.
    `on_move(x)`, if given, is called after every move (progress).
    """
    sigma2 = sigma**2
    warm: dict[str, Tensor] = {}
    filters: dict[str, Tensor] = {}

    def gaussian_filters(x: Tensor) -> tuple[Tensor, Tensor]:
        """W = P / (P + sigma^2) and C = P sigma^2 / (P + sigma^2) on the FFT grid."""
        if not filters:
            power = prior.second_moment_power(tuple(x.shape[-3:]))
            if power is not None:
                power = power_scale * power
            if power is None:  # the flat-prior limit: N(y_w; B x, I + sigma^2 B B^T)
                power = torch.full(x.shape[-3:], math.inf, dtype=torch.float64)
            power = power.to(x)
            gain = torch.where(power.isinf(), 1.0, power / (power + sigma2))
            filters.update(power=power, gain=gain, cov=gain * sigma2)
        return filters["gain"], filters["cov"]

    def data_term(x: Tensor, x0_hat: Tensor, vjp) -> tuple[Tensor, Tensor]:
        """log N(y_w; B D(x), I + B C B^T) up to a constant, and its gradient in x, with
        `x0_hat` = D(x) and `vjp` its Jacobian's transpose. (With W x in place of D(x), 200 moves
        from exact p(x_sigma | y) draws of one amplitude-mixture observation at 1 data std moved
        their mean log power by +0.088 instead of +0.031.)"""
        _, cov = gaussian_filters(x)
        r = likelihood.residual(x0_hat)

        def matvec(v: Tensor) -> tuple[Tensor, Tensor]:
            bt_v = likelihood.B_adjoint(v)
            return v + likelihood.B(fourier_filter(bt_v, cov)), bt_v

        u, bt_u, _ = conjugate_gradient_with_image(matvec, r, warm.get("u"), 1e-10, 200)
        warm["u"] = u
        if bt_u is None:  # converged at the warm start with no step: B^T u directly
            bt_u = likelihood.B_adjoint(u)
        grad = vjp(bt_u)
        return -0.5 * dot(r, u), grad

    def preconditioner(x: Tensor) -> Tensor:
        gain, cov = gaussian_filters(x)
        w2 = likelihood.precision_diagonal()
        if w2 is None:
            rho = torch.zeros_like(gain)
        else:
            # mean data precision per pixel, each entry's information shared by its row's pixels
            row = likelihood.mean_row_norm2()
            rho = (
                float(w2.sum()) * row / x[0].numel() / (1.0 + cov * float(w2[w2 > 0].mean()) * row)
            )
        return 1.0 / (1.0 / (filters["power"] + sigma2) + gain.square() * rho)

    def move(x: Tensor) -> Tensor:
        if moves == 0:
            return x
        m = preconditioner(x)
        sqrt_m = m.sqrt()
        n = x.shape[0]
        log_step = torch.full((n,), math.log(initial_step), dtype=torch.float64, device=x.device)
        adapt_until = moves // 2

        def state(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            if wiener_mean:
                gain, _ = gaussian_filters(z)
                x0_hat = prior.denoise(z, sigma)
                log_lik, grad_lik = data_term(
                    z, fourier_filter(z, gain), lambda v: fourier_filter(v, gain)
                )
            else:
                x0_hat, cov_product = prior.linearize(z, sigma)
                log_lik, grad_lik = data_term(z, x0_hat, lambda v: cov_product(v) / sigma2)
            score = (x0_hat - z) / sigma2
            return score, log_lik, score + grad_lik

        def expand(v: Tensor) -> Tensor:
            return v.view(-1, *([1] * (x.dim() - 1)))

        # Scale moves: x -> T_a x = F^-1 exp(a w) F x, w = M / (P + sigma^2) the share of each
        # Fourier mode's prior variance the data leave, so the amplitude of what the data do not
        # pin down moves as one; a ~ N(0, tau^2) is symmetric and T_a T_b = T_{a+b}, so the
        # acceptance needs only the Jacobian exp(a sum w) and log pi along the path, integrated
        # by 4-point Gauss-Lobatto (endpoints reused).
        share = (m / (filters["power"] + sigma2)).clamp(max=1.0).expand(x.shape[1:])
        share_sum = float(share.sum())
        # Without a spectrum (the flat-prior limit) every share is zero and every scale proposal
        # the identity: skip them rather than pay 4 evaluations per move for nothing.
        scaling = scale_moves and share_sum > 0
        log_tau = torch.full((n,), math.log(0.02), dtype=torch.float64, device=x.device)
        lobatto = ((0.5 - 0.5 / math.sqrt(5), 5 / 12), (0.5 + 0.5 / math.sqrt(5), 5 / 12))

        def scale_move(i, x, score, log_lik, grad):
            a = log_tau.exp() * (
                randn().flatten(1)[:, 0] if randn_scalar is None else randn_scalar()
            )
            a_b = expand(a)
            proposal = fourier_filter(x, (a_b.view(-1, 1, 1, 1) * share).exp())
            score_p, log_lik_p, grad_p = state(proposal)
            path = (1 / 12) * dot(score, a_b * fourier_filter(x, share))
            path = path + (1 / 12) * dot(score_p, a_b * fourier_filter(proposal, share))
            for t, weight in lobatto:
                x_t = fourier_filter(x, (t * a_b.view(-1, 1, 1, 1) * share).exp())
                s_t = (prior.denoise(x_t, sigma) - x_t) / sigma2
                path = path + weight * dot(s_t, a_b * fourier_filter(x_t, share))
            log_alpha = path + log_lik_p - log_lik + a * share_sum
            accept = torch.isfinite(log_alpha) & (rand().log() < log_alpha)
            keep = expand(accept)
            alpha = log_alpha.clamp(max=0).exp().nan_to_num(0.0)
            return (
                torch.where(keep, proposal, x), torch.where(keep, score_p, score),
                torch.where(accept, log_lik_p, log_lik), torch.where(keep, grad_p, grad),
                alpha, accept,
            )  # fmt: skip

        def path_energy(x, proposal, score, score_p):
            """log p_sigma(x') - log p_sigma(x): the score integrated along the segment."""
            step = proposal - x
            if energy == "trapezoid":
                return 0.5 * dot(score + score_p, step)
            total = (1 / 12) * dot(score + score_p, step)
            for t, weight in lobatto:
                x_t = x + t * step
                total = total + weight * dot((prior.denoise(x_t, sigma) - x_t) / sigma2, step)
            return total

        with torch.no_grad():
            score, log_lik, grad = state(x)
            for i in range(moves):
                if scaling:
                    x, score, log_lik, grad, alpha_s, accept_s = scale_move(
                        i, x, score, log_lik, grad
                    )
                    if i < adapt_until:
                        log_tau = log_tau + (alpha_s - 0.44) / math.sqrt(i + 1)
                    elif statistics is not None:
                        statistics.scale_proposed += n
                        statistics.scale_accepted += int(accept_s.sum())
                h = expand(log_step.exp())
                mean_fwd = x + h * fourier_filter(grad, m)
                proposal = mean_fwd + (2 * h).sqrt() * fourier_filter(randn(), sqrt_m)
                score_p, log_lik_p, grad_p = state(proposal)
                mean_back = proposal + h * fourier_filter(grad_p, m)
                # log q(x | x') - log q(x' | x) with q Gaussian of covariance 2 h M
                back, fwd = x - mean_back, proposal - mean_fwd
                log_q = -(
                    dot(back, fourier_filter(back, 1 / m)) - dot(fwd, fourier_filter(fwd, 1 / m))
                ) / (4 * log_step.exp())
                log_prior = path_energy(x, proposal, score, score_p)
                log_alpha = log_prior + log_lik_p - log_lik + log_q
                u = rand()
                accept = torch.isfinite(log_alpha) & (u.log() < log_alpha)
                keep = expand(accept)
                x = torch.where(keep, proposal, x)
                score = torch.where(keep, score_p, score)
                grad = torch.where(keep, grad_p, grad)
                log_lik = torch.where(accept, log_lik_p, log_lik)
                alpha = log_alpha.clamp(max=0).exp().nan_to_num(0.0)
                if i < adapt_until:
                    log_step = log_step + (alpha - TARGET_ACCEPTANCE) / math.sqrt(i + 1)
                elif statistics is not None:
                    statistics.proposed += n
                    statistics.accepted += int(accept.sum())
                if on_move is not None:
                    on_move(x)
        if statistics is not None:
            statistics.steps.extend(log_step.exp().tolist())
        return x

    return move
