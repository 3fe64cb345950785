"""Figures of the ``concepts`` study's bounded-schedule part: the grids with their per-step angles, and the
energy distances with their paired Monte-Carlo errors."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._results import Figure


def schedules_bounded(config: Any, r: Any) -> list[Figure]:
    """Left: log-SNR of each arm's steps; middle: the largest angle increment over the data's scales per
    step; right: energy distance per arm (error bar: the paired block SE of its difference to late-dense)."""
    import matplotlib.pyplot as plt

    rows = r.rows
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    main = [k for k in ("late", "information", "bounded", "bounded_mode_only") if k in rows]
    for i, k in enumerate(main):
        v = rows[k]
        axes[0].plot(np.arange(len(v["grid_log_snr"])), v["grid_log_snr"], "o-", ms=3, color=f"C{i}", label=k)
        axes[1].plot(np.arange(1, len(v["angle_steps"]) + 1), v["angle_steps"], "o-", ms=3, color=f"C{i}")
    axes[1].axhline(r.balanced_angle, color="k", ls=":", lw=0.8, label=f"delta = {r.balanced_angle:.3f}")
    axes[0].set_xlabel("grid index")
    axes[0].set_ylabel("log-SNR")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("max over scales of |Delta theta| (rad)")
    axes[1].legend(fontsize=7)
    kinds = list(rows)
    axes[2].bar(
        np.arange(len(kinds)),
        [rows[k]["energy_distance"] for k in kinds],
        yerr=[rows[k]["minus_late_se"] for k in kinds],
        color=["C0" if k == "late" else "C2" if k == "bounded" else "0.6" for k in kinds],
    )
    axes[2].set_xticks(np.arange(len(kinds)))
    axes[2].set_xticklabels(kinds, rotation=30, fontsize=7)
    axes[2].set_ylabel("energy distance")
    fig.tight_layout()
    return [
        Figure(
            "schedules_bounded",
            fig,
            f"Information-equalising schedule with every step's DDIM angle bounded ({config.schedule_steps} "
            f"{config.schedule_method} steps, exact score). Scales {np.round(r.scales, 2).tolist()}; one "
            "DDIM step multiplies a Gaussian mode's spread by cos(Delta theta). Error bars: paired block SE "
            f"of the difference to late-dense ({r.n_blocks} blocks of {r.block_size}).",
        )
    ]
