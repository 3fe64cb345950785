"""Where samples land relative to the training set: nearest-neighbour distances and inter-mode
generations."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from ..._validation import as_float_array


def _check_data(data, d: int | None = None) -> np.ndarray:
    arr = np.asarray(as_float_array(data, "data", ndim=2))
    if arr.shape[0] < 1:
        raise ValueError("`data` must hold at least one training point (got an empty array).")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"`data` must have {d} columns to match the samples, got shape {arr.shape}.")
    return arr


def nearest_distance(x: Float[ArrayLike, "N D"], data: Float[ArrayLike, "M D"]) -> Float[np.ndarray, " N"]:
    """Distance of each sample to its nearest training point.

    Args:
        x: the samples, shape ``(N, D)``.
        data: the training points, shape ``(M, D)`` (at least one).

    Returns:
        ``(N,)`` Euclidean distances (numpy).
    """
    pts = np.asarray(as_float_array(x, "x", ndim=2))
    ref = _check_data(data, pts.shape[1])
    return np.asarray(_nearest(jnp.asarray(pts), jnp.asarray(ref)))


@jax.jit
def _nearest(x, data):
    def one(xi):
        return jnp.sqrt(jnp.min(jnp.sum((data - xi[None, :]) ** 2, axis=-1)))

    return jax.lax.map(one, x, batch_size=256)


def inter_mode_fraction(x: Float[ArrayLike, "N D"], data: Float[ArrayLike, "M D"], radius: float) -> float:
    """Fraction of samples farther than ``radius`` from every training point (inter-mode generations).

    Args:
        x: the samples, shape ``(N, D)``.
        data: the training points, shape ``(M, D)``.
        radius: the copy radius (positive, finite), e.g. :func:`intermode_radius`.
    """
    r = float(radius)
    if not (r > 0 and math.isfinite(r)):
        raise ValueError(f"`radius` must be positive and finite, got {radius}.")
    return float(np.mean(nearest_distance(x, data) > r))


def min_spacing(data: Float[ArrayLike, "M D"]) -> float:
    """Smallest distance between two distinct training points.

    Args:
        data: the training points, shape ``(M, D)`` with ``M >= 2``.
    """
    data = np.asarray(data)
    d = np.sqrt(((data[:, None] - data[None]) ** 2).sum(-1))
    return float(d[~np.eye(len(data), dtype=bool)].min())


def intermode_radius(data: Float[ArrayLike, "M D"]) -> float:
    """Radius around each training point inside which a sample counts as a copy: ``min(0.5, spacing/4)``
    (0.5 is the radius of the paper's code for spacing 5-6).

    Args:
        data: the training points, shape ``(M, D)`` with ``M >= 2``.
    """
    return min(0.5, 0.25 * min_spacing(data))
