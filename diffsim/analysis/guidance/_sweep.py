"""Guided DDPM/DDIM outputs over guidance scales and step counts, summarised by confidence, statistics
along the class direction and entropy by every applicable route (see the package docstring)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validation import check_key, check_positive_int
from ...sampling import grids as _grids, simulate
from ...scores.guidance import check_scale, eta_from_scale, guided_mixture
from ...scores.mixture import GaussianMixture
from ..entropy import (
    flow_entropy_rate,
    knn_entropy,
    pf_ode_entropy,
    prior_entropy,
    sampler_map_entropy,
)
from ..entropy._estimate import _pushforward_estimate
from ..fokker_planck import FokkerPlanckGrid, FokkerPlanckSolution, reverse_fokker_planck_batch
from ._quantities import (
    ProjectedProblem,
    _check_problem,
    class_direction,
    clean_confidence,
    pathwise_monotone_fraction,
    projected_problem,
    sample_statistics,
)


# =====================================================================================================
# samplers
# =====================================================================================================
def _reverse_grid(process, n_steps: int, kind: str):
    if kind == "logsnr":
        return _grids.logsnr_uniform(process, n_steps)
    if kind == "uniform":
        return _grids.uniform(process, n_steps)
    raise ValueError(f"`grid_kind` must be 'logsnr' or 'uniform', got {kind!r}.")


def guided_samples(
    mixture: GaussianMixture,
    label: int,
    scale: float,
    method: str = "ddim",
    *,
    key: jax.Array,
    n: int,
    n_steps: int = 100,
    grid_kind: str = "logsnr",
    kind: str = "classifier",
    **method_options: Any,
) -> Float[Array, "N d"]:
    """Outputs of ``method`` (``"ddim"``, ``"ddpm"``, or any :func:`diffsim.simulate` method, e.g. the
    adaptive ``"tsit5"`` for the continuous-limit DDIM) with the exactly guided score at diffsim scale
    ``w = scale`` (Wu et al.'s ``eta = w - 1``), from the process prior. The same ``key`` gives the same
    prior draws and noise at every scale (common random numbers).

    Args:
        mixture: the labelled data mixture (a :class:`~diffsim.scores.GaussianMixture` with ``labels``).
        label: the target class, an integer label of ``mixture``.
        scale: diffsim guidance scale ``w >= 0``.
        method: sampler name for :func:`diffsim.simulate` (default ``"ddim"``).
        key: PRNG key of the prior draws and sampler noise.
        n: number of outputs.
        n_steps: number of steps of the reverse grid.
        grid_kind: reverse time grid, ``"logsnr"`` (uniform in log-SNR, default) or ``"uniform"``.
        kind: ``"classifier"`` (default) or ``"cfg"``: how :func:`~diffsim.scores.guidance.guided_mixture`
            builds the guided score (equal scores for exact mixtures).
        **method_options: options of the sampler method.

    Returns:
        The outputs, shape ``(n, d)``.
    """
    _check_problem(mixture, label)
    check_scale(scale)
    score = guided_mixture(mixture, int(label), scale, kind=kind)
    grid = _reverse_grid(mixture.process, check_positive_int(n_steps, "n_steps"), grid_kind)
    return simulate(score, method, grid, n=check_positive_int(n, "n"), key=check_key(key), **method_options).x


def fokker_planck_summary(
    sol: FokkerPlanckSolution,
    mixture: GaussianMixture,
    label: int,
    direction: ArrayLike | None = None,
    extra_entropy: float = 0.0,
) -> dict[str, float]:
    """Confidence, ``E[1/p_0]``, mean/variance along ``u`` and entropy of the final snapshot of a
    Fokker-Planck solution of ``mixture``'s guided dynamics (``mixture`` of the grid's dimension).
    ``extra_entropy`` is added (the orthogonal Gaussian part of a projected problem).

    Args:
        sol: a :class:`~diffsim.analysis.fokker_planck.FokkerPlanckSolution`; its last snapshot is summarised.
        mixture: the labelled mixture whose guided dynamics ``sol`` solved (same dimension as the grid).
        label: the target class, an integer label of ``mixture``.
        direction: the direction ``u`` on the grid's coordinates (used as given); ``None`` uses
            :func:`class_direction` (``+1`` in 1-D).
        extra_entropy: added to the grid entropy (e.g. :meth:`ProjectedProblem.orth_entropy`).

    Returns:
        ``{"confidence", "inv_confidence", "mean_u", "var_u", "entropy", "resolved", "cells_per_std"}``.
    """
    pts = np.asarray(sol.grid.points())
    p = np.asarray(sol.density[-1], np.float64).ravel() * sol.cell_volume
    logc = np.asarray(clean_confidence(mixture, label, jnp.asarray(pts, mixture.means.dtype)), np.float64)
    u = (
        np.ones(1)
        if mixture.dim == 1
        else (class_direction(mixture, label) if direction is None else np.asarray(direction, float))
    )
    proj = pts @ u
    mean = float(p @ proj)
    return {
        "confidence": float(p @ np.exp(logc)),
        "inv_confidence": float(p @ np.exp(np.minimum(-logc, 700.0))),
        "mean_u": mean,
        "var_u": float(p @ (proj - mean) ** 2),
        "entropy": float(sol.entropy[-1]) + float(extra_entropy),
        "resolved": bool(sol.resolved()),
        "cells_per_std": float(
            np.min(np.sqrt(np.asarray(sol.variance(), np.float64)) / np.asarray(sol.grid.h))
        ),
    }


# =====================================================================================================
# the sweep
# =====================================================================================================
class GuidanceSweep(eqx.Module):
    """Result of :func:`guidance_sweep`.

    Attributes:
        scales: diffsim guidance scales ``w`` (increasing), shape ``(W,)``.
        etas: Wu et al.'s ``eta = w - 1``, shape ``(W,)``.
        direction: the class-separating unit vector ``u``, shape ``(d,)``.
        laws: ``laws[law][quantity]``: arrays over the scales; quantities ``confidence``,
            ``inv_confidence``, ``mean_u``, ``var_u``, ``entropy/<route>`` and ``entropy_se/<route>``
            (standard errors, 0 when not Monte Carlo).
        log_confidence: ``log_confidence[law]``: per-particle ``log p_0(y|X)`` of shape ``(W, N)`` (shared
            noise), for pathwise comparisons.
        samples: ``samples[law]``: outputs ``(W, N, d)`` (empty when ``keep_samples=False``).
        fokker_planck: ``fokker_planck[dynamics]``: one :class:`FokkerPlanckSolution` per scale
            (``"ode"``, ``"sde"``); empty when not solved.
        projection: the :class:`ProjectedProblem` or ``None``.
    """

    scales: np.ndarray
    etas: np.ndarray
    direction: np.ndarray
    laws: dict[str, dict[str, np.ndarray]]
    log_confidence: dict[str, np.ndarray]
    samples: dict[str, np.ndarray]
    fokker_planck: dict[str, list[FokkerPlanckSolution]]
    projection: ProjectedProblem | None

    def to_dict(self) -> dict[str, Any]:
        """The summary numbers (no samples, no densities) as plain JSON-able values."""
        return {
            "scales": self.scales.tolist(),
            "etas": self.etas.tolist(),
            "direction": self.direction.tolist(),
            "laws": {
                law: {q: np.asarray(v).tolist() for q, v in qs.items()} for law, qs in self.laws.items()
            },
            "pathwise_monotone_fraction": {
                law: pathwise_monotone_fraction(np.exp(v), atol=1e-6)
                for law, v in self.log_confidence.items()
            },
        }


def _default_fp_grid(problem: GaussianMixture, scales: np.ndarray, n_cells: int | None) -> FokkerPlanckGrid:
    mu = np.asarray(problem.means, float)
    sd = math.sqrt(float(np.max(np.asarray(problem.eigvals))))
    pad = 6.0 * max(1.0, sd) + 2.0
    lo = np.minimum(mu.min(0) - pad, -7.0)
    hi = np.maximum(mu.max(0) + pad, 7.0)
    n = n_cells if n_cells is not None else (400 if problem.dim == 1 else 96)
    return FokkerPlanckGrid(lo, hi, n)


def guidance_sweep(
    mixture: GaussianMixture,
    label: int,
    scales: Sequence[float],
    *,
    key: jax.Array,
    n: int = 10_000,
    steps: Sequence[int] = (100,),
    samplers: Sequence[str] = ("ddim", "ddpm"),
    continuous: bool = True,
    fokker_planck: bool = True,
    fp_grid: FokkerPlanckGrid | None = None,
    fp_cells: int | None = None,
    knn: bool = True,
    knn_max_n: int = 8_000,
    map_entropy_max_dim: int = 4,
    n_pf_ode: int = 2_000,
    hutchinson_dim: int = 6,
    quadrature_nodes: int = 96,
    flow_rate_steps: int | None = 400,
    grid_kind: str = "logsnr",
    kind: str = "classifier",
    keep_samples: bool = True,
) -> GuidanceSweep:
    r"""Confidence, ``E[1/p_0]``, mean/variance along ``u`` and entropy (every applicable route) of the
    guided DDPM and DDIM outputs for each diffsim guidance scale ``w`` in ``scales`` (``s_u + w grad log
    p_t(y|x)``; Wu et al.'s ``eta = w - 1``; each ``w >= 0``).

    Laws: ``"<sampler>@<N>"`` for each sampler in ``samplers`` and step count in ``steps`` (``n`` particles,
    shared noise across scales), and with ``continuous`` the limits ``"ddim"`` (adaptive PF-ODE on
    ``n_pf_ode`` particles with per-sample log-densities; Gauss-Hermite quadrature with
    ``quadrature_nodes`` nodes when the problem projects to 1-D; Liouville along ``flow_rate_steps``-step
    DDIM) and ``"ddpm"`` (Fokker-Planck, when ``fokker_planck`` and the problem is 1-D, 2-D or
    projectable). kNN uses at most ``knn_max_n`` particles; the exact DDIM map Jacobian is used up to
    ``map_entropy_max_dim``; Hutchinson's divergence replaces the exact one above ``hutchinson_dim``.

    Args:
        mixture: the labelled data mixture (a :class:`~diffsim.scores.GaussianMixture` with ``labels``).
        label: the target class, an integer label of ``mixture``.
        scales: diffsim guidance scales ``w >= 0``, strictly increasing.
        key: PRNG key (split between the finite-step runs and the PF-ODE runs).
        n: particles per finite-step law.
        steps: step counts of the finite-step samplers.
        samplers: a subset of ``("ddim", "ddpm")``; empty runs the continuous limits only.
        continuous: also compute the continuous limits ``"ddim"`` and ``"ddpm"``.
        fokker_planck: solve the Fokker-Planck equations (continuous limits; 1-D, 2-D or projectable).
        fp_grid: the Fokker-Planck grid; ``None`` builds one around the means (at least ``[-7, 7]``).
        fp_cells: cells per axis of the default grid (``None``: 400 in 1-D, 96 in 2-D).
        knn: add kNN entropies (route ``"knn"``).
        knn_max_n: the most particles given to the kNN estimator.
        map_entropy_max_dim: largest dimension for the exact DDIM map Jacobian (route ``"map"``, largest
            step count only).
        n_pf_ode: particles of the continuous-limit DDIM.
        hutchinson_dim: dimensions above which the PF-ODE divergence is Hutchinson's estimate.
        quadrature_nodes: Gauss-Hermite nodes for projectable problems (0 disables the quadrature route).
        flow_rate_steps: DDIM steps of the Liouville route (``"flow_rate"``); ``None`` or 0 disables it.
        grid_kind: reverse time grid, ``"logsnr"`` (uniform in log-SNR, default) or ``"uniform"``.
        kind: ``"classifier"`` (default) or ``"cfg"``: how :func:`~diffsim.scores.guidance.guided_mixture`
            builds the guided score (equal scores for exact mixtures).
        keep_samples: keep the outputs in ``samples`` (memory ``W N d`` per law).

    Returns:
        A :class:`GuidanceSweep`.
    """
    _check_problem(mixture, label)
    label = int(label)
    key = check_key(key)
    ws = np.asarray(scales, dtype=float)
    if ws.ndim != 1 or ws.size < 1:
        raise ValueError("`scales` must be a non-empty 1-D sequence of guidance scales w.")
    check_scale(ws, "scales")
    if np.any(np.diff(ws) <= 0):
        raise ValueError("`scales` must be strictly increasing.")
    for s in samplers:  # an empty tuple runs the continuous limits only
        if s not in ("ddim", "ddpm"):
            raise ValueError(f"`samplers` entries must be 'ddim' or 'ddpm', got {s!r}.")
    steps = [check_positive_int(int(s), "steps") for s in steps] if samplers else []
    n = check_positive_int(n, "n")
    d = mixture.dim
    p = mixture.process
    u = class_direction(mixture, label)
    proj = projected_problem(mixture, label, u)
    sign = float(proj.direction @ u) if proj is not None else 1.0  # <x, u> = sign * (FP coordinate)
    y = label
    laws: dict[str, dict[str, list]] = {}
    logconf: dict[str, list] = {}
    samples: dict[str, list] = {}
    k_run, k_pf, _k_knn = jr.split(key, 3)

    def record(law, stats, routes=None, ses=None, x=None, logc=None):
        q = laws.setdefault(law, {})
        for name, v in stats.items():
            q.setdefault(name, []).append(v)
        for r, v in (routes or {}).items():
            q.setdefault(f"entropy/{r}", []).append(v)
            q.setdefault(f"entropy_se/{r}", []).append((ses or {}).get(r, 0.0))
        if logc is not None:
            logconf.setdefault(law, []).append(np.asarray(logc, np.float64))
        if x is not None and keep_samples:
            samples.setdefault(law, []).append(np.asarray(x))

    def knn_h(x):
        xs = np.asarray(x)[:knn_max_n]
        return float(knn_entropy(jnp.asarray(xs), ties="resolution"))

    for w in ws:
        score = guided_mixture(mixture, label, float(w), kind=kind)
        # finite-step samplers, shared noise across strengths
        for sampler in samplers:
            for n_steps in steps:
                grid = _reverse_grid(p, n_steps, grid_kind)
                x = simulate(score, sampler, grid, n=n, key=k_run).x
                routes: dict[str, float] = {}
                ses: dict[str, float] = {}
                if knn:
                    routes["knn"] = knn_h(x)
                if sampler == "ddim" and d <= map_entropy_max_dim and n_steps == max(steps):
                    est = sampler_map_entropy(
                        score, grid, key=k_run, z=_prior_draws(score, k_run, n_pf_ode), method="ddim"
                    )
                    routes["map"], ses["map"] = float(est.entropy), float(est.stderr)
                record(
                    f"{sampler}@{n_steps}",
                    sample_statistics(mixture, y, x, u),
                    routes,
                    ses,
                    x,
                    clean_confidence(mixture, y, x),
                )
        if continuous:
            # continuous-limit DDIM: PF-ODE with per-sample densities
            div = "hutchinson" if d > hutchinson_dim else "exact"
            merged = proj is not None and proj.orth_dim == 0 and quadrature_nodes and div == "exact"
            if merged:  # 1-D: Monte Carlo and quadrature nodes in one solve (one compilation)
                est, q = _pf_ode_with_quadrature(score, proj, y, k_pf, n_pf_ode, quadrature_nodes, sign)
            else:
                est = pf_ode_entropy(score, key=k_pf, n=n_pf_ode, divergence=div)
            routes = {"pf_ode": float(est.entropy)}
            ses = {"pf_ode": float(est.stderr)}
            if knn:
                routes["knn"] = knn_h(est.x)
            if proj is not None and quadrature_nodes:
                if not merged:
                    q = _quadrature_ddim(proj, y, float(w), quadrature_nodes, kind, sign)
                routes["quadrature"] = q["entropy"]
            if flow_rate_steps:
                fr = flow_entropy_rate(
                    score, _reverse_grid(p, flow_rate_steps, grid_kind), key=k_pf, n=n_pf_ode
                )
                routes["flow_rate"] = float(fr.entropy[-1])
            stats = sample_statistics(mixture, y, est.x, u)
            if proj is not None and quadrature_nodes:  # quadrature is essentially exact: prefer it
                stats = {k: q[k] for k in ("confidence", "inv_confidence", "mean_u", "var_u")}
            record("ddim", stats, routes, ses, est.x, clean_confidence(mixture, y, est.x))

    fps: dict[str, list[FokkerPlanckSolution]] = {}
    if continuous and fokker_planck:
        fp_mix = proj.mixture if proj is not None else (mixture if d <= 2 else None)
        if fp_mix is not None:
            grid = fp_grid if fp_grid is not None else _default_fp_grid(fp_mix, ws, fp_cells)
            extra = proj.orth_entropy(p.t_min) if proj is not None else 0.0
            direction = np.array([sign]) if proj is not None else u
            scores = [guided_mixture(fp_mix, label, float(w), kind=kind) for w in ws]
            for dyn, law in (("ode", "ddim"), ("sde", "ddpm")):
                sols = reverse_fokker_planck_batch(scores, grid, dynamics=dyn)
                fps[dyn] = sols
                for sol in sols:
                    s = fokker_planck_summary(sol, fp_mix, label, direction, extra)
                    if law == "ddim":
                        q = laws["ddim"]
                        q.setdefault("entropy/fokker_planck", []).append(s["entropy"])
                        q.setdefault("entropy_se/fokker_planck", []).append(0.0)
                        q.setdefault("fp_confidence", []).append(s["confidence"])
                        q.setdefault("fp_resolved", []).append(float(s["resolved"]))
                        q.setdefault("fp_cells_per_std", []).append(s["cells_per_std"])
                    else:
                        record(
                            "ddpm",
                            {k: s[k] for k in ("confidence", "inv_confidence", "mean_u", "var_u")},
                            {"fokker_planck": s["entropy"]},
                        )
                        laws["ddpm"].setdefault("fp_resolved", []).append(float(s["resolved"]))
                        laws["ddpm"].setdefault("fp_cells_per_std", []).append(s["cells_per_std"])

    return GuidanceSweep(
        scales=ws,
        etas=np.asarray(eta_from_scale(ws)),
        direction=u,
        laws={law: {k: np.asarray(v, dtype=float) for k, v in q.items()} for law, q in laws.items()},
        log_confidence={law: np.stack(v) for law, v in logconf.items()},
        samples={law: np.stack(v) for law, v in samples.items()},
        fokker_planck=fps,
        projection=proj,
    )


def _quadrature_summary(x, logq, logc, weights, sign, orth_entropy):
    x = np.asarray(x, np.float64)
    mean = float(weights @ x)
    return {
        "entropy": float(-(weights @ np.asarray(logq, np.float64))) + orth_entropy,
        "confidence": float(weights @ np.exp(logc)),
        "inv_confidence": float(weights @ np.exp(np.minimum(-logc, 700.0))),
        "mean_u": sign * mean,
        "var_u": float(weights @ (x - mean) ** 2),
    }


def _pf_ode_with_quadrature(score, proj, label, key, n, n_nodes, sign):
    """1-D problems: prior Monte Carlo draws and Gauss-Hermite nodes through one PF-ODE solve."""
    p = score.process
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    weights = weights / weights.sum()
    dtype = proj.mixture.means.dtype
    z_mc = p.prior_sample(jr.split(key)[0], (n, 1)).astype(dtype)
    z = jnp.concatenate([z_mc, jnp.asarray(nodes[:, None] * p.prior_std, dtype)])
    est = pf_ode_entropy(score, z=z)
    log_prior = p.prior_log_prob(z_mc)
    mc = _pushforward_estimate(est.log_density[:n], log_prior, prior_entropy(p, 1), None, est.x[:n])
    xq = est.x[n:]
    logc = np.asarray(clean_confidence(proj.mixture, label, xq), np.float64)
    q = _quadrature_summary(np.asarray(xq)[:, 0], est.log_density[n:], logc, weights, sign, 0.0)
    return mc, q


def _prior_draws(score, key, n):
    return score.process.prior_sample(jr.fold_in(key, 7), (n, score.dim))


def _quadrature_ddim(
    proj: ProjectedProblem, label: int, scale: float, n_nodes: int, kind: str, sign: float = 1.0
) -> dict[str, float]:
    """Continuous-limit DDIM of the projected 1-D problem by Gauss-Hermite quadrature over the prior
    (``sign`` maps the 1-D coordinate to ``<x, u>``)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    weights = weights / weights.sum()
    mix = proj.mixture
    dtype = mix.means.dtype
    score = guided_mixture(mix, label, scale, kind=kind)
    z = jnp.asarray(nodes[:, None] * mix.process.prior_std, dtype)
    est = pf_ode_entropy(score, z=z, weights=jnp.asarray(weights, dtype))
    logc = np.asarray(clean_confidence(mix, label, est.x), np.float64)
    return _quadrature_summary(
        np.asarray(est.x)[:, 0], est.log_density, logc, weights, sign, proj.orth_entropy(mix.process.t_min)
    )


def step_sweep(
    mixture: GaussianMixture,
    label: int,
    scale: float,
    steps: Sequence[int],
    *,
    key: jax.Array,
    n: int = 10_000,
    samplers: Sequence[str] = ("ddim", "ddpm"),
    grid_kind: str = "logsnr",
    kind: str = "classifier",
) -> dict[str, dict[str, np.ndarray]]:
    """Finite step counts at one diffsim scale ``w = scale``: for each sampler, arrays over ``steps`` of
    ``confidence``, ``inv_confidence``, ``mean_u``, ``var_u`` (shared noise across step counts is not
    possible: the noise is per step). Compare with the continuous limits of :func:`guidance_sweep`.

    Args:
        mixture: the labelled data mixture (a :class:`~diffsim.scores.GaussianMixture` with ``labels``).
        label: the target class, an integer label of ``mixture``.
        scale: diffsim guidance scale ``w >= 0``.
        steps: the step counts.
        key: PRNG key, the same for every sampler and step count.
        n: outputs per run.
        samplers: sampler names for :func:`diffsim.simulate` (default ``("ddim", "ddpm")``).
        grid_kind: reverse time grid, ``"logsnr"`` (uniform in log-SNR, default) or ``"uniform"``.
        kind: ``"classifier"`` (default) or ``"cfg"``: how :func:`~diffsim.scores.guidance.guided_mixture`
            builds the guided score (equal scores for exact mixtures).

    Returns:
        ``{sampler: {quantity: array over steps}}``.
    """
    _check_problem(mixture, label)
    check_scale(scale)
    u = class_direction(mixture, label)
    out: dict[str, dict[str, list]] = {}
    for sampler in samplers:
        for n_steps in steps:
            x = guided_samples(
                mixture, label, scale, sampler, key=key, n=n, n_steps=n_steps, grid_kind=grid_kind, kind=kind
            )
            for q, v in sample_statistics(mixture, label, x, u).items():
                out.setdefault(sampler, {}).setdefault(q, []).append(v)
    return {s: {q: np.asarray(v) for q, v in qs.items()} for s, qs in out.items()}
