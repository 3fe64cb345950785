"""Figures of the ``digits`` study."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._results import Figure


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def samples(config: Any, r: Any) -> list[Figure]:
    """One mosaic per sampler: rows are the requested classes, panels the guidance strengths."""
    plt = _plt()
    n_show = min(4, config.n_per_class)
    out = []
    for method in config.samplers:
        nw = len(config.guidance)
        fig, axes = plt.subplots(1, nw, figsize=(0.55 * n_show * nw + 1.5, 0.55 * len(config.classes) + 1.2))
        axes = np.atleast_1d(axes)
        for ax, w in zip(axes, config.guidance, strict=False):
            xs = r.samples[(method, w)].reshape(len(config.classes), config.n_per_class, 8, 8)[:, :n_show]
            xs = np.pad(xs, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-1.0)  # white gutters
            mosaic = np.concatenate([np.concatenate(list(row), axis=1) for row in xs], axis=0)
            ax.imshow(mosaic, cmap="gray_r", vmin=-1, vmax=1)
            acc, fd = r.accuracy[method][f"{w:g}"], r.frechet_distance[method][f"{w:g}"]
            ax.set_title(f"w = {w:g}\nacc {acc:.2f}, FD {fd:.1f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks(np.arange(len(config.classes)) * 10 + 4.5)
            ax.set_yticklabels([str(c) for c in config.classes], fontsize=7)
        fig.suptitle(f"{method}: samples per class (rows) and guidance strength", fontsize=9)
        out.append(
            Figure(
                f"samples_{method}",
                fig,
                f"Generated digits with {method} ({config.n_steps} steps): rows are "
                "the requested classes, panels the guidance strengths w (0 unconditional, 1 conditional).",
            )
        )
    return out


def loss_curve(config: Any, losses: np.ndarray) -> Figure:
    """Training loss per step and its centred moving mean (log scale)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.5, alpha=0.4, label="per step")
    if len(losses) >= 20:
        k = max(len(losses) // 50, 5)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        centre = steps[(k - 1) // 2 : (k - 1) // 2 + smooth.size]  # centred window
        ax.plot(centre, smooth, lw=1.5, label=f"moving mean ({k})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"DSM loss ({config.weighting} weighting)")
    ax.legend(fontsize=8)
    return Figure(
        "loss_curve", fig, "Training loss of the class-conditional UNet (per step and moving mean)."
    )


def accuracy_fd(config: Any, r: Any) -> Figure:
    """Accuracy and Fréchet distance against the guidance strength, per sampler."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for method in config.samplers:
        ws = list(config.guidance)
        axes[0].plot(ws, [r.accuracy[method][f"{w:g}"] for w in ws], "o-", label=method)
        axes[1].plot(ws, [r.frechet_distance[method][f"{w:g}"] for w in ws], "o-", label=method)
    axes[0].axhline(0.1, color="gray", ls=":", label="chance")
    axes[0].set_xlabel("guidance strength w")
    axes[0].set_ylabel("classifier accuracy")
    axes[1].set_xlabel("guidance strength w")
    axes[1].set_ylabel("Fréchet distance (classifier features)")
    axes[0].legend(fontsize=8)
    return Figure(
        "accuracy_fd_vs_guidance",
        fig,
        "Accuracy on the requested class and Fréchet distance to the real "
        "test digits against guidance strength, per sampler.",
    )


def memorisation(config: Any, r: Any, threshold: float) -> Figure:
    """``d_1/d_2`` histograms (EmpiricalScore, network, real test digits) and EmpiricalScore samples."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    bins = np.linspace(0, 1, 31)
    axes[0].hist(r.ratios["empirical"], bins=bins, alpha=0.6, label="EmpiricalScore")
    axes[0].hist(r.ratios["network"], bins=bins, alpha=0.6, label="network")
    axes[0].hist(
        r.ratios["real_test"], bins=bins, alpha=0.4, label="real test digits", histtype="step", color="k"
    )
    axes[0].axvline(threshold, color="r", ls="--", lw=1)
    axes[0].set_xlabel("d1 / d2 (nearest / second-nearest training image)")
    axes[0].legend(fontsize=8)
    emp = r.empirical_samples
    n = min(8, len(emp))
    axes[1].imshow(
        np.concatenate(list(emp[:: max(len(emp) // n, 1)][:n].reshape(-1, 8, 8)), axis=1),
        cmap="gray_r",
        vmin=-1,
        vmax=1,
    )
    axes[1].set_title("EmpiricalScore samples (copies of training digits)", fontsize=8)
    axes[1].axis("off")
    return Figure(
        "memorisation",
        fig,
        "Memorisation ratio of network samples, EmpiricalScore samples and real test "
        "digits (red: threshold 1/3).",
    )
