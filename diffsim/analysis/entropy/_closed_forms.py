"""Closed-form Gaussian entropies (data, noisy marginals, process prior) and the exact Monte Carlo entropy
of an analytic score."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validation import as_float_array, check_key, check_positive_int, is_concrete
from ...processes import AbstractProcess
from ...scores._base import AbstractScore
from ._estimate import EntropyEstimate, _estimate


_LOG_2PI_E = math.log(2 * math.pi * math.e)


def gaussian_entropy(cov: ArrayLike, dim: int | None = None) -> Float[Array, ""]:
    r"""``h(N(mu, Sigma)) = 1/2 log det(2 pi e Sigma)``.

    Args:
        cov: a scalar variance (isotropic; give ``dim``), a vector of variances ``(d,)`` (diagonal), or a
            matrix ``(d, d)`` (symmetric positive definite). Non-positive values raise ``ValueError``.
        dim: the dimension ``d``; required with a scalar ``cov``, ignored otherwise.

    Returns:
        The entropy in nats, a scalar array.
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

    Args:
        process: the forward process (gives ``alpha_t`` and ``sigma_t``).
        cov0: the data covariance ``Sigma``: a scalar variance (give ``dim``), variances ``(d,)`` or a
            matrix ``(d, d)``.
        t: a time or an array of times.
        dim: the dimension ``d``; required with a scalar ``cov0``, ignored otherwise.

    Returns:
        The entropies in nats, shaped like ``t``.
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
    (e.g. :class:`~diffsim.scores.GaussianMixture`); ``t=None`` is the data (``t = 0``).

    Args:
        score: an analytic score with exact ``log_prob(t, x)`` and ``sample(key, n, t)``.
        key: PRNG key of the samples.
        n: number of samples.
        t: the time of the marginal ``p_t``; ``None`` for the data.

    Returns:
        An :class:`EntropyEstimate` (with the samples in ``x``).
    """
    if not (hasattr(score, "log_prob") and hasattr(score, "sample")):
        raise TypeError("`score` must have exact `log_prob` and `sample` (e.g. a GaussianMixture).")
    key = check_key(key)
    x, _ = score.sample(key, check_positive_int(n, "n"), t)
    tt = 0.0 if t is None else t
    lp = jax.vmap(lambda y: score.log_prob(tt, y))(x)
    return _estimate(lp, None, x)


def prior_entropy(process: AbstractProcess, dim: int) -> float:
    """``h(N(0, prior_std^2 I_d)) = d/2 log(2 pi e prior_std^2)``: the entropy of the process prior.

    Args:
        process: the process whose ``prior_std`` is used.
        dim: the dimension ``d``.
    """
    return 0.5 * check_positive_int(dim, "dim") * (_LOG_2PI_E + 2.0 * math.log(process.prior_std))
