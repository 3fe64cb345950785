r"""Sample-quality metrics: mode assignment, energy distance, MMD, 1-D Wasserstein, calibration.

All distances are computed in chunks so that ``N x M`` distance matrices never have to fit in memory.

- Energy distance (Szekely & Rizzo 2013): ``E(P, Q) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (U-statistics
  for the within-sample terms), zero iff ``P = Q``.
- MMD with a Gaussian kernel ``k(x, y) = exp(-|x - y|^2 / (2 h^2))`` (Gretton et al. 2012), unbiased
  U-statistic estimate of ``MMD^2``; the bandwidth defaults to the median heuristic on the pooled sample.
- ``wasserstein_1d``: ``W_p`` between two 1-D samples by sorting (quantile coupling, equal sizes or
  interpolated quantiles).
- ``mode_assignment``: the maximum-posterior component of each point under an analytic mixture at
  ``t = 0``, and the weight error ``max_k |f_k - w_k|`` of the empirical frequencies.
- ``expected_calibration_error``: ECE of predicted class probabilities against labels (equal-width bins).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .._validation import as_float_array, check_positive_int


__all__ = [
    "energy_distance",
    "expected_calibration_error",
    "mean_pairwise_distance",
    "mmd",
    "mode_assignment",
    "mode_weight_error",
    "wasserstein_1d",
]


def _pad_chunks(x, chunk):
    n = x.shape[0]
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    xp = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    mask = jnp.arange(n_chunks * chunk) < n
    return xp.reshape((n_chunks, chunk) + x.shape[1:]), mask.reshape(n_chunks, chunk)


@eqx.filter_jit
def _pair_sum(x, y, kernel, chunk, exclude_diagonal):
    """``sum_{i,j} k(x_i, y_j)`` over all pairs (optionally skipping ``i == j`` when ``x is y``)."""
    xs, xm = _pad_chunks(x, chunk)

    def row_block(carry, inp):
        xb, mb, i0 = inp
        d2 = jnp.sum(xb**2, 1)[:, None] + jnp.sum(y**2, 1)[None, :] - 2.0 * xb @ y.T
        k = kernel(jnp.maximum(d2, 0.0))
        k = jnp.where(mb[:, None], k, 0.0)
        if exclude_diagonal:
            rows = i0 + jnp.arange(xb.shape[0])
            k = jnp.where(rows[:, None] == jnp.arange(y.shape[0])[None, :], 0.0, k)
        return carry + jnp.sum(k), None

    starts = jnp.arange(xs.shape[0]) * chunk
    total, _ = jax.lax.scan(row_block, jnp.zeros((), x.dtype), (xs, xm, starts))
    return total


def _dist(d2):
    # sqrt with a safe gradient at 0
    return jnp.where(d2 > 0, jnp.sqrt(jnp.where(d2 > 0, d2, 1.0)), 0.0)


def _check_pair(x, y):
    x = as_float_array(x, "x", ndim=2)
    y = as_float_array(y, "y", ndim=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"`x` and `y` must have the same dimension, got {x.shape[1]} and {y.shape[1]}.")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("Need at least 2 points in each sample.")
    return x, y.astype(x.dtype)


def mean_pairwise_distance(
    x: Float[Array | np.ndarray, "N d"], y: Float[Array | np.ndarray, "M d"], *, chunk: int = 1024
) -> Array:
    """``E|X - Y|`` over all pairs of the two samples.

    Args:
        x: first sample, shape ``(N, d)``, ``N >= 2``.
        y: second sample, shape ``(M, d)``, ``M >= 2`` (cast to ``x``'s dtype).
        chunk: rows of ``x`` per block of the distance matrix (default 1024; memory ``chunk x M``).

    Returns:
        The mean Euclidean distance, a scalar.
    """
    x, y = _check_pair(x, y)
    return _pair_sum(x, y, _dist, chunk, False) / float(x.shape[0] * y.shape[0])


def energy_distance(
    x: Float[Array | np.ndarray, "N d"], y: Float[Array | np.ndarray, "M d"], *, chunk: int = 1024
) -> Array:
    r"""Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (within-sample terms as U-statistics).

    Args:
        x: first sample, shape ``(N, d)``, ``N >= 2``.
        y: second sample, shape ``(M, d)``, ``M >= 2`` (cast to ``x``'s dtype).
        chunk: rows of ``x`` per block of the distance matrix (default 1024; memory ``chunk x M``).

    Returns:
        The energy distance estimate, a scalar (unbiased, so it may be slightly negative when ``P = Q``).
    """
    x, y = _check_pair(x, y)
    chunk = check_positive_int(chunk, "chunk")
    n, m = x.shape[0], y.shape[0]
    xy = _pair_sum(x, y, _dist, chunk, False) / float(n * m)
    xx = _pair_sum(x, x, _dist, chunk, True) / float(n * (n - 1))
    yy = _pair_sum(y, y, _dist, chunk, True) / float(m * (m - 1))
    return 2.0 * xy - xx - yy


def _median_bandwidth(x, y, max_points=2000):
    z = np.concatenate([np.asarray(x[:max_points]), np.asarray(y[:max_points])])
    d2 = np.sum((z[:, None, :] - z[None, :, :]) ** 2, -1)
    med = np.median(d2[np.triu_indices(z.shape[0], 1)])
    return float(np.sqrt(0.5 * med)) if med > 0 else 1.0


def mmd(
    x: Float[Array | np.ndarray, "N d"],
    y: Float[Array | np.ndarray, "M d"],
    *,
    bandwidth: float | None = None,
    chunk: int = 1024,
) -> Array:
    r"""Unbiased ``MMD^2`` with a Gaussian kernel of width ``bandwidth`` (median heuristic by default).

    Args:
        x: first sample, shape ``(N, d)``, ``N >= 2``.
        y: second sample, shape ``(M, d)``, ``M >= 2`` (cast to ``x``'s dtype).
        bandwidth: the kernel width ``h > 0`` in ``exp(-|x - y|^2 / (2 h^2))``; ``None`` (default): the
            median heuristic ``sqrt(median |z_i - z_j|^2 / 2)`` on the first 2000 points of each sample.
        chunk: rows of ``x`` per block of the distance matrix (default 1024; memory ``chunk x M``).

    Returns:
        The ``MMD^2`` estimate, a scalar (may be slightly negative).
    """
    x, y = _check_pair(x, y)
    h = _median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"`bandwidth` must be positive, got {h}.")
    kern = lambda d2: jnp.exp(-d2 / (2.0 * h**2))  # noqa: E731
    n, m = x.shape[0], y.shape[0]
    kxx = _pair_sum(x, x, kern, chunk, True) / float(n * (n - 1))
    kyy = _pair_sum(y, y, kern, chunk, True) / float(m * (m - 1))
    kxy = _pair_sum(x, y, kern, chunk, False) / float(n * m)
    return kxx + kyy - 2.0 * kxy


def wasserstein_1d(
    x: Float[Array | np.ndarray, " N"], y: Float[Array | np.ndarray, " M"], p: float = 1.0
) -> Array:
    """``W_p`` between two 1-D samples via the quantile coupling (interpolated when sizes differ).

    Args:
        x: first sample, shape ``(N,)``.
        y: second sample, shape ``(M,)``.
        p: the order ``p >= 1`` (default 1).

    Returns:
        ``W_p``, a scalar.
    """
    x = jnp.sort(as_float_array(x, "x", ndim=1))
    y = jnp.sort(as_float_array(y, "y", ndim=1))
    if not p >= 1:
        raise ValueError(f"`p` must be >= 1, got {p}.")
    n = max(x.shape[0], y.shape[0])
    q = (jnp.arange(n, dtype=float) + 0.5) / n
    xq = jnp.interp(q, (jnp.arange(x.shape[0], dtype=float) + 0.5) / x.shape[0], x)
    yq = jnp.interp(q, (jnp.arange(y.shape[0], dtype=float) + 0.5) / y.shape[0], y)
    return jnp.mean(jnp.abs(xq - yq) ** p) ** (1.0 / p)


def mode_assignment(mixture, x: Float[Array | np.ndarray, "N d"], t: float = 0.0) -> Int[Array, " N"]:
    """Maximum-posterior component of each point under an analytic mixture at time ``t``.

    Args:
        mixture (AbstractAnalyticScore): an analytic mixture score with ``posterior(t, x)`` (e.g.
            :class:`~diffsim.GaussianMixture`).
        x: points, shape ``(N, d)``.
        t: the time at which the posterior is taken (default 0: the data).

    Returns:
        The component indices, shape ``(N,)``.
    """
    x = as_float_array(x, "x", ndim=2)
    return jax.vmap(lambda xi: jnp.argmax(mixture.posterior(t, xi)))(x)


def mode_weight_error(
    mixture, x: Float[Array | np.ndarray, "N d"], *, soft: bool = True
) -> tuple[Array, Array]:
    """Empirical component frequencies of ``x`` and ``max_k |f_k - w_k|`` against the mixture weights.

    With ``soft=True`` frequencies are mean posterior responsibilities at ``t = 0`` (an unbiased estimate
    of ``w`` for exact samples, whatever the overlap); otherwise hard maximum-posterior counts.

    Args:
        mixture (GaussianMixture): an analytic mixture with ``posterior``, ``weights`` and ``n_components``
            (a :class:`~diffsim.GaussianMixture` or a conditional mixture).
        x: samples, shape ``(N, d)``.
        soft: mean responsibilities (default ``True``) or hard counts (``False``).

    Returns:
        ``(freq, err)``: the frequencies, shape ``(K,)``, and ``max_k |f_k - w_k|``, a scalar.
    """
    x = as_float_array(x, "x", ndim=2)
    if soft:
        freq = jnp.mean(jax.vmap(lambda xi: mixture.posterior(0.0, xi))(x), axis=0)
    else:
        freq = jnp.bincount(mode_assignment(mixture, x), length=mixture.n_components) / x.shape[0]
    return freq, jnp.max(jnp.abs(freq - mixture.weights))


def expected_calibration_error(
    probs: Float[Array | np.ndarray, "N C"], labels: Int[Array | np.ndarray, " N"], n_bins: int = 15
) -> Array:
    """Expected calibration error of the top-class confidence (equal-width bins).

    Args:
        probs: predicted class probabilities, shape ``(N, C)``.
        labels: true integer classes, shape ``(N,)``.
        n_bins: number of equal-width confidence bins on ``[0, 1]`` (default 15).

    Returns:
        ``sum_b |sum_{i in b} conf_i - sum_{i in b} correct_i| / N``, a scalar in ``[0, 1]``.
    """
    probs = as_float_array(probs, "probs", ndim=2)
    labels = jnp.asarray(labels)
    n_bins = check_positive_int(n_bins, "n_bins")
    conf = jnp.max(probs, 1)
    correct = (jnp.argmax(probs, 1) == labels).astype(probs.dtype)
    bins = jnp.clip((conf * n_bins).astype(int), 0, n_bins - 1)
    sum_conf = jnp.bincount(bins, weights=conf, length=n_bins)
    sum_acc = jnp.bincount(bins, weights=correct, length=n_bins)
    return jnp.sum(jnp.abs(sum_conf - sum_acc)) / float(probs.shape[0])
