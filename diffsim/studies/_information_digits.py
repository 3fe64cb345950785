"""Part of the ``information`` study on 8x8 digits with a class and an attribute token: an analytic
kernel-density conditional mixture (exact pointwise informations) and a trained token network, estimated on
the same log-SNRs and noise draws (results, compute, checks)."""

from __future__ import annotations

import math
from dataclasses import field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax.random as jr
import numpy as np

from ..analysis.information import (
    PID_MEASURES,
    LogSNRScheme,
    decompose,
    exact_pid_information,
    pid_information,
)
from ..data import kde_token_mixture, token_digits, token_frequencies
from ._information_config import Config
from ._information_pid import LN2, bits, max_dev, part_key
from ._runner import Check, PartContext, check


# =====================================================================================================
# 6. digits: analytic KDE mixture and a trained token network
# =====================================================================================================
class Digits(eqx.Module):
    """Tokens (class, attribute) on 8x8 test digits: informations, maps and PID terms (bits) of the analytic
    KDE model (``kde``, with exact values) and of the trained MLP (``network``, None when not trained); the
    KDE's estimator error (bits); the attribute's pixel support; the network's training and its gap to the
    KDE."""

    kde: dict[str, Any]
    network: dict[str, Any] | None
    kde_pointwise_error_bits: dict[str, list[float]]
    support_fraction_of_pixels: float
    network_train: dict[str, Any] | None
    model_error_bits: dict[str, float] | None
    support: np.ndarray = field(metadata={"json": False})


def _digits_summary(model, data, key, scheme, config) -> dict[str, Any]:
    n, n_noise = len(data.x_test), config.digits_n_noise
    est = pid_information(
        model, data.x_test, data.tokens_test, key, scheme=scheme, n_noise=n_noise, chunk_size=min(n, 8)
    )
    out = {
        "pointwise_bits": (est.pointwise / LN2).tolist(),
        "specific_bits": (est.specific / LN2).tolist(),
        "info_maps_bits": (est.orthogonal_coords.mean(0) / LN2).tolist(),
    }
    for meas in PID_MEASURES:
        dres = decompose(est, meas)
        out[meas] = bits(dres.terms)
        if dres.maps is not None and meas == "pointwise_min":
            out["pid_maps_bits"] = (np.asarray(dres.maps.as_array()) / LN2).tolist()
    o_attr = est.orthogonal_coords[:, 1]  # i^o_j(x; attribute) per image
    out["attribute_mass_in_support"] = float((o_attr * data.support).sum() / np.abs(o_attr).sum())
    out["class_pmi_bits_mean"] = float(np.mean(est.pointwise[:, 0]) / LN2)
    return out


def _train_network(config: Config, data, k_net, k_train, ctx: PartContext):
    from ..scores.conditional import TokenNetworkDenoiser
    from ..scores.nn import MLPScore
    from ..training import TrainConfig, train_or_load

    c = config
    net = MLPScore(
        data.x_train.shape[1],
        key=k_net,
        alphabet_sizes=(10, 2),
        width=c.digits_width,
        depth=c.digits_depth,
        data_std=0.5,
    )
    warmup = min(100, c.digits_train_steps // 2)
    tcfg = TrainConfig(
        steps=c.digits_train_steps,
        batch_size=128,
        learning_rate=2e-3,
        warmup_steps=warmup,
        token_dropout=c.digits_token_dropout,
        time_sampling="logsnr",
    )
    cdir = Path(c.cache_dir) if c.cache_dir else Path(ctx.out_dir) / "models"
    trained = train_or_load(
        net,
        data.x_train,
        tcfg,
        key=k_train,
        tokens=data.tokens_train,
        cache_dir=cdir,
        name=f"information-digits-mlp-{c.digits_attribute}",
        progress=ctx.show_progress,
    )
    return TokenNetworkDenoiser(trained.ema, token_frequencies(data.tokens_train, (10, 2))), trained


def compute_digits(config: Config, ctx: PartContext) -> Digits:
    c = config
    data = token_digits(c.digits_attribute, c.digits_n_images, seed=c.seed)
    _, _, k_est, k_net, k_train = jr.split(jr.fold_in(part_key(c, 99), 0), 5)
    kde = kde_token_mixture(
        data.x_train, data.tokens_train, c.digits_bandwidth, data.alphabet_sizes, data.names
    )
    scheme = LogSNRScheme.logistic(c.digits_n_logsnr, 0.0, 2.0, 3.0, stratified=c.stratified)  # [-6, 6]
    d1 = ctx.cache("digits-kde", lambda: _digits_summary(kde, data, k_est, scheme, c))
    ex = exact_pid_information(kde, data.x_test, data.tokens_test)
    d1["exact_pointwise_bits"] = (ex.pointwise / LN2).tolist()
    for meas in PID_MEASURES:
        d1[f"{meas}_exact"] = bits(decompose(ex, meas).terms)
    err = np.asarray(d1["pointwise_bits"]) - np.asarray(d1["exact_pointwise_bits"])  # (n, 3)
    se = err.std(0, ddof=1) / math.sqrt(len(err))
    kde_err = {
        "mean": err.mean(0).tolist(),
        "se": se.tolist(),
        "median_abs": np.median(np.abs(err), 0).tolist(),
    }
    d2 = train = gap = None
    if c.digits_network:
        model, trained = _train_network(c, data, k_net, k_train, ctx)
        d2 = ctx.cache(
            f"digits-net-{c.digits_train_steps}", lambda: _digits_summary(model, data, k_est, scheme, c)
        )
        gap = {meas: max_dev(d2[meas], d1[meas]) for meas in PID_MEASURES}
        pmi, bound = np.asarray(d2["pointwise_bits"]), math.log2(10.0)
        frac, median = float(np.mean(pmi[:, 0] > bound)), float(np.median(pmi[:, 0]))
        train = {
            "from_cache": trained.from_cache,
            "loss_final": float(np.mean(trained.losses[-50:])) if len(trained.losses) else None,
            "pointwise_median_bits": np.median(pmi, 0).tolist(),
            "class_pmi_above_bound_fraction": frac,
        }
        ctx.note(
            f"Digits: for any consistent model i(x; class) <= log2(1/p(class)) = {bound:.2f} bits; the "
            f"trained MLP exceeds it on {100 * frac:.0f}% of the test digits (median {median:.2f} bits): its "
            "conditional and unconditional denoisers are not the conditionals and marginal of one law, so "
            "MMSE gaps are not log-likelihood ratios. The Williams-Beer terms use the normalised Bayes "
            f"posterior and stay within {gap['wb_imin']:.2f} bits of the KDE's, against "
            f"{gap['pointwise_min']:.2f} (pointwise min) and {gap['mmi']:.2f} (MMI)."
        )
    return Digits(d1, d2, kde_err, float(data.support.mean()), train, gap, data.support)


def checks_digits(config: Config, r: Digits) -> list[Check]:
    c, attr, se = config, config.digits_attribute, r.kde_pointwise_error_bits["se"]
    mass = "concentrates on the attribute's pixels (mass fraction)"
    out = [
        check(
            "digits (analytic KDE): mean standard-estimator pointwise MI = mean exact "
            "[class, attr, both] (bits)",
            [0.0, 0.0, 0.0],
            r.kde_pointwise_error_bits["mean"],
            [round(float(c.n_se * v + 0.01), 4) for v in se],
            note=f"{len(r.support)} test digits against the KDE of the 1438 training digits (bandwidth "
            f"{c.digits_bandwidth}), {c.digits_n_logsnr} log-SNRs x {c.digits_n_noise} draws: pure estimator "
            f"error; tolerance {c.n_se:g} SE over images.",
        ),
        check(
            f"digits (analytic KDE): i^o(x; {attr}) {mass}",
            0.5,
            r.kde["attribute_mass_in_support"],
            0.0,
            relation="ge",
            note=f"the attribute changes {100 * r.support_fraction_of_pixels:.0f}% of the pixels; a uniform "
            "map would put that fraction there.",
        ),
    ]
    if r.network is not None:
        note = (
            f"same log-SNRs and noise as the KDE ({r.kde['attribute_mass_in_support']:.2f} there); "
            f"{c.digits_train_steps} training steps. A poorly trained net spreads the map."
        )
        measured = r.network["attribute_mass_in_support"]
        out.append(
            check(
                f"digits (trained MLP): i^o(x; {attr}) {mass}", 0.5, measured, 0.0, relation="ge", note=note
            )
        )
    return out
