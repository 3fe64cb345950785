r"""Exact errors of a sampler on a Gaussian: the closed-form PF-ODE map and the exact law of the output.

For data ``N(mu, diag(lam))`` the denoiser is affine, so

- the PF-ODE map from ``s`` to ``t`` has the closed form ``x_t = a_t mu + sqrt(c_t / c_s) (x_s - a_s mu)``
  with ``c_t = a_t^2 lam + sigma_t^2``: a **deterministic** sampler's pathwise error needs no reference solve;
- every sampler is an affine recursion in its state and its step normals, so its output started from the
  exact marginal ``N(a mu, c)`` at the grid's first time is Gaussian, with mean ``F(m_0, 0)`` and variance
  ``J_x v_0 J_x^T + sum_j J_{z_j} J_{z_j}^T`` (``F`` the sampler's own ``init``/``step`` scanned over the
  grid with the normals as inputs, ``J`` its constant Jacobians). The **weak error in law** (error of the
  mean plus error of the variance against the exact marginal at the grid's last time) is then exact, free
  of Monte-Carlo noise, and its slope in ``log(steps)`` is the weak order.

``tests/test_sampler_orders.py`` checks the driver against ``simulate`` (same normals, same output) and the
moments against Monte Carlo.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ..sampling import StepNoise, get_sampler, simulate
from ..scores.mixture import GaussianMixture


__all__ = ["gaussian_law_error", "gaussian_pathwise_error", "scan_sampler"]


def scan_sampler(
    sampler: Any, score: Any, grid: Float[Array, " n"], state: Any, normals: Float[Array, "m draws ..."]
) -> Array:
    """``sampler``'s own kernel scanned over ``grid`` from ``state``, step ``j`` drawing the normals
    ``normals[j]`` (``draws = sampler.draws_per_step()`` of them, at least one, each of the particle's shape;
    through :class:`~diffsim.sampling.StepNoise`, which the kernels read as a key).

    Args:
        sampler: a fixed-grid sampler instance, already configured for the grid
            (``get_sampler(name).configure(len(grid) - 1)``).
        score: the score passed to every ``step``.
        grid: the time grid, shape ``(m + 1,)``.
        state: the kernel state at ``grid[0]``, e.g. ``sampler.init(grid[0], x)`` for one particle ``x``.
        normals: the step normals, shape ``(m, draws, ...)`` with ``...`` the particle's shape.

    Returns:
        ``sampler.position`` of the final state (the particle at ``grid[-1]``).
    """

    def body(st, inp):
        z, t, t_next = inp
        return sampler.step(StepNoise(z), st, t, t_next, score), None

    state, _ = jax.lax.scan(body, state, (normals, grid[:-1], grid[1:]))
    return sampler.position(state)


def _check_gaussian(score: Any) -> None:
    if not isinstance(score, GaussianMixture) or score.weights.shape != (1,) or score.eigvecs is not None:
        raise ValueError(
            "score must be a one-component diffsim.GaussianMixture with a diagonal covariance (the exact "
            "Gaussian)."
        )


def gaussian_pathwise_error(
    score: GaussianMixture, method: str, grid: Float[ArrayLike, " n"], x: Float[ArrayLike, "N d"]
) -> float:
    """Max-abs error of the deterministic sampler ``method`` on ``grid`` from the points ``x`` at
    ``grid[0]``, against the closed-form PF-ODE map of the Gaussian ``score`` to ``grid[-1]``.

    Args:
        score: a one-component diagonal :class:`~diffsim.GaussianMixture` (its process is used).
        method: a registered deterministic sampler name.
        grid: a decreasing time grid.
        x: starting points at ``grid[0]``, shape ``(N, d)``.

    Returns:
        ``max |x_sampler - x_exact|`` over particles and coordinates, a float.
    """
    _check_gaussian(score)
    grid, x = jnp.asarray(grid), jnp.asarray(x)
    p = score.process
    mu, lam = score.means[0], score.eigvals[0]
    s, t = grid[0], grid[-1]
    cs, ct = p.alpha(s) ** 2 * lam + p.sigma2(s), p.alpha(t) ** 2 * lam + p.sigma2(t)
    ref = p.alpha(t) * mu[None, :] + jnp.sqrt(ct / cs)[None, :] * (x - p.alpha(s) * mu[None, :])
    out = simulate(score, method, grid, x=x, key=jax.random.key(0)).x
    return float(jnp.max(jnp.abs(out - ref)))


def gaussian_law_error(score: GaussianMixture, method: str, grid: Float[ArrayLike, " n"]) -> float:
    """Weak error in law of ``method`` on ``grid``, exactly: ``|mean - m| + |var - v|`` of the output started
    from the exact marginal at ``grid[0]``, against the exact marginal ``N(m, v)`` at ``grid[-1]``.

    Args:
        score: a one-component 1-D :class:`~diffsim.GaussianMixture`.
        method: a registered fixed-grid sampler name (stochastic or not).
        grid: a decreasing time grid.

    Returns:
        ``|mean - m| + |var - v|``, a float.
    """
    _check_gaussian(score)
    if score.means.shape[1] != 1:
        raise ValueError(f"score must be 1-D for gaussian_law_error, got dimension {score.means.shape[1]}.")
    grid = jnp.asarray(grid)
    n = grid.shape[0] - 1
    p = score.process
    mu, lam = score.means[0, 0], score.eigvals[0, 0]

    def marginal(t):
        return p.alpha(t) * mu, p.alpha(t) ** 2 * lam + p.sigma2(t)

    sampler = get_sampler(method).configure(n)
    m0, v0 = marginal(grid[0])

    def out(x0, zs):
        return scan_sampler(sampler, score, grid, sampler.init(grid[0], x0), zs)[0]

    x0, zs = jnp.full((1,), m0), jnp.zeros((n, max(sampler.draws_per_step(), 1), 1), grid.dtype)
    jx, jz = jax.jacrev(out, argnums=(0, 1))(x0, zs)
    mean, var = out(x0, zs), jx[0] ** 2 * v0 + jnp.sum(jz**2)
    m_true, v_true = marginal(grid[-1])
    return float(jnp.abs(mean - m_true) + jnp.abs(var - v_true))
