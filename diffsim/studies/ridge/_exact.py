"""Parts ``exact``, ``two_points`` and ``scms`` of the ``ridge`` study: the exact empirical score on 2-D
training sets and the two-point set in closed form."""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ...analysis import ridge
from ...data.ridge import training_set
from ...sampling import grids, simulate
from ...scores import DenoiserShiftScore, EmpiricalScore, SegmentDenoiserScore
from .._runner import Check, PartContext, check
from ._config import Config, ridge_run, saved_indices, trace_ridge, trajectory_plot


# --- 1. exact empirical score on every training set ---------------------------------------------------
class ExactSets(eqx.Module):
    """Per training set: distance / phase summaries along the reverse SDE and SCMS ridge statistics."""

    summaries: dict[str, dict[str, Any]]
    plots: dict[str, dict] = field(default=None, metadata={"json": False})


def compute_exact(config: Config, ctx: PartContext) -> ExactSets:
    key = jr.key(config.seed)
    summaries, plots = {}, {}
    for i, name in enumerate(ctx.progress(config.sets, "exact score, training sets")):
        data = training_set(name)
        emp = EmpiricalScore(jnp.asarray(data, jnp.float32))
        tr = ridge_run(emp, emp, config, config.n_particles, jr.fold_in(key, i), reference_only=True)
        s, ph = ridge.summarise_ridge_run(tr, emp.process, data, tube_scale=config.tube_scale)
        ridges = {}
        for t in config.ridge_times:
            pts, frac, resid = trace_ridge(emp, t, data, config)
            ridges[t] = pts
            s.setdefault("scms_converged_valid_fraction", {})[str(t)] = frac
            h = float(emp.process.sigma2(t))
            s.setdefault("scms_max_step", {})[str(t)] = float(np.max(resid) * h) if resid.size else math.nan
        n_plot = min(config.n_plot_trajectories, config.n_particles)
        summaries[name], plots[name] = s, trajectory_plot(tr, ph.labels[:, :n_plot], ridges, data, n_plot)
    return ExactSets(summaries, plots)


def checks_exact(config: Config, r: ExactSets) -> list[Check]:
    return [
        check(
            f"{name}: the exact (memorising) score makes no inter-mode samples",
            0.01,
            s["intermode_fraction"],
            relation="le",
            note=f"radius {ridge.intermode_radius(training_set(name)):.3g} around each training point",
        )
        for name, s in r.summaries.items()
    ]


# --- 2. the two-point set in closed form -------------------------------------------------------------
class TwoPoints(eqx.Module):
    """Two points: SDE deviations from the closed forms, align / slide measurements, PF-ODE law and reach,
    per saved step the valid fraction, ``E y^2 / h`` and the Euler-Maruyama variance ``Var_EM / h``."""

    n: int
    shift: float
    h_min: float
    relative_step: float
    sde: dict[str, float]
    intermode: dict[str, float]
    ode: dict[str, float]
    valid_fraction: list[float]
    E_dist2_over_h: list[float]
    VarEM_over_h: list[float]
    runs: dict[str, Any] = field(default=None, metadata={"json": False})
    exact: ExactSets = field(default=None, metadata={"json": False})


def _two_point_score(emp, data, clip, shift):
    return DenoiserShiftScore(
        SegmentDenoiserScore(emp, data[0], data[1], jnp.float32(clip)), jnp.array([0.0, shift], jnp.float32)
    )


def compute_two_points(config: Config, ctx: PartContext) -> TwoPoints:
    key = jr.fold_in(jr.key(config.seed), 50)
    data = training_set("two_points")
    emp = EmpiricalScore(jnp.asarray(data, jnp.float32))
    p, n, c = emp.process, config.n_particles, config.normal_shift
    save = saved_indices(config.n_steps, config.n_saved)
    runs = {
        label: ridge_run(_two_point_score(emp, data, clip, shift), emp, config, n, key)
        for label, clip, shift in (("exact", 0.0, 0.0), ("normal", 0.0, c), ("tangent", 1.0, 0.0))
    }
    ex, nm, tg = runs["exact"], runs["normal"], runs["tangent"]
    ts = np.asarray(ex.ts, float)
    h = np.asarray(p.sigma2(jnp.asarray(ts)), float)
    v_em, m_em = ridge.two_point_em_recursions(grids.geometric(p, config.n_steps), p, c)
    y = np.asarray(ex.xs[..., 1], float)
    m2 = (y**2).mean(axis=1)
    late = ts <= 1.0
    nd, ok = np.asarray(ex.stats["newton_distance"], float), np.asarray(ex.stats["valid"], bool)
    en, okn = np.asarray(nm.stats["error_normal"], float), np.asarray(nm.stats["valid"], bool)
    hs = np.broadcast_to(h[:, None], en.shape)
    sde = {
        "em_variance_ratio_dev": float(np.max(np.abs(m2 / v_em[save] - 1))),
        "continuous_law_dev": float(np.max(np.abs(m2[late] / h[late] - 1))),
        "em_bias": float(np.max(np.abs(v_em[save][late] / h[late] - 1))),
        "newton_vs_abs_y": float(np.max(np.abs(nd[ok] / np.abs(y[ok]) - 1))) if ok.any() else math.nan,
        "offset_vs_recursion": float(
            np.max(np.abs(np.asarray(nm.xs[..., 1] - ex.xs[..., 1], float) - m_em[save][:, None]))
        ),
        "terminal_offset": float(np.mean(np.asarray(nm.x[:, 1]))),
        "normal_error_dx": float(np.max(np.abs(np.asarray(nm.xs[..., 0] - ex.xs[..., 0])))),
        "recorded_error_dev": float(np.max(np.abs(en[okn] * hs[okn] / c - 1))),
        "tangent_error_dy": float(np.max(np.abs(np.asarray(tg.xs[..., 1] - ex.xs[..., 1])))),
    }
    intermode = {k: ridge.inter_mode_fraction(runs[k].x, data, 0.5) for k in ("exact", "normal", "tangent")}
    # PF-ODE: y_t = y_T sigma_t / sigma_T; reach time of a tube on the saddle line
    m_ode = config.ode_particles
    y_T = jnp.linspace(0.3, 2.5, m_ode, dtype=jnp.float32)
    starts = {
        "exact": jnp.stack([jr.normal(jr.fold_in(key, 1), (m_ode,), jnp.float32), y_T], 1),
        "clip": jnp.stack([jnp.zeros(m_ode, jnp.float32), y_T], 1),
    }
    ode = {}
    for label, clip in (("exact", 0.0), ("clip", 1.0)):
        sc = _two_point_score(emp, data, clip, 0.0)
        stats = ridge.ridge_stats(emp, 1, score=sc, drift="ode", gap_threshold=1e-6)
        x0, grid = starts[label], grids.geometric(p, 60)
        ode[label] = simulate(sc, "tsit5", grid, x=x0, key=key, save="all", stats=stats, rtol=1e-6, atol=1e-6)
    ts_o = np.asarray(ode["exact"].ts, float)
    h_o = np.asarray(p.sigma2(jnp.asarray(ts_o)), float)
    law = ridge.two_point_ode_distance(y_T, h_o)
    errs = np.max(
        [np.abs(np.abs(np.asarray(r.xs[..., 1], float)) / law - 1).max(axis=1) for r in ode.values()], 0
    )
    cl = ode["clip"]
    nd_o, ok_o = np.asarray(cl.stats["newton_distance"], float), np.asarray(cl.stats["valid"], bool)
    dn, dt = np.asarray(cl.stats["drift_normal"]), np.asarray(cl.stats["drift_tangent"])
    idx = ridge.detect_phases(ts_o, nd_o, ok_o, dn, dt, tube_radius=0.25).reach_index
    t_star = ridge.two_point_tube_entry_time(0.25, h_o[0], y_T)
    bracket = (
        (idx >= 0)
        & (ts_o[np.maximum(idx, 0)] <= t_star * (1 + 1e-4))
        & ((idx == 0) | (ts_o[np.maximum(idx - 1, 0)] >= t_star * (1 - 1e-4)))
    )
    rate = ridge.log_distance_rate(ts_o, nd_o)
    mid = 0.5 * (ts_o[1:] + ts_o[:-1])
    sel = (mid < 1.0) & (mid > 2e-3)
    pred_rate = ridge.ode_normal_relaxation_rate(p.sigma2(jnp.asarray(mid)))
    with ridge.quiet_nan_warnings():
        rel = np.abs(np.nanmedian(rate, axis=1)[sel] / pred_rate[sel] - 1)
    ode_summary = {
        "law_dev": float(np.max(errs[ts_o >= 0.01])),
        "law_dev_t_min": float(errs[-1]),
        "reach_bracket_fraction": float(bracket.mean()),
        "relaxation_rate_dev": float(np.max(rel)),
    }
    h_min = float(p.sigma2(p.t_min))
    step = math.log(p.t_max / p.t_min) / config.n_steps  # relative step dt / t of the geometric grid
    runs.update(data=data, ts=ts, h=h, v_em=v_em[save])
    return TwoPoints(
        n, c, h_min, step, sde, intermode, ode_summary, ok.mean(axis=1).tolist(), (m2 / h).tolist(),
        (v_em[save] / h).tolist(), runs, ctx.results.get("exact"),
    )  # fmt: skip


def checks_two_points(config: Config, r: TwoPoints) -> list[Check]:
    se, c, s, f = math.sqrt(2.0 / r.n), r.shift, r.sde, r.intermode
    rounding = "pathwise identical up to float32 rounding"
    return [
        check(
            "two points, reverse SDE: E[dist^2] / Var_EM(t) = 1 at every saved step (max |dev|)",
            0.0, s["em_variance_ratio_dev"], 4 * se,
            note="dist = |y| (the ridge is the x-axis); Var_EM is the exact variance recursion of the "
            "Euler-Maruyama chain; tolerance 4 Monte-Carlo s.e. of a Gaussian second moment",
        ),
        check(
            "two points, reverse SDE: E[dist^2] / sigma_t^2 = 1 (continuous law, max |dev| for t <= 1)",
            0.0, s["continuous_law_dev"], 4 * se + r.relative_step,
            note="tolerance: 4 s.e. plus the first-order Euler-Maruyama bias ~ dt/t of the geometric grid; "
            f"the recursion gives max |Var_EM/sigma^2 - 1| = {s['em_bias']:.3g} "
            "there (the coarse steps at large t bias the early steps more)",
        ),
        check(
            "two points: Newton distance = |y| wherever the geometry is valid (max rel. err.)",
            0.0, s["newton_vs_abs_y"], 1e-3,
            note="float32; masked points (isotropic Hessian near the modes) are excluded, not scored",
        ),
        check(
            "align: normal offset = exact EM mean recursion, every particle and step (max abs err)",
            0.0, s["offset_vs_recursion"], 1e-4,
            note="linear y-dynamics with the same noise: the offset is deterministic",
        ),
        check(
            "align: terminal normal offset E r = 2c / (2 - sigma^2) (linearised theory)",
            ridge.linearised_normal_offset(c, r.h_min), s["terminal_offset"],
            4 * math.sqrt(r.h_min / r.n) + 0.02 * c,
            note=f"c = {c} (denoiser-level normal error, score error c / sigma_t^2)",
        ),
        check(
            "align: the normal error leaves tangent placement unchanged (max |dx|)",
            0.0, s["normal_error_dx"], 1e-3,
            note="pathwise identical up to float32 rounding, amplified by 1/sigma_t^2 (500 at t_min)",
        ),
        check("align: inter-mode fraction unchanged by the normal error", f["exact"], f["normal"], 2.0 / r.n),
        check(
            "align: recorded score error is normal with size c / sigma_t^2 (max rel. err.)",
            0.0, s["recorded_error_dev"], 1e-3,
        ),
        check(
            "slide: the tangent error leaves the distance unchanged (max |dy|)",
            0.0, s["tangent_error_dy"], 1e-3, note=rounding,
        ),
        check(
            "slide: the tangent error creates inter-mode samples (fraction with |x -+ 3| > 0.5)",
            0.3, f["tangent"], relation="ge", note=f"exact score: {f['exact']:.4f}",
        ),
        check("memorisation: the exact score makes no inter-mode samples", 0.01, f["exact"], relation="le"),
        check(
            "two points, PF-ODE: |y_t| = |y_T| sigma_t / sigma_T pathwise (max rel. err., t >= 0.01)",
            0.0, r.ode["law_dev"], 2e-4,
            note=f"Tsit5, rtol = atol = 1e-6, float32. At t_min the error is {r.ode['law_dev_t_min']:.2g}: "
            "the solver runs on the clock u = t_max - t, whose float32 resolution near t_max = 10 is ~1e-6 "
            "in t, a relative error ~1e-3 at t = 1e-3",
        ),
        check(
            "reach: first saved time inside a tube of radius 0.25 brackets the closed-form entry time "
            "(fraction of particles)",
            1.0, r.ode["reach_bracket_fraction"], 0.0,
            note="h_{t*} = r^2 h_T / y_T^2 on the saddle line x = 0 (tangent-clipped score: x = 0 is a "
            "fixed point; for the exact score the saddle is unstable)",
        ),
        check(
            "align (PF-ODE): normal relaxation rate d log dist / dt = 1/sigma_t^2 - 1 (max rel. dev.)",
            0.0, r.ode["relaxation_rate_dev"], 0.05,
            note="finite differences between saved steps, t in (2e-3, 1)",
        ),
    ]  # fmt: skip


class FlatRidge(eqx.Module):
    """Two points, per time: valid converged points, median ``|Newton / SCMS - 1|``, max ``h |P_perp g|``."""

    by_time: dict[float, dict[str, float]]


def compute_scms(config: Config, ctx: PartContext) -> FlatRidge:
    key = jr.fold_in(jr.key(config.seed), 51)
    emp = EmpiricalScore(jnp.asarray(training_set("two_points"), jnp.float32))
    out = {}
    for t in (0.3, 1.0):
        x, _ = emp.sample(
            jr.fold_in(key, int(100 * t)), config.ridge_grid**2, t=t
        )  # the SCMS shape of part 1
        geo = ridge.ridge_geometry(emp, t, x, 1, gap_threshold=config.gap_threshold)
        sc = ridge.scms_project(emp, t, x, 1, max_iter=100, gap_threshold=config.gap_threshold)
        ok = np.asarray(geo.valid & sc.valid & sc.converged)
        rel = np.abs(np.asarray(geo.newton_distance)[ok] / np.asarray(sc.distance)[ok] - 1)
        out[t] = {
            "n_valid_converged": int(ok.sum()),
            "median_rel_newton_vs_scms": float(np.median(rel)),
            "max_residual_times_h": float(np.max(np.asarray(sc.residual)[ok]) * float(emp.process.sigma2(t))),
        }
    return FlatRidge(out)


def checks_scms(config: Config, r: FlatRidge) -> list[Check]:
    out = []
    for t, row in r.by_time.items():
        out.append(
            check(
                f"two points, t={t:g}: Newton distance = SCMS distance on the flat ridge (median rel. diff.)",
                0.0, row["median_rel_newton_vs_scms"], 1e-3,
                note=f"{row['n_valid_converged']} valid converged points of {config.ridge_grid**2}",
            )
        )  # fmt: skip
        out.append(
            check(
                f"two points, t={t:g}: SCMS fixed points have vanishing projected gradient "
                "(max sigma_t^2 |P_perp g|)",
                0.0, row["max_residual_times_h"], 1e-4,
            )
        )  # fmt: skip
    return out
