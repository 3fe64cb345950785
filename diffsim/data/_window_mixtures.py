r"""Gaussian mixtures of the critical-windows experiments (OU process, ``VP.ou()``).

- :func:`symmetric_two_gaussians`: ``1/2 N(+r e_1, I_d) + 1/2 N(-r e_1, I_d)``;
- :func:`hierarchy_2d`: four unit-variance components at ``±A e_1 ± B e_2`` (a two-level hierarchy when
  ``A >> B``) with unequal weights;
- :func:`random_two_clusters`: two well-separated clusters of two components each in ``R^d``, random
  directions and full covariances with spectrum in ``[0.5, 2]`` (a well-conditioned generic mixture).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..processes import VP
from ..scores.mixture import GaussianMixture


__all__ = ["hierarchy_2d", "random_two_clusters", "symmetric_two_gaussians"]


def symmetric_two_gaussians(r: float, d: int) -> GaussianMixture:
    """``1/2 N(+r e_1, I_d) + 1/2 N(-r e_1, I_d)`` under the OU process (component 0 at ``+r e_1``).

    Args:
        r: the distance of each mean from the origin along ``e_1``.
        d: the dimension.
    """
    means = np.zeros((2, d))
    means[0, 0], means[1, 0] = r, -r
    return GaussianMixture([0.5, 0.5], means, 1.0, process=VP.ou())


def hierarchy_2d(
    a: float = 400.0, b: float = 4.0, weights: Sequence[float] = (0.4, 0.2, 0.25, 0.15)
) -> GaussianMixture:
    """Four ``N(., I_2)`` components at ``(a, b), (a, -b), (-a, b), (-a, -b)`` with ``weights`` (OU process).

    With ``a > b > 0`` the coarse feature is the sign of ``x_1`` and the fine one the sign of ``x_2``.

    Args:
        a: the coarse offset along ``x_1``.
        b: the fine offset along ``x_2``.
        weights: the four component weights, in the order of the means above.
    """
    means = np.array([[a, b], [a, -b], [-a, b], [-a, -b]])
    return GaussianMixture(np.asarray(weights), means, 1.0, process=VP.ou())


def random_two_clusters(
    dim: int = 16, centre: float = 300.0, offset: float = 3.0, *, seed: int = 0
) -> GaussianMixture:
    """Two clusters of two components in ``R^dim``: means ``±centre u ± offset v`` plus ``N(0, 0.3^2)``
    jitter (``u, v`` random orthonormal directions), covariances ``Q diag(U[0.5, 2]) Q^T`` with random
    rotations ``Q``, weights ``Dirichlet(8, 8, 8, 8)``; all drawn from ``numpy.random.default_rng(seed)``.

    Args:
        dim: the dimension ``d``.
        centre: the distance of the two clusters from the origin along ``u``.
        offset: the distance of each component from its cluster's centre along ``v``.
        seed: the NumPy seed of every random draw.
    """
    rng = np.random.default_rng(seed)
    d = dim
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    v = rng.normal(size=d)
    v -= (v @ u) * u
    v /= np.linalg.norm(v)
    c, o = centre, offset
    means = np.stack([c * u + o * v, c * u - o * v, -c * u + o * v, -c * u - o * v])
    means = means + 0.3 * rng.normal(size=means.shape)
    covs = []
    for _ in range(4):
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        covs.append((q * rng.uniform(0.5, 2.0, d)) @ q.T)
    w = rng.dirichlet(8.0 * np.ones(4))
    return GaussianMixture(w / w.sum(), means, np.stack(covs), process=VP.ou())
