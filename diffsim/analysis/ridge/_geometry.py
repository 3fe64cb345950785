"""Ridge geometry of ``log p_t`` at points: Hessian spectrum, eigengap mask, Newton distance, SCMS
projection and the normal / tangent decomposition (see :mod:`diffsim.analysis.ridge`)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ..._validation import as_float_array, check_positive_int, is_concrete
from ...scores._base import AbstractScore


# =====================================================================================================
# validation
# =====================================================================================================
def _check_score(score: AbstractScore) -> AbstractScore:
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim score (AbstractScore), got {type(score).__name__}.")
    return score


def _check_intrinsic_dim(k, d: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"`intrinsic_dim` must be an integer, got {type(k).__name__}.")
    if d < 2:
        raise ValueError(
            f"A ridge needs dimension d >= 2 (1 <= intrinsic_dim <= d - 1); the score has d = {d}."
        )
    if not 1 <= int(k) <= d - 1:
        raise ValueError(f"`intrinsic_dim` must lie in [1, d - 1] = [1, {d - 1}], got {k}.")
    return int(k)


def _check_t(score: AbstractScore, t) -> Array:
    if is_concrete(t):
        arr = np.asarray(t, dtype=float)
        if arr.ndim != 0:
            raise ValueError(f"`t` must be a scalar time, got shape {arr.shape}.")
        if not arr > 0:
            raise ValueError(f"`t` must be > 0 (the ridge of p_t is defined for t > 0), got {float(arr):g}.")
        score.process.check_time(t, "t", allow_zero=False)
    return jnp.asarray(t)


def _check_points(x, d: int, name: str = "x") -> tuple[Array, bool]:
    arr = as_float_array(x, name, ndim=(1, 2))
    single = arr.ndim == 1
    arr = arr[None] if single else arr
    if arr.shape[1] != d:
        raise ValueError(f"`{name}` must have shape (N, {d}) to match the score, got {tuple(np.shape(x))}.")
    if arr.shape[0] < 1:
        raise ValueError(f"`{name}` must hold at least one point.")
    return arr, single


def _check_threshold(gap_threshold) -> float:
    g = float(gap_threshold)
    if not (g >= 0 and math.isfinite(g)):
        raise ValueError(f"`gap_threshold` must be finite and >= 0, got {gap_threshold}.")
    return g


def _unbatch(tree, single: bool):
    return jax.tree.map(lambda a: a[0], tree) if single else tree


# =====================================================================================================
# Hessian spectrum and the ridge geometry at a point
# =====================================================================================================
class RidgeGeometry(eqx.Module):
    r"""Local ridge geometry at a batch of points (leading axes ``...``; see the module docstring).

    Attributes:
        eigvals: ``(..., D)`` Hessian eigenvalues, descending.
        eigvecs: ``(..., D, D)`` eigenvectors (columns, same order).
        gradient: ``(..., D)`` ``\nabla log p_t``.
        gap: ``(...)`` ``lambda_k - lambda_{k+1}``.
        relative_gap: ``(...)`` ``gap / |lambda_D|``.
        curvature: ``(...)`` ``lambda_{k+1}``.
        valid: ``(...)`` eigengap above threshold and ``lambda_{k+1} < 0``.
        residual: ``(...)`` ``|P_perp g|``, NaN where not ``valid``.
        newton_distance: ``(...)`` ``|Lambda_perp^{-1} V_perp^T g|``, NaN where not ``valid``.
        intrinsic_dim: the ridge dimension ``k``.
    """

    eigvals: Float[Array, "... D"]
    eigvecs: Float[Array, "... D D"]
    gradient: Float[Array, "... D"]
    gap: Float[Array, ...]
    relative_gap: Float[Array, ...]
    curvature: Float[Array, ...]
    valid: Bool[Array, ...]
    residual: Float[Array, ...]
    newton_distance: Float[Array, ...]
    intrinsic_dim: int = eqx.field(static=True)

    @property
    def normal_basis(self) -> Float[Array, "... D Dk"]:
        """``V_perp``: eigenvectors of the ``D - k`` most negative eigenvalues."""
        return self.eigvecs[..., :, self.intrinsic_dim :]

    @property
    def tangent_basis(self) -> Float[Array, "... D k"]:
        """Eigenvectors of the ``k`` largest eigenvalues."""
        return self.eigvecs[..., :, : self.intrinsic_dim]

    @property
    def normal_projector(self) -> Float[Array, "... D D"]:
        vn = self.normal_basis
        return vn @ jnp.swapaxes(vn, -1, -2)


def _spectrum_point(score, t, x):
    h = score.hessian(t, x)
    h = 0.5 * (h + h.T)
    w, v = jnp.linalg.eigh(h)
    return w[::-1], v[:, ::-1]


def _geometry_point(score, t, x, k: int, thr, relative: bool) -> RidgeGeometry:
    w, v = _spectrum_point(score, t, x)
    g = score.score(t, x)
    gap = w[k - 1] - w[k]
    scale = jnp.abs(w[-1])
    rel_gap = gap / jnp.where(scale > 0, scale, 1.0)
    curv = w[k]
    valid = ((rel_gap if relative else gap) > thr) & (curv < 0) & jnp.all(jnp.isfinite(w))
    coef = v[:, k:].T @ g
    safe_w = jnp.where(valid, w[k:], -1.0)
    nan = jnp.asarray(jnp.nan, g.dtype)
    residual = jnp.where(valid, jnp.linalg.norm(coef), nan)
    newton = jnp.where(valid, jnp.linalg.norm(coef / safe_w), nan)
    return RidgeGeometry(w, v, g, gap, rel_gap, curv, valid, residual, newton, k)


@eqx.filter_jit
def _hessians(score, t, x):
    return jax.vmap(lambda xi: score.hessian(t, xi))(x)


@eqx.filter_jit
def _spectra(score, t, x):
    return jax.vmap(lambda xi: _spectrum_point(score, t, xi))(x)


@eqx.filter_jit
def _geometries(score, t, x, k, thr, relative):
    return jax.vmap(lambda xi: _geometry_point(score, t, xi, k, thr, relative))(x)


def log_density_hessian(
    score: AbstractScore, t: ArrayLike, x: Float[ArrayLike, "*N D"]
) -> Float[Array, "*N D D"]:
    r"""``\nabla^2 log p_t(x)`` at each point: ``score.hessian`` (closed form for
    :class:`~diffsim.GaussianMixture` and :class:`~diffsim.EmpiricalScore`, forward-mode autodiff of the
    score for any other score). ``x`` is ``(N, D)`` or one point ``(D,)``.

    Args:
        score: any diffsim score.
        t: the time, a positive scalar.
        x: the points, ``(N, D)`` or ``(D,)``.

    Returns:
        ``(N, D, D)`` (or ``(D, D)``) Hessians.
    """
    _check_score(score)
    t = _check_t(score, t)
    pts, single = _check_points(x, score.dim)
    return _unbatch(_hessians(score, t.astype(pts.dtype), pts), single)


def hessian_spectrum(
    score: AbstractScore, t: ArrayLike, x: Float[ArrayLike, "*N D"]
) -> tuple[Float[Array, "*N D"], Float[Array, "*N D D"]]:
    """Eigenvalues (descending) and eigenvectors (columns) of ``\\nabla^2 log p_t`` at each point.

    Args:
        score: any diffsim score.
        t: the time, a positive scalar.
        x: the points, ``(N, D)`` or ``(D,)``.

    Returns:
        ``(eigvals, eigvecs)`` of shapes ``(N, D)`` and ``(N, D, D)`` (no ``N`` axis for one point).
    """
    _check_score(score)
    t = _check_t(score, t)
    pts, single = _check_points(x, score.dim)
    return _unbatch(_spectra(score, t.astype(pts.dtype), pts), single)


def ridge_geometry(
    score: AbstractScore,
    t: ArrayLike,
    x: Float[ArrayLike, "*N D"],
    intrinsic_dim: int,
    *,
    gap_threshold: float = 1e-2,
    relative_gap: bool = True,
) -> RidgeGeometry:
    """The :class:`RidgeGeometry` of the ``intrinsic_dim``-ridge of ``log p_t`` at each point of ``x``
    (``(N, D)`` or ``(D,)``): spectrum, eigengap, mask, residual and Newton distance.

    Args:
        score: any diffsim score of dimension ``D >= 2``.
        t: the time, a positive scalar.
        x: the points, ``(N, D)`` or ``(D,)``.
        intrinsic_dim: the ridge dimension ``k`` in ``[1, D - 1]``.
        gap_threshold: points with an eigengap at or below it are masked (non-negative).
        relative_gap: compare ``gap / |lambda_D|`` (default) rather than ``gap`` with ``gap_threshold``.
    """
    _check_score(score)
    k = _check_intrinsic_dim(intrinsic_dim, score.dim)
    t = _check_t(score, t)
    thr = _check_threshold(gap_threshold)
    pts, single = _check_points(x, score.dim)
    geo = _geometries(score, t.astype(pts.dtype), pts, k, jnp.asarray(thr, pts.dtype), bool(relative_gap))
    return _unbatch(geo, single)


# =====================================================================================================
# SCMS projection
# =====================================================================================================
class SCMSResult(eqx.Module):
    """Outcome of :func:`scms_project` per point. Built per point (no leading axis) and stacked by ``vmap``.

    Attributes:
        x: ``(N, D)`` the projected points.
        distance: ``(N,)`` ``|x0 - x|``, the distance moved.
        converged: ``(N,)`` whether the Newton-step length fell below ``tol``.
        n_iter: ``(N,)`` iterations run.
        residual: ``(N,)`` ``|P_perp g|`` at the end point.
        step: ``(N,)`` the last Newton-step length (the convergence statistic).
        valid: ``(N,)`` the eigengap mask at the end point.
    """

    x: Float[Array, "*N D"]
    distance: Float[Array, "*N"]
    converged: Bool[Array, "*N"]
    n_iter: Int[Array, "*N"]
    residual: Float[Array, "*N"]
    step: Float[Array, "*N"]
    valid: Bool[Array, "*N"]


def _scms_point(score, t, x0, k, thr, relative, tol, max_iter, step_size):
    def parts(x):
        w, v = _spectrum_point(score, t, x)
        g = score.score(t, x)
        vn = v[:, k:]
        coef = vn.T @ g
        return w, vn, coef

    def cond(state):
        _, i, done, _ = state
        return (i < max_iter) & ~done

    def body(state):
        x, i, _, _ = state
        w, vn, coef = parts(x)
        curv = jnp.abs(w[-1])
        newton_len = jnp.linalg.norm(coef) / curv
        done = newton_len < tol
        eta = jnp.where(step_size > 0, step_size, 1.0 / curv)
        x_new = jnp.where(done, x, x + eta * (vn @ coef))
        return x_new, i + 1, done, newton_len

    init = (x0, jnp.asarray(0, jnp.int32), jnp.asarray(False), jnp.asarray(jnp.inf, x0.dtype))
    x, n_iter, done, step = jax.lax.while_loop(cond, body, init)
    geo = _geometry_point(score, t, x, k, thr, relative)
    resid = jnp.linalg.norm(geo.normal_basis.T @ geo.gradient)
    return SCMSResult(x, jnp.linalg.norm(x - x0), done, n_iter, resid, step, geo.valid)


@eqx.filter_jit
def _scms(score, t, x, k, thr, relative, tol, max_iter, step_size):
    return jax.vmap(lambda xi: _scms_point(score, t, xi, k, thr, relative, tol, max_iter, step_size))(x)


def scms_project(
    score: AbstractScore,
    t: ArrayLike,
    x: Float[ArrayLike, "*N D"],
    intrinsic_dim: int,
    *,
    tol: float | None = None,
    max_iter: int = 500,
    step_size: float | None = None,
    gap_threshold: float = 1e-2,
    relative_gap: bool = True,
) -> SCMSResult:
    r"""Project points onto the ``intrinsic_dim``-ridge of ``log p_t`` by subspace-constrained mean shift.

    Iterates ``x <- x + eta P_perp(x) \nabla log p_t(x)`` in a ``lax.while_loop`` until the Newton-step
    length ``|P_perp g| / |lambda_D|`` is below ``tol`` (default 1e-10 in float64, 1e-5 in float32) or
    ``max_iter`` iterations. ``step_size`` ``eta`` defaults to ``1 / |lambda_D(x)|``; pass the kernel
    variance ``c_t = sigma_t^2`` to run the classic SCMS of an isotropic empirical score. Start from
    points inside the tube (SCMS has no global convergence guarantee) and use ``valid`` and
    ``converged`` of the result.

    Args:
        score: any diffsim score of dimension ``D >= 2``.
        t: the time, a positive scalar.
        x: starting points, ``(N, D)`` or ``(D,)``.
        intrinsic_dim: the ridge dimension ``k`` in ``[1, D - 1]``.
        tol: convergence tolerance on the Newton-step length (data units); ``None`` for the dtype default.
        max_iter: most iterations per point.
        step_size: a fixed ``eta`` (positive); ``None`` for ``1 / |lambda_D(x)|``.
        gap_threshold: eigengap threshold of the end point's ``valid`` mask.
        relative_gap: compare the relative eigengap (default) rather than the absolute one.
    """
    _check_score(score)
    k = _check_intrinsic_dim(intrinsic_dim, score.dim)
    t = _check_t(score, t)
    thr = _check_threshold(gap_threshold)
    max_iter = check_positive_int(max_iter, "max_iter")
    pts, single = _check_points(x, score.dim)
    if tol is None:
        tol = 1e-10 if pts.dtype == jnp.float64 else 1e-5
    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"`tol` must be positive and finite, got {tol}.")
    if step_size is not None and not (step_size > 0 and math.isfinite(step_size)):
        raise ValueError(f"`step_size` must be positive and finite, got {step_size}.")
    dt = pts.dtype
    res = _scms(
        score,
        t.astype(dt),
        pts,
        k,
        jnp.asarray(thr, dt),
        bool(relative_gap),
        jnp.asarray(tol, dt),
        jnp.asarray(max_iter, jnp.int32),
        jnp.asarray(0.0 if step_size is None else step_size, dt),
    )
    return _unbatch(res, single)


# =====================================================================================================
# normal / tangent decompositions along trajectories
# =====================================================================================================
def decompose(
    vectors: Float[ArrayLike, "... D"], normal_basis: Float[ArrayLike, "... D Dk"]
) -> tuple[Float[Array, ...], Float[Array, ...]]:
    """Norms of the normal part ``|V_perp^T u|`` and of the tangent part ``|u - V_perp V_perp^T u|``.

    Args:
        vectors: ``(..., D)`` the vectors ``u``.
        normal_basis: ``(..., D, D - k)`` orthonormal normal bases ``V_perp`` (broadcast with ``vectors``).

    Returns:
        ``(normal, tangent)`` norms, each of the leading shape ``(...)``.
    """
    u = jnp.asarray(vectors)
    vn = jnp.asarray(normal_basis)
    coef = jnp.einsum("...dk,...d->...k", vn, u)
    normal = jnp.einsum("...dk,...k->...d", vn, coef)
    return jnp.linalg.norm(coef, axis=-1), jnp.linalg.norm(u - normal, axis=-1)
