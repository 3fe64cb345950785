"""Figures of the ``ridge`` study: time-indexed ridges with phase-coloured trajectories, the distance to
the ridge against time, align / slide on the two-point set, errors and inter-mode fractions against the
training time of random features, and the latent digits."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...analysis import ridge
from .._results import Figure


def exact(config: Any, r: Any) -> list[Figure]:
    caption = (
        "Time-indexed 1-ridges of log p_t (SCMS, colour = t) for each training set (x), with exact-score "
        "reverse-SDE trajectories (from t = 2 on) coloured by phase: outside the tube, align (normal drift "
        "dominates), slide (tangent drift dominates), unresolved (eigengap below threshold: masked)."
    )
    return [_fig_ridges(r.plots, config, "ridges_exact", caption)]


def two_points(config: Any, r: Any) -> list[Figure]:
    two = {**r.runs, "c": r.shift}
    return [_fig_distance(r.exact.summaries, two), _fig_align_slide(two)]


def random_features(config: Any, r: Any) -> list[Figure]:
    """Learned-score ridges and the tau sweep (when the study has no MLP part)."""
    return _learned(config, r, None)


def mlp(config: Any, r: Any) -> list[Figure]:
    """Learned-score ridges and the tau sweep, random features and the trained MLP together."""
    return _learned(config, r.rf, r)


def latent(config: Any, r: Any) -> list[Figure]:
    return _fig_latent(r.summary, r.images, r.image_shape, r.codim)


def _learned(config, rf, mlp):
    learned = {}
    for name in rf.rows:
        learned.update({k: v for k, v in rf.learned.items() if k.startswith(f"{name}: ")})
        if mlp is not None:
            learned.update({k: v for k, v in mlp.learned.items() if k.startswith(f"{name}: ")})
    figs = []
    if learned:
        caption = (
            "Trajectories of the random-feature score (tau = inf) and of the trained MLP, coloured by phase "
            "against the empirical ridge."
        )
        figs.append(_fig_ridges(learned, config, "ridges_learned", caption))
    figs.append(_fig_tau(rf.rows, {} if mlp is None else mlp.rows, rf.exact_intermode))
    return figs


PHASE_COLOURS = {
    ridge.PHASE_UNRESOLVED: "0.75",
    ridge.PHASE_OUTSIDE: "tab:red",
    ridge.PHASE_ALIGN: "tab:blue",
    ridge.PHASE_SLIDE: "tab:green",
}


def _draw_phase_trajectories(ax, xs, labels, ts, t_from=2.0):
    """Saved trajectory segments from ``t <= t_from`` on (earlier, the particles are still noise), each
    coloured by the phase at its end."""
    from matplotlib.collections import LineCollection

    segs, cols = [], []
    first = int(np.argmax(np.asarray(ts) <= t_from))
    for j in range(xs.shape[1]):
        for s in range(first, xs.shape[0] - 1):
            segs.append(xs[s : s + 2, j])
            cols.append(PHASE_COLOURS[int(labels[s + 1, j])])
    ax.add_collection(LineCollection(segs, colors=cols, linewidths=0.7, alpha=0.8))


def _ridge_panel(ax, plot, title, ridge_times):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    for i, t in enumerate(ridge_times):
        pts = plot["ridges"].get(t, np.zeros((0, 2)))
        ax.scatter(
            pts[:, 0], pts[:, 1], s=3, color=cmap(i / max(len(ridge_times) - 1, 1)), label=f"ridge t={t:g}"
        )
    _draw_phase_trajectories(ax, plot["xs"], plot["labels"], plot["ts"])
    d = plot["data"]
    ax.scatter(d[:, 0], d[:, 1], marker="x", color="k", s=40, zorder=5)
    lo, hi = d.min(0) - 1.5, d.max(0) + 1.5
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)


def _legend(ax):
    """Ridge times (markers) and phases (lines) in one legend."""
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color=c, label=ridge.PHASE_NAMES[k]) for k, c in PHASE_COLOURS.items()]
    ax.legend(handles=handles, fontsize=6, loc="upper left", markerscale=3, framealpha=0.8)


def _fig_ridges(plots, config, name, caption):
    import matplotlib.pyplot as plt

    n = len(plots)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows + 0.4), squeeze=False)
    for ax, (title, plot) in zip(axes.ravel(), plots.items(), strict=False):
        _ridge_panel(ax, plot, title, config.ridge_times)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    _legend(axes.ravel()[0])
    fig.tight_layout()
    return Figure(name, fig, caption)


def _fig_distance(summaries, two):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, s in summaries.items():
        axes[0].loglog(s["ts"], s["median_newton_distance"], marker=".", label=name)
        axes[2].semilogx(s["ts"], s["valid_fraction"], label=name)
    ts = np.asarray(next(iter(summaries.values()))["ts"])
    h = np.asarray(next(iter(summaries.values()))["h"])
    axes[0].loglog(ts, 0.6745 * np.sqrt(h), "k:", label="0.674 sigma_t (exact, flat ridge)")
    axes[0].set_title("median Newton distance to the 1-ridge (valid points), exact score", fontsize=9)
    axes[0].legend(fontsize=7)
    y = np.asarray(two["exact"].xs[..., 1], float)
    v_em = two["v_em"]
    axes[1].semilogx(two["ts"], (y**2).mean(1) / two["h"], "o", ms=3, label="measured E y^2 / sigma^2")
    axes[1].semilogx(two["ts"], v_em / two["h"], "-", label="Euler-Maruyama recursion")
    axes[1].axhline(1.0, color="k", ls=":", label="continuous law")
    axes[1].set_title("two points: squared distance to the ridge / sigma_t^2", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[2].set_title("fraction of particles with a valid eigengap", fontsize=9)
    for ax in axes:
        ax.set_xlabel("t")
        ax.invert_xaxis()
    return Figure(
        "distance_vs_t",
        fig,
        "Distance to the ridge along the reverse SDE with the exact score: "
        "Newton distance per training set (left), the closed-form law for two points (centre), and the "
        "share of particles where the ridge frame is defined (right; the rest is masked).",
    )


def _fig_align_slide(two):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    ex, nm, tg = (np.asarray(two[k].x, float) for k in ("exact", "normal", "tangent"))
    axes[0].hist(ex[:, 1], bins=60, alpha=0.6, density=True, label="exact")
    axes[0].hist(nm[:, 1], bins=60, alpha=0.6, density=True, label=f"normal error c={two['c']}")
    axes[0].set_title("align: terminal normal coordinate y (distance to the ridge)", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].hist(ex[:, 0], bins=120, alpha=0.6, density=True, label="exact")
    axes[1].hist(tg[:, 0], bins=120, alpha=0.6, density=True, label="tangent error (clipped denoiser)")
    axes[1].set_title("slide: terminal tangent coordinate x (placement)", fontsize=9)
    axes[1].legend(fontsize=7)
    dy = np.asarray(two["normal"].xs[..., 1] - two["exact"].xs[..., 1], float).mean(1)
    h = two["h"]
    axes[2].semilogx(two["ts"], dy, "o", ms=3, label="measured mean offset")
    axes[2].semilogx(
        two["ts"], ridge.linearised_normal_offset(two["c"], h), "k:", label="quasi-static 2c/(2 - sigma^2)"
    )
    axes[2].invert_xaxis()
    axes[2].set_xlabel("t")
    axes[2].set_title("align: normal offset along the reverse SDE", fontsize=9)
    axes[2].legend(fontsize=7)
    return Figure(
        "align_slide_two_points",
        fig,
        "Two points: a normal denoiser error shifts the distance to the "
        "ridge and not the placement; a tangent error (denoiser clipped to the segment) changes the "
        "placement along the ridge (inter-mode samples) and not the distance.",
    )


def _fig_tau(rf_rows, mlp_rows, exact_intermode):
    import matplotlib.pyplot as plt

    names = list(rf_rows)
    fig, axes = plt.subplots(2, len(names), figsize=(6 * len(names), 7.5), squeeze=False)
    twins = [axes[1, j].twinx() for j in range(len(names))]
    for tw in twins:
        tw.set_ylabel("median distance to nearest training point (dotted)", fontsize=7)
    for j, name in enumerate(names):
        for width, row in rf_rows[name].items():
            tau = np.asarray(row["tau"][:-1], float)
            tau_inf = tau[-1] * 10
            x = np.append(tau, tau_inf)
            ln = axes[0, j].loglog(x, row["normal_error"], "-o", ms=3, label=f"normal, p={width}")
            colour = ln[0].get_color()
            axes[0, j].loglog(x, row["tangent_error"], "--s", ms=3, color=colour, label=f"tangent, p={width}")
            axes[1, j].semilogx(
                x,
                [s["intermode_fraction"] for s in row["samples"]],
                "-o",
                ms=3,
                color=colour,
                label=f"RF p={width}",
            )
            twins[j].semilogx(
                x, [s["nn_distance_median"] for s in row["samples"]], ":", color=ln[0].get_color()
            )
        mlp = mlp_rows.get(name)
        if mlp is not None:
            axes[0, j].axhline(mlp["normal_error"], color="k", lw=1, label="MLP normal")
            axes[0, j].axhline(mlp["tangent_error"], color="k", lw=1, ls="--", label="MLP tangent")
            axes[1, j].axhline(mlp["intermode_fraction"], color="k", lw=1, label="MLP")
        axes[1, j].axhline(exact_intermode[name], color="tab:red", lw=1, ls=":", label="exact score")
        axes[0, j].set_title(
            f"{name}: squared denoiser error vs training time tau (last point: tau = inf)", fontsize=9
        )
        axes[1, j].set_title(f"{name}: inter-mode fraction (solid) and placement (dotted) vs tau", fontsize=9)
        axes[1, j].set_ylim(-0.05, 1.05)
        for ax in axes[:, j]:
            ax.set_xlabel("tau")
            ax.legend(fontsize=6)
    fig.tight_layout()
    return Figure(
        "errors_and_intermode_vs_tau",
        fig,
        "Random-feature scores along the gradient flow: normal and "
        "tangent error against the empirical optimum (top; held-out noised training points, local ridge "
        "frames) and the inter-mode fraction of their samples (bottom), per width p; the trained MLP and "
        "the exact score for reference.",
    )


def _fig_latent(summary, images, shape, codim):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for label, s in summary.items():
        if label == "split":
            continue
        ts = np.asarray(s["ts"])
        axes[0].loglog(ts, s["median_residual_times_h"], marker=".", label=label)
        axes[1].loglog(ts, s["median_newton_distance"], marker=".", label=label)
        axes[2].semilogx(ts, s["valid_fraction"], label=label)
    ts = np.asarray(summary["exact"]["ts"])
    axes[1].loglog(ts, np.sqrt(codim * np.asarray(summary["exact"]["h"])), "k:", label="sqrt(codim) sigma_t")
    for ax, title in zip(
        axes,
        ("median residual x sigma_t^2 (valid)", "median Newton distance (valid)", "valid eigengap fraction"),
        strict=False,
    ):
        ax.set_title(f"latent digits: {title}", fontsize=9)
        ax.set_xlabel("t")
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    figs = [
        Figure(
            "latent_ridge_vs_t",
            fig,
            "Latent digits: ridge residual and Newton distance of generated "
            "samples over the reverse SDE, exact empirical score vs the latent score network.",
        )
    ]
    if images:
        fig, axes = plt.subplots(4, 8, figsize=(10, 5.6))
        for r, (g, (dec, near)) in enumerate(images.items()):
            for c in range(8):
                for rr, arr in ((2 * r, dec), (2 * r + 1, near)):
                    ax = axes[rr, c]
                    ax.axis("off")
                    if c < len(arr):
                        ax.imshow(arr[c].reshape(shape), cmap="gray_r", vmin=-1, vmax=1)
            axes[2 * r, 0].set_title(f"{g}-ridge samples (decoded)", fontsize=8, loc="left")
            axes[2 * r + 1, 0].set_title("nearest training image", fontsize=8, loc="left")
        figs.append(
            Figure(
                "latent_on_off_ridge",
                fig,
                "Decoded latent samples closest to (on) and farthest from (off) "
                "the ridge of the latent training set at the split time, each above its nearest training "
                "image.",
            )
        )
    return figs
