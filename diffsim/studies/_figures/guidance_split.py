"""Figure of the ``guidance`` study's ``split`` part: the discretisation-split phase diagram."""

from __future__ import annotations

import numpy as np

from ...analysis.guidance import SplitMap
from .._results import Figure


def phase_diagram(maps: dict[str, SplitMap], continuous_modes: dict[str, dict[str, list[int]]]) -> Figure:
    """Dip-test p-values over (step count, strength) per sampler (rows) and spacing (columns); bimodal cells
    boxed, predicted folds dotted, the continuous-time limit as the last column."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    names = list(maps)
    samplers = maps[names[0]].samplers
    fig, axes = plt.subplots(
        len(samplers), len(names), figsize=(3.8 * len(names), 3.0 * len(samplers)), squeeze=False
    )
    image = None
    for c, name in enumerate(names):
        sm = maps[name]
        n_st = len(sm.steps)
        for r, sampler in enumerate(samplers):
            ax = axes[r, c]
            p = np.clip(sm.p_value[r], 1e-3, 1.0)
            image = ax.imshow(
                p,
                origin="lower",
                aspect="auto",
                cmap="viridis",
                norm=LogNorm(1e-3, 1.0),
                extent=(-0.5, n_st - 0.5, -0.5, len(sm.scales) - 0.5),
            )
            for j in range(len(sm.scales)):
                for k in range(n_st):
                    if sm.bimodal[r, j, k]:
                        ax.add_patch(plt.Rectangle((k - 0.5, j - 0.5), 1, 1, fill=False, ec="red", lw=1.6))
                    if sm.collapsed[r, j, k]:
                        ax.text(k, j, "c", ha="center", va="center", fontsize=7, color="0.6")
                    elif sm.fold[r, j, k]:
                        ax.plot(k, j, ".", color="white", ms=3)
                modes = continuous_modes[name]["ddim" if sampler == "ddim" else "ddpm"][j]
                ax.text(
                    n_st,
                    j,
                    "U" if modes == 1 else f"{modes}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if modes == 1 else "red",
                )
            ax.axvline(n_st - 0.5, color="black", lw=1.0)
            ax.set_xlim(-0.5, n_st + 0.5)
            ax.set_xticks(list(range(n_st)) + [n_st])
            ax.set_xticklabels([str(int(s)) for s in sm.steps] + [r"$\infty$"], fontsize=7)
            ax.set_yticks(range(len(sm.scales)))
            ax.set_yticklabels([f"{w:g}" for w in sm.scales], fontsize=7)
            ax.set_title(f"{sampler.upper()}, means (-m, 0, m), {name}", fontsize=9)
            if r == len(samplers) - 1:
                ax.set_xlabel(r"steps ($\infty$: continuous limit)")
            if c == 0:
                ax.set_ylabel("guidance scale w (eta = w - 1)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="dip test p-value")
    return Figure(
        "guidance_split_phase",
        fig,
        "Discretisation split (Wu et al. 2024, section 6): dip-test p-value of the centre-class output over "
        "step count and guidance scale, per sampler and spacing; red boxes: unimodality rejected at the "
        "test's level; white dots: some step's map has negative slope at the centre (it folds, the predicted "
        "mechanism); c: output collapsed to a point at float64 precision (not tested); "
        "last column: the continuous-time limit's exact output density (U = unimodal, else its "
        "number of modes).",
    )
