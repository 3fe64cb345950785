"""Estimators built on the ridge geometry: the denoiser a score implies, directional (normal / tangent)
errors of a denoiser against it, ridges traced by SCMS over a box, and summaries of sampler runs."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from ...processes import AbstractProcess
from ...scores._base import AbstractScore
from ...scores.empirical import EmpiricalScore
from ._geometry import decompose, ridge_geometry, scms_project
from ._samples import inter_mode_fraction, intermode_radius, nearest_distance
from ._trajectories import Phases, detect_phases, tube_radius


@contextlib.contextmanager
def quiet_nan_warnings():
    """Silence numpy's warnings for all-NaN slices (masked steps are expected: summaries are NaN there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@eqx.filter_jit
def signal_denoiser(score: AbstractScore, t: Float[Array, ""], x: Float[Array, "N D"]) -> Float[Array, "N D"]:
    """``alpha_t E[x_0 | x] = x + sigma_t^2 s(t, x)`` for a batch: the quantity every denoiser targets."""
    s2 = score.process.sigma2(t)
    return jax.vmap(lambda xi: xi + s2 * score.score(t, xi))(x)


class RidgeEvaluation(eqx.Module):
    """Evaluation points at one time (returned by :func:`ridge_evaluation_points`).

    Attributes:
        t: the time.
        x: ``(N, D)`` the noised training points.
        valid: ``(N,)`` the eigengap mask of their 1-ridge frames.
        normal_basis: ``(N, D, D - 1)`` the local normal basis at each point.
        target: ``(N, D)`` ``alpha_t E[x_0 | x]`` of the reference score.
    """

    t: float
    x: Float[Array, "N D"]
    valid: Bool[np.ndarray, " N"]
    normal_basis: Float[Array, "N D Dk"]
    target: Float[Array, "N D"]


def ridge_evaluation_points(
    reference: EmpiricalScore,
    times: tuple[float, ...],
    n: int,
    key: PRNGKeyArray,
    *,
    gap_threshold: float = 1e-2,
) -> list[RidgeEvaluation]:
    """Noised training points at each time (key ``fold_in(key, i)`` for the ``i``-th time) with their
    1-ridge frames and the optimum ``alpha_t E[x_0 | x]`` (the target of every denoiser).

    Args:
        reference: the exact empirical score of the training set.
        times: the evaluation times.
        n: points per time.
        key: PRNG key of the noising.
        gap_threshold: relative eigengap below which a point is masked (see :func:`ridge_geometry`).

    Returns:
        One :class:`RidgeEvaluation` per time.
    """
    out = []
    for i, t in enumerate(times):
        x, _ = reference.sample(jr.fold_in(key, i), n, t=t)
        geo = ridge_geometry(reference, t, x, 1, gap_threshold=gap_threshold)
        target = signal_denoiser(reference, jnp.float32(t), x)
        out.append(RidgeEvaluation(t, x, np.asarray(geo.valid), geo.normal_basis, target))
    return out


def directional_errors(
    predict: Callable[[float, Array], Array], evaluations: list[RidgeEvaluation]
) -> tuple[Float[np.ndarray, ...], Float[np.ndarray, ...]]:
    """Mean squared normal / tangent error of a denoiser-level prediction ``predict(t, x) -> (..., N, d)``
    against the optimum over the valid evaluation points (averaged over the evaluation times).

    Args:
        predict: ``predict(t, x) -> (..., N, D)`` the denoiser-level prediction ``alpha_t x0_hat`` at the
            points ``x`` ``(N, D)``; leading axes (e.g. several models) are kept.
        evaluations: from :func:`ridge_evaluation_points`.

    Returns:
        ``(normal, tangent)`` mean squared errors, each of the prediction's leading shape.
    """
    n_err, t_err = [], []
    for ev in evaluations:
        t, x, valid, vn, m = ev.t, ev.x, ev.valid, ev.normal_basis, ev.target
        e = predict(t, x) - m
        en, et = decompose(e, jnp.broadcast_to(vn, e.shape[:-1] + vn.shape[-2:]))
        n_err.append(np.mean(np.asarray(en) ** 2 * valid, axis=-1) / max(valid.mean(), 1e-12))
        t_err.append(np.mean(np.asarray(et) ** 2 * valid, axis=-1) / max(valid.mean(), 1e-12))
    return np.mean(n_err, axis=0), np.mean(t_err, axis=0)


def trace_ridge(
    score: AbstractScore,
    t: float,
    data: Float[np.ndarray, "M 2"],
    *,
    grid: int = 40,
    margin: float = 1.5,
    max_iter: int = 200,
    gap_threshold: float = 1e-2,
) -> tuple[Float[np.ndarray, "P 2"], float, Float[np.ndarray, " P"]]:
    """Points of the 1-ridge of ``log p_t`` in 2-D, traced by SCMS from a ``grid x grid`` lattice over the
    data's bounding box (widened by ``margin``): the converged valid points inside the box, the fraction
    of starts that converged to a valid point, and their residuals ``|P_perp g|``.

    Args:
        score: the score whose ``log p_t`` ridge is traced (2-D).
        t: the time.
        data: ``(M, 2)`` the training points (their bounding box sets the lattice).
        grid: lattice points per axis.
        margin: widening of the bounding box on each side, in data units.
        max_iter: SCMS iterations.
        gap_threshold: relative eigengap below which a point is masked.
    """
    lo, hi = data.min(0) - margin, data.max(0) + margin
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
    starts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    res = scms_project(score, t, starts, 1, max_iter=max_iter, gap_threshold=gap_threshold)
    keep = np.asarray(res.converged & res.valid)
    pts = np.asarray(res.x)[keep]
    inside = np.all((pts >= lo) & (pts <= hi), axis=1)
    return pts[inside], float(keep.mean()), np.asarray(res.residual)[keep]


def summarise_ridge_run(
    trajectory: Any,
    process: AbstractProcess,
    data: Float[ArrayLike, "M D"],
    *,
    tube_scale: float = 2.0,
    codim: int = 1,
    intermode: bool = True,
) -> tuple[dict[str, Any], Phases]:
    """Distance / phase summaries per saved step of a run whose stats came from
    :func:`~diffsim.analysis.ridge.ridge_stats`: valid fraction, median Newton distance, mean squared
    distance over ``codim h``, phase fractions (tube ``tube_scale sqrt(codim h)``), median reach time and
    reached fraction, the inter-mode fraction of the final samples and, where recorded, the median normal /
    tangent score errors. Returns the JSON-like summary and the :class:`Phases`.

    Args:
        trajectory: a :class:`~diffsim.sampling.Trajectory` whose ``stats`` came from ``ridge_stats``
            (with ``drift=True``).
        process: the run's process (gives ``h = sigma_t^2``).
        data: ``(M, D)`` the training points.
        tube_scale: the tube radius in units of ``sqrt(codim h)``.
        codim: the ridge's codimension.
        intermode: also compute the inter-mode fraction of the final samples.
    """
    tr = trajectory
    ts = np.asarray(tr.ts, float)
    h = np.asarray(process.sigma2(jnp.asarray(ts)), float)
    st = {k: np.asarray(v) for k, v in tr.stats.items() if k != "normal_basis"}
    valid = st["valid"].astype(bool)
    nd = np.where(valid, st["newton_distance"], np.nan)
    with quiet_nan_warnings():
        med = np.nanmedian(np.where(valid, nd, np.nan), axis=1)
        ms = np.nanmean(np.where(valid, nd**2, np.nan), axis=1)
    ph = detect_phases(
        ts,
        nd,
        valid,
        st["drift_normal"],
        st["drift_tangent"],
        tube_radius=tube_radius(process, ts, codim, tube_scale),
    )
    out = {
        "ts": ts.tolist(),
        "h": h.tolist(),
        "valid_fraction": valid.mean(axis=1).tolist(),
        "median_newton_distance": np.where(np.isfinite(med), med, np.nan).tolist(),
        "mean_sq_distance_over_h": (ms / (codim * h)).tolist(),
        "phase_fractions": ph.fractions.tolist(),
        "reach_time_median": (
            float(np.nanmedian(ph.reach_time)) if np.isfinite(ph.reach_time).any() else float("nan")
        ),
        "reached_fraction": float(np.mean(ph.reach_index >= 0)),
    }
    if intermode:
        out["intermode_fraction"] = inter_mode_fraction(tr.x, data, intermode_radius(data))
    if "error_normal" in st:
        with quiet_nan_warnings():
            out["error_normal_median"] = np.nanmedian(st["error_normal"], axis=1).tolist()
            out["error_tangent_median"] = np.nanmedian(st["error_tangent"], axis=1).tolist()
    return out, ph


def split_on_off_ridge(
    trajectory: Any, data: Float[ArrayLike, "M D"], split_time: float, *, min_valid: int = 8
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Split the samples of a run recorded with :func:`~diffsim.analysis.ridge.ridge_stats` at the saved
    time nearest ``split_time`` (in log time) into the quartiles of valid particles closest to (``on``) and
    farthest from (``off``) the ridge. Returns a summary (split time, valid fraction and, per group, its
    size, the median distance of its final samples to the nearest training point and its median Newton
    distance) and the particle indices per group (empty when fewer than ``min_valid`` particles are valid).

    Args:
        trajectory: a :class:`~diffsim.sampling.Trajectory` whose ``stats`` came from ``ridge_stats``.
        data: ``(M, D)`` the training points.
        split_time: the time at which particles are split (the nearest saved time in log time).
        min_valid: fewest valid particles needed to form the groups.
    """
    tr = trajectory
    ts = np.asarray(tr.ts)
    i_split = int(np.argmin(np.abs(np.log(ts / split_time))))
    nd = np.asarray(tr.stats["newton_distance"])[i_split]
    ok = np.asarray(tr.stats["valid"])[i_split] & np.isfinite(nd)
    split = {"t": float(ts[i_split]), "valid_fraction": float(ok.mean())}
    groups = {}
    if ok.sum() >= min_valid:
        q_lo, q_hi = np.quantile(nd[ok], [0.25, 0.75])
        groups = {"on": np.flatnonzero(ok & (nd <= q_lo)), "off": np.flatnonzero(ok & (nd >= q_hi))}
        z_final = np.asarray(tr.x)
        for g, idx in groups.items():
            split[f"{g}_ridge_count"] = int(idx.size)
            split[f"{g}_ridge_nn_distance_median"] = float(np.median(nearest_distance(z_final[idx], data)))
            split[f"{g}_ridge_newton_distance_median"] = float(np.median(nd[idx]))
    return split, groups
