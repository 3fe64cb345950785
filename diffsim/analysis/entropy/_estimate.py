"""Entropy estimate containers and the push-forward estimator shared by every sampling route."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


class EntropyEstimate(eqx.Module):
    """An entropy estimate (nats) with its Monte Carlo standard error.

    Attributes:
        entropy: the estimate ``-sum_i w_i log q(x_i)`` (uniform weights for Monte Carlo), a scalar.
        stderr: standard error of the mean (0 for quadrature weights).
        log_density: per-sample ``log q(x_i)``, shape ``(N,)``.
        x: the samples ``(N, d)`` the densities refer to (``None`` when not kept).
    """

    entropy: Float[Array, ""]
    stderr: Float[Array, ""]
    log_density: Float[Array, " N"]
    x: Any = None


class PathEntropy(eqx.Module):
    """Entropy along a path of marginals from the entropy-rate identity.

    Attributes:
        times: diffusion times ``(S,)`` (decreasing along reverse paths).
        entropy: ``H`` at each time, shape ``(S,)``; ``entropy[-1]`` is the end point of the path.
        rate: ``dH/dt`` at each time (forward-time derivative), shape ``(S,)``.
        fisher: Fisher information ``J(p_t)`` (marginal paths) or ``E[div v]`` (flows) at each time.
    """

    times: Float[Array, " S"]
    entropy: Float[Array, " S"]
    rate: Float[Array, " S"]
    fisher: Float[Array, " S"]


def _estimate(log_density, weights, x) -> EntropyEstimate:
    if weights is None:
        n = log_density.shape[0]
        h = -jnp.mean(log_density)
        se = jnp.std(log_density) / jnp.sqrt(max(n - 1, 1))
    else:
        h = -jnp.sum(weights * log_density)
        se = jnp.zeros((), log_density.dtype)
    return EntropyEstimate(h, se, log_density, x)


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
