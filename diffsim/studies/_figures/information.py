"""Figures of the ``information`` study: pure functions from the config and a part result to a
:class:`~diffsim.studies.Figure`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...analysis.information import PID_MEASURES
from .._results import Figure


LN2 = math.log(2.0)


def gates(config: Any, r: Any) -> list[Figure]:
    """PID terms of every gate and measure: exact discrete bars (dit's BROJA and CCS hatched), engine
    markers."""
    import matplotlib.pyplot as plt

    rows = r.rows

    gates = list(rows)
    fig, axes = plt.subplots(1, len(gates), figsize=(3.3 * len(gates), 3.4), sharey=True, squeeze=False)
    colours = {"pointwise_min": "C0", "mmi": "C1", "wb_imin": "C2", "broja": "C3", "ccs": "C4"}
    for ax, g in zip(axes[0], gates, strict=False):
        r = rows[g]
        series = [(m, r[m]["discrete"], False) for m in PID_MEASURES]
        if r["dit"] is not None:
            series += [(m, r["dit"][m], True) for m in ("broja", "ccs")]
        width = 0.8 / len(series)
        pos = np.arange(4)
        for j, (m, vals, is_dit) in enumerate(series):
            off = pos - 0.4 + (j + 0.5) * width
            ax.bar(
                off,
                vals,
                width,
                color=colours[m],
                alpha=0.45 if is_dit else 0.8,
                hatch="//" if is_dit else None,
                label=(f"dit {m}" if is_dit else f"exact {m}"),
            )
            if not is_dit:
                ax.plot(off, r[m]["engine"], "ko", ms=4, label="engine (standard)" if j == 0 else None)
                ax.plot(
                    off,
                    r[m]["engine_orthogonal"],
                    "kx",
                    ms=5,
                    label="engine (orthogonal)" if j == 0 else None,
                )
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xticks(pos, ["R", "U1", "U2", "S"])
        ax.set_title(g)
    axes[0, 0].set_ylabel("bits")
    axes[0, -1].legend(fontsize=6, loc="upper right")
    fig.suptitle("PID of the gates by measure: exact bars, engine markers")
    return [
        Figure(
            "pid_gates",
            fig,
            "PID terms of the five gates for each measure (bars: exact discrete values; "
            "hatched: dit's BROJA and CCS for comparison; dots: engine, standard estimator; crosses: "
            "orthogonal estimator).",
        )
    ]


def curves(config: Any, r: Any) -> list[Figure]:
    """Integrands of i(x; y1) per log-SNR (one draw vs dense), every component, and the MMSE curves."""
    import matplotlib.pyplot as plt

    c = r.curves

    lam = np.asarray(c["log_snr"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    k = 3  # component (1, 1)
    ax = axes[0]
    ax.plot(lam, np.asarray(c["std_one"])[k], color="C0", lw=0.8, alpha=0.7, label="standard, 1 draw")
    ax.plot(lam, np.asarray(c["orth_one"])[k], color="C1", lw=0.8, alpha=0.7, label="orthogonal, 1 draw")
    ax.plot(lam, np.asarray(c["std_ref"])[k], color="C0", lw=2, label=f"standard, {config.curve_noise} draws")
    ax.plot(
        lam,
        np.asarray(c["orth_ref"])[k],
        color="C1",
        lw=2,
        ls="--",
        label=f"orthogonal, {config.curve_noise} draws",
    )
    ax.set_xlabel("log-SNR")
    ax.set_ylabel("integrand of i(x; y1) [nats per unit log-SNR]")
    ax.set_title(f"AND gate, x from (y1, y2) = {tuple(c['tokens'][k])}")
    ax.legend(fontsize=7)
    ax = axes[1]
    for j in range(4):
        ax.plot(lam, np.asarray(c["std_ref"])[j], label=f"tokens {tuple(c['tokens'][j])}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("log-SNR")
    ax.set_title("standard integrand of i(x; y1), every component")
    ax.legend(fontsize=7)
    ax = axes[2]
    mm = np.asarray(c["mmse_ref"])[k]
    for j, name in enumerate(["{}", "{y1}", "{y2}", "{y1, y2}"]):
        ax.plot(lam, mm[j], label=f"condition {name}")
    ax.set_xlabel("log-SNR")
    ax.set_ylabel("E|eps - eps_hat|^2")
    ax.set_title("MMSE curves by condition")
    ax.legend(fontsize=7)
    return [
        Figure(
            "mmse_curves",
            fig,
            "Left: the integrands of i(x; y1) per log-SNR for one point of the AND gate "
            "(thin: one noise draw per log-SNR, the zigzag DiffusionPID reports for the standard estimator; "
            "thick: dense reference). Middle: standard integrand for one point of every component (negative "
            "where y1 makes x less likely). Right: the MMSE curves of the four conditions (common random "
            "numbers).",
        )
    ]


def blocks(config: Any, r: Any) -> list[Figure]:
    """Per-pixel information maps and pointwise-min PID maps of every block design."""
    import matplotlib.pyplot as plt

    out, bs = r.designs, config.block_size

    names = ["i(x;y1)", "i(x;y2)", "i(x;y1,y2)", "R", "U1", "U2", "S"]
    fig, axes = plt.subplots(len(out), 7, figsize=(15, 2.2 * len(out) + 0.6), squeeze=False)
    for row, (design, r) in enumerate(out.items()):
        maps = np.concatenate([np.asarray(r["info_maps"]), np.asarray(r["pid_maps"])])
        nb = len(r["blocks"])
        vmax = float(np.abs(maps).max())
        for j in range(7):
            ax = axes[row, j]
            im = ax.imshow(maps[j].reshape(nb, bs), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_yticks(range(nb), r["blocks"] if j == 0 else [""] * nb)
            ax.set_xticks([])
            ax.set_title(names[j] if row == 0 else "", fontsize=9)
        axes[row, 0].set_ylabel(design)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="bits per pixel")
    return [
        Figure(
            "pixel_maps",
            fig,
            "Pixel maps (orthogonal per-pixel informations averaged over samples, and the "
            "pointwise-min PID on them) for block data; each row of a map is one block of pixels labelled by "
            "the token function that sets its mean.",
        )
    ]


def bias(config: Any, r: Any) -> list[Figure]:
    """Redundancy against the prior correlation of the tokens: exact lines, engine dots."""
    import matplotlib.pyplot as plt

    rows, mi_tokens = r.rows, np.asarray(r.token_mutual_information)

    rhos = np.asarray(config.correlations)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for j, m in enumerate(PID_MEASURES):
        disc = [rows[f"{r:g}"][m]["discrete"][0] for r in config.correlations]
        eng = [rows[f"{r:g}"][m]["engine"][0] for r in config.correlations]
        ax.plot(rhos, disc, "-", color=f"C{j}", label=f"exact {m}")
        ax.plot(rhos, eng, "o", color=f"C{j}", ms=5)
    ax.plot(rhos, mi_tokens, "k:", label="I(Y1; Y2)")
    ax.set_xlabel("prior correlation of the tokens")
    ax.set_ylabel("redundancy R [bits]")
    ax.set_title("Bias: y1 depicted, y2 not")
    ax.legend(fontsize=7)
    return [
        Figure(
            "bias_sweep",
            fig,
            "Redundancy between a depicted token y1 and an undepicted token y2 whose prior "
            "correlation with y1 is swept (lines: exact; dots: engine). DiffusionPID reads high "
            "R(occupation, gender) as a stereotypical association; here R is exactly the association put "
            "into the prior.",
        )
    ]


def ablation(config: Any, r: Any) -> list[Figure]:
    """Per-sample MI error and PID error against the log-SNR samples and noise draws."""
    import matplotlib.pyplot as plt

    table = r.table

    Ls = np.asarray(config.ablation_logsnr)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for j, K in enumerate(config.ablation_noise):
        std = [table[f"{L}x{K}"]["pmi_rmse_standard"] / LN2 for L in Ls]
        orth = [table[f"{L}x{K}"]["pmi_rmse_orthogonal"] / LN2 for L in Ls]
        axes[0].loglog(Ls, std, "o-", color=f"C{j}", label=f"standard, {K} draws")
        axes[0].loglog(Ls, orth, "s--", color=f"C{j}", alpha=0.6, label=f"orthogonal, {K} draws")
        pm = [table[f"{L}x{K}"]["pointwise_min_standard_err"] / LN2 for L in Ls]
        mm = [table[f"{L}x{K}"]["mmi_standard_err"] / LN2 for L in Ls]
        axes[1].loglog(Ls, pm, "o-", color=f"C{j}", label=f"pointwise min, {K} draws")
        axes[1].loglog(Ls, mm, "^:", color=f"C{j}", label=f"MMI, {K} draws")
    axes[0].loglog(
        Ls, axes[0].get_lines()[0].get_ydata()[0] * np.sqrt(Ls[0] / Ls), "k:", lw=1, label="1/sqrt(L)"
    )
    axes[0].set_xlabel("log-SNR samples L")
    axes[0].set_ylabel("per-sample RMSE of i(x; .) [bits]")
    axes[0].legend(fontsize=6)
    axes[1].set_xlabel("log-SNR samples L")
    axes[1].set_ylabel("RMS of max |PID error| [bits]")
    axes[1].legend(fontsize=6)
    fig.suptitle(f"Estimator ablation on the {config.ablation_gate} gate (errors against exact values)")
    return [
        Figure(
            "ablation",
            fig,
            "Left: per-sample error of the pointwise MIs (standard: Monte-Carlo error that "
            "shrinks with the budget; orthogonal: a floor, it is not the pointwise MI). Right: error of the "
            "image-level PID terms, standard estimator.",
        )
    ]


def digits(config: Any, r: Any) -> list[Figure]:
    """Information and PID maps of the digits, analytic KDE and trained network, beside the attribute's
    pixel support."""
    import matplotlib.pyplot as plt

    attr, support = config.digits_attribute, r.support
    maps = {"kde": r.kde} if r.network is None else {"kde": r.kde, "network": r.network}

    names = ["i(x;class)", f"i(x;{attr})", "i(x;both)", "R", "U class", f"U {attr}", "S"]
    fig, axes = plt.subplots(len(maps), 8, figsize=(16, 2.3 * len(maps) + 0.4), squeeze=False)
    for row, (tag, d) in enumerate(maps.items()):
        ims = list(np.asarray(d["info_maps_bits"])) + list(np.asarray(d["pid_maps_bits"]))
        vmax = float(max(np.abs(v).max() for v in ims))
        for j, v in enumerate(ims):
            ax = axes[row, j]
            ax.imshow(v.reshape(8, 8), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(names[j], fontsize=9)
        axes[row, 0].set_ylabel(tag)
        axes[row, 7].imshow(support.mean(0).reshape(8, 8), cmap="Greys")
        axes[row, 7].set_xticks([])
        axes[row, 7].set_yticks([])
        if row == 0:
            axes[row, 7].set_title(f"{attr} support", fontsize=9)
    return [
        Figure(
            "digits_maps",
            fig,
            f"8x8 digits with tokens (class, {attr}): per-pixel orthogonal informations and "
            "the pointwise-min PID maps, averaged over test digits, for the analytic KDE model (exact "
            "denoiser) and the trained MLP; the last column is the attribute's ground-truth pixel support.",
        )
    ]
