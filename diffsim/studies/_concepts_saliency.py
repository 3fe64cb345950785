"""Part 4 of the ``concepts`` study: per-step saliency maps of each token's effect for the exact toy model
and the trained / weight-randomised UNets, scored against the token's pixels; insertion/deletion games; the
attention-vs-information correlation (results, compute, checks). The maps, the UNet training and the
checks shared with the digits part are in ``_concepts_saliency_maps``."""

from __future__ import annotations

import time
from dataclasses import field
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.concepts import (
    correlation_over_steps,
    step_time,
    token_information_rate,
)
from ..analysis.saliency import (
    attention_relevance,
    attention_relevance_path,
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
    token_effect_energy,
)
from ..sampling import grids
from ..scores.conditional import TokenNetworkDenoiser
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
from ._concepts_toy import _key, _mean_se, _process, _toy
from ._runner import Check, PartContext, check, progress_bar


class Saliency(eqx.Module):
    """Saliency scores per ``model/method`` and step (``summary``; ``table`` averaged over steps), agreement
    with the exact maps, the randomisation test (``sanity``), the insertion/deletion games (``auc``), the
    attention-vs-information correlation (toy network only) and timings; ``examples`` holds maps to draw."""

    summary: dict
    table: dict
    auc: dict
    auc_log_snr: float
    timings: dict
    steps: list | None = None
    log_snr: list | None = None
    network: bool = False
    agreement: dict | None = None
    sanity: dict | None = None
    train_s: float | None = None
    from_cache: bool | None = None
    train_loss: float | None = None
    correlation: dict | None = None
    correlation_log_snr: list | None = None
    examples: Any = field(default=None, metadata={"json": False})


def _saliency_toy(config, key, out_dir, progress):
    """Saliency maps of each token's effect per step, scored against the token's region, for the exact model
    and (``toy_network``) a trained token-conditional UNet and its randomised copy; the insertion/deletion
    table at one step; the attention-vs-information correlation (network only)."""
    process = _process(config.process)
    tm, cm = _toy(config, process)
    k_train, k_data, k_noise, k_mask, k_rand, k_auc, k_corr = jr.split(key, 7)
    tick = time.perf_counter()
    timing = {}
    net = rnet = den = rden = trained = None
    if config.toy_network:
        xtr, ytr = cm.sample(k_data, config.toy_train_size)
        trained, _ = _train_unet(
            config,
            out_dir,
            "concepts-toy-unet",
            xtr,
            ytr,
            (4, 4),
            cm.alphabet_sizes,
            config.toy_train_steps,
            config.toy_base_channels,
            k_train,
            progress,
        )
        net = trained.ema
        rnet = randomise_weights(net, k_rand)
        den, rden = TokenNetworkDenoiser(net), TokenNetworkDenoiser(rnet)
        timing["train"], tick = time.perf_counter() - tick, time.perf_counter()
    grid = np.asarray(grids.logsnr_uniform(process, config.saliency_grid))
    x0, y0 = cm.sample(jr.fold_in(k_data, 1), config.n_saliency)
    y0 = np.asarray(y0)
    steps = list(config.saliency_steps)
    ts = [step_time(grid, s) for s in steps]
    xts = np.asarray(_forward_states(process, jnp.asarray(x0), ts, k_noise))
    regions = [tm.support[n] for n in tm.token_names]
    scores = {}  # "model/method" -> step -> {"pointing", "iou", "mass"}: lists over samples x tokens
    agree = {}
    sanity = {}
    examples = {}
    for si, (s, t) in enumerate(progress_bar(list(zip(steps, ts, strict=False)), "toy saliency", progress)):
        for i in range(config.n_saliency):
            for k in range(cm.n_tokens):
                kk = jr.fold_in(k_mask, (si * 1000 + i) * 10 + k)
                xt = jnp.asarray(xts[si, i])
                models = {
                    "exact": {
                        m: np.asarray(v)
                        for m, v in _maps_exact(cm, process, t, xt, y0[i], k, kk, config).items()
                    }
                }
                if net is not None:
                    models["network"] = _maps_network(net, den, process, t, xt, y0[i], k, kk, config)
                    models["randomised"] = _maps_network(rnet, rden, process, t, xt, y0[i], k, kk, config)
                for tag, maps in models.items():
                    for m, v in maps.items():
                        sc = saliency_scores(v, regions[k])
                        d = scores.setdefault(f"{tag}/{m}", {}).setdefault(
                            s, {"pointing": [], "iou": [], "mass": []}
                        )
                        for a in d:
                            d[a].append(float(sc[a]))
                if net is not None:
                    ex, nw, rn = models["exact"], models["network"], models["randomised"]
                    for m, v in nw.items():
                        ref = ex.get(m, ex["occlusion"])
                        agree.setdefault(m, {}).setdefault(s, []).append(float(spearman(v, ref)))
                        sanity.setdefault(m, {}).setdefault(s, []).append(
                            float(spearman(np.abs(v), np.abs(rn[m])))
                        )
                if i == 0:
                    examples[(s, k)] = dict(models, x=np.asarray(xt))
    summary = {
        tag: {s: {a: _mean_se(v) for a, v in d.items()} for s, d in per.items()}
        for tag, per in scores.items()
    }
    out = {
        "steps": steps,
        "log_snr": [float(process.log_snr(t)) for t in ts],
        "summary": summary,
        "network": net is not None,
        "agreement": {m: {s: _mean_se(v) for s, v in d.items()} for m, d in agree.items()},
        "sanity": {m: {s: _mean_se(v) for s, v in d.items()} for m, d in sanity.items()},
    }
    if trained is not None:
        out.update(
            train_s=timing["train"],
            from_cache=bool(trained.from_cache),
            train_loss=float(np.mean(trained.losses[-50:])) if len(trained.losses) else None,
        )
    timing["saliency"], tick = time.perf_counter() - tick, time.perf_counter()
    # AUC table at one step: x0_hat given all tokens, exact and network
    t_auc = step_time(grid, config.auc_step)
    x0a, y0a = cm.sample(jr.fold_in(k_data, 2), config.n_auc)
    y0a = np.asarray(y0a)
    xa = np.asarray(_forward_states(process, jnp.asarray(x0a), [t_auc], jr.fold_in(k_noise, 7))[0])
    auc = {}
    for tag, model in (("exact", cm), ("network", den)):
        if model is None:
            continue
        fn_ctx = conditional_tokens_fn(model, process, t_auc)
        maps = {}
        for i in range(config.n_auc):
            fn = conditional_fn(model, process, t_auc, y0a[i], np.ones(cm.n_tokens, bool))
            ki = jr.fold_in(k_auc, i)
            row = {
                "masking": masking_saliency(fn, xa[i], ki, n_masks=config.n_masks),
                "smooth_masking": masking_saliency(
                    fn,
                    xa[i],
                    ki,
                    n_masks=config.n_masks,
                    kind="smooth",
                    image_shape=(4, 4),
                    cells=(config.mask_cells,) * 2,
                ),
                "jacobian": jacobian_saliency(fn, xa[i]),
                "occlusion": occlusion_saliency(fn, xa[i]),
            }
            if tag == "network":
                # guidance energy of all tokens against none (same compiled function as the per-token maps)
                row["grad_cam"] = grad_cam(net, t_auc, xa[i], y0a[i], scale=config.guidance).combined.reshape(
                    -1
                )
                row["attention"] = (
                    attention_relevance(net, t_auc, xa[i], y0a[i], scale=config.guidance)
                    .maps[:-1]
                    .sum(0)
                    .reshape(-1)
                )
            for m, v in row.items():
                maps.setdefault(m, []).append(np.asarray(v))
        maps = {m: np.stack(v) for m, v in maps.items()}
        for mode in ("insertion", "deletion"):
            r = insertion_deletion(
                fn_ctx,
                xa,
                maps,
                jr.fold_in(k_auc, 99),
                mode=mode,
                context=jnp.asarray(y0a),
                n_random=config.n_random_orders,
            )
            auc[f"{tag}/{mode}"] = {
                "summary": r.summary,
                "curves": {m: np.asarray(c).mean(0).tolist() for m, c in r.curves.items()},
                "fractions": r.fractions.tolist(),
                "masking_auc": r.auc["masking"].tolist(),
                "random_auc": r.auc["random"].tolist(),
                "oracle_auc": r.auc["oracle"].tolist(),
            }
    out["auc"] = auc
    out["auc_log_snr"] = float(process.log_snr(t_auc))
    timing["auc"], tick = time.perf_counter() - tick, time.perf_counter()
    out["timings"] = timing
    if net is None:
        return out, examples
    # correlation quantification: attention relevance over all steps vs the information rate
    x0c, y0c = cm.sample(jr.fold_in(k_data, 3), config.n_correlation)
    y0c = np.asarray(y0c)
    all_ts = [float(t) for t in grid[1:-1]]
    xc = np.asarray(_forward_states(process, jnp.asarray(x0c), all_ts, k_corr))  # (S, N, d)
    lam_all = np.asarray([float(process.log_snr(t)) for t in all_ts])
    corr = {}
    ts_arr = jnp.asarray(all_ts)
    for k in range(cm.n_tokens):
        rel_e, rel_s, path = [], [], []
        for i in range(config.n_correlation):
            unc = y0c[i].copy()
            unc[k] = net.alphabet_sizes[k]
            xs_i = jnp.asarray(xc[:, i])
            rel_e.append(
                np.asarray(attention_relevance_path(net, ts_arr, xs_i, y0c[i], unconditional=unc))[:, k]
            )
            rel_s.append(
                np.asarray(attention_relevance_path(net, ts_arr, xs_i, y0c[i], target="sum_eps"))[:, k]
            )
            path.append(np.asarray(token_effect_energy(cm, process, ts_arr, xs_i, y0c[i], k)))
        rate_k = token_information_rate(
            cm, x0c, y0c, jr.fold_in(k_corr, 1 + k), slot=k, log_snr=lam_all, n_noise=config.info_noise
        ).rate
        corr[tm.token_names[k]] = {
            "guidance_energy_vs_rate": correlation_over_steps(rel_e, rate_k),
            "sum_eps_vs_rate": correlation_over_steps(rel_s, rate_k),
            "guidance_energy_vs_pathwise": correlation_over_steps(rel_e, path),
            "sum_eps_vs_pathwise": correlation_over_steps(rel_s, path),
            "mean_relevance_guidance_energy": np.mean(rel_e, 0).tolist(),
            "mean_relevance_sum_eps": np.mean(rel_s, 0).tolist(),
            "mean_rate": rate_k.mean(0).tolist(),
        }
        for v in corr[tm.token_names[k]].values():
            if isinstance(v, dict):
                v.pop("per_sample", None)
    out["correlation"] = corr
    out["correlation_log_snr"] = lam_all.tolist()
    timing["correlation"] = time.perf_counter() - tick
    return out, examples


def compute_saliency_toy(config: Config, ctx: PartContext) -> Saliency:
    out, examples = _saliency_toy(config, _key(config, 4), ctx.out_dir, ctx.show_progress)
    table = _table(out["summary"])
    if out["network"]:
        t = {k: v for k, v in table.items() if k.startswith("network/")}
        ctx.note(
            "Toy UNet, Grad-CAM and attention relevance (no ground-truth guarantee even for a perfect "
            "model: they read activations and attention weights, not input dependence): pointing "
            f"{t['network/grad_cam']['pointing']:.2f} / {t['network/attention']['pointing']:.2f}, IoU "
            f"{t['network/grad_cam']['iou']:.2f} / {t['network/attention']['iou']:.2f} (chance 0.25 / "
            f"~0.14); Jacobian {t['network/jacobian']['pointing']:.2f} / "
            f"{t['network/jacobian']['iou']:.2f}, smooth masks "
            f"{t['network/smooth_masking']['pointing']:.2f} / {t['network/smooth_masking']['iou']:.2f}."
        )
    return Saliency(**out, table=table, examples=examples)


def checks_saliency_toy(config: Config, r: Saliency) -> list[Check]:
    table, thr = r.table, config.pointing_threshold
    where = (
        f"chance 0.25 (4 regions); steps {r.steps} of a {config.saliency_grid}-step log-SNR-uniform grid "
        f"(log-SNR {np.round(r.log_snr, 1).tolist()}), {config.n_saliency} samples x "
        f"{len(config.separations)} tokens; target: the token's effect g_k = eps(.|y) - eps(.|y without k)"
    )
    out = [
        check(
            "toy exact: masking saliency (Bernoulli, 1/(N p) normalised) of a token points into its region "
            "(pointing game, mean over steps)",
            thr,
            table["exact/masking"]["pointing"],
            0.0,
            relation="ge",
            note=where + ", whose input dependence is confined to region k (structural zeros); "
            f"{config.n_masks} masks. Jacobian / occlusion of the exact model: pointing "
            f"{table['exact/jacobian']['pointing']:.2f} / {table['exact/occlusion']['pointing']:.2f} (below "
            "1 only where the token is already decided and g_k vanishes to float32 round-off).",
        ),
        check(
            "toy exact: masking saliency top-q IoU with the token's region (q = 1/4)",
            config.iou_threshold,
            table["exact/masking"]["iou"],
            0.0,
            relation="ge",
            note="a random map scores about 1/7.",
        ),
    ]
    if r.network:
        for m in ("masking", "occlusion"):
            out.append(
                check(
                    f"toy UNet: {m} saliency of a token points into its region (pointing game, mean over "
                    "steps)",
                    thr,
                    table[f"network/{m}"]["pointing"],
                    0.0,
                    relation="ge",
                    note=where + f" (exact model: pointing {table[f'exact/{m}']['pointing']:.2f}).",
                )
            )
            out.append(
                check(
                    f"toy UNet: {m} saliency top-q IoU with the token's region (q = 1/4)",
                    config.iou_threshold,
                    table[f"network/{m}"]["iou"],
                    0.0,
                    relation="ge",
                    note=f"a random map scores about 1/7; exact model {table[f'exact/{m}']['iou']:.2f}.",
                )
            )
        for m in ("masking", "grad_cam", "attention"):
            name = (
                f"toy UNet sanity (Adebayo et al. 2018): {m} maps change when the weights are randomised "
                "(rank correlation trained vs randomised)"
            )
            note = (
                "weights replaced by Gaussian noise of each array's own mean and std; randomised UNet's "
                f"{m} pointing {table[f'randomised/{m}']['pointing']:.2f} (chance 0.25)."
            )
            out.append(_sanity(config, r.sanity, m, name, note))
    return out + _auc_checks(config, r.auc, "toy", r.auc_log_snr, config.n_auc)
