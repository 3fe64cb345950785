r"""The score interface (the parametrisation conversions it uses live in :mod:`diffsim.scores._conversions`).

For ``x_t = alpha_t x_0 + sigma_t eps`` (any process of :mod:`diffsim.processes`) and the score
``s = \nabla_x log p_t(x)``, Tweedie's formula (Efron 2011; Robbins 1956) gives the posterior mean

    x0_hat = E[x_0 | x_t = x] = (x + sigma_t^2 s) / alpha_t,

and hence the noise prediction ``eps_hat = -sigma_t s`` and the v-prediction of Salimans & Ho (2022),
``v = alpha_t eps - sigma_t x_0``. The probability-flow ODE (Song et al. 2021, eq. 13) has velocity
``f(t) x - 1/2 g(t)^2 s`` and the reverse SDE has drift ``f(t) x - g(t)^2 s`` (Anderson 1982), both written
in forward time ``t``: reverse samplers integrate them with ``dt < 0``.

All functions here act on *one* point ``x`` of shape ``(d,)``; batching is ``jax.vmap``'s job.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._promotion import promote
from ..processes import AbstractProcess
from ._conversions import (
    eps_from_score as eps_from_score,
    score_from_eps as score_from_eps,
    score_from_v as score_from_v,
    score_from_x0 as score_from_x0,
    v_from_score as v_from_score,
    x0_from_score as x0_from_score,
)


__all__ = [
    "AbstractAnalyticScore",
    "AbstractScore",
    "eps_from_score",
    "score_from_eps",
    "score_from_v",
    "score_from_x0",
    "v_from_score",
    "x0_from_score",
]


class AbstractScore(eqx.Module):
    r"""A score ``s(t, x) = \nabla_x log p_t(x)`` of the marginals of ``process``.

    Subclasses implement :meth:`score` for one point ``x`` of shape ``(d,)`` and say their dimension
    (:attr:`dim`). Everything else derives from the score.

    Attributes:
        process: the forward process whose marginals ``p_t`` the score belongs to (a field of every
            subclass).
    """

    process: eqx.AbstractVar[AbstractProcess]

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Dimension ``d`` of one point."""

    @abc.abstractmethod
    def score(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        r"""``\nabla_x log p_t(x)`` for one point."""

    def __call__(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        return self.score(t, x)

    def denoise(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """Tweedie posterior mean ``E[x_0 | x_t = x] = (x + sigma^2 s) / alpha``."""
        return x0_from_score(self.process, t, x, self.score(t, x))

    def eps(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """Noise prediction ``E[eps | x_t = x] = -sigma s``."""
        return eps_from_score(self.process, t, x, self.score(t, x))

    def v_prediction(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """v-prediction ``alpha eps_hat - sigma x0_hat`` (Salimans & Ho 2022)."""
        return v_from_score(self.process, t, x, self.score(t, x))

    def velocity(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """Probability-flow ODE velocity ``f(t) x - 1/2 g(t)^2 s`` (forward time)."""
        f, g2, x, s = promote(self.process.drift_coefficient(t), self.process.beta(t), x, self.score(t, x))
        return f * x - 0.5 * g2 * s

    def reverse_drift(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """Reverse-SDE drift ``f(t) x - g(t)^2 s`` (forward time; integrate with ``dt < 0``)."""
        f, g2, x, s = promote(self.process.drift_coefficient(t), self.process.beta(t), x, self.score(t, x))
        return f * x - g2 * s

    def hessian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, "d d"]:
        r"""``\nabla_x^2 log p_t(x)``; by default the Jacobian of the score (forward-mode autodiff)."""
        return jax.jacfwd(lambda y: self.score(t, y))(x)

    def laplacian(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        r"""``\Delta_x log p_t(x)`` (divergence of the score); by default the trace of :meth:`hessian`."""
        return jnp.trace(self.hessian(t, x))

    def velocity_divergence(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        r"""``\nabla \cdot v = d f(t) - 1/2 g(t)^2 \Delta log p_t`` for the PF-ODE velocity ``v``."""
        f, g2, lap = promote(self.process.drift_coefficient(t), self.process.beta(t), self.laplacian(t, x))
        return self.dim * f - 0.5 * g2 * lap


class AbstractAnalyticScore(AbstractScore):
    """A score whose diffused density is known in closed form: adds :meth:`log_prob` and
    :meth:`posterior` (responsibilities over the components of a mixture).

    Attributes:
        process: the forward process whose marginals ``p_t`` the density belongs to.
    """

    @abc.abstractmethod
    def log_prob(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, ""]:
        """``log p_t(x)``."""

    @abc.abstractmethod
    def posterior(self, t: ArrayLike, x: Float[Array, " d"]) -> Float[Array, " K"]:
        """Posterior probabilities of the mixture components given ``x_t = x``."""
