"""Ridge statistics along sampler trajectories: per-step recording for :func:`diffsim.simulate`,
displacement components, reach / align / slide phases and relaxation rates."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ..._validation import check_positive_int
from ...processes import AbstractProcess
from ...scores._base import AbstractScore
from ._geometry import _check_intrinsic_dim, _check_score, _check_threshold, _geometry_point, decompose


PHASE_UNRESOLVED, PHASE_OUTSIDE, PHASE_ALIGN, PHASE_SLIDE = -1, 0, 1, 2
PHASE_NAMES = {
    PHASE_UNRESOLVED: "unresolved",
    PHASE_OUTSIDE: "outside",
    PHASE_ALIGN: "align",
    PHASE_SLIDE: "slide",
}


class RidgeStats(eqx.Module):
    """Per-particle ridge statistics for :func:`diffsim.simulate` (build it with :func:`ridge_stats`).

    An Equinox module rather than a closure, so that runs with different scores of the same structure
    share one compiled sampler (its arrays are traced, not hashed).

    Attributes:
        reference: the score whose ridge geometry is recorded.
        score: the sampler's score whose drift and error are decomposed; ``None`` for ``reference``.
        gap_threshold: eigengap threshold of the mask (a scalar array).
        intrinsic_dim: the ridge dimension ``k``.
        drift: ``"sde"`` (reverse-SDE drift) or ``"ode"`` (PF-ODE velocity).
        keep_basis: also record the normal basis.
        relative_gap: compare the relative eigengap rather than the absolute one.
    """

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

    Args:
        reference: the score whose ridge geometry is recorded.
        intrinsic_dim: the ridge dimension ``k`` in ``[1, D - 1]``.
        score: the sampler's score (same dimension); ``None`` (default) for ``reference``, and then no
            score errors are recorded.
        drift: ``"sde"`` (default) or ``"ode"``: which drift is decomposed.
        keep_basis: also record ``normal_basis``.
        gap_threshold: eigengap threshold of the mask (non-negative).
        relative_gap: compare the relative eigengap (default) rather than the absolute one.
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
    NaN where ``valid[s]`` is False.

    Args:
        xs: ``(S, N, D)`` saved states.
        normal_basis: ``(S, N, D, D - k)`` the normal bases recorded at the same steps.
        valid: ``(S, N)`` the geometry mask; ``None`` (default) keeps every step.

    Returns:
        ``(normal, tangent)`` norms, each ``(S - 1, N)``.
    """
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

    Attributes:
        labels: ``(S, N)`` -1 unresolved (masked geometry), 0 outside the tube, 1 align, 2 slide.
        reach_index: ``(N,)`` first saved step after which the particle is never again seen outside the
            tube (and is seen inside); -1 if it never reaches it.
        reach_time: ``(N,)`` the time of that step; NaN if it never reaches it.
        slide_index: ``(N,)`` first step at or after reach labelled slide; -1 if none.
        slide_time: ``(N,)`` the time of that step; NaN if none.
        fractions: ``(S, 4)`` share of particles with each label (-1, 0, 1, 2) per step.
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
    sampler, whose normal fluctuation has variance ``sigma_t^2`` per normal direction.

    Args:
        process: the process (gives ``sigma_t^2``).
        ts: ``(S,)`` the times.
        codim: the ridge's codimension (positive).
        scale: multiple of the rms normal distance (default 2).
        floor: added constant radius (default 0).

    Returns:
        ``(S,)`` radii.
    """
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
    order (decreasing for reverse samplers).

    Args:
        ts: ``(S,)`` saved times.
        distance: ``(S, N)`` distances to the ridge (e.g. the Newton distance).
        valid: ``(S, N)`` the geometry mask (non-finite distances count as masked too).
        drift_normal: ``(S, N)`` normal norms of the drift.
        drift_tangent: ``(S, N)`` tangent norms of the drift (inside the tube, align where
            ``drift_normal >= drift_tangent``, else slide).
        tube_radius: a non-negative radius, scalar or ``(S,)`` (e.g. :func:`tube_radius`).
    """
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
    of the two-point set it equals ``1/sigma_t^2 - 1`` (normal relaxation, the align phase).

    Args:
        ts: ``(S,)`` saved times.
        distance: ``(S, N)`` positive distances to the ridge.

    Returns:
        ``(S - 1, N)`` rates.
    """
    t = np.asarray(ts, float)
    d = np.asarray(distance, float)
    return np.diff(np.log(d), axis=0) / np.diff(t)[:, None]
