"""Entropy along a path from the entropy-rate identity: forward marginals (Fisher information) and
deterministic samplers (Liouville)."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validation import check_key, check_positive_int
from ...processes import AbstractProcess
from ...sampling import simulate
from ...scores._base import AbstractScore
from ._closed_forms import analytic_entropy, prior_entropy
from ._estimate import PathEntropy


def entropy_rate(process: AbstractProcess, t: ArrayLike, fisher: ArrayLike, dim: int) -> Array:
    r"""``dH/dt = E[div f] + 1/2 g(t)^2 J(p_t) = d f(t) + 1/2 g(t)^2 J`` for the linear drift ``f(t) x`` of
    ``process`` (forward time); ``fisher`` is ``J(p_t) = E|grad log p_t|^2``.

    Args:
        process: the forward process (gives ``f(t)`` and ``g(t)^2 = beta(t)``).
        t: a time or an array of times.
        fisher: ``J(p_t)`` at those times, broadcastable with ``t``.
        dim: the dimension ``d``.

    Returns:
        ``dH/dt``, shaped like the broadcast of ``t`` and ``fisher``.
    """
    return dim * process.drift_coefficient(t) + 0.5 * process.beta(t) * jnp.asarray(fisher)


def fisher_information(score: AbstractScore, t: ArrayLike, x: Float[Array, "N d"]) -> Float[Array, ""]:
    r"""Monte Carlo ``J(p_t) = E |s(t, X)|^2`` from samples ``x ~ p_t`` (exact when ``s`` is the true
    score).

    Args:
        score: the score ``s`` evaluated at each sample.
        t: the time of the samples.
        x: samples of ``p_t``, shape ``(N, d)``.
    """
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

    Args:
        score: an analytic score with exact ``sample(key, n, t)`` and ``log_prob``.
        key: PRNG key (split into the path samples and the end-point entropy).
        n: samples per time.
        t0: first time (positive); ``None`` uses ``process.t_min``.
        t1: last time (above ``t0``); ``None`` uses ``process.t_max``.
        n_times: number of times (at least 3), geometric between ``t0`` and ``t1``.
        entropy_t1: ``H(p_{t1})``; ``None`` estimates it with :func:`analytic_entropy`.
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

    Args:
        score: any diffsim score (guided included); its velocity divergence is averaged.
        grid: the sampler's time grid, as in :func:`diffsim.simulate`.
        key: PRNG key of the prior draws.
        n: number of particles.
        method: a deterministic sampler name (stochastic ones raise ``ValueError``).
        entropy_start: entropy of the starting law; ``None`` uses the process prior's.
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
