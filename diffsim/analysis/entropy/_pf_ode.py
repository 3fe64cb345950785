"""The model density along the probability-flow ODE (instantaneous change of variables) and the exact
change of variables through a finite-step deterministic sampler."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validation import as_float_array, check_key, check_positive_int, is_concrete
from ...sampling import grids as _grids, log_likelihood, simulate
from ...scores._base import AbstractScore
from ._closed_forms import prior_entropy
from ._estimate import EntropyEstimate, _pushforward_estimate


def _zero_log_prob(y):
    return jnp.zeros((), y.dtype)


def model_log_density(
    score: AbstractScore,
    x: Float[Array, "N d"],
    *,
    t: float | None = None,
    divergence: str = "exact",
    n_probes: int = 1,
    key: jax.Array | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
) -> Float[Array, " N"]:
    r"""``log q_t(x)`` of the PF-ODE model of ``score`` (any score, guided included) started from the
    process prior at ``t_max``: ``log p_prior(x_T) + \int_t^T div v`` (:func:`diffsim.log_likelihood`).
    ``t`` defaults to ``t_min``; ``divergence="hutchinson"`` needs ``key``.

    Args:
        score: any diffsim score; its PF-ODE velocity defines the model.
        x: points at time ``t``, shape ``(N, d)``.
        t: the time of ``x``; ``None`` uses ``process.t_min``.
        divergence: ``"exact"`` (Jacobian trace; small ``d``) or ``"hutchinson"`` (stochastic trace).
        n_probes: Rademacher probes per point for ``"hutchinson"``.
        key: PRNG key of the Hutchinson probes (``None`` for ``"exact"``).
        rtol: relative tolerance of the adaptive ODE solver.
        atol: absolute tolerance of the adaptive ODE solver.

    Returns:
        ``log q_t(x)``, shape ``(N,)``.
    """
    p = score.process
    t0 = p.t_min if t is None else t
    lp, _ = log_likelihood(
        score, x, t0=t0, t1=p.t_max, divergence=divergence, n_probes=n_probes, key=key, rtol=rtol, atol=atol
    )
    return lp


def pf_ode_entropy(
    score: AbstractScore,
    *,
    key: jax.Array | None = None,
    n: int | None = None,
    z: Float[Array, "N d"] | None = None,
    weights: Float[Array, " N"] | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    divergence: str = "exact",
    n_probes: int = 1,
    rtol: float | None = None,
    atol: float | None = None,
) -> EntropyEstimate:
    r"""Entropy of the continuous-limit DDIM output of ``score`` by the instantaneous change of variables.

    Starting points ``z`` at ``t_start`` (default ``t_max``) are drawn from the process prior (``n`` with
    ``key``) or given (``z``, with optional quadrature ``weights`` summing to one, e.g. Gauss-Hermite
    nodes). Each is carried by the PF-ODE to ``x`` at ``t_end`` (default ``t_min``) while integrating the
    divergence (:func:`diffsim.log_likelihood`, run backwards in time), and

        log q(x) = log p_prior(z) + \int_{t_end}^{t_start} div v(t, x_t) dt,     h = -E log q(X).

    The entropy is estimated as ``h(prior) - E[\int_{t_end}^{t_start} div v dt]`` (the same expectation
    with the prior's part in closed form; the per-sample ``log q`` are returned as they are), which removes
    the sampling noise of ``log p_prior(z)``: the standard error is that of the log-determinant alone (zero
    for an affine flow, e.g. unguided DDIM of a Gaussian class).

    ``divergence``: ``"exact"`` (closed form / Jacobian trace; small ``d``) or ``"hutchinson"`` (needs
    ``key``; ``n_probes`` Rademacher probes). ``rtol``/``atol`` of the adaptive solver default to 1e-8 in
    float64 and 1e-5 in float32. Returns an :class:`EntropyEstimate` whose ``x`` are the output samples
    (the DDIM continuous-limit samples themselves).

    Args:
        score: any diffsim score (guided scores included).
        key: PRNG key of the prior draws (with ``n``) and of the Hutchinson probes; may be ``None`` when
            ``z`` is given and ``divergence="exact"``.
        n: number of prior draws; give exactly one of ``n`` and ``z``.
        z: starting points at ``t_start``, shape ``(N, d)``.
        weights: quadrature weights ``(N,)`` summing to one; ``None`` is the plain Monte Carlo mean.
        t_start: start time (must exceed ``t_end``); ``None`` uses ``process.t_max``.
        t_end: end time; ``None`` uses ``process.t_min``.
        divergence: ``"exact"`` or ``"hutchinson"``.
        n_probes: Rademacher probes per point for ``"hutchinson"``.
        rtol: relative tolerance of the adaptive solver (``None``: 1e-8 in float64, 1e-5 in float32).
        atol: absolute tolerance of the adaptive solver (same defaults).
    """
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim score, got {type(score).__name__}.")
    p = score.process
    t0 = p.t_max if t_start is None else float(t_start)
    t1 = p.t_min if t_end is None else float(t_end)
    if not t0 > t1:
        raise ValueError(f"Need t_start > t_end, got t_start={t0}, t_end={t1}.")
    if (z is None) == (n is None):
        raise ValueError(
            "Pass exactly one of `z` (starting points) or `n` (number of prior draws, with `key`)."
        )
    k_probe = None
    if z is None:
        key = check_key(key)
        k_prior, k_probe = jr.split(key)
        z = p.prior_sample(k_prior, (check_positive_int(n, "n"), score.dim))
    else:
        z = as_float_array(z, "z", ndim=2)
        if z.shape[1] != score.dim:
            raise ValueError(f"`z` must have shape (N, {score.dim}), got {z.shape}.")
        if divergence == "hutchinson":
            k_probe = check_key(key)
    if weights is not None:
        weights = as_float_array(weights, "weights", ndim=1)
        if weights.shape[0] != z.shape[0]:
            raise ValueError(f"`weights` must have shape ({z.shape[0]},), got {weights.shape}.")
        if is_concrete(weights) and abs(float(jnp.sum(weights)) - 1.0) > 1e-6:
            raise ValueError("`weights` must sum to one.")
    tol = 1e-8 if z.dtype == jnp.float64 else 1e-5
    delta, x = log_likelihood(
        score,
        z,
        t0=t0,
        t1=t1,
        divergence=divergence,
        n_probes=n_probes,
        key=k_probe,
        rtol=tol if rtol is None else rtol,
        atol=tol if atol is None else atol,
        prior_log_prob=_zero_log_prob,
    )
    # delta = \int_{t0}^{t1} div v dt = -\int_{t1}^{t0} div v dt (integrated backwards)
    log_prior = p.prior_log_prob(z)
    logq = log_prior - delta
    return _pushforward_estimate(logq, log_prior, prior_entropy(p, score.dim), weights, x)


@eqx.filter_jit
def _sampler_map(score, method, grid, z, key):
    def one(zi):
        return simulate(score, method, grid, x=zi[None], key=key).x[0]

    def with_logdet(zi):
        jac = jax.jacfwd(one)(zi)
        return one(zi), jnp.linalg.slogdet(jac)[1]

    return jax.vmap(with_logdet)(z)


def sampler_map_entropy(
    score: AbstractScore,
    grid: ArrayLike | int,
    *,
    key: jax.Array,
    n: int | None = None,
    z: Float[Array, "N d"] | None = None,
    weights: Float[Array, " N"] | None = None,
    method: str = "ddim",
) -> EntropyEstimate:
    r"""Entropy of a *finite-step deterministic* sampler's output by the exact change of variables.

    The sampler (``"ddim"`` with ``eta = 0``, ``"euler"``, ``"heun"``, ``"dpm_solver_2m"``) is a map
    ``z -> x = F(z)``; with ``z ~ N(0, prior_std^2 I)``, ``log q(x) = log p_prior(z) - log|det dF/dz|`` with
    the Jacobian by forward-mode autodiff through the whole discrete map (cost ``O(d)`` passes: small
    ``d``), and ``h = h(prior) + E log|det dF/dz|``. ``grid`` as in :func:`diffsim.simulate`.

    Args:
        score: any diffsim score.
        grid: the sampler's time grid (a 1-D array, decreasing), or an integer number of uniform steps.
        key: PRNG key (split into the prior draws and the sampler key).
        n: number of prior draws; give exactly one of ``n`` and ``z``.
        z: starting points at ``t_max``, shape ``(N, d)``.
        weights: quadrature weights ``(N,)`` summing to one; ``None`` is the plain Monte Carlo mean.
        method: a deterministic sampler name (stochastic ones raise ``ValueError``).

    Returns:
        An :class:`EntropyEstimate` whose ``x`` are the sampler's outputs.
    """
    if method in ("ddpm", "euler_maruyama", "pc", "sde"):
        raise ValueError(f"`method` must be a deterministic sampler (got the stochastic {method!r}).")
    key = check_key(key)
    p = score.process
    if (z is None) == (n is None):
        raise ValueError("Pass exactly one of `z` or `n`.")
    k_prior, k_run = jr.split(key)
    if z is None:
        z = p.prior_sample(k_prior, (check_positive_int(n, "n"), score.dim))
    z = as_float_array(z, "z", ndim=2)
    if isinstance(grid, (int, np.integer)):
        grid = _grids.uniform(p, int(grid))
    grid = as_float_array(grid, "grid", ndim=1)
    x, logdet = _sampler_map(score, method, grid, z, k_run)
    log_prior = p.prior_log_prob(z)
    return _pushforward_estimate(log_prior - logdet, log_prior, prior_entropy(p, score.dim), weights, x)
