"""Part ``latent`` of the ``ridge`` study: the ridge of an autoencoder latent of the 8x8 digits."""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ...analysis import ridge
from ...sampling import grids, simulate
from ...scores import EmpiricalScore
from .._runner import Check, PartContext, check
from ._config import Config, saved_indices


# --- 4. latent digits ---------------------------------------------------------------------------------
class Latent(eqx.Module):
    """Latent digits: per sampler (``exact``, ``net``) the ridge summaries along the reverse SDE, and the
    on-/off-ridge split of the network's samples (``split``)."""

    summary: dict[str, dict[str, Any]]
    nn_distance_ratio_net_over_exact: float
    h_min: float
    codim: int
    image_shape: tuple[int, ...]
    images: dict[str, tuple] = field(default=None, metadata={"json": False})


def compute_latent(config: Config, ctx: PartContext) -> Latent:
    """Autoencoder latent of the 8x8 digits, a latent score network, the ridge of the latent training set."""
    from ...data.autoencoder import AutoencoderConfig, decode_batch, encode_batch, train_autoencoder
    from ...data.digits import load_digits
    from ...scores.nn import MLPScore
    from ...training import TrainConfig, train_or_load

    key, cache_dir = jr.fold_in(jr.key(config.seed), 90), ctx.out_dir / "cache" / "nets"
    digits = load_digits()
    x, labels = digits.flat("train")
    ae_config = AutoencoderConfig(latent_dim=config.latent_dim, steps=config.ae_steps)
    ae, _ = train_autoencoder(
        x, ae_config, key=jr.fold_in(key, 0), cache_dir=cache_dir, progress=ctx.show_progress
    )
    z_all = np.asarray(encode_batch(ae, x), np.float32)
    sel = labels == config.latent_digit if config.latent_digit >= 0 else np.ones(len(labels), bool)
    if not sel.any():
        raise ValueError(f"No training image has label {config.latent_digit}.")
    z = z_all[sel]
    emp = EmpiricalScore(jnp.asarray(z))
    width, dim = config.latent_net_width, config.latent_dim
    net = MLPScore(dim, key=jr.fold_in(key, 1), width=width, depth=3, data_std=float(z.std()))
    tc = TrainConfig(
        steps=config.latent_net_steps, batch_size=256, learning_rate=2e-3, time_sampling="logsnr"
    )
    score = train_or_load(
        net, jnp.asarray(z), tc, key=jr.fold_in(key, 2), cache_dir=cache_dir, name="ridge-latent-net",
        progress=ctx.show_progress,
    ).ema  # fmt: skip
    k = config.latent_intrinsic_dim
    codim = config.latent_dim - k
    p = emp.process
    grid = grids.geometric(p, config.latent_steps)
    save = saved_indices(config.latent_steps, 20)
    runs, summary = {}, {}
    for label, sc in (("exact", emp), ("net", score)):
        stats = ridge.ridge_stats(
            emp, k, score=None if label == "exact" else sc, gap_threshold=config.gap_threshold
        )
        tr = simulate(
            sc,
            "euler_maruyama",
            grid,
            n=config.latent_particles,
            key=jr.fold_in(key, 3),
            save=save,
            stats=stats,
        )
        runs[label] = tr
        s, _ = ridge.summarise_ridge_run(tr, p, z, tube_scale=config.tube_scale, codim=codim, intermode=False)
        st = {kk: np.asarray(v) for kk, v in tr.stats.items()}
        with ridge.quiet_nan_warnings():
            s["median_residual_times_h"] = (
                np.nanmedian(st["residual"], axis=1) * np.asarray(s["h"])
            ).tolist()
        s["nn_distance_median"] = float(np.median(ridge.nearest_distance(tr.x, z)))
        if label == "net":
            # linearised align theory, with the error along the path (quasi-static offset)
            pred = ridge.linearised_ridge_distance(np.asarray(s["h"])[:, None], st["error_normal"], codim)
            late = (np.asarray(s["ts"]) <= 0.01)[:, None] & st["valid"].astype(bool)
            with ridge.quiet_nan_warnings():
                ratio = st["newton_distance"][late] / pred[late]
            s["align_ratio_median"] = float(np.median(ratio)) if ratio.size else float("nan")
            s["align_ratio_count"] = int(ratio.size)
        summary[label] = s
    summary["split"], groups = ridge.split_on_off_ridge(runs["net"], z, config.latent_split_time)
    images = {}
    for g, idx in groups.items():
        zs = np.asarray(runs["net"].x)[idx[:8]]
        nearest = np.argmin(((zs[:, None] - z[None]) ** 2).sum(-1), axis=1)
        images[g] = (np.asarray(decode_batch(ae, jnp.asarray(zs))), np.asarray(x[sel][nearest]))
    ratio = summary["net"]["nn_distance_median"] / max(summary["exact"]["nn_distance_median"], 1e-12)
    return Latent(summary, ratio, float(p.sigma2(p.t_min)), codim, tuple(digits.image_shape), images)


def checks_latent(config: Config, r: Latent) -> list[Check]:
    return [
        check(
            "latent digits: the exact score memorises (median latent distance to the nearest training code "
            "<= 1.5 sqrt(m sigma_tmin^2))",
            1.5 * math.sqrt(config.latent_dim * r.h_min), r.summary["exact"]["nn_distance_median"],
            relation="le",
        ),
        check(
            "latent digits: the network's distance to the ridge follows the linearised align theory "
            "(median dist / sqrt((2 h e_perp / (2 - h))^2 + codim h), valid particles, t <= 0.01)",
            1.0, r.summary["net"]["align_ratio_median"], 0.3, relation="abs",
            note=f"{r.summary['net']['align_ratio_count']} particle-times; e_perp = |P_perp (s_net - s_emp)| "
            "at the particle (the quasi-static offset uses the error along the path)",
        ),
    ]  # fmt: skip
