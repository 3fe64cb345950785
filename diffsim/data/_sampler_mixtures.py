"""The fixed Gaussian mixtures on which the ``samplers`` study measures convergence orders."""

from __future__ import annotations

import numpy as np

from ..processes import VP
from ..scores import GaussianMixture


def sampler_test_mixture(dim: int, n_components: int, seed: int) -> GaussianMixture:
    """A fixed, well-separated mixture under ``VP.linear()`` with unequal weights ``w_k ∝ k`` and full (2-D)
    or diagonal (higher-dimensional) covariances, the means at radius ``3 sqrt(min(d, 4) / 2)``.

    Deterministic in ``(dim, n_components, seed)`` (NumPy ``default_rng(seed + 1000 dim)``).

    Args:
        dim: the dimension ``d >= 1``; ``d = 2`` gets full covariances, any other ``d`` diagonal ones.
        n_components: the number of components ``K >= 1``.
        seed: the NumPy seed (combined with ``dim`` as above).
    """
    if dim < 1 or n_components < 1:
        raise ValueError(
            f"sampler_test_mixture: dim and n_components must be >= 1, got {dim}, {n_components}."
        )
    rng = np.random.default_rng(seed + 1000 * dim)
    w = np.arange(1, n_components + 1, dtype=float)
    w /= w.sum()
    means = rng.normal(size=(n_components, dim))
    means *= 3.0 / np.linalg.norm(means, axis=1, keepdims=True) * np.sqrt(min(dim, 4) / 2)
    if dim == 2:
        a = rng.normal(size=(n_components, dim, dim)) * 0.4
        covs = np.einsum("kij,klj->kil", a, a) + 0.15 * np.eye(dim)
    else:
        covs = rng.uniform(0.3, 1.2, size=(n_components, dim))
    return GaussianMixture(w, means, covs, process=VP.linear())
