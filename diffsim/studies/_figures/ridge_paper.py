"""Figures of the ``ridge`` study's parts after the public code of He, Qiu & Tao (2026): the 2-mode toy's
tangent / normal loss split against ``tau``, the 13-point figure (samples beside the time-indexed ridge) and
the 32-d latent's decoded on-/off-ridge samples."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._results import Figure


def paper_two_modes(config: Any, r: Any) -> list[Figure]:
    import matplotlib.pyplot as plt

    taus = [float(t) for t in r.taus[:-1]]
    x = np.arange(len(r.taus))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    ax = axes[0]
    ax.plot(x, r.loss_tangent, "o-", label="tangent (x) loss")
    ax.axhline(r.optimum_loss[0], ls="--", color="C0", lw=0.8, label="optimum L*_x")
    ax.plot(x, r.loss_normal, "s-", label="normal (y) loss")
    ax.axhline(max(r.optimum_loss[1], 1e-30), ls="--", color="C1", lw=0.8, label="optimum L*_y")
    ax.set_yscale("log")
    ax.set_title("training loss per axis", fontsize=9)
    ax = axes[1]
    ax.plot(x, r.error_tangent, "o-", label="tangent (x) error")
    ax.plot(x, r.error_normal, "s-", label="normal (y) error")
    ax.set_yscale("log")
    ax.set_title("error against the empirical optimum", fontsize=9)
    ax = axes[2]
    ax.plot(x, [s["intermode_fraction"] for s in r.samples], "o-", label="random features")
    ax.axhline(r.exact["intermode_fraction"], ls="--", color="k", lw=0.8, label="exact score")
    ax.set_title("inter-mode fraction (radius 0.5)", fontsize=9)
    for ax in axes:
        ax.set_xticks(x, [f"{t:g}" for t in taus] + ["inf"])
        ax.set_xlabel("tau")
        ax.legend(fontsize=7)
    fig.tight_layout()
    caption = (
        f"The public code's 2-mode toy (centres (+-3, 0), p = {r.width}): the loss split into tangent (x) "
        "and normal (y) parts along the gradient flow, the error against the memorising optimum, and the "
        "inter-mode fraction of the samples."
    )
    return [Figure("paper_two_modes_loss_split", fig, caption)]


def paper_configs(config: Any, r: Any) -> list[Figure]:
    import matplotlib.pyplot as plt

    figs = []
    snap = (r.snapshots or {}).get("fig1_thirteen")
    if snap is not None:
        n = len(snap["ts"])
        fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
        d = snap["data"]
        lo, hi = d.min(0) - 1.5, d.max(0) + 1.5
        for i, (ax, t) in enumerate(zip(axes[0], snap["ts"], strict=True)):
            xs = snap["xs"][i]
            ax.scatter(xs[:, 0], xs[:, 1], s=2, color="tab:blue", alpha=0.4, label="samples")
            rp = snap["ridges"][t]
            ax.scatter(rp[:, 0], rp[:, 1], s=3, color="tab:green", label="ridge")
            ax.scatter(d[:, 0], d[:, 1], s=30, color="tab:red", marker="x", zorder=5, label="training")
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.set_aspect("equal")
            ax.set_title(f"t = {t:.3g}", fontsize=9)
        axes[0, 0].legend(fontsize=7, markerscale=3, loc="upper left")
        fig.tight_layout()
        caption = (
            "Fig. 1 of the paper on diffsim: 13 training points (red), the time-indexed 1-ridge of the "
            "smoothed empirical density (green, SCMS), and samples of random features at tau = inf (blue) "
            "stopped at each time of the reverse SDE."
        )
        figs.append(Figure("paper_thirteen_points", fig, caption))
    names = list(r.rows)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 3.6))
    x = np.arange(len(names))
    ax.bar(
        x - 0.2, [r.rows[k]["random_features"]["intermode_fraction"] for k in names], 0.4, label="RF tau=inf"
    )
    ax.bar(x + 0.2, [r.rows[k]["exact"]["intermode_fraction"] for k in names], 0.4, label="exact")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("inter-mode fraction (radius 0.5)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figs.append(
        Figure("paper_configs_intermode", fig, "The code's toy configurations: inter-mode fractions.")
    )
    return figs


def latent32(config: Any, r: Any) -> list[Figure]:
    import matplotlib.pyplot as plt

    images, shape = r.images["images"], r.images["image_shape"]
    if not images:
        return []
    rows = len(images)
    fig, axes = plt.subplots(rows, 8, figsize=(8, 1.1 * rows + 0.3), squeeze=False)
    for i, (g, ims) in enumerate(images.items()):
        for j in range(8):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(ims):
                ax.imshow(ims[j].reshape(shape), cmap="gray_r")
        axes[i, 0].set_title(g, fontsize=8, loc="left")
    fig.tight_layout()
    caption = (
        f"32-d latent digits: decoded network samples with normalised ridge residual < 0.5 (on ridge) and "
        f"> 0.6 (off ridge), d* = {r.dstar} estimated by two-NN."
    )
    return [Figure("latent32_on_off_ridge", fig, caption)]
