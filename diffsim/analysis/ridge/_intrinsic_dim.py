r"""Intrinsic-dimension estimators: which ``d*`` to use for the ``d*``-ridge of a data set.

The ridge of He, Qiu & Tao (2026, arXiv 2602.06021) needs the intrinsic dimension ``d*``; their MNIST
latent analysis fixes it by hand (``d* = 25`` of 32). These estimators read it off the data or the Hessian:

- **Two-NN** (Facco, d'Errico, Rodriguez & Laio 2017, Sci. Rep. 7:12140). With ``r_1(x_i) < r_2(x_i)``
  the distances to the two nearest neighbours, ``mu_i = r_2 / r_1`` is Pareto distributed,
  ``P(mu > m) = m^{-d}``, for a locally uniform density on a ``d``-manifold, so the maximum-likelihood
  estimate is ``d = N / sum_i log mu_i``. The ``discard`` largest fraction of ``mu`` (outliers, as in the
  paper's linear fit) can be left out; then the truncated-Pareto likelihood is maximised instead.
- **Levina-Bickel MLE** (Levina & Bickel 2005, NeurIPS 17) with the MacKay-Ghahramani (2005) pooling:
  ``m_k(x_i) = [ (1/(k-1)) sum_{j<k} log(T_k(x_i) / T_j(x_i)) ]^{-1}`` with ``T_j`` the distance to the
  ``j``-th neighbour; pooled as ``m_k = [ (1/N) sum_i m_k(x_i)^{-1} ]^{-1}`` (averaging inverses is the
  unbiased form) and averaged over ``k`` in ``[k_min, k_max]``.
- **Eigengap** of the log-density Hessian: with eigenvalues ``lambda_1 >= ... >= lambda_D``, the ridge
  dimension at a point is the ``j`` that maximises ``lambda_j - lambda_{j+1}`` (Genovese et al. 2014's gap
  condition, read backwards: the tangent eigenvalues sit above the normal ones, ``~ -1/sigma_t^2``).
"""

from __future__ import annotations

import math

import numpy as np
from jaxtyping import ArrayLike, Float, Int

from ..._validation import as_float_array, check_positive_int


def _sorted_neighbour_distances(x, k: int) -> np.ndarray:
    """Distances to the ``k`` nearest other points, ascending, shape ``(N, k)`` (float64)."""
    pts = np.asarray(as_float_array(x, "x", ndim=2), np.float64)
    n = pts.shape[0]
    if n < k + 1:
        raise ValueError(f"`x` must hold more than {k} points for {k} neighbours, got {n}.")
    sq = np.sum(pts**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * pts @ pts.T, 0.0)
    np.fill_diagonal(d2, np.inf)
    part = np.partition(d2, k - 1, axis=1)[:, :k]
    dist = np.sqrt(np.sort(part, axis=1))
    if np.any(dist[:, 0] <= 0.0):
        raise ValueError("`x` holds duplicate points (a zero nearest-neighbour distance); remove them.")
    return dist


def two_nn_dimension(x: Float[ArrayLike, "N D"], *, discard: float = 0.0) -> float:
    r"""Two-NN intrinsic dimension (Facco et al. 2017): maximum likelihood of ``mu = r_2 / r_1`` under
    ``P(mu > m) = m^{-d}``.

    Args:
        x: points ``(N, D)``, ``N >= 3``, no duplicates.
        discard: fraction in ``[0, 1)`` of the largest ratios left out (right truncation at the largest
            kept ratio ``m_c``: the likelihood of the kept ones is that of a Pareto law truncated to
            ``[1, m_c]``, solved by bisection). 0 keeps every point and gives ``N / sum log mu``.

    Returns:
        The estimate ``d`` (a float).
    """
    if not (0.0 <= float(discard) < 1.0):
        raise ValueError(f"`discard` must lie in [0, 1), got {discard}.")
    dist = _sorted_neighbour_distances(x, 2)
    logmu = np.sort(np.log(dist[:, 1] / dist[:, 0]))
    n_keep = max(2, int(math.floor(len(logmu) * (1.0 - float(discard)))))
    if n_keep == len(logmu):
        total = float(np.sum(logmu))
        return float(len(logmu) / total) if total > 0 else math.inf
    kept, log_c = logmu[:n_keep], float(logmu[n_keep - 1])
    mean = float(np.mean(kept))
    if mean <= 0 or log_c <= 0:
        return math.inf

    # truncated Pareto on [1, c]: density d m^{-d-1} / (1 - c^{-d}); the score equation in d is
    # 1/d - mean(log mu) - log(c) c^{-d} / (1 - c^{-d}) = 0, decreasing in d
    def score(d):
        return 1.0 / d - mean - log_c / math.expm1(d * log_c)

    lo, hi = 1e-6, 1.0
    while score(hi) > 0 and hi < 1e6:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if score(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def mle_dimension(x: Float[ArrayLike, "N D"], *, k_min: int = 5, k_max: int = 20) -> float:
    r"""Levina-Bickel maximum-likelihood intrinsic dimension with MacKay-Ghahramani pooling, averaged
    over ``k`` in ``[k_min, k_max]`` (module docstring).

    Args:
        x: points ``(N, D)``, ``N > k_max``, no duplicates.
        k_min: smallest neighbourhood size, ``>= 2``.
        k_max: largest neighbourhood size, ``>= k_min``.

    Returns:
        The estimate (a float).
    """
    k_min = check_positive_int(k_min, "k_min", minimum=2)
    k_max = check_positive_int(k_max, "k_max", minimum=k_min)
    dist = _sorted_neighbour_distances(x, k_max)
    logd = np.log(dist)
    estimates = []
    for k in range(k_min, k_max + 1):
        # inverse local estimate: mean_j<k log(T_k / T_j)
        inv_local = logd[:, k - 1] - np.mean(logd[:, : k - 1], axis=1)
        estimates.append(1.0 / float(np.mean(inv_local)))
    return float(np.mean(estimates))


def eigengap_dimension(eigvals: Float[ArrayLike, "*N D"]) -> Int[np.ndarray, "*N"]:
    r"""Ridge dimension from a Hessian spectrum: ``argmax_j (lambda_j - lambda_{j+1})``, ``j = 1..D-1``.

    Args:
        eigvals: eigenvalues in **descending** order along the last axis (as returned by
            :func:`~diffsim.analysis.ridge.hessian_spectrum`), ``D >= 2``.

    Returns:
        The dimension at each point (integers in ``[1, D-1]``).
    """
    lam = np.asarray(as_float_array(eigvals, "eigvals"), np.float64)
    if lam.ndim < 1 or lam.shape[-1] < 2:
        raise ValueError(f"`eigvals` must have at least 2 entries along its last axis, got {lam.shape}.")
    gaps = lam[..., :-1] - lam[..., 1:]
    if np.any(gaps < -1e-9 * np.maximum(np.abs(lam[..., :-1]), 1.0)):
        raise ValueError("`eigvals` must be sorted in descending order along the last axis.")
    return np.argmax(gaps, axis=-1) + 1
