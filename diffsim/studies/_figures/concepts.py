"""Figures of the ``concepts`` study: concept emergence, information rates, schedules, saliency maps and
insertion/deletion curves (toy and digits)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._results import Figure


class _Collector:
    """Collects the figures a drawing function makes (``res.figure(fig, name, caption)``)."""

    def __init__(self):
        self.items: list[Figure] = []

    def figure(self, fig, name: str, caption: str = "") -> None:
        self.items.append(Figure(name, fig, caption))


def _fields(r: Any) -> dict[str, Any]:
    return {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}


def emergence(config: Any, r: Any) -> list[Figure]:
    """Accuracy / AUROC of the probes against the exact posterior and the closed form; x0_hat grid."""
    res = _Collector()
    _plot_emergence(res, _fields(r), config)
    return res.items


def information(config: Any, r: Any) -> list[Figure]:
    """Per-token information rates with the emergence log-SNRs."""
    res = _Collector()
    em = (
        None
        if r.emergence_probe is None
        else {"tokens": {n: {"emergence_probe": v} for n, v in r.emergence_probe.items()}}
    )
    _plot_information(res, _fields(r), em)
    return res.items


def schedules(config: Any, r: Any) -> list[Figure]:
    """Grids, token weight errors and within-mode spread by schedule."""
    res = _Collector()
    _plot_schedules(res, _fields(r), config)
    return res.items


def saliency_toy(config: Any, r: Any) -> list[Figure]:
    """Saliency maps on the toy, the attention-vs-information correlation and the AUC games."""
    res = _Collector()
    _plot_saliency_toy(res, _fields(r), r.examples, config)
    _plot_auc(res, r.auc, "auc_toy", "toy")
    return res.items


def digits(config: Any, r: Any) -> list[Figure]:
    """Emergence, x0_hat grids, saliency maps and AUC games on digits."""
    res = _Collector()
    out = _fields(r)
    if out.get("unet"):
        _plot_auc(res, r.auc, "auc_digits", "digits UNet")
    _plot_digits(res, out, r.examples, config)
    return res.items


def _plot_emergence(res, out, config):
    import matplotlib.pyplot as plt

    lam = np.asarray(out["log_snr"])
    names = list(out["tokens"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for j, n in enumerate(names):
        d = out["tokens"][n]
        c = f"C{j}"
        axes[0].plot(
            lam, d["probe_accuracy"], "-", color=c, label=f"{n} (s={d['separation']:g}): probe on x0_hat"
        )
        axes[0].plot(lam, d["exact_accuracy"], "--", color=c, alpha=0.7, label=f"{n}: exact p(y|x_t) argmax")
        axes[0].plot(lam, d["analytic_accuracy"], ":", color="k", lw=1)
        axes[0].axvline(d["emergence_probe"], color=c, lw=0.8, alpha=0.6)
        axes[1].plot(lam, d["probe_auroc"], "-", color=c, label=n)
    axes[0].set_xlabel("log-SNR (reverse process runs left to right)")
    axes[0].set_ylabel("accuracy for the final concept")
    axes[0].legend(fontsize=6)
    axes[0].set_title("dotted: closed-form E max p(y | x_t)", fontsize=8)
    axes[1].set_xlabel("log-SNR")
    axes[1].set_ylabel("AUROC of the probe on x0_hat")
    axes[1].legend(fontsize=7)
    res.figure(
        fig,
        "emergence_toy",
        "Concept emergence on the toy mixture: accuracy of linear probes on the predicted clean sample "
        "(solid) against the exact posterior's argmax (dashed) and the closed-form Bayes accuracy "
        "(dotted), for the final concept of unconditional DDPM trajectories of the exact score; vertical "
        "lines mark the emergence log-SNR. Right: AUROC of the probes.",
    )
    grid = np.asarray(out["x0_grid"])  # (S, 4, 16)
    lam_g = out["x0_grid_log_snr"]
    fig, axes = plt.subplots(grid.shape[1], grid.shape[0], figsize=(1.3 * grid.shape[0], 1.4 * grid.shape[1]))
    v = np.abs(grid).max()
    for s in range(grid.shape[0]):
        for i in range(grid.shape[1]):
            ax = axes[i, s]
            ax.imshow(grid[s, i].reshape(4, 4), cmap="RdBu_r", vmin=-v, vmax=v)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"lambda={lam_g[s]:.1f}", fontsize=7)
        for i in range(grid.shape[1]):
            axes[i, 0].set_ylabel(f"y={out['x0_grid_tokens'][i]}", fontsize=7)
    res.figure(
        fig,
        "x0_grid_toy",
        "Predicted clean samples x0_hat along four DDPM trajectories (rows) of the toy "
        "mixture at eight steps (columns): the top-left region (coarse token, separation "
        f"{config.separations[0]:g}) is decided first, the finer regions later.",
    )


# =====================================================================================================
# 2. information rates


def _plot_information(res, info, emergence):
    import matplotlib.pyplot as plt

    lam = np.asarray(info["log_snr"])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for j, (n, d) in enumerate(info["tokens"].items()):
        ax.plot(
            lam,
            d["mean_rate"],
            color=f"C{j}",
            label=f"{n}: integral {d['integral']:.3f} (exact {d['exact_cmi']:.3f})",
        )
        if emergence is not None:
            ax.axvline(emergence["tokens"][n]["emergence_probe"], color=f"C{j}", ls=":", lw=1)
    ax.set_xlabel("log-SNR")
    ax.set_ylabel("rho_k(lambda) [nats per unit log-SNR]")
    ax.legend(fontsize=7)
    res.figure(
        fig,
        "information_rates",
        "Per-token information rate rho_k(lambda) = 1/2 E|eps(.|y) - eps(.|y without "
        "k)|^2 of the exact toy model; dotted lines: emergence log-SNR of each concept on x0_hat.",
    )


# =====================================================================================================


def _plot_schedules(res, sch, config):
    import matplotlib.pyplot as plt

    rows = sch["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for i, (k, v) in enumerate(rows.items()):
        axes[0].plot(
            np.arange(len(v["grid_log_snr"])),
            np.clip(v["grid_log_snr"], -12, 12),
            "o-",
            ms=3,
            color=f"C{i}",
            label=k,
        )
    d = sch["densities"]
    ax2 = axes[0].twiny()
    ax2.plot(
        np.asarray(d["tokens"]) / max(max(d["tokens"]), 1e-12) * config.schedule_steps,
        d["log_snr"],
        "k:",
        lw=1,
    )
    ax2.set_xticks([])
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("log-SNR (clipped to [-12, 12])")
    axes[0].legend(fontsize=7)
    kinds = list(rows)
    names = list(rows["uniform"]["variance_ratio"])
    w = 0.8 / len(names)
    for j, n in enumerate(names):
        axes[1].bar(
            np.arange(len(kinds)) + j * w,
            [abs(rows[k]["weight_error"][j]) for k in kinds],
            w,
            yerr=[rows[k]["weight_error_se"][j] for k in kinds],
            label=f"|weight error| {n}",
        )
        axes[2].bar(
            np.arange(len(kinds)) + j * w,
            [rows[k]["variance_ratio"][n] for k in kinds],
            w,
            label=f"spread ratio {n}",
        )
    for ax in axes[1:]:
        ax.set_xticks(np.arange(len(kinds)) + 0.4 - w / 2)
        ax.set_xticklabels(kinds, rotation=30, fontsize=7)
        ax.legend(fontsize=7)
    axes[2].axhline(1.0, color="k", lw=0.8)
    axes[2].set_title(
        "energy distance: " + ", ".join(f"{k} {rows[k]['energy_distance']:.3f}" for k in kinds), fontsize=6
    )
    res.figure(
        fig,
        "schedules",
        f"Final-sample quality by schedule ({config.schedule_steps} {config.schedule_method} steps, exact "
        f"score, token prior P(y=1) = {config.schedule_prior}). Left: log-SNR of each schedule's steps "
        "(dotted: the tokens' information density). Middle: token weight error of the final samples. "
        "Right: within-mode spread relative to the truth per token region (1 = exact).",
    )


# =====================================================================================================


def _plot_saliency_toy(res, out, examples, config):
    import matplotlib.pyplot as plt

    steps = out["steps"]
    n_tok = len(config.separations)
    shown = [0, n_tok - 1]  # the coarsest and the finest token
    rows = [("exact", m) for m in ("masking", "smooth_masking", "jacobian", "occlusion")]
    if out["network"]:
        rows += [
            ("network", m)
            for m in ("masking", "smooth_masking", "jacobian", "occlusion", "grad_cam", "attention")
        ] + [("randomised", "masking"), ("randomised", "grad_cam")]
    cols = [(k, s) for k in shown for s in steps]
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(1.25 * len(cols) + 1, 1.3 * len(rows)), squeeze=False
    )
    for c, (k, s) in enumerate(cols):
        for r, (tag, m) in enumerate(rows):
            ax = axes[r, c]
            v = examples[(s, k)][tag][m].reshape(4, 4)
            ax.imshow(v, cmap="magma")
            sc = out["summary"][f"{tag}/{m}"][s]
            ax.set_title(f"pt {sc['pointing'][0]:.2f} IoU {sc['iou'][0]:.2f}", fontsize=5)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"{tag}\n{m}", fontsize=6)
        li = steps.index(s)
        axes[0, c].set_title(
            f"y{k + 1}, lambda={out['log_snr'][li]:.1f}\n" + axes[0, c].get_title(), fontsize=6
        )
    res.figure(
        fig,
        "saliency_toy",
        "Saliency of the coarsest token y1 (region: top-left 2x2, left block of columns) and the finest "
        f"token y{n_tok} (right block) at {len(steps)} steps for one sample: exact model (its true token "
        "effect), trained UNet (all methods) and the randomised UNet. Titles: pointing-game rate and top-q "
        "IoU averaged over samples and all tokens at that step.",
    )
    if not out["network"]:
        return
    corr = out["correlation"]
    lam = np.asarray(out["correlation_log_snr"])
    fig, axes = plt.subplots(1, len(corr), figsize=(4.2 * len(corr), 3.2))
    for ax, (n, d) in zip(np.atleast_1d(axes), corr.items(), strict=False):
        r = np.asarray(d["mean_rate"])
        g = np.asarray(d["mean_relevance_guidance_energy"])
        s = np.asarray(d["mean_relevance_sum_eps"])
        ax.plot(lam, r / max(r.max(), 1e-12), "k-", label="rho_k (exact)")
        ax.plot(
            lam,
            g / max(g.max(), 1e-12),
            "C0--",
            label=f"relevance, guidance energy (rho_s {d['guidance_energy_vs_rate']['mean']:.2f})",
        )
        ax.plot(
            lam,
            s / max(np.abs(s).max(), 1e-12),
            "C1:",
            label=f"relevance, sum eps (rho_s {d['sum_eps_vs_rate']['mean']:.2f})",
        )
        ax.set_title(n, fontsize=8)
        ax.set_xlabel("log-SNR")
        ax.legend(fontsize=6)
    res.figure(
        fig,
        "attention_vs_information",
        "Correlation quantification: the UNet's attention relevance of each token over the steps (scaled "
        "to max 1) against the exact information rate rho_k; legend: mean Spearman correlation over steps "
        "per sample.",
    )


def _plot_auc(res, auc, name, label):
    import matplotlib.pyplot as plt

    keys = list(auc)
    fig, axes = plt.subplots(
        1,
        len(keys) + 1,
        figsize=(3.6 * (len(keys) + 1), 3.4),
        gridspec_kw={"width_ratios": [1] * len(keys) + [1.6]},
    )
    lines = []
    for ax, k in zip(axes, keys, strict=False):
        d = auc[k]
        for m, c in d["curves"].items():
            style = "k-" if m == "oracle" else ("k:" if m == "random" else "-")
            ax.plot(d["fractions"], c, style, lw=1.2 if m in ("oracle", "random") else 1, label=m)
        ax.set_title(k, fontsize=8)
        ax.set_xlabel("fraction of pixels")
        ax.set_ylabel("fidelity")
        ax.legend(fontsize=5)
        for m, s in d["summary"].items():
            lines.append(
                f"{k:22s} {m:15s} AUC {s['auc']:.3f} +- {s['auc_se']:.3f}   score "
                f"{s.get('score', float('nan')):6.2f} +- {s.get('score_se', float('nan')):.2f}"
            )
    axes[-1].axis("off")
    axes[-1].text(0, 1, "\n".join(lines), family="monospace", fontsize=4.6, va="top")
    res.figure(
        fig,
        name,
        f"Insertion/deletion games ({label}): mean fidelity curves per method with the random floor "
        "(dotted) and the greedy oracle (solid black); table: mean AUC and normalised score (AUC - random) / "
        "(oracle - random), per sample then averaged.",
    )


# =====================================================================================================


def _plot_digits(res, out, examples, config):
    import matplotlib.pyplot as plt

    lam = np.asarray(out["log_snr"])
    names = list(out["kde"])
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for j, n in enumerate(names):
        ax.plot(lam, out["kde"][n]["probe_accuracy"], "-", color=f"C{j}", label=f"{n}: probe on x0_hat (KDE)")
        ax.plot(
            lam,
            out["kde"][n]["exact_accuracy"],
            "--",
            color=f"C{j}",
            alpha=0.7,
            label=f"{n}: exact posterior",
        )
        if out.get("unet"):
            ax.plot(
                lam,
                out["unet"][n]["probe_accuracy"],
                "-.",
                color=f"C{j}",
                alpha=0.7,
                label=f"{n}: probe (UNet)",
            )
    ax.set_xlabel("log-SNR")
    ax.set_ylabel("accuracy for the final concept")
    ax.legend(fontsize=6)
    res.figure(
        fig,
        "emergence_digits",
        "Concept emergence on digits: class, stroke thickness and the bar attribute read "
        "by probes on x0_hat along DDPM trajectories of the analytic kernel-density model (exact posterior "
        "dashed) and of the trained UNet (dash-dot).",
    )
    grids_ = [("KDE", out["kde_x0_grid"])] + (
        [("UNet", out["unet_x0_grid"])] if out.get("unet_x0_grid") is not None else []
    )
    fig, axes = plt.subplots(4 * len(grids_), 8, figsize=(8, 4.2 * len(grids_)))
    for gi, (tag, gr) in enumerate(grids_):
        gr = np.asarray(gr)
        for s in range(gr.shape[0]):
            for i in range(4):
                ax = axes[gi * 4 + i, s]
                ax.imshow(np.clip(gr[s, i].reshape(8, 8), -1, 1), cmap="gray", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if gi == 0 and i == 0:
                    ax.set_title(f"{out['x0_grid_log_snr'][s]:.1f}", fontsize=7)
            axes[gi * 4, 0].set_ylabel(tag, fontsize=8)
    res.figure(
        fig,
        "x0_grid_digits",
        "Predicted clean samples x0_hat along unconditional DDPM trajectories (rows) at "
        "eight log-SNRs (columns): analytic KDE model (top) and trained UNet (bottom).",
    )
    if examples:
        steps = list(examples)
        rows = (
            [("kde", "masking"), ("kde", "occlusion")]
            + [
                ("network", m)
                for m in ("masking", "smooth_masking", "jacobian", "occlusion", "grad_cam", "attention")
            ]
            + [("randomised", "masking")]
        )
        fig, axes = plt.subplots(
            len(rows) + 1, len(steps), figsize=(1.6 * len(steps) + 1, 1.4 * (len(rows) + 1))
        )
        for c, s in enumerate(steps):
            e = examples[s]
            axes[0, c].imshow(e["x"].reshape(8, 8), cmap="gray")
            axes[0, c].contour(e["region"].reshape(8, 8), levels=[0.5], colors="r", linewidths=0.8)
            axes[0, c].set_title(f"x_t, lambda={out['saliency_log_snr'][c]:.1f}", fontsize=6)
            for r, (tag, m) in enumerate(rows):
                ax = axes[r + 1, c]
                ax.imshow(e[tag][m].reshape(8, 8), cmap="magma")
                sc = out["saliency"][f"{tag}/{m}"][s]
                ax.set_title(f"pt {sc['pointing'][0]:.2f} IoU {sc['iou'][0]:.2f}", fontsize=5)
                if c == 0:
                    ax.set_ylabel(f"{tag}\n{m}", fontsize=6)
            for ax in axes[:, c]:
                ax.set_xticks([])
                ax.set_yticks([])
        res.figure(
            fig,
            "saliency_digits",
            "Saliency of the bar token on digits (red contour: the bar's pixels) per step: exact KDE "
            "model, trained UNet (all methods) and the randomised UNet; titles: pointing-game rate and "
            "top-q IoU averaged over the test digits at that step.",
        )


# =====================================================================================================
