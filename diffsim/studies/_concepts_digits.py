"""Part 5 of the ``concepts`` study: scikit-learn's 8x8 digits with attribute tokens; emergence of class /
thickness / bar on ``x0_hat`` of the kernel-density model and a token-conditional UNet, saliency of the bar
token against its known pixels, randomisation test and AUC table (results, compute, checks)."""

from __future__ import annotations

import time
from dataclasses import field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.concepts import (
    record_x0,
    step_time,
)
from ..analysis.probes import (
    concept_curve,
    emergence_time,
    train_probe,
)
from ..analysis.saliency import (
    attention_relevance,
    conditional_fn,
    conditional_tokens_fn,
    grad_cam,
    insertion_deletion,
    jacobian_saliency,
    masking_saliency,
    occlusion_saliency,
    randomise_weights,
    saliency_scores,
    spearman,
)
from ..sampling import grids
from ..scores.conditional import ConditionalMixture, TokenNetworkDenoiser
from ..scores.token_conditioned import TokenConditionedScore
from ._concepts_config import Config
from ._concepts_saliency_maps import (
    _auc_checks,
    _forward_states,
    _maps_exact,
    _maps_network,
    _sanity,
    _table,
    _train_unet,
)
from ._concepts_toy import _key, _mean_se, _process
from ._runner import Check, PartContext, check, progress_bar


class Digits(eqx.Module):
    """Digits: probe test accuracy, emergence on the KDE model (``kde``) and the UNet (``unet``), the bar
    token's saliency scores and randomisation test, and the UNet's insertion/deletion games."""

    probe_test_accuracy: dict
    log_snr: list
    kde: dict
    unet: dict
    kde_x0_grid: list
    x0_grid_log_snr: list
    timings: dict
    table: dict | None = None
    unet_train_s: float | None = None
    unet_from_cache: bool | None = None
    unet_train_loss: float | None = None
    unet_x0_grid: list | None = None
    saliency: dict | None = None
    saliency_sanity: dict | None = None
    saliency_steps: list | None = None
    saliency_log_snr: list | None = None
    auc: dict | None = None
    auc_log_snr: float | None = None
    examples: Any = field(default=None, metadata={"json": False})


def _digits_data(config, key):
    from ..data.digits import apply_attributes, load_digits

    data = load_digits()
    attrs = ("thickness", "bar")
    rng = np.random.default_rng(config.seed)
    a_tr = (rng.uniform(size=(len(data.train_images), 2)) < 0.5).astype(np.int32)
    tr = apply_attributes(data.train_images, a_tr, attrs)
    xtr = tr.images.reshape(len(tr.images), -1)
    ytr = np.c_[data.train_labels, a_tr].astype(np.int32)
    n_te = len(data.test_images)
    a_te = (rng.uniform(size=(n_te, 2)) < 0.5).astype(np.int32)
    te = apply_attributes(data.test_images, a_te, attrs)
    xte = te.images.reshape(n_te, -1)
    yte = np.c_[data.test_labels, a_te].astype(np.int32)
    return xtr, ytr, xte, yte, te.masks.reshape(n_te, 2, -1), ("class",) + attrs


def _digits(config, key, out_dir, progress):
    from ..scores.mixture import GaussianMixture

    process = _process(config.process)
    tick = time.perf_counter()
    timing = {}
    xtr, ytr, xte, yte, masks, names = _digits_data(config, key)
    kde = ConditionalMixture(
        GaussianMixture(np.full(len(xtr), 1.0 / len(xtr)), xtr, config.digits_bandwidth**2),
        ytr,
        (10, 2, 2),
        names,
    )
    k_probe, k_run, k_net, k_noise, k_mask, k_rand, k_auc, k_unet = jr.split(jr.fold_in(key, 1), 8)
    probes = [
        train_probe(
            xtr,
            ytr[:, j],
            key=jr.fold_in(k_probe, j),
            steps=config.probe_steps * 2,
            hidden=64 if j == 0 else 0,
            n_classes=(10, 2, 2)[j],
            input_noise=0.1,
            name=names[j],
        )
        for j in range(3)
    ]
    probe_acc = {
        names[j]: float(
            np.mean(np.argmax(np.asarray(jax.vmap(probes[j])(jnp.asarray(xte))), -1) == yte[:, j])
        )
        for j in range(3)
    }
    grid = grids.logsnr_uniform(process, config.digits_grid)
    score = TokenConditionedScore(kde, process)
    rec = record_x0(
        score,
        "ddpm",
        grid,
        key=k_run,
        n=config.digits_particles,
        probes=probes,
        exact=kde,
        exact_slots=(0, 1, 2),
    )
    out = {"probe_test_accuracy": probe_acc, "log_snr": rec.log_snr.tolist(), "kde": {}, "unet": {}}
    chance = {0: 0.1, 1: 0.5, 2: 0.5}
    for j, n in enumerate(names):
        labels = np.argmax(rec.exact[j][-1], -1)
        cp = concept_curve(rec.probs[n], labels, rec.log_snr, rec.ts)
        ce = concept_curve(rec.exact[j], labels, rec.log_snr, rec.ts)
        em = dict(level=config.emergence_level, chance=chance[j])
        out["kde"][n] = {
            "probe_accuracy": cp.accuracy.tolist(),
            "exact_accuracy": ce.accuracy.tolist(),
            "exact_expected_accuracy": ce.expected_accuracy.tolist(),
            "emergence_probe": emergence_time(cp, **em),
            "emergence_exact": emergence_time(ce, **em),
        }
    idx = np.unique(np.linspace(0, len(rec.log_snr) - 1, 8).astype(int))
    out["kde_x0_grid"] = rec.x0[idx][:, :4].tolist()
    out["x0_grid_log_snr"] = rec.log_snr[idx].tolist()
    timing["kde_emergence"], tick = time.perf_counter() - tick, time.perf_counter()
    out["timings"] = timing
    if not config.digits_network:
        return out, None
    trained, train_s = _train_unet(
        config,
        out_dir,
        "concepts-digits-unet",
        xtr,
        ytr,
        (8, 8),
        (10, 2, 2),
        config.digits_train_steps,
        config.digits_base_channels,
        k_net,
        progress,
    )
    net = trained.ema
    timing["train"], tick = time.perf_counter() - tick, time.perf_counter()
    out["unet_train_s"] = train_s
    out["unet_from_cache"] = bool(trained.from_cache)
    out["unet_train_loss"] = float(np.mean(trained.losses[-50:])) if len(trained.losses) else None
    # emergence on UNet trajectories (unconditional), probes vs the KDE posterior at the same states
    uscore = net.bind(net.null_tokens)
    rec_u = record_x0(
        uscore,
        "ddpm",
        grid,
        key=k_unet,
        n=config.digits_particles,
        probes=probes,
        exact=kde,
        exact_slots=(0, 1, 2),
    )
    for j, n in enumerate(names):
        labels = np.argmax(rec_u.probs[n][-1], -1)
        cp = concept_curve(rec_u.probs[n], labels, rec_u.log_snr, rec_u.ts)
        ce = concept_curve(rec_u.exact[j], labels, rec_u.log_snr, rec_u.ts)
        em = dict(level=config.emergence_level, chance=chance[j])
        out["unet"][n] = {
            "probe_accuracy": cp.accuracy.tolist(),
            "kde_posterior_accuracy": ce.accuracy.tolist(),
            "emergence_probe": emergence_time(cp, **em),
            "emergence_kde": emergence_time(ce, **em),
            "final_label_rate": np.bincount(labels, minlength=(10, 2, 2)[j]).tolist(),
        }
    out["unet_x0_grid"] = rec_u.x0[idx][:, :4].tolist()
    timing["unet_emergence"], tick = time.perf_counter() - tick, time.perf_counter()
    # saliency of the bar token on the UNet, test digits with the bar on
    den, rnet = TokenNetworkDenoiser(net), randomise_weights(net, k_rand)
    rden = TokenNetworkDenoiser(rnet)
    sel = np.flatnonzero(yte[:, 2] == 1)[: config.digits_n_saliency]
    steps = list(config.digits_saliency_steps)
    g = np.asarray(grid)
    ts = [step_time(g, s) for s in steps]
    xts = np.asarray(_forward_states(process, jnp.asarray(xte[sel]), ts, k_noise))
    scores, sanity, examples = {}, {}, {}
    for si, (s, t) in enumerate(
        progress_bar(list(zip(steps, ts, strict=False)), "digits saliency", progress)
    ):
        for ii, i in enumerate(sel):
            kk = jr.fold_in(k_mask, si * 100 + ii)
            xt = jnp.asarray(xts[si, ii])
            ex = {
                m: np.asarray(v) for m, v in _maps_exact(kde, process, t, xt, yte[i], 2, kk, config).items()
            }
            nw = _maps_network(net, den, process, t, xt, yte[i], 2, kk, config)
            rn = _maps_network(rnet, rden, process, t, xt, yte[i], 2, kk, config)
            region = masks[i, 1]
            for tag, maps in (("kde", ex), ("network", nw), ("randomised", rn)):
                for m, v in maps.items():
                    sc = saliency_scores(v, region)
                    d = scores.setdefault(f"{tag}/{m}", {}).setdefault(
                        s, {"pointing": [], "iou": [], "mass": []}
                    )
                    for a in d:
                        d[a].append(float(sc[a]))
            for m, v in nw.items():
                sanity.setdefault(m, {}).setdefault(s, []).append(float(spearman(np.abs(v), np.abs(rn[m]))))
            if ii == 0:
                examples[s] = {
                    "kde": ex,
                    "network": nw,
                    "randomised": rn,
                    "x": np.asarray(xt),
                    "region": region,
                }
    out["saliency"] = {
        tag: {s: {a: _mean_se(v) for a, v in d.items()} for s, d in per.items()}
        for tag, per in scores.items()
    }
    out["saliency_sanity"] = {m: {s: _mean_se(v) for s, v in d.items()} for m, d in sanity.items()}
    out["saliency_steps"] = steps
    out["saliency_log_snr"] = [float(process.log_snr(t)) for t in ts]
    timing["saliency"], tick = time.perf_counter() - tick, time.perf_counter()
    # AUC on the UNet's x0_hat given all tokens
    t_auc = step_time(g, steps[len(steps) // 2])
    sel_a = np.arange(config.n_auc)
    xa = np.asarray(_forward_states(process, jnp.asarray(xte[sel_a]), [t_auc], jr.fold_in(k_noise, 5))[0])
    maps = {}
    for ii, i in enumerate(sel_a):
        fn = conditional_fn(den, process, t_auc, yte[i], np.ones(3, bool))
        ki = jr.fold_in(k_auc, ii)
        row = {
            "masking": masking_saliency(fn, xa[ii], ki, n_masks=config.n_masks),
            "smooth_masking": masking_saliency(
                fn, xa[ii], ki, n_masks=config.n_masks, kind="smooth", image_shape=(8, 8), cells=(4, 4)
            ),
            "jacobian": jacobian_saliency(fn, xa[ii]),
            "occlusion": occlusion_saliency(fn, xa[ii], patch=(2, 2), image_shape=(8, 8)),
            "grad_cam": grad_cam(net, t_auc, xa[ii], yte[i], scale=config.guidance).combined.reshape(-1),
            "attention": attention_relevance(net, t_auc, xa[ii], yte[i], scale=config.guidance)
            .maps[:-1]
            .sum(0)
            .reshape(-1),
        }
        for m, v in row.items():
            maps.setdefault(m, []).append(np.asarray(v))
    maps = {m: np.stack(v) for m, v in maps.items()}
    fn_ctx = conditional_tokens_fn(den, process, t_auc)
    auc = {}
    for mode in ("insertion", "deletion"):
        r = insertion_deletion(
            fn_ctx,
            xa,
            maps,
            jr.fold_in(k_auc, 99),
            mode=mode,
            context=jnp.asarray(yte[sel_a]),
            stride=config.digits_auc_stride,
            n_random=config.n_random_orders,
        )
        auc[f"unet/{mode}"] = {
            "summary": r.summary,
            "curves": {m: np.asarray(c).mean(0).tolist() for m, c in r.curves.items()},
            "fractions": r.fractions.tolist(),
        }
    out["auc"] = auc
    out["auc_log_snr"] = float(process.log_snr(t_auc))
    timing["auc"] = time.perf_counter() - tick
    return out, examples


def compute_digits(config: Config, ctx: PartContext) -> Digits:
    out, examples = _digits(config, _key(config, 5), ctx.out_dir, ctx.show_progress)
    table = _table(out["saliency"]) if "saliency" in out else None
    if table is not None:
        ctx.note(
            "Digits UNet, bar token: pointing / IoU of Grad-CAM "
            f"{table['network/grad_cam']['pointing']:.2f} / {table['network/grad_cam']['iou']:.2f}, "
            f"attention relevance {table['network/attention']['pointing']:.2f} / "
            f"{table['network/attention']['iou']:.2f}, Jacobian {table['network/jacobian']['pointing']:.2f} "
            f"/ {table['network/jacobian']['iou']:.2f}."
        )
    return Digits(**out, table=table, examples=examples)


def checks_digits(config: Config, r: Digits) -> list[Check]:
    names = list(r.kde)
    out = [
        check(
            "digits (analytic KDE): probe-on-x0_hat emergence = exact-posterior emergence (log-SNR) for "
            "class, thickness, bar",
            [r.kde[n]["emergence_exact"] for n in names],
            [r.kde[n]["emergence_probe"] for n in names],
            config.emergence_tolerance,
            note=f"{config.digits_particles} DDPM trajectories of the exact KDE score ({len(r.log_snr) - 1} "
            "steps); probes trained on clean attributed digits (test accuracy "
            f"{ {k: round(v, 3) for k, v in r.probe_test_accuracy.items()} }).",
        )
    ]
    if not r.unet:
        return out
    table = r.table
    frac = float(np.mean([len(np.flatnonzero(e["region"])) for e in r.examples.values()])) / 64
    for m in ("masking", "occlusion"):
        out.append(
            check(
                f"digits UNet: {m} saliency of the bar token points into the bar's pixels (pointing game)",
                config.pointing_threshold,
                table[f"network/{m}"]["pointing"],
                0.0,
                relation="ge",
                note=f"the bar changes {100 * frac:.0f}% of the pixels (chance); steps {r.saliency_steps} "
                f"(log-SNR {np.round(r.saliency_log_snr, 1).tolist()}), {config.digits_n_saliency} test "
                f"digits with the bar on; exact KDE model: {table[f'kde/{m}']['pointing']:.2f}.",
            )
        )
    for m in ("masking", "grad_cam", "attention"):
        name = f"digits UNet sanity: {m} maps change when the weights are randomised (rank correlation)"
        out.append(_sanity(config, r.saliency_sanity, m, name))
    return out + _auc_checks(config, r.auc, "digits", r.auc_log_snr, config.n_auc)
