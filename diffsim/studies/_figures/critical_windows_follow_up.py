"""Figures of the ``follow-up`` part of the ``critical-windows`` study: both bound families beside the exact
windows, and the eps-mixture trees' decision times beside the exact per-node windows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._results import Figure


def follow_up(config: Any, r: Any) -> list[Figure]:
    return [
        Figure(
            "windows_follow_up",
            _fig_families(r.configurations),
            "Exact critical windows [keep, forget] (blue bars) against diffsim's bounds [T_upper, T_lower] "
            "(red) and Li, Karan & Chen's (2025) [T_start, T_end] (green), both at error eps; open markers: "
            "forget side not claimed.",
        ),
        Figure(
            "windows_eps_tree",
            _fig_trees(r.trees),
            "eps-mixture trees: NoiseAmount of each internal node (dots) against the exact per-node interval "
            "[max forget of its children, keep of the node in its parent] (bars).",
        ),
    ]


def _fig_families(rows: list[dict]):
    import matplotlib.pyplot as plt

    n = len(rows)
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * n + 1.4))
    for i, row in enumerate(rows):
        y = n - 1 - i
        ax.plot(
            [row["keep"], row["forget"]], [y, y], color="tab:blue", lw=6, alpha=0.45, solid_capstyle="butt"
        )
        for fam, lo, hi, col, dy in (
            ("diffsim", row["t_upper"], row["t_lower"], "tab:red", 0.18),
            ("follow_up", row["t_start"], row["t_end"], "tab:green", -0.18),
        ):
            claimed = row[f"{fam}_forget_bracketed"] is not None
            ax.plot([lo], [y + dy], marker="|", color=col, ms=10, mew=2)
            if math.isfinite(hi):
                ax.plot(
                    [hi],
                    [y + dy],
                    marker="|" if claimed else "o",
                    mfc=col if claimed else "none",
                    color=col,
                    ms=10 if claimed else 5,
                    mew=2,
                )
    ax.set_yticks(range(n), [row["config"] for row in rows][::-1], fontsize=7)
    ax.set_xlabel("T_hat (OU time)")
    ax.plot([], [], color="tab:blue", lw=6, alpha=0.45, label="exact [keep, forget]")
    ax.plot([], [], "|", color="tab:red", ms=10, mew=2, label="diffsim T_upper | T_lower")
    ax.plot([], [], "|", color="tab:green", ms=10, mew=2, label="follow-up T_start | T_end")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _fig_trees(trees: list[dict]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(trees), figsize=(5.0 * len(trees), 3.6), squeeze=False)
    for ax, t in zip(axes[0], trees, strict=False):
        nodes = [e for e in t["exact_nodes"] if e["in_exact_tree"]]
        for i, e in enumerate(nodes):
            hi = e["keep_in_parent"] if np.isfinite(e["keep_in_parent"]) else e["children_forget_max"] + 2.0
            ax.plot(
                [i, i],
                [e["children_forget_max"], hi],
                color="tab:blue",
                lw=6,
                alpha=0.45,
                solid_capstyle="butt",
            )
            ax.plot(i, e["noise_amount"], "o", color="tab:green")
            ax.plot(i, e["exact_decision_time"], "kx")
        ax.set_xticks(range(len(nodes)), ["{" + ",".join(map(str, e["node"])) + "}" for e in nodes])
        ax.set_ylabel("T_hat (OU time)")
        ax.set_title(f"{t['label']}: NoiseAmount (o), exact decision time (x)", fontsize=9)
    fig.tight_layout()
    return fig
