"""Figures of the ``guidance`` study."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...analysis.guidance import GuidanceSweep
from .._results import Figure


def law_style(law: str) -> tuple[str, str]:
    """Colour and line style of a law, identical in every panel."""
    if "@" not in law:
        return ("C0" if law == "ddim" else "C1"), "-o"
    sampler, n = law.split("@")
    shades = {
        "ddim": ["#9ecae1", "#4292c6", "#08519c", "#08306b"],
        "ddpm": ["#fdae6b", "#f16913", "#a63603", "#7f2704"],
    }
    level = min(3, max(0, round(math.log10(int(n))) - 1))
    return shades[sampler][level], ":."


def histograms(name: str, sw: GuidanceSweep) -> Figure:
    """Output histograms per strength of a 1-D case with the Fokker-Planck densities overlaid."""
    import matplotlib.pyplot as plt

    ddim_law = max((k for k in sw.samples if k.startswith("ddim@")), key=lambda s: int(s.split("@")[1]))
    ddpm_law = max((k for k in sw.samples if k.startswith("ddpm@")), key=lambda s: int(s.split("@")[1]))
    n_w = len(sw.scales)
    fig, axes = plt.subplots(2, n_w, figsize=(2.6 * n_w, 5.0), sharex=True)
    for j, w in enumerate(sw.scales):
        for i, (law, dyn, color) in enumerate(((ddim_law, "ode", "C0"), (ddpm_law, "sde", "C1"))):
            ax = axes[i, j]
            x = sw.samples[law][j][:, 0]
            ax.hist(x, bins=80, range=(-7, 9), density=True, color=color, alpha=0.5, label=law)
            if dyn in sw.fokker_planck:
                sol = sw.fokker_planck[dyn][j]
                ax.plot(sol.grid.centers()[0], np.asarray(sol.density[-1]), "k-", lw=1, label=f"FP ({dyn})")
            ax.set_title(f"w={w:g} (eta={w - 1:g})", fontsize=8)
            ax.set_xlim(-7, 9)
            if j == 0:
                ax.legend(fontsize=6)
    fig.suptitle(f"{name}: outputs per strength (histograms) with the Fokker-Planck density")
    return Figure(
        f"histograms_{name}",
        fig,
        f"{name}: DDIM (top) and DDPM (bottom) outputs per guidance scale w, "
        "Fokker-Planck density of the continuous limit overlaid.",
    )


def obtuse2d_densities(sw: GuidanceSweep) -> Figure:
    """Fokker-Planck output densities of the obtuse 2-D case per strength."""
    import matplotlib.pyplot as plt

    n_w = len(sw.scales)
    fig, axes = plt.subplots(2, n_w, figsize=(2.4 * n_w, 4.8))
    for i, dyn in enumerate(("ode", "sde")):
        for j, sol in enumerate(sw.fokker_planck[dyn]):
            cx, cy = sol.grid.centers()
            axes[i, j].contourf(cx, cy, np.asarray(sol.density[-1]).T, levels=12)
            axes[i, j].plot([0, -3, 3], [0, 1, 1], "r+")
            axes[i, j].set_xlim(-5, 5)
            axes[i, j].set_ylim(-6, 4)
            axes[i, j].set_title(f"{'DDIM' if dyn == 'ode' else 'DDPM'} w={sw.scales[j]:g}", fontsize=8)
    return Figure(
        "obtuse2d_densities",
        fig,
        "Obtuse 2-D configuration: Fokker-Planck output densities of DDIM (top) "
        "and DDPM (bottom) per w; red crosses: component means (target at the origin).",
    )


def case(name: str, sw: GuidanceSweep) -> list[Figure]:
    """The figures of one case: histograms for the 1-D cases, densities for the obtuse 2-D one."""
    if name in ("sym1d", "collinear_middle", "collinear_end"):
        return [histograms(name, sw)]
    if name == "obtuse2d" and sw.fokker_planck:
        return [obtuse2d_densities(sw)]
    return []


def confidence_vs_strength(sweeps: dict[str, GuidanceSweep]) -> Figure:
    import matplotlib.pyplot as plt

    names = list(sweeps)
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6), squeeze=False)
    for j, name in enumerate(names):
        sw = sweeps[name]
        for law, q in sw.laws.items():
            color, style = law_style(law)
            axes[0, j].plot(sw.scales, q["confidence"], style, color=color, ms=3, label=law)
            axes[1, j].plot(sw.scales, q["inv_confidence"], style, color=color, ms=3, label=law)
            axes[1, j].set_yscale("log")
        axes[0, j].set_title(name, fontsize=9)
        axes[1, j].set_xlabel("guidance scale w")
        for ax in axes[:, j]:
            ax.set_xscale("log")
        axes[0, j].legend(fontsize=5)
    axes[0, 0].set_ylabel("E[p0(y|X)]")
    axes[1, 0].set_ylabel("E[1/p0(y|X)] (log scale)")
    return Figure(
        "confidence_vs_strength",
        fig,
        "Confidence E[p0(y|X)] (top) and E[1/p0(y|X)] (bottom) vs w, per case "
        "and law (solid: continuous limits; dotted: finite steps).",
    )


def entropy_vs_strength(sweeps: dict[str, GuidanceSweep]) -> Figure:
    import matplotlib.pyplot as plt

    names = list(sweeps)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.6), squeeze=False)
    for j, name in enumerate(names):
        sw = sweeps[name]
        ax = axes[0, j]
        for law, q in sw.laws.items():
            for k, v in q.items():
                if k.startswith("entropy/") and (law in ("ddim", "ddpm") or k == "entropy/map"):
                    ls = "-" if law == "ddim" else ("--" if law == "ddpm" else ":")
                    v = np.asarray(v, float).copy()
                    if k == "entropy/fokker_planck":  # hide strengths the grid no longer resolves
                        v[np.asarray(q["fp_cells_per_std"]) < 2.0] = np.nan
                    ax.plot(sw.scales, v, ls, marker=".", label=f"{law} {k.split('/')[1]}")
        ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("guidance scale w")
    axes[0, 0].set_ylabel("differential entropy (nats)")
    axes[0, 0].legend(fontsize=6)
    return Figure(
        "entropy_vs_strength",
        fig,
        "Output entropy vs w by every route: DDIM (solid: PF-ODE Monte Carlo, "
        "Gauss-Hermite quadrature, Liouville flow rate, Fokker-Planck, kNN), finite-step DDIM map Jacobian "
        "(dotted), DDPM Fokker-Planck (dashed).",
    )


def ddpm_vs_ddim(sweeps: dict[str, GuidanceSweep]) -> Figure:
    import matplotlib.pyplot as plt

    names = list(sweeps)
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6), squeeze=False)
    for j, name in enumerate(names):
        sw = sweeps[name]
        for law, q in sw.laws.items():
            color, style = law_style(law)
            axes[0, j].plot(sw.scales, q["mean_u"], style, color=color, ms=3, label=law, alpha=0.9)
            axes[1, j].plot(sw.scales, np.sqrt(q["var_u"]), style, color=color, ms=3, label=law, alpha=0.9)
        axes[0, j].set_title(name, fontsize=9)
        axes[1, j].set_xlabel("guidance scale w")
        for ax in axes[:, j]:
            ax.set_xscale("log")
    axes[0, 0].set_ylabel("mean of <X, u>")
    axes[1, 0].set_ylabel("std of <X, u>")
    axes[0, 0].legend(fontsize=6)
    return Figure(
        "ddpm_vs_ddim",
        fig,
        "DDPM (orange) vs DDIM (blue): mean and standard deviation along the "
        "class-separating direction u; solid continuous limits, dotted finite step counts.",
    )


def overview(sweeps: dict[str, GuidanceSweep]) -> list[Figure]:
    """Confidence, entropy and DDPM-vs-DDIM statistics against the strength, one column per case."""
    return [confidence_vs_strength(sweeps), entropy_vs_strength(sweeps), ddpm_vs_ddim(sweeps)]


def distortion_search(designed: dict[str, dict[str, Any]], scales: tuple[float, ...]) -> Figure:
    """Output densities per strength of the designed, first random and control distortion examples."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(designed), figsize=(4.6 * len(designed), 3.8), squeeze=False)
    for ax, (title, item) in zip(axes[0], designed.items(), strict=False):
        top, lo, hi = 0.0, np.inf, -np.inf
        for j, w in enumerate(scales):
            x, q = item["x"][j], item["q"][j]
            (line,) = ax.plot(x, q, "-", lw=1.2, label=f"DDIM w={w:g}")
            if q.max() < 5.0:
                top = max(top, q.max())
            mass = q > 1e-3 * q.max()
            lo, hi = min(lo, x[mass].min()), max(hi, x[mass].max())
            if item["fp"] is not None:
                sol = item["fp"][j]
                ax.plot(
                    sol.grid.centers()[0], np.asarray(sol.density[-1]), "--", lw=1, color=line.get_color()
                )
                if np.asarray(sol.density[-1]).max() < 5.0:
                    top = max(top, float(np.asarray(sol.density[-1]).max()))
        ax.set_xlim(max(lo, -20.0) - 0.5, min(hi, 20.0) + 0.5)
        ax.set_ylim(0, 1.15 * top if top > 0 else None)
        ax.set_title(title.replace(": ", ":\n", 1), fontsize=8)
    axes[0, 0].legend(fontsize=6)
    return Figure(
        "distortion_search",
        fig,
        "Strong-guidance distortions: output densities of continuous DDIM (solid, change of variables) "
        "and DDPM (dashed, Fokker-Planck) per w for a designed splitting example, the first random split "
        "found with unequal variances, and an identity-covariance control (whose DDIM output collapses "
        "to a point at large w: the spike is cut off).",
    )
