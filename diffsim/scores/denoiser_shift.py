"""Perturbed scores with an error of known direction: a constant denoiser-level shift
(:class:`DenoiserShiftScore`) and a denoiser clipped to a segment (:class:`SegmentDenoiserScore`).

For the two-point training set on the x-axis (whose log-density ridge is the x-axis) the first error is
purely normal to the ridge and the second purely tangent: they isolate the *align* and *slide* effects of
He, Qiu & Tao (2026, arXiv 2602.06021)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ..processes import AbstractProcess
from ._base import AbstractScore


class DenoiserShiftScore(AbstractScore):
    r"""``base`` plus a constant denoiser-level error ``delta``: ``s = s_base + delta / sigma_t^2``.

    For the two-point set on the x-axis and ``delta = (0, c)`` the error ``e = delta / sigma_t^2`` is
    purely normal to the ridge (the x-axis) at every point.

    Args:
        base: the score to perturb; its process is the new score's.
        shift: the constant error ``delta`` ``(d,)``, added to the scaled denoiser ``x + sigma_t^2 s =
            alpha_t x0_hat``.
    """

    base: AbstractScore
    shift: Float[Array, " d"]
    process: AbstractProcess

    def __init__(self, base: AbstractScore, shift: ArrayLike):
        self.base = base
        self.shift = jnp.asarray(shift)
        self.process = base.process

    @property
    def dim(self) -> int:
        return self.base.dim

    def score(self, t, x):
        return self.base.score(t, x) + self.shift.astype(x.dtype) / self.process.sigma2(t)


class SegmentDenoiserScore(AbstractScore):
    r"""``base`` with its denoiser moved, along the unit direction ``u`` of the segment ``[start, end]``,
    toward the clipped projection: ``u.D = u.D_base + strength (clip(u.x, alpha_t u.start, alpha_t u.end)
    - u.D_base)`` (``strength = 1``: replaced; ``0``: the base score).

    Every point of the (scaled) segment is then a fixed point of the denoiser: a smooth, non-memorising
    denoiser along the segment. The error ``D - D_base`` is parallel to ``u``, i.e. purely tangent for
    the two-point set whose ridge is the line through the points.

    Args:
        base: the score whose denoiser is moved; its process is the new score's.
        start: one end of the segment ``(d,)``, in data space (scaled by ``alpha_t`` at time ``t``).
        end: the other end ``(d,)``; ``end - start`` gives the direction ``u`` (must be nonzero).
        strength: how far the denoiser moves toward the clipped projection: 1 (default) replaces it, 0
            keeps the base score.
    """

    base: AbstractScore
    start: Float[Array, " d"]
    end: Float[Array, " d"]
    strength: Float[Array, ""]
    process: AbstractProcess

    def __init__(self, base: AbstractScore, start: ArrayLike, end: ArrayLike, strength: ArrayLike = 1.0):
        self.base = base
        self.start = jnp.asarray(start)
        self.end = jnp.asarray(end)
        self.strength = jnp.asarray(strength)
        self.process = base.process

    @property
    def dim(self) -> int:
        return self.base.dim

    def score(self, t, x):
        p = self.process
        a, s2 = p.alpha(t), p.sigma2(t)
        d_base = x + s2 * self.base.score(t, x)  # alpha_t E[x_0 | x]
        u = (self.end - self.start).astype(x.dtype)
        u = u / jnp.linalg.norm(u)
        lo, hi = a * (u @ self.start), a * (u @ self.end)
        target = jnp.clip(u @ x, jnp.minimum(lo, hi), jnp.maximum(lo, hi))
        d_new = d_base + self.strength.astype(x.dtype) * u * (target - u @ d_base)
        return (d_new - x) / s2
