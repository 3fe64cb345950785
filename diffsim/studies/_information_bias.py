"""Part 10 of the ``information`` study (see :mod:`diffsim.studies.information`), a toy counterpart of
DiffusionPID's bias case study: the bias sweep on a trained token network. Conditional PID given the
correlation token ``r`` of the exact bias-sweep mixture (:func:`diffsim.data.bias_sweep_mixture`) and of an
MLP trained on it, against the exact discrete values (mmi redundancy ``I(Y1; Y2)``), per prior correlation
(results, compute, checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import equinox as eqx
import jax.random as jr
import numpy as np

from ..analysis.information import (
    PID_MEASURES,
    decompose,
    exact_pid_information,
    pid_information,
    pid_tolerances,
    well_separated_joint,
)
from ..data import bias_sweep_mixture
from ..scores.conditional import ConditionalMixture
from ._information_cases import _discrete
from ._information_config import Config
from ._information_pid import CHUNK, bits, logistic_scheme, max_dev, part_key
from ._runner import Check, PartContext, check


class TrainedBias(eqx.Module):
    """Per correlation (key ``f"{rho:g}"``): the CPID given the correlation token ``r`` of the exact
    mixture (engine, exact discrete, tolerance) and of the trained network (standard and orthogonal
    estimator), bits; the network's final training loss."""

    rows: dict[str, dict[str, Any]]
    final_loss: float


def train_token_mlp(tm, ctx: PartContext, key, *, steps: int, n_train: int, cache_dir: str, name: str):
    """The case studies' token network (MLP width 128, depth 2; token dropout 0.5, log-SNR time sampling,
    EMA 0.99) trained on ``n_train`` draws of the token mixture ``tm``; returns the EMA network as a
    :class:`~diffsim.scores.conditional.TokenNetworkDenoiser` (token prior: the mixture's) and the final
    training loss (mean of the last 50 steps). Cached under ``name`` in ``cache_dir`` (default: the run's
    ``models/``)."""
    from ..scores.conditional import TokenNetworkDenoiser
    from ..scores.nn import MLPScore
    from ..training import TrainConfig, train_or_load

    k_data, k_net, k_train = jr.split(key, 3)
    x, y = tm.sample(k_data, n_train)
    net = MLPScore(tm.dim, key=k_net, alphabet_sizes=tm.alphabet_sizes, width=128, depth=2, data_std=1.0)
    tcfg = TrainConfig(
        steps=steps,
        batch_size=256,
        learning_rate=2e-3,
        warmup_steps=min(100, steps // 4),
        token_dropout=0.5,
        time_sampling="logsnr",
        ema_decay=0.99,
    )
    cdir = Path(cache_dir) if cache_dir else Path(ctx.out_dir) / "models"
    trained = train_or_load(
        net, x, tcfg, key=k_train, tokens=y, cache_dir=cdir, name=name, progress=ctx.show_progress
    )
    return TokenNetworkDenoiser(trained.ema, tm.prior), float(np.mean(np.asarray(trained.losses)[-50:]))


def compute_trained_bias(config: Config, ctx: PartContext) -> TrainedBias:
    c, key = config, part_key(config, 14)
    rhos = c.trained_bias_correlations
    tm = bias_sweep_mixture(rhos, block_size=c.block_size, n_blocks=4)

    def compute():
        den, final_loss = train_token_mlp(
            tm, ctx, jr.fold_in(key, 0), steps=c.trained_bias_steps, n_train=c.trained_bias_n_train,
            cache_dir=c.cache_dir, name="information-bias-mlp",
        )  # fmt: skip
        m = ConditionalMixture.from_token_mixture(tm)
        x, y, w = m.sample_stratified(jr.fold_in(key, 1), c.bias_per_component)
        w, r_tok = np.asarray(w), np.asarray(y)[:, 2]
        k = jr.fold_in(key, 2)  # the same log-SNRs and noise draws for the mixture and the network
        kw = dict(
            context=(2,), scheme=logistic_scheme(c), n_noise=c.n_noise, sample_weights=w, chunk_size=CHUNK
        )
        est_m, est_n = pid_information(m, x, y, k, **kw), pid_information(den, x, y, k, **kw)
        ex = exact_pid_information(m, x, y, context=(2,), sample_weights=w)
        joint = well_separated_joint(m, context=(2,))
        rows = {}
        for i, rho in enumerate(rhos):
            idx = np.flatnonzero(r_tok == i)
            wi = w[idx] / w[idx].sum()
            em, en, exi = est_m.select(idx, wi), est_n.select(idx, wi), ex.select(idx, wi)
            tol = pid_tolerances(em, exi, wi, n_se=c.n_se, floor_bits=c.tolerance_floor_bits)
            ji = joint[i] / joint[i].sum()
            rows[f"{rho:g}"] = {
                m_: {
                    "engine": bits(decompose(em, m_).terms),
                    "network": bits(decompose(en, m_).terms),
                    "network_orthogonal": bits(decompose(en, m_, estimator="orthogonal").terms),
                    "tolerance": round(tol[m_], 4),
                    "discrete": _discrete(ji, m_, False),
                }
                for m_ in PID_MEASURES
            }
        return {"rows": rows, "final_loss": final_loss}

    r = ctx.cache("cases-trained-bias", compute)
    return TrainedBias(r["rows"], r["final_loss"])


def checks_trained_bias(config: Config, r: TrainedBias) -> list[Check]:
    rhos = list(config.trained_bias_correlations)
    rows = [r.rows[f"{rho:g}"] for rho in rhos]
    out = []
    p = (1 + np.asarray(rhos)) / 2
    mi = (1 + p * np.log2(p) + (1 - p) * np.log2(1 - p)).tolist()
    dev = max_dev([row["mmi"]["discrete"][0] for row in rows], mi)
    out.append(
        check("trained bias: exact mmi redundancy given r = I(Y1; Y2) (max |dev|, bits)", 0.0, dev, 1e-6)
    )
    order = np.argsort(rhos)
    monotone = len(rhos) > 1 and bool(np.all(np.diff(np.asarray(rhos)[order]) > 0))
    for m in PID_MEASURES:
        for src in ("engine", "network"):
            dev = [max_dev(row[m][src], row[m]["discrete"]) for row in rows]
            who = "exact mixture" if src == "engine" else "trained network"
            out.append(
                check(
                    f"trained bias: {who} {m} = exact at every correlation (max |dev| per correlation, bits)",
                    [0.0] * len(rows),
                    dev,
                    [row[m]["tolerance"] for row in rows],
                    note="CPID given the correlation token; tolerance: the Monte-Carlo tolerance of the "
                    "estimator on the exact mixture (same samples, log-SNRs and noise draws), so a network "
                    "miss is model error.",
                )
            )
        if monotone:
            red = np.asarray([row[m]["network"][0] for row in rows])[order]
            out.append(
                check(
                    f"trained bias: trained network {m} redundancy increases with the prior correlation",
                    True,
                    bool(np.all(np.diff(red) > 0)),
                    relation="true",
                    note=f"network R (bits) {np.round(red, 3).tolist()} at rho "
                    f"{np.asarray(rhos)[order].tolist()}",
                )
            )
    return out
