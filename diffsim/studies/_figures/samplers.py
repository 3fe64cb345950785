"""Figures of the ``samplers`` study."""

from __future__ import annotations

from typing import Any

import jax.random as jr
import numpy as np

from ...sampling import grids, simulate
from .._results import Figure


def convergence(config: Any, r: Any, ode_samplers: frozenset[str]) -> Figure:
    """Four panels against the number of steps: mode-weight error, energy distance (with the exact-vs-exact
    floor), |NLL gap| (with 4 standard errors) and the pathwise error of the PF-ODE samplers with slopes
    -1 and -2 drawn."""
    import matplotlib.pyplot as plt

    dim, table, ed_floor = r.dim, r.runs, r.energy_distance_floor
    steps = np.asarray(config.steps)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for sampler in config.samplers:
        rows = [table[f"{sampler}/{k}"] for k in config.steps]
        ls = "-" if sampler in ode_samplers else "--"
        axes[0].loglog(
            steps, [max(r["mode_weight_error"], 1e-6) for r in rows], ls, marker="o", label=sampler
        )
        axes[1].plot(steps, [r["energy_distance"] for r in rows], ls, marker="o")
        axes[2].loglog(steps, [max(abs(r["nll_gap"]), 1e-6) for r in rows], ls, marker="o")
        if sampler in ode_samplers:
            axes[3].loglog(steps, [r["pathwise_error"] for r in rows], marker="o", label=sampler)
    axes[1].axhline(ed_floor, color="k", lw=0.8, ls=":", label="exact-vs-exact floor")
    axes[1].set_xscale("log")
    axes[1].set_yscale("symlog", linthresh=max(abs(ed_floor), 1e-5))
    se = np.mean([table[f"{s}/{steps[-1]}"]["nll_se"] for s in config.samplers])
    axes[2].axhline(4 * se, color="k", lw=0.8, ls=":", label="4 SE")
    for order, c in [(1, "grey"), (2, "k")]:
        name = "ddim" if order == 1 else "heun"
        ref_err = table[f"{name}/{steps[0]}"].get("pathwise_error") if name in config.samplers else None
        if ref_err:
            axes[3].loglog(
                steps,
                ref_err * (steps / steps[0]) ** (-order),
                color=c,
                lw=0.8,
                ls=":",
                label=f"slope -{order}",
            )
    titles = [
        "mode-weight error",
        "energy distance to exact samples",
        "|NLL gap| (weak error)",
        "pathwise error vs adaptive PF-ODE",
    ]
    for ax, title in zip(axes, titles, strict=False):
        ax.set_title(f"d={dim}: {title}", fontsize=9)
        ax.set_xlabel("steps")
    for ax in axes:
        ax.legend(fontsize=7)
    return Figure(
        f"convergence_d{dim}",
        fig,
        f"d={dim}: error against the exact law vs number of steps (solid: PF-ODE samplers, dashed: SDE).",
    )


def scatter(config: Any, mixture: Any) -> Figure:
    """Exact samples of the 2-D mixture beside DDIM at the coarsest and finest grids."""
    import matplotlib.pyplot as plt

    p = mixture.process
    k = jr.key(config.seed + 99)
    x_exact, _ = mixture.sample(k, 3000)
    coarse, fine = config.steps[0], config.steps[-1]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
    axes[0].scatter(*np.asarray(x_exact).T, s=2, alpha=0.4)
    axes[0].set_title("exact samples")
    for ax, (sampler, steps) in zip(axes[1:], [("ddim", coarse), ("ddim", fine)], strict=False):
        x = simulate(mixture, sampler, grids.logsnr_uniform(p, steps), n=3000, key=k).x
        ax.scatter(*np.asarray(x).T, s=2, alpha=0.4, color="C1")
        ax.set_title(f"{sampler}, {steps} steps")
    return Figure("samples_d2", fig, "2-D mixture: exact samples vs DDIM at the coarsest and finest grids.")
