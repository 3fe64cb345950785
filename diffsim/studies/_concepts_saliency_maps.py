"""Saliency helpers shared by parts 4 and 5 of the ``concepts`` study (``_concepts_saliency`` and
``_concepts_digits``): the token-conditional UNet training, exact forward states
``x_t = alpha_t x_0 + sigma_t eps`` at the sampler's steps, the saliency maps of a token's effect (masking,
smooth masking, Jacobian, occlusion; Grad-CAM and attention relevance for a network), their per-method table,
and the insertion/deletion and weight-randomisation (Adebayo et al. 2018) checks."""

from __future__ import annotations

import math
import time
from pathlib import Path

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.saliency import (
    attention_relevance,
    grad_cam,
    jacobian_saliency,
    masking_saliency,
    occlusion_saliency,
    token_effect_fn,
)
from ._concepts_config import Config
from ._concepts_toy import _process
from ._runner import Check, check


def _train_unet(config, out_dir, name, x, tokens, image_shape, alphabet, steps, base, key, progress):
    from ..scores.nn import UNetScore
    from ..training import TrainConfig, train_or_load

    k_net, k_train = jr.split(key)
    process = _process(config.process)
    net = UNetScore(
        image_shape,
        key=k_net,
        process=process,
        alphabet_sizes=alphabet,
        base_channels=base,
        channel_mults=(1, 2),
        data_std=float(np.std(x)),
    )
    tcfg = TrainConfig(
        steps=steps,
        batch_size=128,
        learning_rate=2e-3,
        warmup_steps=min(100, steps // 2),
        token_dropout=0.2,
        time_sampling="logsnr",
    )
    cdir = Path(config.cache_dir) if config.cache_dir else Path(out_dir) / "models"
    t0 = time.perf_counter()
    res = train_or_load(
        net,
        np.asarray(x, np.float32),
        tcfg,
        key=k_train,
        tokens=np.asarray(tokens, np.int32),
        cache_dir=cdir,
        name=name,
        progress=progress,
    )
    return res, time.perf_counter() - t0


def _forward_states(process, x0, ts, key):
    """``x_t = alpha_t x_0 + sigma_t eps`` at each time of ``ts``: the law of an exact sampler's state at
    those steps (``(S, N, d)``)."""
    eps = jr.normal(key, (len(ts),) + x0.shape, x0.dtype)
    a = jnp.asarray([process.alpha(t) for t in ts], x0.dtype)[:, None, None]
    s = jnp.asarray([process.sigma(t) for t in ts], x0.dtype)[:, None, None]
    return a * x0[None] + s * eps


def _maps_exact(cm, process, t, x, tok, k, key, config):
    fn = token_effect_fn(cm, process, t, tok, k)
    return {
        "masking": masking_saliency(fn, x, key, n_masks=config.n_masks),
        "smooth_masking": masking_saliency(
            fn,
            x,
            key,
            n_masks=config.n_masks,
            kind="smooth",
            image_shape=_img(x),
            cells=(config.mask_cells,) * 2,
        ),
        "jacobian": jacobian_saliency(fn, x),
        "occlusion": occlusion_saliency(fn, x),
    }


def _img(x):
    s = int(round(math.sqrt(x.shape[-1])))
    return (s, s)


def _maps_network(net, den, process, t, x, tok, k, key, config, occlusion_patch=None):
    out = _maps_exact(den, process, t, x, tok, k, key, config)
    if occlusion_patch is not None:
        fn = token_effect_fn(den, process, t, tok, k)
        out["occlusion"] = occlusion_saliency(fn, x, patch=occlusion_patch, image_shape=_img(x))
    unc = np.array(tok).copy()
    unc[k] = net.alphabet_sizes[k]
    out["grad_cam"] = grad_cam(net, t, x, tok, unconditional=unc, scale=config.guidance).combined.reshape(-1)
    out["attention"] = (
        attention_relevance(net, t, x, tok, unconditional=unc, scale=config.guidance).maps[k].reshape(-1)
    )
    return {m: np.asarray(v) for m, v in out.items()}


def _table(summary: dict) -> dict:
    """Per ``model/method``: pointing, IoU and mass averaged over the steps."""
    return {
        tag: {a: float(np.mean([per[s][a][0] for s in per])) for a in ("pointing", "iou", "mass")}
        for tag, per in summary.items()
    }


def _auc_checks(config: Config, auc: dict, label: str, log_snr: float, n: int) -> list[Check]:
    """Per game: oracle >= masking >= random (insertion; reversed for deletion) on the means, and the oracle
    as a ceiling for every method."""
    out = []
    for key_, d in auc.items():
        tag, mode = key_.split("/")[0], key_.split("/")[-1]
        s = d["summary"]
        sign = 1 if mode == "insertion" else -1
        rel = ">=" if sign > 0 else "<="
        triple = [s["oracle"]["auc"], s["masking"]["auc"], s["random"]["auc"]]
        ok = sign * (triple[0] - triple[1]) >= 0 and sign * (triple[1] - triple[2]) >= 0
        out.append(
            check(
                f"{label} {tag}: {mode} AUC oracle {rel} masking {rel} random (means over samples)",
                True,
                triple,
                relation="true",
                passed=bool(ok),
                note=f"[oracle, masking, random] AUC at log-SNR {log_snr:.2f}, {n} samples, x0_hat given all "
                "tokens; normalised score (AUC - random)/(oracle - random) per sample, then averaged: "
                f"masking {s['masking'].get('score', float('nan')):.2f} +- "
                f"{s['masking'].get('score_se', float('nan')):.2f}.",
            )
        )
        methods = [m for m in s if m not in ("oracle", "random")]
        best = max(methods, key=lambda m: sign * s[m]["auc"])
        out.append(
            check(
                f"{label} {tag}: {mode} oracle AUC is a ceiling for every method (best: {best})",
                s["oracle"]["auc"],
                s[best]["auc"],
                0.0,
                relation="le" if sign > 0 else "ge",
                note="AUC of every method: " + ", ".join(f"{m} {s[m]['auc']:.3f}" for m in methods) + ".",
            )
        )
    return out


def _sanity(config: Config, sanity: dict, m: str, name: str, note: str = "") -> Check:
    sane = float(np.mean([v[0] for v in sanity[m].values()]))
    return check(name, config.randomisation_threshold, sane, 0.0, relation="le", note=note)
