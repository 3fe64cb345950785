"""Kozachenko-Leonenko k-nearest-neighbour entropy estimator, with the Berrett-Samworth-Yuan weights."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..._validation import as_float_array, check_positive_int, is_concrete


def unit_ball_log_volume(d: int) -> float:
    """``log V_d = d/2 log(pi) - lgamma(d/2 + 1)``: log-volume of the Euclidean unit ball in ``R^d``.

    Args:
        d: the dimension.
    """
    return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)


@eqx.filter_jit
def _knn_chunked(x, k, chunk, n_extra):
    n, d = x.shape
    x = x - jnp.mean(x, axis=0, keepdims=True)
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
    matrix); candidates found by the Gram expansion are refined by exact differences.

    Args:
        x: points, shape ``(N, d)`` with ``N > k``.
        k: number of neighbours.
        chunk_size: rows per block for ``d > 1`` (capped at ``N``); ignored in 1-D.

    Returns:
        The sorted distances, shape ``(N, k)``; column ``j`` is the distance to the ``(j+1)``-th neighbour.
    """
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
    ``j = 1..k``. For ``d <= 3`` (no constraint) the weights are ``e_k`` (the plain estimator).

    Args:
        k: number of neighbours; at least ``floor(d/4) + 1`` (else ``ValueError``).
        d: the dimension.

    Returns:
        The weights, a float64 array of shape ``(k,)`` summing to 1.
    """
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

    Args:
        x: samples, shape ``(N, d)`` with ``N > k``.
        k: the neighbour order; ``None`` uses 1, or ``max(3, 2 d)`` with ``bias_correction``.
        bias_correction: return the Berrett-Samworth-Yuan weighted estimator over ``j = 1..k``.
        chunk_size: rows per distance block (memory), as in :func:`knn_distances`.
        ties: ``"raise"`` (default) or ``"resolution"``, as above.

    Returns:
        The entropy estimate in nats, a scalar array.
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
