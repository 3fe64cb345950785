r"""The labelled Gaussian mixtures of the ``guidance`` study (Wu et al., ICML 2024), all under ``VP.ou()``
(``t in [1e-3, 10]``, prior ``N(0, I)``).

- :func:`guidance_cases`: the five named cases ``sym1d``, ``symd``, ``collinear_middle``,
  ``collinear_end``, ``obtuse2d`` with their target labels;
- :func:`designed_split_mixture`: a wide target with a narrow other class at its centre (strong guidance
  splits it);
- :func:`collinear_three`: means ``(-3, 0, 3)``, identity covariances, equal weights;
- :func:`random_three_component_1d`: the random three-component 1-D mixtures of the distortion search;
- :func:`mixture_1d`: a float32 1-D mixture from weights, means and variances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ..processes import VP
from ..scores import GaussianMixture


@dataclass(frozen=True)
class GuidanceCase:
    """A mixture, the target label ``y`` and whether Wu et al.'s comparison theorem covers the case
    (``within_theorem``: two components, or collinear means with the target at an end).

    Args:
        mixture: the labelled mixture under ``VP.ou()``.
        label: the target label ``y`` (a component index of ``mixture``).
        within_theorem: whether Wu et al.'s comparison theorem covers the case.
    """

    mixture: GaussianMixture
    label: int
    within_theorem: bool


def collinear_three() -> GaussianMixture:
    """``N(-3, 1)``, ``N(0, 1)``, ``N(3, 1)`` with equal weights (1-D)."""
    return GaussianMixture(jnp.full((3,), 1.0 / 3.0), jnp.array([[-3.0], [0.0], [3.0]]), 1.0, process=VP.ou())


def guidance_cases(radius: float = 2.0, high_dim: int = 8, seed: int = 0) -> dict[str, GuidanceCase]:
    """The named cases of the guidance study:

    - ``sym1d``: ``N(-r, 1)``, ``N(+r, 1)``, target ``+``;
    - ``symd``: the same along a random unit direction in ``d = high_dim`` (NumPy ``default_rng(seed)``);
    - ``collinear_middle`` / ``collinear_end``: :func:`collinear_three`, target the middle / right one;
    - ``obtuse2d``: target ``(0, 0)``, others ``(-3, 1)``, ``(3, 1)`` (violates the angle condition).

    Args:
        radius: the distance ``r`` of the two means from the origin in ``sym1d`` and ``symd``.
        high_dim: the dimension ``d`` of ``symd``.
        seed: the NumPy seed of ``symd``'s random direction.

    Returns:
        A dict from case name to :class:`GuidanceCase`, all components with identity covariance.
    """
    r = radius
    p = VP.ou()
    rng = np.random.default_rng(seed)
    u = rng.normal(size=high_dim)
    u /= np.linalg.norm(u)
    half = jnp.array([0.5, 0.5])
    third = jnp.full((3,), 1.0 / 3.0)
    line = jnp.array([[-3.0], [0.0], [3.0]])
    return {
        "sym1d": GuidanceCase(GaussianMixture(half, jnp.array([[-r], [r]]), 1.0, process=p), 1, True),
        "symd": GuidanceCase(
            GaussianMixture(half, jnp.asarray(np.stack([-r * u, r * u]), jnp.float32), 1.0, process=p),
            1,
            True,
        ),
        "collinear_middle": GuidanceCase(GaussianMixture(third, line, 1.0, process=p), 1, False),
        "collinear_end": GuidanceCase(GaussianMixture(third, line, 1.0, process=p), 2, True),
        "obtuse2d": GuidanceCase(
            GaussianMixture(third, jnp.array([[0.0, 0.0], [-3.0, 1.0], [3.0, 1.0]]), 1.0, process=p), 0, False
        ),
    }


def designed_split_mixture() -> GaussianMixture:
    """Target ``N(0, 4)`` (weight 1/2) with ``N(0, 0.25)`` and ``N(4, 1)`` (weights 1/4): the narrow other
    class at the target's centre makes ``log p_t(y|x)`` non-concave, so strong guidance splits the target."""
    return GaussianMixture(
        jnp.array([0.5, 0.25, 0.25]),
        jnp.array([[0.0], [0.0], [4.0]]),
        jnp.array([4.0, 0.25, 1.0]),
        process=VP.ou(),
    )


def mixture_1d(
    weights: Sequence[float], means: Sequence[float], variances: Sequence[float]
) -> GaussianMixture:
    """A float32 1-D mixture under ``VP.ou()`` (one variance per component).

    Args:
        weights: the ``K`` component weights (summing to 1).
        means: the ``K`` scalar means.
        variances: the ``K`` variances (``> 0``).
    """
    return GaussianMixture(
        jnp.asarray(weights, jnp.float32),
        jnp.asarray(np.asarray(means)[:, None], jnp.float32),
        jnp.asarray(variances, jnp.float32),
        process=VP.ou(),
    )


def random_three_component_1d(
    rng: np.random.Generator, *, unequal_variances: bool
) -> tuple[GaussianMixture, np.ndarray, np.ndarray, np.ndarray, int]:
    """One random three-component 1-D mixture: sorted means uniform in ``[-4, 4]``, variances one (or
    log-uniform in ``[0.1, 4]`` with ``unequal_variances``), weights ``Dirichlet(2, 2, 2)`` and a uniform
    target. Returns ``(mixture, means, variances, weights, target)``, drawn from ``rng`` in that order.

    Args:
        rng: the NumPy generator the means, variances, weights and target are drawn from (it advances).
        unequal_variances: draw log-uniform variances in ``[0.1, 4]``; ``False`` sets them all to one.
    """
    mu = np.sort(rng.uniform(-4.0, 4.0, 3))
    if unequal_variances:
        var = np.exp(rng.uniform(math.log(0.1), math.log(4.0), 3))
    else:
        var = np.ones(3)
    w = rng.dirichlet(np.ones(3) * 2.0)
    target = int(rng.integers(3))
    return mixture_1d(w, mu, var), mu, var, w, target
