r"""Study ``ridge``: reach, align and slide around the log-density ridge of the smoothed empirical
distribution (He, Qiu & Tao 2026, arXiv 2602.06021).

Four parts, each with its theory checks (see ``docs/ridge.md`` for the derivations):

1. **Exact empirical score on 2-D training sets** (two points, three points, square, square + centre,
   triangle + a point on the hypotenuse, 3x3 grid, 13 points). Reverse SDE (Euler-Maruyama, geometric
   grid) with the ridge geometry recorded at saved steps (:func:`diffsim.analysis.ridge.ridge_stats`):
   Newton distance to the 1-ridge, eigengap mask, normal / tangent drift, phases; the ridge itself traced by
   SCMS at several times. For the two-point set the ridge is the x-axis and the distance ``|y|`` follows a
   closed-form law along the SDE (the exact variance recursion of the Euler-Maruyama chain, and
   ``E y^2 = sigma_t^2`` in continuous time) and along the PF-ODE (``y_t = y_T sigma_t / sigma_T``).
2. **Directional errors on the two-point set**: a constant normal denoiser error ``(0, c)`` shifts the
   terminal normal offset to ``2c / (2 - sigma^2)`` (linearised align theory) and leaves placement alone; a
   tangent error (the denoiser clipped to the segment) changes placement (inter-mode fraction) and leaves
   the distance alone.
3. **Random features vs exact vs a trained MLP**: closed-form gradient flow ``A(tau)`` (checked against
   optax gradient descent), normal / tangent error vs ``tau`` and width ``p``, inter-mode fraction vs
   ``tau``; the same measurements for an MLP trained by DSM (issue 5's trainer).
4. **Latent digits**: an autoencoder latent of the 8x8 digits, a latent score network, the ridge of the
   latent training set over time for generated samples, and decoded on-ridge vs off-ridge samples.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis import ridge as R
from ..data.ridge import TRAINING_SETS, training_set
from ..processes import VP
from ..sampling import grids, simulate
from ..scores import DenoiserShiftScore, EmpiricalScore, SegmentDenoiserScore, random_features as rf
from ._runner import ResultCache, Results, progress_bar, register


# =====================================================================================================
# configuration and training sets
# =====================================================================================================
@dataclass(frozen=True)
class Config:
    """Configuration of the ``ridge`` study (defaults: a few CPU minutes; see ``docs/ridge.md``)."""

    # part 1: exact empirical score on 2-D training sets
    sets: tuple[str, ...] = TRAINING_SETS
    n_particles: int = 4000
    n_steps: int = 400
    n_saved: int = 40
    gap_threshold: float = 1e-2
    tube_scale: float = 2.0
    ridge_times: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03)
    ridge_grid: int = 40
    n_plot_trajectories: int = 25
    # part 2: directional errors on the two-point set (denoiser-level normal shift c)
    normal_shift: float = 0.1
    ode_particles: int = 256
    # part 3: random features vs exact vs MLP
    rf_sets: tuple[str, ...] = ("two_points", "three_points")
    rf_widths: tuple[int, ...] = (64, 256, 1024)
    rf_n_freqs: int = 16
    rf_n_times: int = 201
    rf_n_noise: int = 128
    rf_taus: tuple[float, ...] = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
    rf_eval_times: tuple[float, ...] = (0.03, 0.1, 0.3)
    rf_n_eval: int = 400
    rf_particles: int = 1000
    rf_steps: int = 200
    rf_gd_steps: int = 400
    mlp: bool = True
    mlp_steps: int = 2000
    mlp_width: int = 128
    # part 4: latent digits
    latent: bool = True
    latent_digit: int = 1
    latent_dim: int = 8
    latent_intrinsic_dim: int = 1
    ae_steps: int = 2000
    latent_net_steps: int = 3000
    latent_net_width: int = 128
    latent_particles: int = 500
    latent_steps: int = 200
    latent_split_time: float = 0.05
    seed: int = 0

    def __post_init__(self):
        unknown = set(self.sets) - set(TRAINING_SETS)
        if unknown:
            raise ValueError(f"Unknown training sets {sorted(unknown)}; known: {TRAINING_SETS}.")
        bad_rf = set(self.rf_sets) - set(TRAINING_SETS)
        if bad_rf:
            raise ValueError(f"Unknown rf_sets {sorted(bad_rf)}; known: {TRAINING_SETS}.")
        for name in (
            "n_particles",
            "n_steps",
            "n_saved",
            "ridge_grid",
            "ode_particles",
            "rf_n_freqs",
            "rf_n_noise",
            "rf_n_eval",
            "rf_particles",
            "rf_steps",
            "rf_gd_steps",
            "mlp_steps",
            "mlp_width",
            "latent_dim",
            "ae_steps",
            "latent_net_steps",
            "latent_net_width",
            "latent_particles",
            "latent_steps",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")
        if self.rf_n_times < 3 or self.rf_n_times % 2 == 0:
            raise ValueError(f"`rf_n_times` must be odd and >= 3 (Simpson), got {self.rf_n_times}.")
        if not self.rf_widths or min(self.rf_widths) < 1:
            raise ValueError(f"`rf_widths` must be positive integers, got {self.rf_widths}.")
        if any(t <= 0 for t in (*self.ridge_times, *self.rf_eval_times, self.latent_split_time)):
            raise ValueError("ridge_times, rf_eval_times and latent_split_time must be > 0.")
        if not 1 <= self.latent_intrinsic_dim <= self.latent_dim - 1:
            raise ValueError(
                f"`latent_intrinsic_dim` must lie in [1, latent_dim - 1], got {self.latent_intrinsic_dim}."
            )


def min_spacing(data: np.ndarray) -> float:
    d = np.sqrt(((data[:, None] - data[None]) ** 2).sum(-1))
    return float(d[~np.eye(len(data), dtype=bool)].min())


def intermode_radius(data: np.ndarray) -> float:
    """Radius around each training point inside which a sample counts as a copy: ``min(0.5, spacing/4)``
    (0.5 is the radius of the paper's code for spacing 5-6)."""
    return min(0.5, 0.25 * min_spacing(data))


@contextlib.contextmanager
def _quiet():
    """Silence numpy's warnings for all-NaN slices (masked steps are expected: summaries are NaN there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _saved_indices(n_steps: int, n_saved: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_steps, min(n_saved, n_steps) + 1).round().astype(int))


# =====================================================================================================
# part 1: exact empirical score, ridges, phases
# =====================================================================================================
def _summarise_run(tr, process, config, data, codim: int = 1, intermode: bool = True) -> dict:
    """Distance / phase summaries of a run whose stats came from :func:`R.ridge_stats`."""
    ts = np.asarray(tr.ts, float)
    h = np.asarray(process.sigma2(jnp.asarray(ts)), float)
    st = {k: np.asarray(v) for k, v in tr.stats.items() if k != "normal_basis"}
    valid = st["valid"].astype(bool)
    nd = np.where(valid, st["newton_distance"], np.nan)
    with _quiet():
        med = np.nanmedian(np.where(valid, nd, np.nan), axis=1)
        ms = np.nanmean(np.where(valid, nd**2, np.nan), axis=1)
    ph = R.detect_phases(
        ts,
        nd,
        valid,
        st["drift_normal"],
        st["drift_tangent"],
        tube_radius=R.tube_radius(process, ts, codim, config.tube_scale),
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
        out["intermode_fraction"] = R.inter_mode_fraction(tr.x, data, intermode_radius(data))
    if "error_normal" in st:
        with _quiet():
            out["error_normal_median"] = np.nanmedian(st["error_normal"], axis=1).tolist()
            out["error_tangent_median"] = np.nanmedian(st["error_tangent"], axis=1).tolist()
    return out, ph


def _ridge_points(emp, t, data, config):
    """Points of the 1-ridge of log p_t traced by SCMS from a grid over the data's bounding box."""
    lo, hi = data.min(0) - 1.5, data.max(0) + 1.5
    g = config.ridge_grid
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], g), np.linspace(lo[1], hi[1], g))
    starts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    res = R.scms_project(emp, t, starts, 1, max_iter=200, gap_threshold=config.gap_threshold)
    keep = np.asarray(res.converged & res.valid)
    pts = np.asarray(res.x)[keep]
    inside = np.all((pts >= lo) & (pts <= hi), axis=1)
    return pts[inside], float(keep.mean()), np.asarray(res.residual)[keep]


def _exact_set(name, config, key):
    data = training_set(name)
    emp = EmpiricalScore(jnp.asarray(data, jnp.float32))
    p = emp.process
    grid = grids.geometric(p, config.n_steps)
    save = _saved_indices(config.n_steps, config.n_saved)
    tr = simulate(
        emp,
        "euler_maruyama",
        grid,
        n=config.n_particles,
        key=key,
        save=save,
        stats=R.ridge_stats(emp, 1, gap_threshold=config.gap_threshold),
    )
    summary, ph = _summarise_run(tr, p, config, data)
    ridges = {}
    for t in config.ridge_times:
        pts, frac, resid = _ridge_points(emp, t, data, config)
        ridges[t] = pts
        summary.setdefault("scms_converged_valid_fraction", {})[str(t)] = frac
        h = float(p.sigma2(t))
        summary.setdefault("scms_max_step", {})[str(t)] = (
            float(np.max(resid) * h) if resid.size else float("nan")
        )
    n_plot = min(config.n_plot_trajectories, config.n_particles)
    plot = {
        "xs": np.asarray(tr.xs[:, :n_plot]),
        "labels": ph.labels[:, :n_plot],
        "ridges": ridges,
        "data": data,
        "ts": np.asarray(tr.ts),
    }
    return summary, plot, tr


# =====================================================================================================
# part 2: the two-point set in closed form
# =====================================================================================================
def _em_recursions(grid, process, c):
    """Exact variance of y and exact mean offset under a denoiser shift (0, c), along the EM chain."""
    g = np.asarray(grid, float)
    h = np.asarray(process.sigma2(jnp.asarray(g)), float)
    v, m = [1.0], [0.0]
    for i in range(len(g) - 1):
        dt = g[i] - g[i + 1]
        a = 1.0 - (2.0 / h[i] - 1.0) * dt
        v.append(a * a * v[-1] + 2.0 * dt)
        m.append(a * m[-1] + 2.0 * c * dt / h[i])
    return np.asarray(v), np.asarray(m)


def _two_point_scores(emp, data, clip, shift):
    return DenoiserShiftScore(
        SegmentDenoiserScore(emp, data[0], data[1], jnp.float32(clip)), jnp.array([0.0, shift], jnp.float32)
    )


def _two_points(res, config, key):
    data = training_set("two_points")
    emp = EmpiricalScore(jnp.asarray(data, jnp.float32))
    p = emp.process
    n = config.n_particles
    grid = grids.geometric(p, config.n_steps)
    save = _saved_indices(config.n_steps, config.n_saved)
    c = config.normal_shift
    runs = {}
    for label, clip, shift in (("exact", 0.0, 0.0), ("normal", 0.0, c), ("tangent", 1.0, 0.0)):
        sc = _two_point_scores(emp, data, clip, shift)
        runs[label] = simulate(
            sc,
            "euler_maruyama",
            grid,
            n=n,
            key=key,
            save=save,
            stats=R.ridge_stats(emp, 1, score=sc, gap_threshold=config.gap_threshold),
        )
    ex = runs["exact"]
    ts = np.asarray(ex.ts, float)
    h = np.asarray(p.sigma2(jnp.asarray(ts)), float)
    v_em, m_em = _em_recursions(grid, p, c)
    y = np.asarray(ex.xs[..., 1], float)
    m2 = (y**2).mean(axis=1)
    se = math.sqrt(2.0 / n)
    ratio_em = m2 / v_em[save]
    res.check(
        "two points, reverse SDE: E[dist^2] / Var_EM(t) = 1 at every saved step (max |dev|)",
        0.0,
        float(np.max(np.abs(ratio_em - 1))),
        4 * se,
        note="dist = |y| (the ridge is the x-axis); Var_EM is the exact variance recursion of the "
        "Euler-Maruyama chain; tolerance 4 Monte-Carlo s.e. of a Gaussian second moment",
    )
    step = math.log(p.t_max / p.t_min) / config.n_steps  # relative step dt / t of the geometric grid
    late = ts <= 1.0
    em_bias = float(np.max(np.abs(v_em[save][late] / h[late] - 1)))
    res.check(
        "two points, reverse SDE: E[dist^2] / sigma_t^2 = 1 (continuous law, max |dev| for t <= 1)",
        0.0,
        float(np.max(np.abs(m2[late] / h[late] - 1))),
        4 * se + step,
        note="tolerance: 4 s.e. plus the first-order Euler-Maruyama bias ~ dt/t of the geometric grid; the "
        f"recursion gives max |Var_EM/sigma^2 - 1| = {em_bias:.3g} "
        "there (the coarse steps at large t bias the early steps more)",
    )
    nd = np.asarray(ex.stats["newton_distance"], float)
    ok = np.asarray(ex.stats["valid"], bool)
    res.check(
        "two points: Newton distance = |y| wherever the geometry is valid (max rel. err.)",
        0.0,
        float(np.max(np.abs(nd[ok] / np.abs(y[ok]) - 1))) if ok.any() else float("nan"),
        1e-3,
        note="float32; masked points (isotropic Hessian near the modes) are excluded, not scored",
    )
    res.metric("two_points_valid_fraction", ok.mean(axis=1).tolist())
    res.metric("two_points_E_dist2_over_h", (m2 / h).tolist())
    res.metric("two_points_VarEM_over_h", (v_em[save] / h).tolist())

    # align: a normal denoiser error (0, c)
    nm, tg = runs["normal"], runs["tangent"]
    h_min = float(p.sigma2(p.t_min))
    dy = np.asarray(nm.xs[..., 1] - ex.xs[..., 1], float)
    res.check(
        "align: normal offset = exact EM mean recursion, every particle and step (max abs err)",
        0.0,
        float(np.max(np.abs(dy - m_em[save][:, None]))),
        1e-4,
        note="linear y-dynamics with the same noise: the offset is deterministic",
    )
    pred = 2 * c / (2 - h_min)
    res.check(
        "align: terminal normal offset E r = 2c / (2 - sigma^2) (linearised theory)",
        pred,
        float(np.mean(np.asarray(nm.x[:, 1]))),
        4 * math.sqrt(h_min / n) + 0.02 * c,
        note=f"c = {c} (denoiser-level normal error, score error c / sigma_t^2)",
    )
    dx = float(np.max(np.abs(np.asarray(nm.xs[..., 0] - ex.xs[..., 0]))))
    res.check(
        "align: the normal error leaves tangent placement unchanged (max |dx|)",
        0.0,
        dx,
        1e-3,
        note="pathwise identical up to float32 rounding, amplified by 1/sigma_t^2 (500 at t_min)",
    )
    f_ex = R.inter_mode_fraction(ex.x, data, 0.5)
    f_nm = R.inter_mode_fraction(nm.x, data, 0.5)
    f_tg = R.inter_mode_fraction(tg.x, data, 0.5)
    res.check("align: inter-mode fraction unchanged by the normal error", f_ex, f_nm, 2.0 / n)
    en = np.asarray(nm.stats["error_normal"], float)
    okn = np.asarray(nm.stats["valid"], bool)
    hs = np.broadcast_to(h[:, None], en.shape)
    res.check(
        "align: recorded score error is normal with size c / sigma_t^2 (max rel. err.)",
        0.0,
        float(np.max(np.abs(en[okn] * hs[okn] / c - 1))),
        1e-3,
    )
    # slide: the denoiser clipped to the segment
    dyt = float(np.max(np.abs(np.asarray(tg.xs[..., 1] - ex.xs[..., 1]))))
    res.check(
        "slide: the tangent error leaves the distance unchanged (max |dy|)",
        0.0,
        dyt,
        1e-3,
        note="pathwise identical up to float32 rounding",
    )
    res.check(
        "slide: the tangent error creates inter-mode samples (fraction with |x -+ 3| > 0.5)",
        0.3,
        f_tg,
        relation="ge",
        note=f"exact score: {f_ex:.4f}",
    )
    res.check("memorisation: the exact score makes no inter-mode samples", 0.01, f_ex, relation="le")
    res.metric("two_points_intermode", {"exact": f_ex, "normal": f_nm, "tangent": f_tg})

    # PF-ODE: y_t = y_T sigma_t / sigma_T; reach time of a tube on the saddle line
    m_ode = config.ode_particles
    y_T = jnp.linspace(0.3, 2.5, m_ode, dtype=jnp.float32)
    starts = {
        "exact": jnp.stack([jr.normal(jr.fold_in(key, 1), (m_ode,), jnp.float32), y_T], 1),
        "clip": jnp.stack([jnp.zeros(m_ode, jnp.float32), y_T], 1),
    }
    grid_ode = grids.geometric(p, 60)
    ode = {}
    for label, clip in (("exact", 0.0), ("clip", 1.0)):
        sc = _two_point_scores(emp, data, clip, 0.0)
        ode[label] = simulate(
            sc,
            "tsit5",
            grid_ode,
            x=starts[label],
            key=key,
            save="all",
            stats=R.ridge_stats(emp, 1, score=sc, drift="ode", gap_threshold=1e-6),
            rtol=1e-6,
            atol=1e-6,
        )
    ts_o = np.asarray(ode["exact"].ts, float)
    h_o = np.asarray(p.sigma2(jnp.asarray(ts_o)), float)
    law = np.abs(np.asarray(y_T, float))[None] * np.sqrt(h_o / h_o[0])[:, None]
    errs = np.max(
        [np.abs(np.abs(np.asarray(r.xs[..., 1], float)) / law - 1).max(axis=1) for r in ode.values()], 0
    )
    res.check(
        "two points, PF-ODE: |y_t| = |y_T| sigma_t / sigma_T pathwise (max rel. err., t >= 0.01)",
        0.0,
        float(np.max(errs[ts_o >= 0.01])),
        2e-4,
        note=f"Tsit5, rtol = atol = 1e-6, float32. At t_min the error is {float(errs[-1]):.2g}: the solver "
        "runs on the clock u = t_max - t, whose float32 resolution near t_max = 10 is ~1e-6 in t, a "
        "relative error ~1e-3 at t = 1e-3",
    )
    cl = ode["clip"]
    nd_o = np.asarray(cl.stats["newton_distance"], float)
    ok_o = np.asarray(cl.stats["valid"], bool)
    r_tube = 0.25
    ph = R.detect_phases(
        ts_o,
        nd_o,
        ok_o,
        np.asarray(cl.stats["drift_normal"]),
        np.asarray(cl.stats["drift_tangent"]),
        tube_radius=r_tube,
    )
    h_star = r_tube**2 * h_o[0] / np.asarray(y_T, float) ** 2
    t_star = -0.5 * np.log1p(-np.minimum(h_star, 1 - 1e-12))
    idx = ph.reach_index
    bracket = (
        (idx >= 0)
        & (ts_o[np.maximum(idx, 0)] <= t_star * (1 + 1e-4))
        & ((idx == 0) | (ts_o[np.maximum(idx - 1, 0)] >= t_star * (1 - 1e-4)))
    )
    res.check(
        "reach: first saved time inside a tube of radius 0.25 brackets the closed-form entry time "
        "(fraction of particles)",
        1.0,
        float(bracket.mean()),
        0.0,
        note="h_{t*} = r^2 h_T / y_T^2 on the saddle line x = 0 (tangent-clipped score: x = 0 is a "
        "fixed point; for the exact score the saddle is unstable)",
    )
    rate = R.log_distance_rate(ts_o, nd_o)
    mid = 0.5 * (ts_o[1:] + ts_o[:-1])
    sel = (mid < 1.0) & (mid > 2e-3)
    pred_rate = 1 / np.asarray(p.sigma2(jnp.asarray(mid)), float) - 1
    with _quiet():
        rel = np.abs(np.nanmedian(rate, axis=1)[sel] / pred_rate[sel] - 1)
    res.check(
        "align (PF-ODE): normal relaxation rate d log dist / dt = 1/sigma_t^2 - 1 (max rel. dev.)",
        0.0,
        float(np.max(rel)),
        0.05,
        note="finite differences between saved steps, t in (2e-3, 1)",
    )
    return {"exact": ex, "normal": nm, "tangent": tg, "data": data, "ts": ts, "h": h, "c": c}


# =====================================================================================================
# part 3: random features vs exact vs a trained MLP
# =====================================================================================================
def _eval_points(emp, config, key):
    """Noised training points at the evaluation times with their ridge frames and the optimum
    ``m_t = alpha_t E[x_0 | x]`` (the target of every denoiser)."""
    out = []
    for i, t in enumerate(config.rf_eval_times):
        x, _ = emp.sample(jr.fold_in(key, i), config.rf_n_eval, t=t)
        geo = R.ridge_geometry(emp, t, x, 1, gap_threshold=config.gap_threshold)
        out.append((t, x, np.asarray(geo.valid), geo.normal_basis, _signal_denoiser(emp, jnp.float32(t), x)))
    return out


@eqx.filter_jit
def _signal_denoiser(score, t, x):
    """``alpha_t E[x_0 | x] = x + sigma_t^2 s(t, x)`` for a batch: the quantity every denoiser targets."""
    s2 = score.process.sigma2(t)
    return jax.vmap(lambda xi: xi + s2 * score.score(t, xi))(x)


def _directional_errors(pred, evals):
    """Mean squared normal / tangent error of a denoiser-level prediction ``pred(t, x) -> (..., N, d)``
    against the optimum over the valid evaluation points (averaged over the evaluation times)."""
    n_err, t_err = [], []
    for t, x, valid, vn, m in evals:
        e = pred(t, x) - m
        en, et = R.decompose(e, jnp.broadcast_to(vn, e.shape[:-1] + vn.shape[-2:]))
        n_err.append(np.mean(np.asarray(en) ** 2 * valid, axis=-1) / max(valid.mean(), 1e-12))
        t_err.append(np.mean(np.asarray(et) ** 2 * valid, axis=-1) / max(valid.mean(), 1e-12))
    return np.mean(n_err, axis=0), np.mean(t_err, axis=0)


@eqx.filter_jit
def _rf_predictions(model, readouts, t, x):
    h = jax.vmap(lambda xi: model.features(t, xi))(x)  # (N, p)
    return jnp.einsum("np,kdp->knd", h, readouts) / math.sqrt(model.width)


def _sample_summary(score, data, config, key, name):
    p = score.process
    tr = simulate(
        score, "euler_maruyama", grids.geometric(p, config.rf_steps), n=config.rf_particles, key=key
    )
    x = np.asarray(tr.x, float)
    out = {
        "intermode_fraction": R.inter_mode_fraction(x, data, intermode_radius(data)),
        "nn_distance_median": float(np.median(R.nearest_distance(x, data))),
    }
    if name == "two_points":
        out["median_abs_y"] = float(np.median(np.abs(x[:, 1])))
    return out


def _rf_part(name, config, cache, key, res, progress):
    data = training_set(name)
    data32 = jnp.asarray(data, jnp.float32)
    emp = EmpiricalScore(data32)
    ts = rf.make_training_set(
        data32, key=jr.fold_in(key, 0), n_times=config.rf_n_times, n_noise=config.rf_n_noise
    )
    evals = _eval_points(emp, config, jr.fold_in(key, 1))
    taus = np.asarray(config.rf_taus, float)
    rows = {}
    for width in progress_bar(config.rf_widths, f"random features {name}", progress):

        def compute(width=width):
            model = rf.RandomFeatureScore(
                2, width, key=jr.fold_in(key, 100 + width), n_freqs=config.rf_n_freqs
            )
            mom = rf.fit_moments(model, ts)
            stack = jnp.concatenate(
                [mom.readout_at(model.readout, taus), mom.readout_limit(model.readout)[None]]
            )
            en, et = _directional_errors(lambda t, x: _rf_predictions(model, stack, jnp.float32(t), x), evals)
            k_s = jr.fold_in(key, 2)
            samples = [_sample_summary(model.with_readout(a), data, config, k_s, name) for a in stack]
            return {
                "tau": taus.tolist() + ["inf"],
                "loss_per_axis": np.asarray(mom.loss_per_coordinate(stack)).tolist(),
                "null_space_loss_per_axis": np.asarray(
                    mom.null_space_loss_per_coordinate(model.readout)
                ).tolist(),
                "error_per_axis": np.asarray(mom.error_per_coordinate(stack)).tolist(),
                "optimum_loss_per_axis": np.asarray(mom.L_opt).tolist(),
                "normal_error": en.tolist(),
                "tangent_error": et.tolist(),
                "samples": samples,
                "u_eigvals_top": np.asarray(mom.eigvals[-3:]).tolist(),
            }

        rows[width] = cache.get_or_compute(f"rf-{name}-p{width}", compute)
    return rows, evals, emp


def _gd_check(res, config, key):
    """Closed-form A(tau) against optax gradient descent (two points, smallest width, small sample)."""
    data = jnp.asarray(training_set("two_points"), jnp.float32)
    ts = rf.make_training_set(data, key=jr.fold_in(key, 7), n_times=41, n_noise=16)
    model = rf.RandomFeatureScore(2, min(config.rf_widths), key=jr.fold_in(key, 8), n_freqs=config.rf_n_freqs)
    mom = rf.fit_moments(model, ts)
    lr = 0.25 * model.dim / float(mom.eigvals[-1])
    n = config.rf_gd_steps
    tau = lr * n / model.dim
    trained, losses = rf.train_readout(model, ts, learning_rate=lr, n_steps=n)
    a_cf = mom.readout_at(model.readout, tau)
    rel = float(jnp.linalg.norm(trained.readout - a_cf) / jnp.linalg.norm(a_cf - model.readout))
    res.check(
        "random features: closed-form A(tau) = optax gradient descent (relative difference)",
        0.0,
        rel,
        5e-3,
        note=f"tau = lr * steps / d = {tau:.3g}, lr = {lr:.3g}, {n} steps, p = {model.width}, "
        "float32; "
        "the difference is the O(lr) discretisation of the flow",
    )
    res.check(
        "random features: the loss of plain GD decreases monotonically",
        True,
        bool(np.all(np.diff(np.asarray(losses)) <= 1e-6 * float(losses[0]))),
        relation="true",
    )
    res.metric("rf_gd_vs_closed_form", {"tau": tau, "relative_difference": rel})


def _rf_checks(res, rows, name):
    for width, row in rows.items():
        loss = np.asarray(row["loss_per_axis"], float)
        if name == "two_points":
            res.check(
                f"RF p={width}: normal (y) loss does not increase along the flow",
                True,
                bool(np.all(np.diff(loss[:-1, 1]) <= 1e-6 * loss[0, 1])),
                relation="true",
                note="finite tau; every eigenmode of U decays monotonically (V_y = 0); 1e-6 = float32 "
                "rounding. (tau = inf is the rcond-regularised limit, checked below)",
            )
            floor = float(row["null_space_loss_per_axis"][1])
            res.check(
                f"RF p={width}: normal (y) loss -> 0 at tau = inf: only the null-space term of A(0) is "
                f"left (relative to tau = {row['tau'][0]:g})",
                0.0,
                float(loss[-1, 1] / loss[0, 1]),
                max(1e-6, 2 * floor / loss[0, 1]),
                note="the optimum's y-output is 0 (both points have y = 0), representable exactly; the "
                f"eigenvalues below rcond = 1e-6 (float32) count as null space and keep A(0): "
                f"null-space floor {floor / loss[0, 1]:.2g}",
            )
            bias = float(loss[-1, 0] - row["optimum_loss_per_axis"][0])
            res.check(
                f"RF p={width}: tangent (x) loss plateaus above the optimum (architectural bias > 0)",
                0.0,
                bias,
                relation="ge",
                passed=bias > 0.01 * float(row["optimum_loss_per_axis"][0]),
                note=f"L_x(inf) = {loss[-1, 0]:.4g}, optimum L_x = {row['optimum_loss_per_axis'][0]:.4g}",
            )
        en, et = np.asarray(row["normal_error"]), np.asarray(row["tangent_error"])
        res.check(
            f"RF p={width} ({name}): at tau = inf the normal error is below the tangent error",
            float(et[-1]),
            float(en[-1]),
            relation="le",
            note="architectural bias is tangential (held-out noised training points, local ridge frames)",
        )


# =====================================================================================================
# the trained MLP (issue 5's trainer) and the latent digits
# =====================================================================================================
def _train_mlp(name, data32, config, key, cache_dir, progress):
    from ..scores.networks import MLPScore
    from ..scores.training import TrainConfig, train_or_load

    net = MLPScore(
        2, key=jr.fold_in(key, 0), width=config.mlp_width, depth=3, data_std=float(np.std(np.asarray(data32)))
    )
    tc = TrainConfig(
        steps=config.mlp_steps, batch_size=256, learning_rate=2e-3, warmup_steps=100, time_sampling="logsnr"
    )
    out = train_or_load(
        net,
        data32,
        tc,
        key=jr.fold_in(key, 1),
        cache_dir=cache_dir,
        name=f"ridge-mlp-{name}",
        progress=progress,
    )
    return out.ema


def _mlp_part(name, config, key, cache_dir, evals, progress):
    data = training_set(name)
    data32 = jnp.asarray(data, jnp.float32)
    score = _train_mlp(name, data32, config, key, cache_dir, progress)
    en, et = _directional_errors(lambda t, x: _signal_denoiser(score, jnp.float32(t), x), evals)
    summary = {"normal_error": float(en), "tangent_error": float(et)}
    summary.update(_sample_summary(score, data, config, jr.fold_in(key, 2), name))
    return score, summary


def _latent_part(config, key, cache_dir, res, progress):
    """Autoencoder latent of the 8x8 digits, a latent score network, the ridge of the latent training set."""
    from ..data.autoencoder import AutoencoderConfig, decode_batch, encode_batch, train_autoencoder
    from ..data.digits import load_digits
    from ..scores.networks import MLPScore
    from ..scores.training import TrainConfig, train_or_load

    digits = load_digits()
    x, labels = digits.flat("train")
    ae, _ = train_autoencoder(
        x,
        AutoencoderConfig(latent_dim=config.latent_dim, steps=config.ae_steps),
        key=jr.fold_in(key, 0),
        cache_dir=cache_dir,
        progress=progress,
    )
    z_all = np.asarray(encode_batch(ae, x), np.float32)
    sel = labels == config.latent_digit if config.latent_digit >= 0 else np.ones(len(labels), bool)
    if not sel.any():
        raise ValueError(f"No training image has label {config.latent_digit}.")
    z = z_all[sel]
    emp = EmpiricalScore(jnp.asarray(z))
    net = MLPScore(
        config.latent_dim,
        key=jr.fold_in(key, 1),
        width=config.latent_net_width,
        depth=3,
        data_std=float(z.std()),
    )
    tc = TrainConfig(
        steps=config.latent_net_steps, batch_size=256, learning_rate=2e-3, time_sampling="logsnr"
    )
    score = train_or_load(
        net,
        jnp.asarray(z),
        tc,
        key=jr.fold_in(key, 2),
        cache_dir=cache_dir,
        name="ridge-latent-net",
        progress=progress,
    ).ema
    k = config.latent_intrinsic_dim
    codim = config.latent_dim - k
    p = emp.process
    grid = grids.geometric(p, config.latent_steps)
    save = _saved_indices(config.latent_steps, 20)
    runs, summary = {}, {}
    for label, sc in (("exact", emp), ("net", score)):
        tr = simulate(
            sc,
            "euler_maruyama",
            grid,
            n=config.latent_particles,
            key=jr.fold_in(key, 3),
            save=save,
            stats=R.ridge_stats(
                emp, k, score=None if label == "exact" else sc, gap_threshold=config.gap_threshold
            ),
        )
        runs[label] = tr
        s, _ = _summarise_run(tr, p, config, z, codim, intermode=False)
        st = {kk: np.asarray(v) for kk, v in tr.stats.items()}
        with _quiet():
            s["median_residual_times_h"] = (
                np.nanmedian(st["residual"], axis=1) * np.asarray(s["h"])
            ).tolist()
        s["nn_distance_median"] = float(np.median(R.nearest_distance(tr.x, z)))
        if label == "net":
            # linearised align theory: normal offset r = 2 h e_perp / (2 - h) on top of the exact normal
            # fluctuation (variance h per normal direction): dist^2 ~ r^2 + codim h
            h = np.asarray(s["h"])[:, None]
            pred = np.sqrt((2 * h * st["error_normal"] / (2 - h)) ** 2 + codim * h)
            late = (np.asarray(s["ts"]) <= 0.01)[:, None] & st["valid"].astype(bool)
            with _quiet():
                ratio = st["newton_distance"][late] / pred[late]
            s["align_ratio_median"] = float(np.median(ratio)) if ratio.size else float("nan")
            s["align_ratio_count"] = int(ratio.size)
        summary[label] = s
    h_min = float(p.sigma2(p.t_min))
    res.check(
        "latent digits: the exact score memorises (median latent distance to the nearest training code "
        "<= 1.5 sqrt(m sigma_tmin^2))",
        1.5 * math.sqrt(config.latent_dim * h_min),
        summary["exact"]["nn_distance_median"],
        relation="le",
    )
    res.check(
        "latent digits: the network's distance to the ridge follows the linearised align theory "
        "(median dist / sqrt((2 h e_perp / (2 - h))^2 + codim h), valid particles, t <= 0.01)",
        1.0,
        summary["net"]["align_ratio_median"],
        0.3,
        relation="abs",
        note=f"{summary['net']['align_ratio_count']} particle-times; e_perp = |P_perp (s_net - s_emp)| "
        "at the particle (the quasi-static offset uses the error along the path)",
    )
    res.metric(
        "latent_nn_distance_ratio_net_over_exact",
        summary["net"]["nn_distance_median"] / max(summary["exact"]["nn_distance_median"], 1e-12),
    )
    # on-ridge vs off-ridge generated samples, split at the saved time nearest latent_split_time
    tr = runs["net"]
    ts = np.asarray(tr.ts)
    i_split = int(np.argmin(np.abs(np.log(ts / config.latent_split_time))))
    nd = np.asarray(tr.stats["newton_distance"])[i_split]
    ok = np.asarray(tr.stats["valid"])[i_split] & np.isfinite(nd)
    split = {"t": float(ts[i_split]), "valid_fraction": float(ok.mean())}
    groups = {}
    if ok.sum() >= 8:
        q_lo, q_hi = np.quantile(nd[ok], [0.25, 0.75])
        groups = {"on": np.flatnonzero(ok & (nd <= q_lo)), "off": np.flatnonzero(ok & (nd >= q_hi))}
        z_final = np.asarray(tr.x)
        for g, idx in groups.items():
            split[f"{g}_ridge_count"] = int(idx.size)
            split[f"{g}_ridge_nn_distance_median"] = float(np.median(R.nearest_distance(z_final[idx], z)))
            split[f"{g}_ridge_newton_distance_median"] = float(np.median(nd[idx]))
    summary["split"] = split
    images = {}
    if groups:
        z_final = np.asarray(tr.x)
        for g, idx in groups.items():
            pick = idx[:8]
            zs = z_final[pick]
            nearest = np.argmin(((zs[:, None] - z[None]) ** 2).sum(-1), axis=1)
            images[g] = (np.asarray(decode_batch(ae, jnp.asarray(zs))), np.asarray(x[sel][nearest]))
    return summary, runs, images, digits.image_shape


# =====================================================================================================
# figures
# =====================================================================================================
PHASE_COLOURS = {
    R.PHASE_UNRESOLVED: "0.75",
    R.PHASE_OUTSIDE: "tab:red",
    R.PHASE_ALIGN: "tab:blue",
    R.PHASE_SLIDE: "tab:green",
}


def _draw_phase_trajectories(ax, xs, labels, ts, t_from=2.0):
    """Saved trajectory segments from ``t <= t_from`` on (earlier, the particles are still noise), each
    coloured by the phase at its end."""
    from matplotlib.collections import LineCollection

    segs, cols = [], []
    first = int(np.argmax(np.asarray(ts) <= t_from))
    for j in range(xs.shape[1]):
        for s in range(first, xs.shape[0] - 1):
            segs.append(xs[s : s + 2, j])
            cols.append(PHASE_COLOURS[int(labels[s + 1, j])])
    ax.add_collection(LineCollection(segs, colors=cols, linewidths=0.7, alpha=0.8))


def _ridge_panel(ax, plot, title, ridge_times):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    for i, t in enumerate(ridge_times):
        pts = plot["ridges"].get(t, np.zeros((0, 2)))
        ax.scatter(
            pts[:, 0], pts[:, 1], s=3, color=cmap(i / max(len(ridge_times) - 1, 1)), label=f"ridge t={t:g}"
        )
    _draw_phase_trajectories(ax, plot["xs"], plot["labels"], plot["ts"])
    d = plot["data"]
    ax.scatter(d[:, 0], d[:, 1], marker="x", color="k", s=40, zorder=5)
    lo, hi = d.min(0) - 1.5, d.max(0) + 1.5
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)


def _legend(ax):
    """Ridge times (markers) and phases (lines) in one legend."""
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color=c, label=R.PHASE_NAMES[k]) for k, c in PHASE_COLOURS.items()]
    ax.legend(handles=handles, fontsize=6, loc="upper left", markerscale=3, framealpha=0.8)


def _fig_ridges(res, plots, config, name, caption):
    import matplotlib.pyplot as plt

    n = len(plots)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows + 0.4), squeeze=False)
    for ax, (title, plot) in zip(axes.ravel(), plots.items(), strict=False):
        _ridge_panel(ax, plot, title, config.ridge_times)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    _legend(axes.ravel()[0])
    fig.tight_layout()
    res.figure(fig, name, caption)


def _fig_distance(res, summaries, two, config):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, s in summaries.items():
        axes[0].loglog(s["ts"], s["median_newton_distance"], marker=".", label=name)
        axes[2].semilogx(s["ts"], s["valid_fraction"], label=name)
    ts = np.asarray(next(iter(summaries.values()))["ts"])
    h = np.asarray(next(iter(summaries.values()))["h"])
    axes[0].loglog(ts, 0.6745 * np.sqrt(h), "k:", label="0.674 sigma_t (exact, flat ridge)")
    axes[0].set_title("median Newton distance to the 1-ridge (valid points), exact score", fontsize=9)
    axes[0].legend(fontsize=7)
    y = np.asarray(two["exact"].xs[..., 1], float)
    v_em, _ = _em_recursions(grids.geometric(VP.ou(), config.n_steps), VP.ou(), 0.0)
    save = _saved_indices(config.n_steps, config.n_saved)
    axes[1].semilogx(two["ts"], (y**2).mean(1) / two["h"], "o", ms=3, label="measured E y^2 / sigma^2")
    axes[1].semilogx(two["ts"], v_em[save] / two["h"], "-", label="Euler-Maruyama recursion")
    axes[1].axhline(1.0, color="k", ls=":", label="continuous law")
    axes[1].set_title("two points: squared distance to the ridge / sigma_t^2", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[2].set_title("fraction of particles with a valid eigengap", fontsize=9)
    for ax in axes:
        ax.set_xlabel("t")
        ax.invert_xaxis()
    res.figure(
        fig,
        "distance_vs_t",
        "Distance to the ridge along the reverse SDE with the exact score: "
        "Newton distance per training set (left), the closed-form law for two points (centre), and the "
        "share of particles where the ridge frame is defined (right; the rest is masked).",
    )


def _fig_align_slide(res, two):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    ex, nm, tg = (np.asarray(two[k].x, float) for k in ("exact", "normal", "tangent"))
    axes[0].hist(ex[:, 1], bins=60, alpha=0.6, density=True, label="exact")
    axes[0].hist(nm[:, 1], bins=60, alpha=0.6, density=True, label=f"normal error c={two['c']}")
    axes[0].set_title("align: terminal normal coordinate y (distance to the ridge)", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].hist(ex[:, 0], bins=120, alpha=0.6, density=True, label="exact")
    axes[1].hist(tg[:, 0], bins=120, alpha=0.6, density=True, label="tangent error (clipped denoiser)")
    axes[1].set_title("slide: terminal tangent coordinate x (placement)", fontsize=9)
    axes[1].legend(fontsize=7)
    dy = np.asarray(two["normal"].xs[..., 1] - two["exact"].xs[..., 1], float).mean(1)
    h = two["h"]
    axes[2].semilogx(two["ts"], dy, "o", ms=3, label="measured mean offset")
    axes[2].semilogx(two["ts"], 2 * two["c"] / (2 - h), "k:", label="quasi-static 2c/(2 - sigma^2)")
    axes[2].invert_xaxis()
    axes[2].set_xlabel("t")
    axes[2].set_title("align: normal offset along the reverse SDE", fontsize=9)
    axes[2].legend(fontsize=7)
    res.figure(
        fig,
        "align_slide_two_points",
        "Two points: a normal denoiser error shifts the distance to the "
        "ridge and not the placement; a tangent error (denoiser clipped to the segment) changes the "
        "placement along the ridge (inter-mode samples) and not the distance.",
    )


def _fig_tau(res, rf_rows, mlp_rows, exact_intermode):
    import matplotlib.pyplot as plt

    names = list(rf_rows)
    fig, axes = plt.subplots(2, len(names), figsize=(6 * len(names), 7.5), squeeze=False)
    twins = [axes[1, j].twinx() for j in range(len(names))]
    for tw in twins:
        tw.set_ylabel("median distance to nearest training point (dotted)", fontsize=7)
    for j, name in enumerate(names):
        for width, row in rf_rows[name].items():
            tau = np.asarray(row["tau"][:-1], float)
            tau_inf = tau[-1] * 10
            x = np.append(tau, tau_inf)
            ln = axes[0, j].loglog(x, row["normal_error"], "-o", ms=3, label=f"normal, p={width}")
            colour = ln[0].get_color()
            axes[0, j].loglog(x, row["tangent_error"], "--s", ms=3, color=colour, label=f"tangent, p={width}")
            axes[1, j].semilogx(
                x,
                [s["intermode_fraction"] for s in row["samples"]],
                "-o",
                ms=3,
                color=colour,
                label=f"RF p={width}",
            )
            twins[j].semilogx(
                x, [s["nn_distance_median"] for s in row["samples"]], ":", color=ln[0].get_color()
            )
        mlp = mlp_rows.get(name)
        if mlp is not None:
            axes[0, j].axhline(mlp["normal_error"], color="k", lw=1, label="MLP normal")
            axes[0, j].axhline(mlp["tangent_error"], color="k", lw=1, ls="--", label="MLP tangent")
            axes[1, j].axhline(mlp["intermode_fraction"], color="k", lw=1, label="MLP")
        axes[1, j].axhline(exact_intermode[name], color="tab:red", lw=1, ls=":", label="exact score")
        axes[0, j].set_title(
            f"{name}: squared denoiser error vs training time tau (last point: tau = inf)", fontsize=9
        )
        axes[1, j].set_title(f"{name}: inter-mode fraction (solid) and placement (dotted) vs tau", fontsize=9)
        axes[1, j].set_ylim(-0.05, 1.05)
        for ax in axes[:, j]:
            ax.set_xlabel("tau")
            ax.legend(fontsize=6)
    fig.tight_layout()
    res.figure(
        fig,
        "errors_and_intermode_vs_tau",
        "Random-feature scores along the gradient flow: normal and "
        "tangent error against the empirical optimum (top; held-out noised training points, local ridge "
        "frames) and the inter-mode fraction of their samples (bottom), per width p; the trained MLP and "
        "the exact score for reference.",
    )


def _fig_latent(res, summary, images, shape, codim):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for label, s in summary.items():
        if label == "split":
            continue
        ts = np.asarray(s["ts"])
        axes[0].loglog(ts, s["median_residual_times_h"], marker=".", label=label)
        axes[1].loglog(ts, s["median_newton_distance"], marker=".", label=label)
        axes[2].semilogx(ts, s["valid_fraction"], label=label)
    ts = np.asarray(summary["exact"]["ts"])
    axes[1].loglog(ts, np.sqrt(codim * np.asarray(summary["exact"]["h"])), "k:", label="sqrt(codim) sigma_t")
    for ax, title in zip(
        axes,
        ("median residual x sigma_t^2 (valid)", "median Newton distance (valid)", "valid eigengap fraction"),
        strict=False,
    ):
        ax.set_title(f"latent digits: {title}", fontsize=9)
        ax.set_xlabel("t")
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    res.figure(
        fig,
        "latent_ridge_vs_t",
        "Latent digits: ridge residual and Newton distance of generated "
        "samples over the reverse SDE, exact empirical score vs the latent score network.",
    )
    if images:
        fig, axes = plt.subplots(4, 8, figsize=(10, 5.6))
        for r, (g, (dec, near)) in enumerate(images.items()):
            for c in range(8):
                for rr, arr in ((2 * r, dec), (2 * r + 1, near)):
                    ax = axes[rr, c]
                    ax.axis("off")
                    if c < len(arr):
                        ax.imshow(arr[c].reshape(shape), cmap="gray_r", vmin=-1, vmax=1)
            axes[2 * r, 0].set_title(f"{g}-ridge samples (decoded)", fontsize=8, loc="left")
            axes[2 * r + 1, 0].set_title("nearest training image", fontsize=8, loc="left")
        res.figure(
            fig,
            "latent_on_off_ridge",
            "Decoded latent samples closest to (on) and farthest from (off) "
            "the ridge of the latent training set at the split time, each above its nearest training "
            "image.",
        )


# =====================================================================================================
# the study
# =====================================================================================================
def _learned_plot(score, emp, data, config, key, ridges):
    """Trajectories of a learned score, coloured by phase against the empirical ridge."""
    p = emp.process
    n_plot = min(config.n_plot_trajectories, config.rf_particles)
    tr = simulate(
        score,
        "euler_maruyama",
        grids.geometric(p, config.n_steps),
        n=n_plot,
        key=key,
        save=_saved_indices(config.n_steps, config.n_saved),
        stats=R.ridge_stats(emp, 1, score=score, gap_threshold=config.gap_threshold),
    )
    summary, ph = _summarise_run(tr, p, config, data)
    return {
        "xs": np.asarray(tr.xs),
        "labels": ph.labels,
        "ridges": ridges,
        "data": data,
        "ts": np.asarray(tr.ts),
    }, summary


def _scms_vs_newton(res, config, key):
    """Flat ridge (two points): Newton distance = SCMS distance; SCMS fixed points have P_perp g = 0."""
    data = jnp.asarray(training_set("two_points"), jnp.float32)
    emp = EmpiricalScore(data)
    out = {}
    for t in (0.3, 1.0):
        x, _ = emp.sample(
            jr.fold_in(key, int(100 * t)), config.ridge_grid**2, t=t
        )  # the SCMS shape of part 1
        geo = R.ridge_geometry(emp, t, x, 1, gap_threshold=config.gap_threshold)
        sc = R.scms_project(emp, t, x, 1, max_iter=100, gap_threshold=config.gap_threshold)
        ok = np.asarray(geo.valid & sc.valid & sc.converged)
        rel = np.abs(np.asarray(geo.newton_distance)[ok] / np.asarray(sc.distance)[ok] - 1)
        h = float(emp.process.sigma2(t))
        out[t] = {
            "n_valid_converged": int(ok.sum()),
            "median_rel_newton_vs_scms": float(np.median(rel)),
            "max_residual_times_h": float(np.max(np.asarray(sc.residual)[ok]) * h),
        }
        res.check(
            f"two points, t={t:g}: Newton distance = SCMS distance on the flat ridge (median rel. diff.)",
            0.0,
            float(np.median(rel)),
            1e-3,
            note=f"{int(ok.sum())} valid converged points of {config.ridge_grid**2}",
        )
        res.check(
            f"two points, t={t:g}: SCMS fixed points have vanishing projected gradient "
            "(max sigma_t^2 |P_perp g|)",
            0.0,
            out[t]["max_residual_times_h"],
            1e-4,
        )
    res.metric("scms_two_points", out)


@register(
    "ridge",
    Config,
    quick=dict(
        sets=("square_centre",),
        n_particles=1000,
        n_steps=200,
        n_saved=20,
        ridge_grid=20,
        ridge_times=(1.0, 0.1),
        n_plot_trajectories=20,
        ode_particles=64,
        rf_sets=("two_points",),
        rf_widths=(128,),
        rf_n_times=101,
        rf_n_noise=32,
        rf_taus=(1.0, 100.0, 1e4),
        rf_n_eval=200,
        rf_particles=400,
        rf_steps=100,
        rf_gd_steps=200,
        mlp_steps=600,
        mlp_width=64,
        latent_dim=6,
        ae_steps=200,
        latent_net_steps=400,
        latent_net_width=64,
        latent_particles=128,
        latent_steps=60,
    ),
    description="Reach, align and slide around the log-density ridge (He, Qiu & Tao 2026): exact, "
    "random-feature and trained scores on 2-D training sets and latent digits.",
)
def run(config: Config, out_dir: Path, *, progress: bool = True) -> Results:
    res = Results("ridge", config, out_dir)
    cache = ResultCache(out_dir, config)
    key = jr.key(config.seed)
    cache_dir = Path(out_dir) / "cache" / "nets"

    # 1. exact empirical score on every training set
    summaries, plots = {}, {}
    for i, name in enumerate(progress_bar(config.sets, "exact score, training sets", progress)):
        s, plot, _ = _exact_set(name, config, jr.fold_in(key, i))
        summaries[name], plots[name] = s, plot
        res.check(
            f"{name}: the exact (memorising) score makes no inter-mode samples",
            0.01,
            s["intermode_fraction"],
            relation="le",
            note=f"radius {intermode_radius(training_set(name)):.3g} around each training point",
        )
    res.metric("exact", summaries)

    # 2. closed-form checks on the two-point set
    two = _two_points(res, config, jr.fold_in(key, 50))
    _scms_vs_newton(res, config, jr.fold_in(key, 51))

    # 3. random features vs exact vs MLP
    _gd_check(res, config, jr.fold_in(key, 60))
    rf_rows, mlp_rows, learned = {}, {}, {}
    exact_intermode = {}
    for j, name in enumerate(config.rf_sets):
        kk = jr.fold_in(key, 70 + j)
        rows, evals, emp = _rf_part(name, config, cache, kk, res, progress)
        rf_rows[name] = rows
        _rf_checks(res, rows, name)
        data = training_set(name)
        exact_intermode[name] = _sample_summary(emp, data, config, jr.fold_in(kk, 2), name)[
            "intermode_fraction"
        ]
        widest = rows[max(rows)]
        f_rf = widest["samples"][-1]["intermode_fraction"]
        res.check(
            f"{name}: random features (p={max(rows)}, tau=inf) generate between the modes "
            "(inter-mode fraction above the exact score's)",
            exact_intermode[name] + 0.05,
            f_rf,
            relation="ge",
            note="tangent architectural bias -> sliding along the ridge",
        )
        base = 0.6745 * math.sqrt(float(emp.process.sigma2(emp.process.t_min)))
        if name == "two_points":
            res.check(
                "two points: RF samples at tau=inf lie on the ridge (median |y| vs exact 0.674 sigma_tmin)",
                base,
                widest["samples"][-1]["median_abs_y"],
                relation="rel",
                tolerance=0.5,
                note="the normal error vanishes at tau = inf, so the normal distance is the exact one",
            )
        ridges = {t: _ridge_points(emp, t, data, config)[0] for t in config.ridge_times}
        model = rf.RandomFeatureScore(
            2, max(rows), key=jr.fold_in(kk, 100 + max(rows)), n_freqs=config.rf_n_freqs
        )
        ts_fit = rf.make_training_set(
            jnp.asarray(data, jnp.float32),
            key=jr.fold_in(kk, 0),
            n_times=config.rf_n_times,
            n_noise=config.rf_n_noise,
        )
        mom = rf.fit_moments(model, ts_fit)
        rf_score = model.with_readout(mom.readout_limit(model.readout))
        learned[f"{name}: RF p={max(rows)}, tau=inf"], _ = _learned_plot(
            rf_score, emp, data, config, jr.fold_in(kk, 3), ridges
        )
        if config.mlp:
            mlp_score, mlp_rows[name] = _mlp_part(name, config, kk, cache_dir, evals, progress)
            learned[f"{name}: MLP"], mlp_run = _learned_plot(
                mlp_score, emp, data, config, jr.fold_in(kk, 3), ridges
            )
            mlp_rows[name]["run"] = mlp_run
            res.check(
                f"{name}: trained MLP: normal error below tangent error (inductive bias toward the ridge)",
                mlp_rows[name]["tangent_error"],
                mlp_rows[name]["normal_error"],
                relation="le",
                note="squared denoiser errors against the empirical optimum, held-out noised training "
                "points, local ridge frames",
            )
            if name == "two_points":
                res.check(
                    "two points: MLP samples lie on the ridge (median |y| vs exact 0.674 sigma_tmin)",
                    base,
                    mlp_rows[name]["median_abs_y"],
                    0.5,
                    relation="rel",
                )
    res.metric("random_features", rf_rows)
    res.metric("mlp", mlp_rows)
    res.metric("exact_intermode_rf_sets", exact_intermode)

    # 4. latent digits
    latent = None
    if config.latent:
        latent, _, images, shape = _latent_part(config, jr.fold_in(key, 90), cache_dir, res, progress)
        res.metric("latent", latent)

    # figures
    _fig_ridges(
        res,
        plots,
        config,
        "ridges_exact",
        "Time-indexed 1-ridges of log p_t (SCMS, colour = t) for "
        "each training set (x), with exact-score reverse-SDE trajectories (from t = 2 on) coloured by "
        "phase: outside "
        "the tube, align (normal drift dominates), slide (tangent drift dominates), unresolved "
        "(eigengap below threshold: masked).",
    )
    if learned:
        _fig_ridges(
            res,
            learned,
            config,
            "ridges_learned",
            "Trajectories of the random-feature score "
            "(tau = inf) and of the trained MLP, coloured by phase against the empirical ridge.",
        )
    _fig_distance(res, summaries, two, config)
    _fig_align_slide(res, two)
    _fig_tau(res, rf_rows, mlp_rows, exact_intermode)
    if latent is not None:
        _fig_latent(res, latent, images, shape, config.latent_dim - config.latent_intrinsic_dim)
    return res
