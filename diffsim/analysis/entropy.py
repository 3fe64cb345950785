r"""Differential entropy by independent routes (all in nats).

Each route is usable on its own; the guidance study puts them side by side.

**1. Closed forms for Gaussians.** ``h(N(mu, Sigma)) = 1/2 log det(2 pi e Sigma)``; under a process of
:mod:`diffsim.processes` the marginal of ``N(mu, Sigma)`` is ``N(alpha_t mu, alpha_t^2 Sigma + sigma_t^2 I)``,
so ``h(p_t) = 1/2 sum_j log(2 pi e (alpha_t^2 lambda_j + sigma_t^2))`` (``lambda_j`` eigenvalues of Sigma).

**2. The model's own density along the probability-flow ODE** (instantaneous change of variables; Chen et
al. 2018, Song et al. 2021 eq. 39). For the PF-ODE ``dx/dt = v(t, x) = f(t) x - 1/2 g(t)^2 s(t, x)`` of
*any* score ``s`` (guided ones included), ``d/dt log q_t(x_t) = -div v(t, x_t)`` along each trajectory, so
a particle started at ``z ~ N(0, I)`` at ``T`` and carried to ``x`` at ``t_end`` has

    log q_{t_end}(x) = log p_prior(z) + \int_{t_end}^{T} div v(t, x_t) dt,

and the entropy of the DDIM (continuous-limit) output is ``h = -E log q_{t_end}(X) = h(prior) -
E \int_{t_end}^{T} div v dt`` (estimated in the second form: the prior's part is a closed form, so only the
log-determinant carries Monte Carlo noise, none for an affine flow). ``div v`` is exact
(``score.velocity_divergence``; closed form for mixtures and guided mixtures) for small ``d`` or
Hutchinson's estimator ``eps^T (dv/dx) eps`` with Rademacher probes for large ``d``. Built on
:func:`diffsim.log_likelihood` (integrated backwards from ``T``). :func:`sampler_map_entropy` does the
same for a *finite-step* deterministic sampler: ``log q(x) = log p_prior(z) - log|det dx/dz|`` with the
exact Jacobian of the discrete map (autodiff through the sampler; small ``d``).

**3. Entropy-rate identity along a path of marginals.** For ``dX = f(X, t) dt + g(t) dW`` with marginals
``p_t``, the Fokker-Planck equation and ``E[Delta log p] = -E|grad log p|^2`` give

    dH/dt = E[div f] + 1/2 g^2 J(p_t),       J(p_t) = E |grad log p_t(X_t)|^2   (Fisher information);

for VP (``f = -beta x / 2``): ``dH/dt = beta (J - d) / 2``; for VE: de Bruijn's ``dH/dt = g^2 J / 2``.
:func:`marginal_path_entropy` integrates it from ``T`` back to ``t_0`` with ``J`` by Monte Carlo from the
exact marginals. With zero diffusion (a deterministic flow ``dx/dt = v``, e.g. a guided DDIM) the identity
reads ``dH/dt = E[div v]`` (Liouville); :func:`flow_entropy_rate` integrates it along simulated particles.

**4. Kozachenko-Leonenko k-nearest-neighbour estimator** (Kozachenko & Leonenko 1987; Euclidean norm):

    H_k = psi(n) - psi(k) + log V_d + (d / n) sum_i log rho_{k,i},     V_d = pi^{d/2} / Gamma(d/2 + 1),

``rho_{k,i}`` the distance from ``x_i`` to its ``k``-th nearest neighbour. ``V_d`` is the volume of the
*unit* ball: using the radius-one ball volume with *diameters* ``2 rho`` (as ``entropy_estimators.get_h``
with ``norm='euclidean'`` does) adds a spurious ``d log 2``. The bias-corrected option is the weighted
estimator of Berrett, Samworth & Yuan (2019, Ann. Statist. 47(1)): ``H^w = sum_j w_j H_j`` with
``sum_j w_j = 1`` and ``sum_j w_j Gamma(j + 2l/d) / Gamma(j) = 0`` for ``l = 1..floor(d/4)``, which
cancels the leading ``n^{-2l/d}`` bias terms (for ``d <= 3`` it is the plain estimator). Distances are
computed in chunks (no ``n x n`` matrix) and refined exactly for the nearest candidates, so float32
cancellation in ``|x|^2 + |y|^2 - 2 x.y`` does not corrupt small distances.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import as_float_array, check_key, check_positive_int, is_concrete
from ..processes import AbstractProcess
from ..sampling import log_likelihood, simulate
from ..scores._base import AbstractScore


__all__ = [
    "EntropyEstimate",
    "PathEntropy",
    "analytic_entropy",
    "entropy_rate",
    "fisher_information",
    "flow_entropy_rate",
    "gaussian_entropy",
    "gaussian_marginal_entropy",
    "knn_distances",
    "knn_entropy",
    "knn_weights",
    "marginal_path_entropy",
    "model_log_density",
    "pf_ode_entropy",
    "prior_entropy",
    "sampler_map_entropy",
    "unit_ball_log_volume",
]

_LOG_2PI_E = math.log(2 * math.pi * math.e)


class EntropyEstimate(eqx.Module):
    """An entropy estimate (nats) with its Monte Carlo standard error.

    - ``entropy``: the estimate ``-sum_i w_i log q(x_i)`` (uniform weights for Monte Carlo);
    - ``stderr``: standard error of the mean (0 for quadrature weights);
    - ``log_density``: per-sample ``log q(x_i)``, shape ``(N,)``;
    - ``x``: the samples ``(N, d)`` the densities refer to (``None`` when not kept).
    """

    entropy: Float[Array, ""]
    stderr: Float[Array, ""]
    log_density: Float[Array, " N"]
    x: Any = None


class PathEntropy(eqx.Module):
    """Entropy along a path of marginals from the entropy-rate identity.

    - ``times``: diffusion times ``(S,)`` (decreasing along reverse paths);
    - ``entropy``: ``H`` at each time; ``entropy[-1]`` is the end point of the path;
    - ``rate``: ``dH/dt`` at each time (forward-time derivative);
    - ``fisher``: Fisher information ``J(p_t)`` (marginal paths) or ``E[div v]`` (flows) at each time.
    """

    times: Float[Array, " S"]
    entropy: Float[Array, " S"]
    rate: Float[Array, " S"]
    fisher: Float[Array, " S"]


# =====================================================================================================
# closed forms
# =====================================================================================================
def gaussian_entropy(cov: ArrayLike, dim: int | None = None) -> Float[Array, ""]:
    r"""``h(N(mu, Sigma)) = 1/2 log det(2 pi e Sigma)``.

    ``cov``: a scalar variance (isotropic; give ``dim``), a vector of variances ``(d,)`` (diagonal), or a
    matrix ``(d, d)`` (symmetric positive definite).
    """
    c = as_float_array(cov, "cov", ndim=(0, 1, 2))
    if c.ndim == 0:
        if dim is None:
            raise ValueError("`dim` is required with a scalar variance `cov`.")
        d = check_positive_int(dim, "dim")
        if is_concrete(c) and float(c) <= 0:
            raise ValueError(f"`cov` must be positive, got {float(c)}.")
        return 0.5 * d * (_LOG_2PI_E + jnp.log(c))
    if c.ndim == 1:
        if is_concrete(c) and np.any(np.asarray(c) <= 0):
            raise ValueError("`cov` variances must be positive.")
        return 0.5 * jnp.sum(_LOG_2PI_E + jnp.log(c))
    if c.shape[0] != c.shape[1]:
        raise ValueError(f"`cov` must be square, got shape {c.shape}.")
    sign, logdet = jnp.linalg.slogdet(c)
    if is_concrete(sign) and float(sign) <= 0:
        raise ValueError("`cov` must be positive definite.")
    return 0.5 * (c.shape[0] * _LOG_2PI_E + logdet)


def gaussian_marginal_entropy(
    process: AbstractProcess, cov0: ArrayLike, t: ArrayLike, dim: int | None = None
) -> Float[Array, ...]:
    r"""Entropy of ``p_t`` when ``p_0 = N(mu, Sigma)``:
    ``1/2 sum_j log(2 pi e (alpha_t^2 lambda_j + sigma_t^2))``.

    ``cov0`` as in :func:`gaussian_entropy` (a scalar needs ``dim``); ``t`` may be an array of times.
    """
    c = as_float_array(cov0, "cov0", ndim=(0, 1, 2))
    if c.ndim == 0:
        if dim is None:
            raise ValueError("`dim` is required with a scalar variance `cov0`.")
        lam = jnp.full((check_positive_int(dim, "dim"),), c)
    elif c.ndim == 1:
        lam = c
    else:
        lam = jnp.linalg.eigvalsh(c)
    t = jnp.asarray(t, dtype=lam.dtype)
    a2 = process.alpha(t)[..., None] ** 2
    s2 = process.sigma2(t)[..., None]
    return 0.5 * jnp.sum(_LOG_2PI_E + jnp.log(a2 * lam + s2), axis=-1)


def analytic_entropy(
    score: AbstractScore, *, key: jax.Array, n: int, t: float | None = None
) -> EntropyEstimate:
    """Monte Carlo ``-E log p_t(X)`` with the exact ``log_prob`` and ``sample`` of an analytic score
    (e.g. :class:`~diffsim.scores.GaussianMixture`); ``t=None`` is the data (``t = 0``)."""
    if not (hasattr(score, "log_prob") and hasattr(score, "sample")):
        raise TypeError("`score` must have exact `log_prob` and `sample` (e.g. a GaussianMixture).")
    key = check_key(key)
    x, _ = score.sample(key, check_positive_int(n, "n"), t)
    tt = 0.0 if t is None else t
    lp = jax.vmap(lambda y: score.log_prob(tt, y))(x)
    return _estimate(lp, None, x)


def _estimate(log_density, weights, x) -> EntropyEstimate:
    if weights is None:
        n = log_density.shape[0]
        h = -jnp.mean(log_density)
        se = jnp.std(log_density) / jnp.sqrt(max(n - 1, 1))
    else:
        h = -jnp.sum(weights * log_density)
        se = jnp.zeros((), log_density.dtype)
    return EntropyEstimate(h, se, log_density, x)


def prior_entropy(process: AbstractProcess, dim: int) -> float:
    """``h(N(0, prior_std^2 I_d)) = d/2 log(2 pi e prior_std^2)``: the entropy of the process prior."""
    return 0.5 * check_positive_int(dim, "dim") * (_LOG_2PI_E + 2.0 * math.log(process.prior_std))


def _pushforward_estimate(log_density, log_prior, h_prior, weights, x) -> EntropyEstimate:
    r"""Entropy of the push-forward ``x = F(z)``, ``z ~ prior``, with the prior term in closed form:

        h(F_# p) = h(p) + E_z[log|det dF/dz|],      log|det dF/dz| = log p(z) - log q(F(z)),

    so only the log-determinant is averaged (Monte Carlo or quadrature ``weights``). Unbiased like
    ``-mean log q`` but without the prior's own sampling noise: exact when the map is affine."""
    logdet = log_prior - log_density
    if weights is None:
        n = logdet.shape[0]
        h = h_prior + jnp.mean(logdet)
        se = jnp.std(logdet) / jnp.sqrt(max(n - 1, 1))
    else:
        h = h_prior + jnp.sum(weights * logdet)
        se = jnp.zeros((), logdet.dtype)
    return EntropyEstimate(jnp.asarray(h, log_density.dtype), se, log_density, x)


# =====================================================================================================
# PF-ODE model density
# =====================================================================================================
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
    ``t`` defaults to ``t_min``; ``divergence="hutchinson"`` needs ``key``."""
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
        from ..sampling import grids as _grids

        grid = _grids.uniform(p, int(grid))
    grid = as_float_array(grid, "grid", ndim=1)
    x, logdet = _sampler_map(score, method, grid, z, k_run)
    log_prior = p.prior_log_prob(z)
    return _pushforward_estimate(log_prior - logdet, log_prior, prior_entropy(p, score.dim), weights, x)


# =====================================================================================================
# entropy-rate identity
# =====================================================================================================
def entropy_rate(process: AbstractProcess, t: ArrayLike, fisher: ArrayLike, dim: int) -> Array:
    r"""``dH/dt = E[div f] + 1/2 g(t)^2 J(p_t) = d f(t) + 1/2 g(t)^2 J`` for the linear drift ``f(t) x`` of
    ``process`` (forward time); ``fisher`` is ``J(p_t) = E|grad log p_t|^2``."""
    return dim * process.drift_coefficient(t) + 0.5 * process.beta(t) * jnp.asarray(fisher)


def fisher_information(score: AbstractScore, t: ArrayLike, x: Float[Array, "N d"]) -> Float[Array, ""]:
    r"""Monte Carlo ``J(p_t) = E |s(t, X)|^2`` from samples ``x ~ p_t`` (exact when ``s`` is the true
    score)."""
    s = jax.vmap(lambda y: score.score(t, y))(x)
    return jnp.mean(jnp.sum(s**2, axis=-1))


def _integrate_back(times: np.ndarray, rate: np.ndarray, h_end_value: float) -> np.ndarray:
    """``H(times[i]) = H(times[-1]) - \\int_{times[i]}^{times[-1]} rate dt`` (trapezoid), times increasing."""
    seg = 0.5 * (rate[1:] + rate[:-1]) * np.diff(times)
    tail = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
    return h_end_value - tail


@eqx.filter_jit
def _fisher_path(score, sample_fn, ts, key, n):
    def one(t):
        x = sample_fn(key, n, t)
        return fisher_information(score, t, x)

    return jax.lax.map(one, ts)


class _MixtureSampler(eqx.Module):
    mixture: Any
    n: int = eqx.field(static=True)

    def __call__(self, key, n, t):
        return self.mixture.sample(key, self.n, t)[0]


def marginal_path_entropy(
    score: AbstractScore,
    *,
    key: jax.Array,
    n: int = 20_000,
    t0: float | None = None,
    t1: float | None = None,
    n_times: int = 64,
    entropy_t1: float | None = None,
) -> PathEntropy:
    r"""``H(p_t)`` along the forward marginals from the entropy-rate identity
    ``dH/dt = d f + 1/2 g^2 J(p_t)``.

    ``J(p_t)`` is estimated by Monte Carlo from exact samples of ``p_t`` (``score.sample(key, n, t)``, e.g. a
    :class:`~diffsim.scores.GaussianMixture`; the same key at every time gives common random numbers), on
    ``n_times`` times geometric between ``t0`` (default ``t_min``) and ``t1`` (default ``t_max``), and the
    rate is integrated (trapezoid) from ``t1`` back. ``entropy_t1`` is ``H(p_{t1})``; by default the
    Monte Carlo ``-E log p_{t1}`` with the exact ``log_prob``. Returns a :class:`PathEntropy` on increasing
    times: ``entropy[0]`` is ``H(p_{t0})``.
    """
    if not (hasattr(score, "sample") and hasattr(score, "log_prob")):
        raise TypeError(
            "marginal_path_entropy needs a score with exact `sample(key, n, t)` and `log_prob` "
            "(e.g. a GaussianMixture): J(p_t) must be estimated from the true marginals."
        )
    key = check_key(key)
    n = check_positive_int(n, "n")
    n_times = check_positive_int(n_times, "n_times", minimum=3)
    p = score.process
    a = p.t_min if t0 is None else float(t0)
    b = p.t_max if t1 is None else float(t1)
    p.check_time(a, "t0", allow_zero=False)
    p.check_time(b, "t1", allow_zero=False)
    if not b > a:
        raise ValueError(f"Need t1 > t0, got t0={a}, t1={b}.")
    ts = np.exp(np.linspace(math.log(a), math.log(b), n_times))
    dtype = score.means.dtype if hasattr(score, "means") else jnp.result_type(float)
    k_path, k_end = jr.split(key)
    fisher = np.asarray(_fisher_path(score, _MixtureSampler(score, n), jnp.asarray(ts, dtype), k_path, n))
    rate = np.asarray(entropy_rate(p, jnp.asarray(ts, dtype), fisher, score.dim))
    if entropy_t1 is None:
        entropy_t1 = float(analytic_entropy(score, key=k_end, n=n, t=b).entropy)
    h = _integrate_back(ts, rate, float(entropy_t1))
    return PathEntropy(jnp.asarray(ts), jnp.asarray(h), jnp.asarray(rate), jnp.asarray(fisher))


class _DivergenceStat(eqx.Module):
    """``stats(t, x) = div v(t, x)`` for :func:`diffsim.simulate` (a module, so it does not recompile)."""

    score: AbstractScore

    def __call__(self, t, x):
        return self.score.velocity_divergence(t, x)


class _HutchinsonStat(eqx.Module):
    score: AbstractScore
    probe: Array

    def __call__(self, t, x):
        # a fixed Rademacher probe per call site: unbiased for the mean over particles
        _, jvp = jax.jvp(lambda z: self.score.velocity(t, z), (x,), (self.probe,))
        return jnp.sum(jvp * self.probe)


def flow_entropy_rate(
    score: AbstractScore,
    grid: ArrayLike | int,
    *,
    key: jax.Array,
    n: int,
    method: str = "ddim",
    entropy_start: float | None = None,
) -> PathEntropy:
    r"""Entropy along a deterministic (zero-diffusion) sampler from Liouville's identity ``dH/dt = E[div v]``.

    Particles are run by ``method`` (default ``"ddim"``, ``eta = 0``) on ``grid`` from the process prior;
    ``E[div v(t, X_t)]`` of the PF-ODE velocity of ``score`` (guided scores included) is recorded at every
    grid time and integrated (trapezoid) from the start:

        H(q_{t_end}) = H(q_T) - \int_{t_end}^{T} E[div v(t, X_t)] dt.

    ``entropy_start`` defaults to the entropy of the process prior (``d/2 log(2 pi e prior_std^2)``).
    Converges to the continuous-limit DDIM entropy as the grid is refined. Returns a
    :class:`PathEntropy` on the (decreasing) grid times; ``entropy[-1]`` is the output entropy.
    """
    if method in ("ddpm", "euler_maruyama", "pc", "sde"):
        raise ValueError(f"flow_entropy_rate needs a deterministic sampler, got {method!r}.")
    key = check_key(key)
    p = score.process
    traj = simulate(
        score,
        method,
        grid,
        n=check_positive_int(n, "n"),
        key=key,
        save="all",
        save_states=False,
        stats=_DivergenceStat(score),
    )
    ts = np.asarray(traj.ts)
    div_mean = np.asarray(jnp.mean(traj.stats, axis=1))
    if entropy_start is None:
        entropy_start = prior_entropy(p, score.dim)
    # along decreasing t: H(t_{j+1}) = H(t_j) + \int_{t_j}^{t_{j+1}} E div v dt  (dt < 0)
    seg = 0.5 * (div_mean[1:] + div_mean[:-1]) * np.diff(ts)
    h = float(entropy_start) + np.concatenate([[0.0], np.cumsum(seg)])
    return PathEntropy(jnp.asarray(ts), jnp.asarray(h), jnp.asarray(div_mean), jnp.asarray(div_mean))


# =====================================================================================================
# Kozachenko-Leonenko
# =====================================================================================================
def unit_ball_log_volume(d: int) -> float:
    """``log V_d = d/2 log(pi) - lgamma(d/2 + 1)``: log-volume of the Euclidean unit ball in ``R^d``."""
    return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)


@eqx.filter_jit
def _knn_chunked(x, k, chunk, n_extra):
    n, d = x.shape
    x = x - jnp.mean(x, axis=0)
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    xp = jnp.concatenate([x, jnp.zeros((pad, d), x.dtype)])
    idx = jnp.arange(n_chunks * chunk).reshape(n_chunks, chunk)
    sq = jnp.sum(x**2, axis=1)
    m = min(k + n_extra, n - 1)

    def block(rows):
        xb = xp[rows]
        d2 = jnp.sum(xb**2, 1)[:, None] + sq[None, :] - 2.0 * xb @ x.T
        d2 = jnp.where(rows[:, None] == jnp.arange(n)[None, :], jnp.inf, d2)
        # candidates in float32 (XLA's CPU top_k is ~100x slower in float64), refined exactly below
        _, cand = jax.lax.top_k(-d2.astype(jnp.float32), m)  # (chunk, m) candidate neighbours
        exact = jnp.sum((x[cand] - xb[:, None, :]) ** 2, axis=-1)  # refine without cancellation
        exact = jnp.sort(exact, axis=1)[:, :k]
        return jnp.sqrt(exact)

    out = jax.lax.map(block, idx)
    return out.reshape(n_chunks * chunk, k)[:n]


@eqx.filter_jit
def _knn_sorted_1d(x, k):
    """1-D: after sorting, the k nearest neighbours lie among the k points on either side."""
    n = x.shape[0]
    order = jnp.argsort(x[:, 0])
    xs = x[order, 0]
    pad = jnp.concatenate([jnp.full((k,), -jnp.inf, xs.dtype), xs, jnp.full((k,), jnp.inf, xs.dtype)])
    offsets = jnp.concatenate([jnp.arange(-k, 0), jnp.arange(1, k + 1)])
    neigh = pad[k + jnp.arange(n)[:, None] + offsets[None, :]]  # (n, 2k)
    dist = jnp.sort(jnp.abs(neigh - xs[:, None]), axis=1)[:, :k]
    return jnp.zeros_like(dist).at[order].set(dist)


def knn_distances(x: Float[Array, "N d"], k: int = 1, *, chunk_size: int = 512) -> Float[Array, "N k"]:
    """Euclidean distances from each point to its ``1..k`` nearest neighbours (self excluded).

    ``d = 1``: exact, by sorting (``O(n log n)``). ``d > 1``: in chunks of ``chunk_size`` rows (no ``n x n``
    matrix); candidates found by the Gram expansion are refined by exact differences."""
    x = as_float_array(x, "x", ndim=2)
    n = x.shape[0]
    k = check_positive_int(k, "k")
    if n <= k:
        raise ValueError(f"Need more points than neighbours: n={n}, k={k}.")
    if x.shape[1] == 1:
        return _knn_sorted_1d(x, k)
    chunk = min(check_positive_int(chunk_size, "chunk_size"), n)
    return _knn_chunked(x, k, chunk, 8)


def knn_weights(k: int, d: int) -> np.ndarray:
    r"""Berrett-Samworth-Yuan (2019) debiasing weights ``w in R^k``: minimum-norm solution of
    ``sum_j w_j = 1`` and ``sum_j w_j Gamma(j + 2l/d)/Gamma(j) = 0`` for ``l = 1..floor(d/4)``, supported on
    ``j = 1..k``. For ``d <= 3`` (no constraint) the weights are ``e_k`` (the plain estimator)."""
    k = check_positive_int(k, "k")
    d = check_positive_int(d, "d")
    n_con = d // 4
    if n_con == 0:
        w = np.zeros(k)
        w[-1] = 1.0
        return w
    if k < n_con + 1:
        raise ValueError(f"The bias correction in d={d} needs k >= {n_con + 1} neighbours, got k={k}.")
    j = np.arange(1, k + 1, dtype=float)
    rows = [np.ones(k)]
    for ell in range(1, n_con + 1):
        rows.append(np.exp([math.lgamma(jj + 2.0 * ell / d) - math.lgamma(jj) for jj in j]))
    a = np.stack(rows)
    rhs = np.zeros(n_con + 1)
    rhs[0] = 1.0
    w, *_ = np.linalg.lstsq(a, rhs, rcond=None)
    return w


def knn_entropy(
    x: Float[Array, "N d"],
    k: int | None = None,
    *,
    bias_correction: bool = False,
    chunk_size: int = 512,
    ties: str = "raise",
) -> Float[Array, ""]:
    r"""Kozachenko-Leonenko entropy estimate (nats, Euclidean norm, unit-ball volume ``V_d``).

    ``H_k = psi(n) - psi(k) + log V_d + (d/n) sum_i log rho_{k,i}``. ``k`` defaults to 1, or with
    ``bias_correction=True`` to ``max(3, 2 d)``, in which case the weighted estimator ``sum_j w_j H_j`` of
    Berrett, Samworth & Yuan (2019) is returned (:func:`knn_weights`; for ``d <= 3`` it is the plain
    ``H_k``). The correction removes the ``n^{-2l/d}`` bias terms at the price of variance: it lets a
    larger ``k`` be used without the large-``k`` bias (measured in docs/guidance.md).

    ``ties``: a zero neighbour distance (duplicated points) makes the estimate ``-inf``. ``"raise"``
    (default) raises ``ValueError``; ``"resolution"`` clamps each distance at the floating-point
    resolution of the point, ``eps (1 + |x_i|_inf)``: in float32 distinct continuous samples can round to
    the same value, and the clamp treats them as distinct at the resolution they were stored with.
    """
    if ties not in ("raise", "resolution"):
        raise ValueError(f"`ties` must be 'raise' or 'resolution', got {ties!r}.")
    x = as_float_array(x, "x", ndim=2)
    n, d = x.shape
    if k is None:
        k = max(3, 2 * d) if bias_correction else 1
    k = check_positive_int(k, "k")
    rho = knn_distances(x, k, chunk_size=chunk_size)
    if ties == "resolution":
        res = jnp.finfo(rho.dtype).eps * (1.0 + jnp.max(jnp.abs(x), axis=1))
        rho = jnp.maximum(rho, res[:, None])
    elif is_concrete(rho) and float(jnp.min(rho)) <= 0.0:
        raise ValueError(
            "`x` contains duplicated points (a zero nearest-neighbour distance): the kNN entropy "
            "is -inf. Remove duplicates or add jitter."
        )
    log_vd = unit_ball_log_volume(d)
    psi_n = jax.scipy.special.digamma(jnp.asarray(float(n), rho.dtype))
    j = jnp.arange(1, k + 1, dtype=rho.dtype)
    h_j = psi_n - jax.scipy.special.digamma(j) + log_vd + d * jnp.mean(jnp.log(rho), axis=0)  # (k,)
    if bias_correction:
        w = jnp.asarray(knn_weights(k, d), rho.dtype)
        return jnp.sum(w * h_j)
    return h_j[-1]
