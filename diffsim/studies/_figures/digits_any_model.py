"""Figures of the model-agnostic parts of the ``digits`` study (``_digits_any_model``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._results import Figure
from .digits import _plt


def class_windows(config: Any, r: Any) -> Figure:
    """Retention (bootstrap CI) and forget TV against ``T_hat``, SDE and ODE, with the window ends."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    ts = np.asarray(r.t_hats)
    for ax, (s, c) in zip(axes, r.curves.items(), strict=False):
        ax.plot(ts, c["retention"], "o-", label="retention R")
        ax.fill_between(ts, c["retention_low"], c["retention_high"], alpha=0.25)
        ax.plot(ts, c["forget_tv"], "s--", label="forget TV")
        ax.axhline(r.chance_retention[s], color="grey", lw=0.8, ls=":", label="chance")
        for name, col in (("keep", "green"), ("forget", "red")):
            if np.isfinite(c[name]):
                ax.axvline(c[name], color=col, lw=0.9, label=name)
        auc = r.membership[s]["auc"]
        ax.set_title(
            f"{s}: window [{c['keep']:.2f}, {c['forget']:.2f}], membership AUC {auc:.2f}", fontsize=8
        )
        ax.set_xlabel("noising time T_hat")
    axes[0].set_ylabel("fraction / TV")
    axes[0].legend(fontsize=7)
    return Figure(
        "class_windows",
        fig,
        "Feature retention of real digits under noising-denoising with the unconditional UNet (class read by "
        "the evaluator classifier; 95% bootstrap band) and the class-level forget TV; vertical lines: the "
        "window [keep, forget].",
    )


def sd_protocol(config: Any, r: Any) -> Figure:
    """Retention against ``k`` (steps before the end) at scales 0 and ``sd_guidance``, with the
    feature_retention curve at the same log-SNRs."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ks = np.asarray(r.ks)
    for w, ret in r.retention.items():
        se = np.asarray(r.retention_stderr[w])
        ax.errorbar(ks, ret, yerr=2 * se, marker="o", capsize=2, label=f"SD protocol, CFG w = {w}")
    inside = np.asarray(r.in_reference_range)
    ax.errorbar(
        ks[inside],
        np.asarray(r.reference)[inside],
        yerr=2 * np.asarray(r.reference_stderr)[inside],
        fmt="k--",
        capsize=2,
        label="feature_retention (SDE), same log-SNR",
    )
    ax.set_xlabel(f"k: inference steps before the end (of {config.sd_inference_steps})")
    ax.set_ylabel("fraction keeping the class")
    ax.legend(fontsize=7)
    return Figure(
        "sd_protocol",
        fig,
        f"Stable Diffusion protocol on the digits UNet: {config.sd_beta_schedule} DDPM schedule, held-out "
        "digits noised with add_noise to k steps before the end and re-denoised with classifier-free "
        "guidance towards their class (2 SE bars).",
    )


def guidance_sweep(config: Any, r: Any) -> Figure:
    """Confidence, feature entropy and pixel variance against the CFG scale, DDPM vs DDIM."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    ws = np.asarray(r.scales)
    for s in r.samplers:
        v = r.values[s]
        axes[0].errorbar(ws, v["confidence"], yerr=2 * np.asarray(v["confidence_se"]), marker="o", label=s)
        axes[1].errorbar(ws, v["knn_entropy"], yerr=2 * np.asarray(v["knn_entropy_se"]), marker="o", label=s)
        axes[2].plot(ws, v["pixel_variance"], "o-", label=s)
    for ax, lab in zip(
        axes, ("confidence p(y | x)", "kNN entropy of features (nats)", "pixel variance"), strict=True
    ):
        ax.set_xlabel("guidance scale w")
        ax.set_ylabel(lab)
    axes[0].legend(fontsize=7)
    return Figure(
        "guidance_sweep",
        fig,
        f"Classifier-free guidance sweep of the digits UNet (targets {list(r.targets)}): confidence under "
        "the evaluator classifier, kNN entropy of its features and per-pixel variance (2 SE bars).",
    )


def class_information(config: Any, r: Any) -> Figure:
    """Per class: one generated digit and the mean pixel map of the class token's information."""
    plt = _plt()
    n = r.maps.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n + 0.5, 2.6))
    axes = np.asarray(axes).reshape(2, n)
    for j in range(n):
        axes[0, j].imshow(r.digits[j], cmap="gray_r", vmin=-1, vmax=1)
        axes[1, j].imshow(r.maps[j], cmap="magma")
        axes[0, j].set_title(f"{config.classes[j]}: {r.per_class[j]:.2f}", fontsize=7)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    return Figure(
        "class_information",
        fig,
        "Pixel-wise pointwise mutual information between generated digits and their class token (orthogonal "
        "estimator, mean over the class's samples; titles: mean nats per digit). The UNet has one "
        "conditioning token, so a PID of two conditions is not defined for it.",
    )
