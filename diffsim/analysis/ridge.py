r"""The log-density ridge of ``p_t`` and the reach / align / slide decomposition of sampling.

He, Qiu & Tao (2026, arXiv 2602.06021) describe generation by a non-memorising model as motion around
the time-indexed *log-density ridge* of the smoothed empirical distribution
``\hat p_t = (1/M) sum_i N(alpha_t x_i, sigma_t^2 I)``. This module measures that geometry for any score.

**Ridge** (Genovese et al. 2014, Ann. Statist. 42:1511, applied to ``log p``; Ozertem & Erdogmus 2011,
JMLR 12:1249). Let ``g = \nabla log p_t(x)`` and ``H = \nabla^2 log p_t(x)`` with eigenvalues
``lambda_1 >= ... >= lambda_D`` and eigenvectors ``v_j``. For intrinsic dimension ``k`` (``1 <= k <= D-1``)
the *normal space* is spanned by ``V_perp = [v_{k+1}, ..., v_D]`` (the most negative curvatures),
``P_perp = V_perp V_perp^T``, and the ``k``-ridge is

    R_t = { x : P_perp(x) g(x) = 0,  lambda_{k+1}(x) < 0 }.

``jnp.linalg.eigh`` returns ascending eigenvalues; here they are flipped to descending order so that the
normal space is ``eigvecs[:, k:]``.

**Eigengap mask.** The normal space is defined only where ``gap = lambda_k - lambda_{k+1}`` is bounded
away from zero (Genovese's condition A1). For sparse data at small ``t`` the Hessian near a training point
is ``~ -I / sigma_t^2`` (isotropic: a mode, not a ``k``-ridge) and the normal space returned by ``eigh`` is
arbitrary. Every point with ``gap < gap_threshold * |lambda_D|`` (relative, the default) or
``gap < gap_threshold`` (absolute), or with ``lambda_{k+1} >= 0``, is **masked**: its residual and
distances are NaN and ``valid`` is False. Summaries must use the mask; nothing is silently scored.

**Residual vs distance.** The residual ``rho = |P_perp g|`` is not a distance: near the ridge
``P_perp g ~ H_perp r`` with ``r`` the normal displacement and ``|H_perp| ~ 1 / sigma_t^2``, so
``rho ~ dist / sigma_t^2``. Two distance estimates are provided:

- one-step Newton: ``dist_N = | Lambda_perp^{-1} V_perp^T g |`` (``Lambda_perp`` the normal eigenvalues);
- subspace-constrained mean shift (SCMS), iterated to convergence:
  ``x <- x + eta P_perp(x) g(x)``. With ``eta = c_t`` (the kernel variance) and the empirical score this is
  exactly the SCMS step ``x <- x + P_perp (alpha_t m_t(x) - x)`` (``m_t`` the posterior mean); the default
  ``eta = 1 / |lambda_D(x)|`` equals it where the normal posterior variance vanishes and is a safe
  gradient step for any score. Convergence: ``|P_perp g| / |lambda_D| < tol`` (the Newton step length,
  in data units), within ``max_iter`` iterations; the distance is ``|x - SCMS(x)|``.

**Trajectories.** :func:`ridge_stats` builds a ``stats(t, x)`` function for :func:`diffsim.simulate` that
records, at each saved step, the residual, Newton distance, eigengap and mask, and the normal / tangent
norms of the score error (learned minus reference score) and of the reverse drift;
:func:`displacement_components` splits the displacement between saved steps. :func:`detect_phases`
labels each particle and step **outside** the tube, **align** (inside the tube, the normal drift
dominates: relaxation toward the ridge) or **slide** (inside, the tangent drift dominates), and finds the
**reach** time (entering the tube for good). :func:`inter_mode_fraction` counts samples far from every
training point.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .._validation import as_float_array, check_positive_int, is_concrete
from ..processes import AbstractProcess
from ..scores._base import AbstractScore


__all__ = [
    "PHASE_ALIGN",
    "PHASE_NAMES",
    "PHASE_OUTSIDE",
    "PHASE_SLIDE",
    "PHASE_UNRESOLVED",
    "Phases",
    "RidgeGeometry",
    "RidgeStats",
    "SCMSResult",
    "decompose",
    "detect_phases",
    "displacement_components",
    "hessian_spectrum",
    "inter_mode_fraction",
    "log_density_hessian",
    "log_distance_rate",
    "nearest_distance",
    "ridge_geometry",
    "ridge_stats",
    "scms_project",
    "tube_radius",
]

PHASE_UNRESOLVED, PHASE_OUTSIDE, PHASE_ALIGN, PHASE_SLIDE = -1, 0, 1, 2
PHASE_NAMES = {
    PHASE_UNRESOLVED: "unresolved",
    PHASE_OUTSIDE: "outside",
    PHASE_ALIGN: "align",
    PHASE_SLIDE: "slide",
}


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

    - ``eigvals`` ``(..., D)`` descending, ``eigvecs`` ``(..., D, D)`` (columns, same order);
    - ``gradient`` ``(..., D)``: ``\nabla log p_t``;
    - ``gap`` ``lambda_k - lambda_{k+1}``, ``relative_gap`` ``gap / |lambda_D|``, ``curvature``
      ``lambda_{k+1}``;
    - ``valid``: eigengap above threshold and ``lambda_{k+1} < 0``;
    - ``residual`` ``|P_perp g|`` and ``newton_distance`` ``|Lambda_perp^{-1} V_perp^T g|``, NaN where
      not ``valid``.
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
    score: AbstractScore, t: ArrayLike, x: Float[ArrayLike, "N D"]
) -> Float[Array, "N D D"]:
    r"""``\nabla^2 log p_t(x)`` at each point: ``score.hessian`` (closed form for
    :class:`~diffsim.GaussianMixture` and :class:`~diffsim.EmpiricalScore`, forward-mode autodiff of the
    score for any other score). ``x`` is ``(N, D)`` or one point ``(D,)``."""
    _check_score(score)
    t = _check_t(score, t)
    pts, single = _check_points(x, score.dim)
    return _unbatch(_hessians(score, t.astype(pts.dtype), pts), single)


def hessian_spectrum(
    score: AbstractScore, t: ArrayLike, x: Float[ArrayLike, "N D"]
) -> tuple[Float[Array, "N D"], Float[Array, "N D D"]]:
    """Eigenvalues (descending) and eigenvectors (columns) of ``\\nabla^2 log p_t`` at each point."""
    _check_score(score)
    t = _check_t(score, t)
    pts, single = _check_points(x, score.dim)
    return _unbatch(_spectra(score, t.astype(pts.dtype), pts), single)


def ridge_geometry(
    score: AbstractScore,
    t: ArrayLike,
    x: Float[ArrayLike, "N D"],
    intrinsic_dim: int,
    *,
    gap_threshold: float = 1e-2,
    relative_gap: bool = True,
) -> RidgeGeometry:
    """The :class:`RidgeGeometry` of the ``intrinsic_dim``-ridge of ``log p_t`` at each point of ``x``
    (``(N, D)`` or ``(D,)``): spectrum, eigengap, mask, residual and Newton distance."""
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
    """Outcome of :func:`scms_project` per point: ``x`` (projected points), ``distance`` ``|x0 - x|``,
    ``converged``, ``n_iter``, ``residual`` ``|P_perp g|`` at the end, ``step`` (last Newton-step length,
    the convergence statistic), and ``valid`` (the eigengap mask at the end point)."""

    x: Float[Array, "N D"]
    distance: Float[Array, " N"]
    converged: Bool[Array, " N"]
    n_iter: Int[Array, " N"]
    residual: Float[Array, " N"]
    step: Float[Array, " N"]
    valid: Bool[Array, " N"]


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
    x: Float[ArrayLike, "N D"],
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
    """Norms of the normal part ``|V_perp^T u|`` and of the tangent part ``|u - V_perp V_perp^T u|``."""
    u = jnp.asarray(vectors)
    vn = jnp.asarray(normal_basis)
    coef = jnp.einsum("...dk,...d->...k", vn, u)
    normal = jnp.einsum("...dk,...k->...d", vn, coef)
    return jnp.linalg.norm(coef, axis=-1), jnp.linalg.norm(u - normal, axis=-1)


class RidgeStats(eqx.Module):
    """Per-particle ridge statistics for :func:`diffsim.simulate` (build it with :func:`ridge_stats`).

    An Equinox module rather than a closure, so that runs with different scores of the same structure
    share one compiled sampler (its arrays are traced, not hashed)."""

    reference: AbstractScore
    score: AbstractScore | None
    gap_threshold: Float[Array, ""]
    intrinsic_dim: int = eqx.field(static=True)
    drift: str = eqx.field(static=True)
    keep_basis: bool = eqx.field(static=True)
    relative_gap: bool = eqx.field(static=True)

    def __call__(self, t: ArrayLike, x: Float[Array, " D"]) -> dict[str, Array]:
        geo = _geometry_point(
            self.reference, t, x, self.intrinsic_dim, self.gap_threshold.astype(x.dtype), self.relative_gap
        )
        vn = geo.normal_basis
        nan = jnp.asarray(jnp.nan, x.dtype)
        mask = lambda a: jnp.where(geo.valid, a, nan)  # noqa: E731
        sampler_score = self.reference if self.score is None else self.score
        dr = sampler_score.reverse_drift(t, x) if self.drift == "sde" else sampler_score.velocity(t, x)
        dn, dt = decompose(dr, vn)
        out = {
            "residual": geo.residual,
            "newton_distance": geo.newton_distance,
            "gap": geo.gap,
            "relative_gap": geo.relative_gap,
            "valid": geo.valid,
            "drift_normal": mask(dn),
            "drift_tangent": mask(dt),
        }
        if self.score is not None:
            en, et = decompose(self.score.score(t, x) - geo.gradient, vn)
            out["error_normal"] = mask(en)
            out["error_tangent"] = mask(et)
        if self.keep_basis:
            out["normal_basis"] = vn
        return out


def ridge_stats(
    reference: AbstractScore,
    intrinsic_dim: int,
    *,
    score: AbstractScore | None = None,
    drift: str = "sde",
    keep_basis: bool = False,
    gap_threshold: float = 1e-2,
    relative_gap: bool = True,
) -> RidgeStats:
    r"""A ``stats(t, x)`` callable for :func:`diffsim.simulate` recording the ridge geometry of
    ``reference`` (typically the exact :class:`~diffsim.EmpiricalScore` of the training set) at each saved
    step, per particle:

    - ``residual``, ``newton_distance``, ``gap``, ``relative_gap``, ``valid`` (see :class:`RidgeGeometry`);
    - ``drift_normal``, ``drift_tangent``: normal / tangent norms of the sampler's drift, the reverse-SDE
      drift ``f x - g^2 s`` (``drift="sde"``) or the PF-ODE velocity ``f x - g^2 s / 2`` (``"ode"``) of
      ``score`` (default: ``reference``);
    - with ``score`` given: ``error_normal``, ``error_tangent``: norms of ``P_perp e`` and ``P_par e`` for
      the score error ``e = score - reference``;
    - with ``keep_basis``: ``normal_basis`` ``(D, D - k)``, for :func:`displacement_components`.

    Decomposed quantities are NaN where the geometry is masked. Saved times must be > 0.
    """
    _check_score(reference)
    k = _check_intrinsic_dim(intrinsic_dim, reference.dim)
    if score is not None:
        _check_score(score)
        if score.dim != reference.dim:
            raise ValueError(f"`score` has dimension {score.dim}, `reference` {reference.dim}.")
    if drift not in ("sde", "ode"):
        raise ValueError(f"`drift` must be 'sde' or 'ode', got {drift!r}.")
    thr = _check_threshold(gap_threshold)
    return RidgeStats(reference, score, jnp.asarray(thr), k, drift, bool(keep_basis), bool(relative_gap))


def displacement_components(
    xs: Float[ArrayLike, "S N D"],
    normal_basis: Float[ArrayLike, "S N D Dk"],
    valid: Bool[ArrayLike, "S N"] | None = None,
) -> tuple[Float[Array, "S1 N"], Float[Array, "S1 N"]]:
    """Normal and tangent norms of the displacement ``x_{s+1} - x_s`` between consecutive saved states,
    decomposed in the normal space at ``x_s`` (record it with ``ridge_stats(..., keep_basis=True)``);
    NaN where ``valid[s]`` is False."""
    x = jnp.asarray(xs)
    vn = jnp.asarray(normal_basis)
    if x.ndim != 3 or vn.ndim != 4 or vn.shape[:3] != x.shape:
        raise ValueError(
            f"`xs` must be (S, N, D) and `normal_basis` (S, N, D, D - k) with matching leading "
            f"axes, got {x.shape} and {vn.shape}."
        )
    n, t = decompose(x[1:] - x[:-1], vn[:-1])
    if valid is not None:
        ok = jnp.asarray(valid)[:-1]
        n, t = jnp.where(ok, n, jnp.nan), jnp.where(ok, t, jnp.nan)
    return n, t


# =====================================================================================================
# phases, rates and inter-mode generation
# =====================================================================================================
class Phases(eqx.Module):
    """Phase labels of particles along a trajectory (:func:`detect_phases`).

    - ``labels`` ``(S, N)``: -1 unresolved (masked geometry), 0 outside the tube, 1 align, 2 slide;
    - ``reach_index`` / ``reach_time`` ``(N,)``: first saved step after which the particle is never again
      seen outside the tube (and is seen inside); -1 / NaN if it never reaches it;
    - ``slide_index`` / ``slide_time``: first step at or after reach labelled slide; -1 / NaN if none;
    - ``fractions`` ``(S, 4)``: share of particles with each label (-1, 0, 1, 2) per step.
    """

    labels: Int[np.ndarray, "S N"]
    reach_index: Int[np.ndarray, " N"]
    reach_time: Float[np.ndarray, " N"]
    slide_index: Int[np.ndarray, " N"]
    slide_time: Float[np.ndarray, " N"]
    fractions: Float[np.ndarray, "S 4"]


def tube_radius(
    process: AbstractProcess, ts: Float[ArrayLike, " S"], codim: int, scale: float = 2.0, floor: float = 0.0
) -> Float[np.ndarray, " S"]:
    r"""``floor + scale sqrt(codim sigma_t^2)``: ``scale`` times the rms normal distance of the exact
    sampler, whose normal fluctuation has variance ``sigma_t^2`` per normal direction."""
    codim = check_positive_int(codim, "codim")
    return floor + scale * np.sqrt(codim * np.asarray(process.sigma2(jnp.asarray(ts)), float))


def detect_phases(
    ts: Float[ArrayLike, " S"],
    distance: Float[ArrayLike, "S N"],
    valid: Bool[ArrayLike, "S N"],
    drift_normal: Float[ArrayLike, "S N"],
    drift_tangent: Float[ArrayLike, "S N"],
    *,
    tube_radius: float | Float[ArrayLike, " S"],
) -> Phases:
    """Label reach / align / slide along saved trajectories (module docstring). ``ts`` in the sampler's
    order (decreasing for reverse samplers); ``tube_radius`` a scalar or one radius per saved time."""
    t = np.asarray(ts, float)
    dist = np.asarray(distance, float)
    ok = np.asarray(valid, bool)
    dn, dtg = np.asarray(drift_normal, float), np.asarray(drift_tangent, float)
    if t.ndim != 1 or dist.ndim != 2 or dist.shape[0] != t.shape[0]:
        raise ValueError(
            f"`distance` must have shape (S, N) with S = len(ts) = {t.shape[0]}, got {dist.shape}."
        )
    for name, a in (("valid", ok), ("drift_normal", dn), ("drift_tangent", dtg)):
        if a.shape != dist.shape:
            raise ValueError(f"`{name}` must have shape {dist.shape}, got {a.shape}.")
    r = np.broadcast_to(np.asarray(tube_radius, float), t.shape)[:, None]
    if np.any(~(r >= 0)):
        raise ValueError("`tube_radius` must be >= 0.")
    ok = ok & np.isfinite(dist)
    inside = ok & (dist <= r)
    outside = ok & ~inside
    labels = np.where(
        ~ok, PHASE_UNRESOLVED, np.where(outside, PHASE_OUTSIDE, np.where(dn >= dtg, PHASE_ALIGN, PHASE_SLIDE))
    )
    s, n = dist.shape
    idx = np.arange(s)[:, None]
    last_out = np.max(np.where(outside, idx, -1), axis=0)
    after = inside & (idx > last_out[None, :])
    reach = np.where(after.any(axis=0), np.argmax(after, axis=0), -1)
    sliding = (labels == PHASE_SLIDE) & (idx >= np.where(reach >= 0, reach, s)[None, :])
    slide = np.where(sliding.any(axis=0), np.argmax(sliding, axis=0), -1)
    reach_t = np.where(reach >= 0, t[np.maximum(reach, 0)], np.nan)
    slide_t = np.where(slide >= 0, t[np.maximum(slide, 0)], np.nan)
    fractions = np.stack([(labels == c).mean(axis=1) for c in (-1, 0, 1, 2)], axis=1)
    return Phases(labels, reach, reach_t, slide, slide_t, fractions)


def log_distance_rate(
    ts: Float[ArrayLike, " S"], distance: Float[ArrayLike, "S N"]
) -> Float[np.ndarray, "S1 N"]:
    r"""``d log(dist) / dt`` between consecutive saved times (finite differences); for the exact PF-ODE
    of the two-point set it equals ``1/sigma_t^2 - 1`` (normal relaxation, the align phase)."""
    t = np.asarray(ts, float)
    d = np.asarray(distance, float)
    return np.diff(np.log(d), axis=0) / np.diff(t)[:, None]


def _check_data(data, d: int | None = None) -> np.ndarray:
    arr = np.asarray(as_float_array(data, "data", ndim=2))
    if arr.shape[0] < 1:
        raise ValueError("`data` must hold at least one training point (got an empty array).")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"`data` must have {d} columns to match the samples, got shape {arr.shape}.")
    return arr


def nearest_distance(x: Float[ArrayLike, "N D"], data: Float[ArrayLike, "M D"]) -> Float[np.ndarray, " N"]:
    """Distance of each sample to its nearest training point."""
    pts = np.asarray(as_float_array(x, "x", ndim=2))
    ref = _check_data(data, pts.shape[1])
    return np.asarray(_nearest(jnp.asarray(pts), jnp.asarray(ref)))


@jax.jit
def _nearest(x, data):
    def one(xi):
        return jnp.sqrt(jnp.min(jnp.sum((data - xi) ** 2, axis=-1)))

    return jax.lax.map(one, x, batch_size=256)


def inter_mode_fraction(x: Float[ArrayLike, "N D"], data: Float[ArrayLike, "M D"], radius: float) -> float:
    """Fraction of samples farther than ``radius`` from every training point (inter-mode generations)."""
    r = float(radius)
    if not (r > 0 and math.isfinite(r)):
        raise ValueError(f"`radius` must be positive and finite, got {radius}.")
    return float(np.mean(nearest_distance(x, data) > r))
