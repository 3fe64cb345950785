"""Parts of the ``information`` study that check PID estimates against exact values: the five gates, the
bias sweep and the estimator ablation (results, compute, checks); and the helpers the other parts share."""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.information import (
    PID_MEASURES,
    LogSNRScheme,
    decompose,
    discrete_pid,
    dit_pid_values,
    exact_pid_information,
    pid_information,
    pid_tolerances,
    well_separated_joint,
)
from ..data.synthetic import binary_prior, block_structured, pid_gate
from ..scores.conditional import ConditionalMixture
from ._information_config import Config
from ._runner import Check, PartContext, check


LN2 = math.log(2.0)
CHUNK = 32  # fixed compiled chunk of points (padded): every analytic part shares shapes
N_COMPONENTS = 4  # gates, blocks and the bias sweep all use 4 components (RDN is padded)


def part_key(config: Config, part: int) -> jax.Array:
    return jr.fold_in(jr.key(config.seed), part)


def logistic_scheme(config: Config, n: int | None = None) -> LogSNRScheme:
    loc, scale, clip = config.logsnr_loc, config.logsnr_scale, config.logsnr_clip
    return LogSNRScheme.logistic(n or config.n_logsnr, loc, scale, clip, stratified=config.stratified)


def bits(terms) -> list[float]:
    return [float(v) / LN2 for v in terms.as_tuple()]


def pid_row(config: Config, m, x, y, w, key) -> tuple[dict[str, Any], np.ndarray]:
    """Per measure: engine PID (standard, orthogonal), exact and discrete PID (bits) and the Monte-Carlo
    tolerance (:func:`~diffsim.analysis.information.pid_tolerances`); and the well-separated table."""
    scheme, n_noise = logistic_scheme(config), config.n_noise
    est = pid_information(m, x, y, key, scheme=scheme, n_noise=n_noise, sample_weights=w, chunk_size=CHUNK)
    ex = exact_pid_information(m, x, y, sample_weights=w)
    tol = pid_tolerances(est, ex, w, n_se=config.n_se, floor_bits=config.tolerance_floor_bits)
    joint = well_separated_joint(m)
    row = {
        measure: {
            "engine": bits(decompose(est, measure).terms),
            "engine_orthogonal": bits(decompose(est, measure, estimator="orthogonal").terms),
            "exact": bits(decompose(ex, measure).terms),
            "tolerance": round(tol[measure], 4),
            "discrete": list(discrete_pid(joint, measure, unit="bits").as_tuple()),
        }
        for measure in PID_MEASURES
    }
    return row, joint


def max_dev(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))))


# =====================================================================================================
# 1. gates
# =====================================================================================================
class Gates(eqx.Module):
    """Per gate and measure: ``[R, U1, U2, S]`` (bits) of the engine (standard, orthogonal), exact and
    discrete PID, the tolerance; and ``dit``'s values (None without ``dit``)."""

    rows: dict[str, dict[str, Any]]


def compute_gates(config: Config, ctx: PartContext) -> Gates:
    key, rows = part_key(config, 1), {}
    for i, g in enumerate(ctx.progress(config.gates, "gates")):

        def compute(g=g, i=i):
            gate = pid_gate(g, separation=config.gate_separation, std=config.gate_std)
            m = ConditionalMixture.from_token_mixture(gate).padded(N_COMPONENTS)
            x, y, w = m.sample_stratified(jr.fold_in(key, 2 * i), config.n_per_component)
            row, joint = pid_row(config, m, x, y, w, jr.fold_in(key, 2 * i + 1))
            return row | {"dit": dit_pid_values(joint)}

        rows[g] = ctx.cache(f"gate-{g}", compute)
    if all(r["dit"] is None for r in rows.values()):
        ctx.note(
            "`dit` is not installed: the gate PIDs are checked against the engine's own exact discrete PID "
            "only (install the [test] extra to record dit's values too)."
        )
    return Gates(rows)


def checks_gates(config: Config, r: Gates) -> list[Check]:
    out, c = [], config
    budget = (
        f"{c.n_logsnr} logistic log-SNRs x {c.n_noise} noise draws, {c.n_per_component} samples per component"
    )
    for g, row in r.rows.items():
        dev = max(max_dev(row[m]["exact"], row[m]["discrete"]) for m in PID_MEASURES)
        name = f"gate {g}: exact continuous PID = discrete PID of the well-separated limit (max |dev|, bits)"
        note = f"separation {c.gate_separation}, std {c.gate_std}: x carries g exactly."
        out.append(check(name, 0.0, dev, 1e-4, note=note))
        for m in PID_MEASURES:
            bias = "" if m == "wb_imin" else " + the bias bound E|n1 - n2|/2 of a min of noisy MIs"
            note = f"standard estimator, {budget}; tolerance {c.n_se:g} SE of the per-sample noise{bias}."
            d = row[m]
            out.append(
                check(
                    f"gate {g}: engine {m} [R, U1, U2, S] = exact (bits)",
                    d["discrete"],
                    d["engine"],
                    d["tolerance"],
                    note=note,
                )
            )
            if row["dit"] is not None and m in row["dit"]:
                dev = max_dev(d["discrete"], row["dit"][m])
                out.append(check(f"gate {g}: discrete {m} = dit (max |dev|, bits)", 0.0, dev, 1e-6))
    return out


# =====================================================================================================
# 4. bias sweep
# =====================================================================================================
class Bias(eqx.Module):
    """Per correlation ``rho`` (key ``f"{rho:g}"``): PID rows as for the gates; ``I(Y1; Y2)`` (bits)."""

    rows: dict[str, dict[str, Any]]
    token_mutual_information: list[float]


def compute_bias(config: Config, ctx: PartContext) -> Bias:
    key, rows = part_key(config, 4), {}
    for i, rho in enumerate(ctx.progress(config.correlations, "bias")):

        def compute(rho=rho, i=i):
            blocks, prior = ("y1", "none", "none", "none"), binary_prior(rho)
            tm = block_structured(blocks, block_size=config.block_size, separation=4.0, std=0.5, prior=prior)
            m = ConditionalMixture.from_token_mixture(tm)
            x, y, w = m.sample_stratified(jr.fold_in(key, 2 * i), config.bias_per_component)
            return pid_row(config, m, x, y, w, jr.fold_in(key, 2 * i + 1))[0]

        rows[f"{rho:g}"] = ctx.cache(f"bias-{rho:g}", compute)
    p = (1 + np.asarray(config.correlations)) / 2
    return Bias(rows, (1 + p * np.log2(p) + (1 - p) * np.log2(1 - p)).tolist())


def checks_bias(config: Config, r: Bias) -> list[Check]:
    rhos, out = np.asarray(config.correlations), []
    rows = [r.rows[f"{rho:g}"] for rho in config.correlations]
    note = "Only y1 is depicted, so x carries y1 exactly and y2 only through its correlation with y1."
    for m in ("mmi", "wb_imin"):
        dev = max_dev([row[m]["discrete"][0] for row in rows], r.token_mutual_information)
        out.append(
            check(f"bias: exact {m} redundancy = I(Y1; Y2) (max |dev|, bits)", 0.0, dev, 1e-6, note=note)
        )
    order = np.argsort(rhos)
    monotone = len(rhos) > 1 and np.all(np.diff(rhos[order]) > 0) and rhos.min() >= 0
    for m in PID_MEASURES:
        eng = np.asarray([row[m]["engine"] for row in rows])
        dev = np.abs(eng - np.asarray([row[m]["discrete"] for row in rows])).max(axis=1).tolist()
        name = f"bias: engine {m} = exact at every correlation (max |dev| per correlation, bits)"
        note = "tolerance per correlation from the measured estimator noise (see the gates)."
        out.append(check(name, [0.0] * len(rows), dev, [row[m]["tolerance"] for row in rows], note=note))
        if monotone:
            note = f"measured R (bits): {np.round(eng[order, 0], 3).tolist()} at rho {rhos[order].tolist()}"
            increasing = bool(np.all(np.diff(eng[order, 0]) > 0))
            name = f"bias: engine {m} redundancy increases with the prior correlation"
            out.append(check(name, True, increasing, relation="true", note=note))
    return out


# =====================================================================================================
# 5. estimator ablation
# =====================================================================================================
class Ablation(eqx.Module):
    """Per budget ``"LxK"`` (log-SNRs x noise draws): RMSE of the per-sample pointwise MIs (standard,
    orthogonal; nats) and RMS over repeats of the max |PID error| (pointwise_min, mmi; both estimators)."""

    table: dict[str, dict[str, float]]


def compute_ablation(config: Config, ctx: PartContext) -> Ablation:
    key, c = part_key(config, 5), config
    gate = pid_gate(c.ablation_gate, separation=c.gate_separation, std=c.gate_std)
    m = ConditionalMixture.from_token_mixture(gate).padded(N_COMPONENTS)
    x, y, w = m.sample_stratified(jr.fold_in(key, 0), c.ablation_per_component)
    n, reps = x.shape[0], c.ablation_repeats
    exact = np.tile(exact_pid_information(m, x, y, sample_weights=w).pointwise, (reps, 1))
    disc = {meas: discrete_pid(well_separated_joint(m), meas).as_array() for meas in ("pointwise_min", "mmi")}
    xr, yr = jnp.tile(x, (reps, 1)), jnp.tile(y, (reps, 1))
    table = {}
    for L, K in ctx.progress([(L, K) for L in c.ablation_logsnr for K in c.ablation_noise], "ablation"):

        def compute(L=L, K=K):  # (specific informations unused; kept for shared shapes)
            k = jr.fold_in(key, 1000 * L + K)
            est = pid_information(m, xr, yr, k, scheme=logistic_scheme(c, L), n_noise=K, chunk_size=CHUNK)
            out = {
                "pmi_rmse_standard": float(np.sqrt(np.mean((est.pointwise - exact) ** 2))),
                "pmi_rmse_orthogonal": float(np.sqrt(np.mean((est.orthogonal - exact) ** 2))),
            }
            for meas, est_name in (
                (a, b) for a in ("pointwise_min", "mmi") for b in ("standard", "orthogonal")
            ):
                subs = (est.select(slice(r * n, (r + 1) * n), np.asarray(w)) for r in range(reps))
                errs = [
                    max_dev(decompose(s, meas, estimator=est_name).terms.as_tuple(), disc[meas]) for s in subs
                ]
                out[f"{meas}_{est_name}_err"] = float(np.sqrt(np.mean(np.square(errs))))
            return out

        table[f"{L}x{K}"] = ctx.cache(f"ablation-{L}x{K}", compute)
    return Ablation(table)


def checks_ablation(config: Config, r: Ablation) -> list[Check]:
    lo_key = f"{min(config.ablation_logsnr)}x{min(config.ablation_noise)}"
    hi_key = f"{max(config.ablation_logsnr)}x{max(config.ablation_noise)}"
    lo, hi = r.table[lo_key], r.table[hi_key]
    return [
        check(
            "ablation: standard per-sample error shrinks with the budget (error at max / at min budget)",
            0.5,
            hi["pmi_rmse_standard"] / lo["pmi_rmse_standard"],
            0.0,
            relation="le",
            note=f"{lo_key} vs {hi_key} (log-SNRs x noise draws); Monte-Carlo error ~ 1/sqrt(budget).",
        ),
        check(
            "ablation: the orthogonal estimator has a per-sample error floor (orthogonal / standard RMSE at "
            "max budget)",
            2.0,
            hi["pmi_rmse_orthogonal"] / hi["pmi_rmse_standard"],
            0.0,
            relation="ge",
            note="i^o differs from the pointwise MI per sample; it is unbiased only on average over "
            "p(x | y).",
        ),
        check(
            "ablation: pointwise-min PID error (standard) shrinks with the budget "
            "(error at max / at min budget)",
            0.5,
            hi["pointwise_min_standard_err"] / lo["pointwise_min_standard_err"],
            0.0,
            relation="le",
        ),
    ]
