"""Parts ``random_features`` and ``mlp`` of the ``ridge`` study: random-feature scores along their
closed-form gradient flow and an MLP trained by denoising score matching, against the exact score."""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ...analysis import ridge
from ...data.ridge import training_set
from ...processes import VP
from ...sampling import grids, simulate
from ...scores import EmpiricalScore, random_features
from .._runner import Check, PartContext, check
from ._config import Config, ridge_run, trace_ridge, trajectory_plot


# --- 3. random features vs exact vs a trained MLP ----------------------------------------------------
class RandomFeatures(eqx.Module):
    """Closed-form flow vs gradient descent, and per training set and width the losses, directional errors
    and sample summaries along ``tau`` (last entry ``tau = inf``); the exact score's inter-mode fraction."""

    gradient_descent: dict[str, float]
    rows: dict[str, dict[int, dict[str, Any]]]
    exact_intermode: dict[str, float]
    exact_median_abs_y: float
    evals: dict[str, list] = field(default=None, metadata={"json": False})
    ridges: dict[str, dict] = field(default=None, metadata={"json": False})
    learned: dict[str, dict] = field(default=None, metadata={"json": False})


def _sample_summary(score, data, config, key, name):
    tr = simulate(
        score,
        "euler_maruyama",
        grids.geometric(score.process, config.rf_steps),
        n=config.rf_particles,
        key=key,
    )
    x = np.asarray(tr.x, float)
    out = {
        "intermode_fraction": ridge.inter_mode_fraction(x, data, ridge.intermode_radius(data)),
        "nn_distance_median": float(np.median(ridge.nearest_distance(x, data))),
    }
    if name == "two_points":
        out["median_abs_y"] = float(np.median(np.abs(x[:, 1])))
    return out


def _learned_plot(score, emp, data, config, key, ridges):
    """Trajectories of a learned score, coloured by phase against the empirical ridge."""
    tr = ridge_run(score, emp, config, min(config.n_plot_trajectories, config.rf_particles), key)
    summary, ph = ridge.summarise_ridge_run(tr, emp.process, data, tube_scale=config.tube_scale)
    return trajectory_plot(tr, ph.labels, ridges, data), summary


def _gradient_descent(config, key):
    """Closed-form A(tau) against optax gradient descent (two points, smallest width, small sample)."""
    data = jnp.asarray(training_set("two_points"), jnp.float32)
    ts = random_features.make_training_set(data, key=jr.fold_in(key, 7), n_times=41, n_noise=16)
    model = random_features.RandomFeatureScore(
        2, min(config.rf_widths), key=jr.fold_in(key, 8), n_freqs=config.rf_n_freqs
    )
    mom = random_features.fit_moments(model, ts)
    lr = 0.25 * model.dim / float(mom.eigvals[-1])
    n = config.rf_gd_steps
    tau = lr * n / model.dim
    trained, losses = random_features.train_readout(model, ts, learning_rate=lr, n_steps=n)
    a_cf = mom.readout_at(model.readout, tau)
    rel = float(jnp.linalg.norm(trained.readout - a_cf) / jnp.linalg.norm(a_cf - model.readout))
    monotone = bool(np.all(np.diff(np.asarray(losses)) <= 1e-6 * float(losses[0])))
    return {
        "tau": tau,
        "relative_difference": rel,
        "lr": lr,
        "steps": n,
        "width": model.width,
        "monotone": monotone,
    }


@eqx.filter_jit
def _rf_predictions(model, readouts, t, x):
    """Denoiser outputs ``(K, N, d)`` of a random-feature model for a stack of ``K`` read-outs."""
    h = jax.vmap(lambda xi: model.features(t, xi))(x)  # (N, p)
    return jnp.einsum("np,kdp->knd", h, readouts) / math.sqrt(model.width)


def _rf_rows(name, data, ts, evals, config, ctx, key):
    """Per width: the closed-form flow at every tau (cached per width)."""
    taus = np.asarray(config.rf_taus, float)
    rows = {}
    for width in ctx.progress(config.rf_widths, f"random features {name}"):

        def compute(width=width):
            model = random_features.RandomFeatureScore(
                2, width, key=jr.fold_in(key, 100 + width), n_freqs=config.rf_n_freqs
            )
            mom = random_features.fit_moments(model, ts)
            stack = jnp.concatenate(
                [mom.readout_at(model.readout, taus), mom.readout_limit(model.readout)[None]]
            )

            en, et = ridge.directional_errors(
                lambda t, x: _rf_predictions(model, stack, jnp.float32(t), x), evals
            )
            k_s = jr.fold_in(key, 2)
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
                "samples": [_sample_summary(model.with_readout(a), data, config, k_s, name) for a in stack],
                "u_eigvals_top": np.asarray(mom.eigvals[-3:]).tolist(),
            }

        rows[width] = ctx.cache(f"rf-{name}-p{width}", compute)
    return rows


def compute_random_features(config: Config, ctx: PartContext) -> RandomFeatures:
    key = jr.key(config.seed)
    gd = _gradient_descent(config, jr.fold_in(key, 60))
    rows, exact_intermode, evals, ridges, learned = {}, {}, {}, {}, {}
    for j, name in enumerate(config.rf_sets):
        kk = jr.fold_in(key, 70 + j)
        data = training_set(name)
        data32 = jnp.asarray(data, jnp.float32)
        emp = EmpiricalScore(data32)
        ts = random_features.make_training_set(
            data32, key=jr.fold_in(kk, 0), n_times=config.rf_n_times, n_noise=config.rf_n_noise
        )
        evals[name] = ridge.ridge_evaluation_points(
            emp, config.rf_eval_times, config.rf_n_eval, jr.fold_in(kk, 1), gap_threshold=config.gap_threshold
        )
        rows[name] = _rf_rows(name, data, ts, evals[name], config, ctx, kk)
        exact = _sample_summary(emp, data, config, jr.fold_in(kk, 2), name)
        exact_intermode[name] = exact["intermode_fraction"]
        ridges[name] = {t: trace_ridge(emp, t, data, config)[0] for t in config.ridge_times}
        p_max = max(rows[name])
        model = random_features.RandomFeatureScore(
            2, p_max, key=jr.fold_in(kk, 100 + p_max), n_freqs=config.rf_n_freqs
        )
        mom = random_features.fit_moments(model, ts)
        rf_score = model.with_readout(mom.readout_limit(model.readout))
        learned[f"{name}: RF p={p_max}, tau=inf"], _ = _learned_plot(
            rf_score, emp, data, config, jr.fold_in(kk, 3), ridges[name]
        )
    p = VP.ou()
    base = 0.6745 * math.sqrt(float(p.sigma2(p.t_min)))
    return RandomFeatures(gd, rows, exact_intermode, base, evals, ridges, learned)


def checks_random_features(config: Config, r: RandomFeatures) -> list[Check]:
    gd = r.gradient_descent
    out = [
        check(
            "random features: closed-form A(tau) = optax gradient descent (relative difference)",
            0.0, gd["relative_difference"], 5e-3,
            note=f"tau = lr * steps / d = {gd['tau']:.3g}, lr = {gd['lr']:.3g}, {gd['steps']} steps, "
            f"p = {gd['width']}, float32; the difference is the O(lr) discretisation of the flow",
        ),
        check(
            "random features: the loss of plain GD decreases monotonically",
            True, gd["monotone"], relation="true",
        ),
    ]  # fmt: skip
    for name, rows in r.rows.items():
        for width, row in rows.items():
            out += _rf_width_checks(name, width, row)
        widest = rows[max(rows)]
        out.append(
            check(
                f"{name}: random features (p={max(rows)}, tau=inf) generate between the modes "
                "(inter-mode fraction above the exact score's)",
                r.exact_intermode[name] + 0.05, widest["samples"][-1]["intermode_fraction"], relation="ge",
                note="tangent architectural bias -> sliding along the ridge",
            )
        )  # fmt: skip
        if name == "two_points":
            out.append(
                check(
                    "two points: RF samples at tau=inf lie on the ridge (median |y| vs exact 0.674 "
                    "sigma_tmin)",
                    r.exact_median_abs_y, widest["samples"][-1]["median_abs_y"], relation="rel",
                    tolerance=0.5,
                    note="the normal error vanishes at tau = inf, so the normal distance is the exact one",
                )
            )  # fmt: skip
    return out


def _rf_width_checks(name: str, width: int, row: dict[str, Any]) -> list[Check]:
    loss = np.asarray(row["loss_per_axis"], float)
    out = []
    if name == "two_points":
        floor = float(row["null_space_loss_per_axis"][1])
        bias = float(loss[-1, 0] - row["optimum_loss_per_axis"][0])
        out += [
            check(
                f"RF p={width}: normal (y) loss does not increase along the flow",
                True, bool(np.all(np.diff(loss[:-1, 1]) <= 1e-6 * loss[0, 1])), relation="true",
                note="finite tau; every eigenmode of U decays monotonically (V_y = 0); 1e-6 = float32 "
                "rounding. (tau = inf is the rcond-regularised limit, checked below)",
            ),
            check(
                f"RF p={width}: normal (y) loss -> 0 at tau = inf: only the null-space term of A(0) is "
                f"left (relative to tau = {row['tau'][0]:g})",
                0.0, float(loss[-1, 1] / loss[0, 1]), max(1e-6, 2 * floor / loss[0, 1]),
                note="the optimum's y-output is 0 (both points have y = 0), representable exactly; the "
                f"eigenvalues below rcond = 1e-6 (float32) count as null space and keep A(0): "
                f"null-space floor {floor / loss[0, 1]:.2g}",
            ),
            check(
                f"RF p={width}: tangent (x) loss plateaus above the optimum (architectural bias > 0)",
                0.0, bias, relation="ge", passed=bias > 0.01 * float(row["optimum_loss_per_axis"][0]),
                note=f"L_x(inf) = {loss[-1, 0]:.4g}, optimum L_x = {row['optimum_loss_per_axis'][0]:.4g}",
            ),
        ]  # fmt: skip
    en, et = np.asarray(row["normal_error"]), np.asarray(row["tangent_error"])
    out.append(
        check(
            f"RF p={width} ({name}): at tau = inf the normal error is below the tangent error",
            float(et[-1]), float(en[-1]), relation="le",
            note="architectural bias is tangential (held-out noised training points, local ridge frames)",
        )
    )  # fmt: skip
    return out


class MLP(eqx.Module):
    """Per training set: the trained MLP's normal / tangent errors, sample summary and ridge run."""

    rows: dict[str, dict[str, Any]]
    exact_median_abs_y: float
    rf: RandomFeatures = field(default=None, metadata={"json": False})
    learned: dict[str, dict] = field(default=None, metadata={"json": False})


def _train_mlp(name, data32, config, key, cache_dir, progress):
    from ...scores.nn import MLPScore
    from ...training import TrainConfig, train_or_load

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


def compute_mlp(config: Config, ctx: PartContext) -> MLP:
    key = jr.key(config.seed)
    rf = ctx.results["random_features"]
    rows, learned = {}, {}
    for j, name in enumerate(config.rf_sets):
        kk = jr.fold_in(key, 70 + j)
        data = training_set(name)
        data32 = jnp.asarray(data, jnp.float32)
        emp = EmpiricalScore(data32)
        score = _train_mlp(name, data32, config, kk, ctx.out_dir / "cache" / "nets", ctx.show_progress)
        en, et = ridge.directional_errors(
            lambda t, x, score=score: ridge.signal_denoiser(score, jnp.float32(t), x), rf.evals[name]
        )
        rows[name] = {"normal_error": float(en), "tangent_error": float(et)}
        rows[name].update(_sample_summary(score, data, config, jr.fold_in(kk, 2), name))
        learned[f"{name}: MLP"], rows[name]["run"] = _learned_plot(
            score, emp, data, config, jr.fold_in(kk, 3), rf.ridges[name]
        )
    return MLP(rows, rf.exact_median_abs_y, rf, learned)


def checks_mlp(config: Config, r: MLP) -> list[Check]:
    out = []
    for name, row in r.rows.items():
        out.append(
            check(
                f"{name}: trained MLP: normal error below tangent error (inductive bias toward the ridge)",
                row["tangent_error"], row["normal_error"], relation="le",
                note="squared denoiser errors against the empirical optimum, held-out noised training "
                "points, local ridge frames",
            )
        )  # fmt: skip
        if name == "two_points":
            out.append(
                check(
                    "two points: MLP samples lie on the ridge (median |y| vs exact 0.674 sigma_tmin)",
                    r.exact_median_abs_y, row["median_abs_y"], 0.5, relation="rel",
                )
            )  # fmt: skip
    return out
