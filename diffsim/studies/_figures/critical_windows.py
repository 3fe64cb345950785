"""Figures of the ``critical-windows`` study: window curves with the exact window shaded and the bounds drawn,
the ``log r`` collapse, SDE vs ODE, per-node tree curves, decision trees and cloning."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .._results import Figure


def symmetric(config: Any, r: Any) -> list[Figure]:
    return [
        Figure(
            "windows_symmetric",
            _fig_symmetric(r.mixtures, config.eps),
            "Symmetric two-Gaussian mixtures: keep/forget TV vs T_hat, exact window shaded, bounds as lines.",
        )
    ]


def collapse(config: Any, r: Any) -> list[Figure]:
    return [
        Figure(
            "windows_collapse",
            _fig_collapse(r.symmetric, r.rows),
            "Retention and forget TV against T_hat - log r: the window shifts like log r, "
            "same shape for all r and d.",
        )
    ]


def sde_vs_ode(config: Any, r: Any) -> list[Figure]:
    return [
        Figure(
            "windows_sde_vs_ode",
            _fig_ode(dataclasses.asdict(r), config.eps),
            "Reverse SDE vs probability-flow ODE; circles are direct simulations (route b).",
        )
    ]


def hierarchy(config: Any, r: Any) -> list[Figure]:
    a, b = config.hierarchy
    fig = _fig_tree_curves(dataclasses.asdict(r), config.eps, f"hierarchy ±{a:g} e1 ± {b:g} e2")
    caption = "Two-level hierarchy: per-node keep/forget curves, windows shaded, bounds as lines."
    return [Figure("windows_hierarchy", fig, caption)]


def random_mixture(config: Any, r: Any) -> list[Figure]:
    title = f"random mixture, d = {config.random_dim}, unequal covariances"
    fig = _fig_tree_curves(dataclasses.asdict(r), config.eps, title)
    return [Figure("windows_random", fig, "Random well-conditioned mixture: per-node curves and bounds.")]


def decision_trees(config: Any, r: Any) -> list[Figure]:
    return [
        Figure(
            "decision_tree",
            _fig_decision_trees(r.trees),
            "Mixture trees with decision times (node height), exact windows and bound intervals.",
        )
    ]


def cloning(config: Any, r: Any) -> list[Figure]:
    return [
        Figure(
            "cloning",
            _fig_cloning(dataclasses.asdict(r)),
            "Cloning overlap phi(t) vs the two-Gaussian theory; t_S marked.",
        )
    ]


def _shade_and_bounds(ax, keep, forget, t_up, t_lo, t_lo_w2, t_s=None):
    if np.isfinite(keep) and np.isfinite(forget):
        ax.axvspan(keep, forget, color="0.85", zorder=0, label="exact window [keep, forget]")
    ax.axvline(t_up, color="tab:green", ls="--", lw=1.2, label="T_upper (bound, keep side)")
    ax.axvline(t_lo, color="tab:red", ls="--", lw=1.2, label="T_lower (exact forward TV)")
    ax.axvline(t_lo_w2, color="tab:red", ls=":", lw=1.2, label="T_lower (W2/KL closed form)")
    if t_s is not None:
        ax.axvline(t_s, color="k", ls="-.", lw=0.8, label="speciation t_S")


def _fig_symmetric(sym: list[dict], eps: float):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sym), figsize=(4.6 * len(sym), 3.6), squeeze=False)
    for ax, s in zip(axes[0], sym, strict=False):
        kc, fc = s["keep_curve"], s["forget_curve"]
        ax.plot(kc["t"], kc["tv"], "b-", label="TV(p^{+,T}, p^{+}) (keep)")
        ax.plot(fc["t"], fc["tv"], "m-", label="TV(p^{+,T}, p) (forget)")
        ax.axhline(eps, color="0.4", lw=0.8)
        _shade_and_bounds(
            ax,
            s["keep"],
            s["forget"],
            s["keep_bounds"]["t_upper"],
            s["forget_bounds"]["t_lower"],
            s["forget_bounds"]["t_lower_w2"],
            s["t_speciation"],
        )
        ax.set_title(f"r = {s['r']:g} (exact for every d)")
        ax.set_xlabel("T_hat (OU time)")
        ax.set_ylim(0, 0.55)
    axes[0][0].set_ylabel("total variation")
    axes[0][0].legend(fontsize=6.5, loc="upper center")
    fig.tight_layout()
    return fig


def _fig_collapse(sym: list[dict], unreduced: list[dict]):
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for s in sym:
        lr = math.log(s["r"])
        a1.plot(np.asarray(s["keep_curve"]["t"]) - lr, s["keep_curve"]["ri"], label=f"r={s['r']:g}")
        a1.plot(np.asarray(s["keep_curve"]["t"]) - lr, s["oracle_retention"], "k:", lw=0.8)
        a2.plot(
            np.asarray(s["forget_curve"]["t"]) - lr, s["forget_curve"]["tv"], label=f"r={s['r']:g} (reduced)"
        )
    for u in unreduced:
        lr = math.log(u["r"])
        a2.errorbar(
            np.asarray(u["forget_curve"]["t"]) - lr,
            u["forget_curve"]["tv"],
            yerr=u["forget_curve"]["se"],
            fmt="o",
            ms=3,
            label=f"d={u['d']} unreduced MC",
        )
        a2.errorbar(
            np.asarray(u["keep_curve"]["t"]) - lr,
            u["keep_curve"]["tv"],
            yerr=u["keep_curve"]["se"],
            fmt="s",
            ms=3,
            color="0.3",
        )
    a1.set_xlabel("T_hat - log r")
    a1.set_ylabel("retention P_out(+) (dotted: GH oracle)")
    a2.set_xlabel("T_hat - log r")
    a2.set_ylabel("forget TV (squares: keep TV)")
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _fig_ode(ode: dict, eps: float):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for sampler, col in (("sde", "tab:blue"), ("ode", "tab:orange")):
        blk = ode[sampler]
        ax.plot(
            blk["keep_curve"]["t"], blk["keep_curve"]["tv"], "-", color=col, label=f"{sampler.upper()} keep"
        )
        ax.plot(
            blk["forget_curve"]["t"],
            blk["forget_curve"]["tv"],
            "--",
            color=col,
            label=f"{sampler.upper()} forget",
        )
        ax.axvspan(blk["keep"], blk["forget"], color=col, alpha=0.12)
        for name in ("keep", "forget"):
            v = ode["verify"][f"{sampler}_{name}"]["b"]
            ax.errorbar(v["t"], v["tv"], yerr=v["se"], fmt="o", ms=4, color=col, mfc="white")
    ax.axhline(eps, color="0.4", lw=0.8)
    ax.axvline(
        ode["ode_forget_bounds"]["t_lower"], color="tab:red", ls=":", lw=1, label="forward-TV crossing"
    )
    ax.set_xlabel("T_hat (OU time)")
    ax.set_ylabel("total variation")
    ax.set_title(f"SDE vs PF-ODE, r = {ode['r']:g} (circles: direct simulation)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _fig_tree_curves(tree: dict, eps: float, title: str):
    import matplotlib.pyplot as plt

    nodes = tree["nodes"]
    fig, axes = plt.subplots(1, len(nodes), figsize=(4.6 * len(nodes), 3.6), squeeze=False)
    for ax, n in zip(axes[0], nodes, strict=False):
        for k, col in zip(n["children"], ("tab:blue", "tab:purple", "tab:cyan"), strict=False):
            ax.plot(k["keep_curve"]["t"], k["keep_curve"]["tv"], "-", color=col, label=f"keep {k['child']}")
            ax.plot(
                k["forget_curve"]["t"],
                k["forget_curve"]["tv"],
                "--",
                color=col,
                label=f"forget {k['child']} in node",
            )
            if np.isfinite(k["keep"]) and np.isfinite(k["forget"]):
                ax.axvspan(k["keep"], k["forget"], color=col, alpha=0.12)
            ax.axvline(k["keep_bounds"]["t_upper"], color="tab:green", ls="--", lw=1)
            ax.axvline(k["forget_bounds"]["t_lower"], color="tab:red", ls="--", lw=1)
        ax.axhline(eps, color="0.4", lw=0.8)
        ax.set_title(f"node {n['node']}")
        ax.set_xlabel("T_hat (OU time)")
        ax.set_ylim(0, 1.0)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("total variation")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _leaves(spec) -> list[int]:
    return [spec] if isinstance(spec, int) else [leaf for s in spec for leaf in _leaves(s)]


def _draw_tree(ax, spec, by_name: dict, xpos: dict) -> tuple[float, float]:
    """Draw the subtree ``spec`` (nested lists): nodes at their decision times, leaves at 0."""
    if isinstance(spec, int):
        return xpos[spec], 0.0
    node = by_name[tuple(sorted(_leaves(spec)))]
    pts = [_draw_tree(ax, s, by_name, xpos) for s in spec]
    x = float(np.mean([p[0] for p in pts]))
    y = node["decision_time"]
    for (cx, cy), kid in zip(pts, node["children"], strict=False):
        ax.plot([x, cx], [y, cy], "k-", lw=1)
        ax.plot(
            [cx, cx], [kid["keep"], kid["forget"]], color="tab:blue", lw=5, alpha=0.4, solid_capstyle="butt"
        )
        ax.plot(
            [cx + 0.06] * 2,
            [kid["keep_bounds"]["t_upper"], kid["forget_bounds"]["t_lower"]],
            color="tab:red",
            lw=1.5,
            alpha=0.7,
        )
    ax.plot(x, y, "ko", ms=6)
    ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.plot(x, node["speciation_time"], "k*", ms=7, alpha=0.6)
    return x, y


def _fig_decision_trees(trees: list[tuple[str, dict]]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(trees), figsize=(5.5 * len(trees), 4.2), squeeze=False)
    for ax, (title, tree) in zip(axes[0], trees, strict=False):
        by_name = {tuple(sorted(n["node"])): n for n in tree["nodes"]}
        leaves = _leaves(tree["tree"])
        _draw_tree(ax, tree["tree"], by_name, {leaf: i for i, leaf in enumerate(leaves)})
        ax.set_xticks(range(len(leaves)), [str(leaf) for leaf in leaves])
        ax.set_xlabel("component")
        ax.set_ylabel("T_hat (decision time)")
        ax.set_title(
            title + "\nbars: exact [keep, forget] (blue), [T_upper, T_lower] bounds (red); * t_S", fontsize=9
        )
    fig.tight_layout()
    return fig


def _fig_cloning(cl: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.plot(cl["fine_t"], cl["theory"], "k-", label="theory (Biroli et al.)")
    ax.errorbar(cl["t"], cl["phi"], yerr=cl["se"], fmt="o", ms=4, label="clones (diffsim.clone)")
    ax.axvline(cl["t_speciation"], color="tab:red", ls="--", label="t_S = 1/2 log(1 + r^2)")
    ax.axhline(0.7753, color="0.5", ls=":", label="0.7753 (large-d value at t_S)")
    ax.set_xlabel("branch time t (OU)")
    ax.set_ylabel("phi(t): P(clones in same component)")
    ax.set_title(f"cloning, r = {cl['r']:g}, d = {cl['d']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
