"""Figures of the ``information`` study's case studies (CPID, synonyms, homonym, co-hyponyms, prompt
intervention, the bias sweep on a trained network): pure functions from the config and a part result to
:class:`~diffsim.studies.Figure` lists."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...analysis.information import PID_MEASURES
from .._results import Figure


COLOURS = {"pointwise_min": "C0", "mmi": "C1", "wb_imin": "C2"}


def _bars(ax, row: dict[str, Any], title: str, estimate: str = "engine") -> None:
    """Exact discrete PID bars per measure, engine (dots) and orthogonal (crosses) markers; ``estimate``
    names what the dots show in the legend."""
    width, pos = 0.8 / len(PID_MEASURES), np.arange(4)
    for j, m in enumerate(PID_MEASURES):
        off = pos - 0.4 + (j + 0.5) * width
        ax.bar(off, row[m]["discrete"], width, color=COLOURS[m], alpha=0.8, label=f"exact {m}")
        ax.errorbar(off, row[m]["engine"], yerr=row[m]["tolerance"], fmt="ko", ms=3, lw=0.8,
                    label=f"{estimate} (tolerance)" if j == 0 else None)  # fmt: skip
        if "engine_orthogonal" in row[m]:
            ax.plot(off, row[m]["engine_orthogonal"], "kx", ms=4, label="orthogonal" if j == 0 else None)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(pos, ["R", "U1", "U2", "S"])
    ax.set_title(title, fontsize=9)


def _panels(rows: list[tuple[str, dict[str, Any]]], suptitle: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(3.3 * len(rows), 3.3), sharey=True, squeeze=False)
    for ax, (title, row) in zip(axes[0], rows, strict=True):
        _bars(ax, row, title)
    axes[0, 0].set_ylabel("bits")
    axes[0, -1].legend(fontsize=6, loc="upper right")
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def cpid(config: Any, r: Any) -> list[Figure]:
    """PID with the context marginalised beside CPID given the context."""
    fig = _panels(
        [("PID (context marginalised)", r.pid), ("CPID (given the context c)", r.cpid)],
        "Context switch: c decides whether the image shows y1 or y2",
    )
    caption = (
        "Context switch (y1, y2, c uniform bits; the image shows y1 if c = 0, y2 if c = 1): bars are the "
        "exact discrete PID per measure, dots the engine (standard estimator, with the Monte-Carlo "
        "tolerance), "
        "crosses the orthogonal estimator. Conditioning on c turns the marginal picture (pointwise_min: "
        "negative R; mmi/wb_imin: R and S) into unique information of each source."
    )
    return [Figure("cases_cpid", fig, caption)]


def cases(config: Any, r: Any) -> list[Figure]:
    """One figure per case: synonyms, homonym (resolved / unresolved), co-hyponyms (image and blocks)."""
    rows = r.rows
    syn = _panels([("synonyms (y1 = y2 = f)", rows["synonyms"])], "Synonyms: redundancy = H(f)")
    hom = _panels(
        [("homonym resolved by the context", rows["homonym"]),
         ("unresolved (context ignored)", rows["homonym_unresolved"])],
        "Homonym: synergy with the context word, and its collapse",
    )  # fmt: skip
    co = _panels(
        [(f"co-hyponyms: {b}", rows[f"co_hyponyms_{b}"]) for b in ("image", "parent", "child1", "child2")],
        "Co-hyponyms: redundancy on the parent block, unique on the child blocks",
    )
    p = config.synonym_shared_probability
    return [
        Figure(
            "cases_synonyms",
            syn,
            f"Synonyms: two tokens equal to one feature f ~ Bern({p:g}); every measure gives R = H(f), "
            "U = S = 0 (bars exact, dots engine with tolerance, crosses orthogonal).",
        ),
        Figure(
            "cases_homonym",
            hom,
            "Homonym: the context word decides the meaning (S = 1/2 bit for every measure); a model that "
            "ignores it (unresolved) has S = 0: the measured synergy collapses.",
        ),
        Figure(
            "cases_co_hyponyms",
            co,
            "Co-hyponyms (tokens 2P + c_k): on each block the PID is R = 1 (parent) or U_k = 1 (child k); on "
            "the whole image the min-based measures count the child bits as redundant ([2, 0, 0, 1]).",
        ),
    ]


def intervention(config: Any, r: Any) -> list[Figure]:
    """Conditional information of each removed token against the change of the samples."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    pos = np.arange(len(r.removed))
    axes[0].bar(pos - 0.2, r.cmi_exact, 0.4, label="exact")
    axes[0].errorbar(pos + 0.2, r.cmi_engine, yerr=r.cmi_tolerance, fmt="ko", ms=4, label="engine")
    axes[0].set_xticks(pos, [f"remove {t}" for t in r.removed])
    axes[0].set_ylabel("I(X; Y_k | rest) (bits)")
    axes[0].legend(fontsize=7)
    axes[1].bar(pos - 0.2, r.displacement, 0.4, label="mean displacement (same noise)")
    axes[1].bar(pos + 0.2, r.energy_distance, 0.4, label="energy distance")
    axes[1].axhline(r.energy_floor, color="k", ls="--", lw=0.8, label="energy-distance noise floor")
    axes[1].set_xticks(pos, [f"remove {t}" for t in r.removed])
    axes[1].set_yscale("symlog", linthresh=1e-3)
    axes[1].legend(fontsize=7)
    fig.suptitle("Prompt intervention: information vs change of the samples", fontsize=10)
    fig.tight_layout()
    caption = (
        f"Synonyms with agreement {config.intervention_agreement:g}: removing y2 (no unique information) "
        "leaves the DDIM samples unchanged, removing y1 (a little) changes a few, removing y3 (1 bit) "
        "changes them all. Left: conditional informations; right: sample changes."
    )
    return [Figure("cases_intervention", fig, caption)]


def trained_bias(config: Any, r: Any) -> list[Figure]:
    """Redundancy (and U1) against the prior correlation: exact, engine on the mixture, trained network."""
    import matplotlib.pyplot as plt

    rhos = np.asarray(config.trained_bias_correlations, float)
    order = np.argsort(rhos)
    rows = [r.rows[f"{rho:g}"] for rho in rhos[order]]
    fig, axes = plt.subplots(1, len(PID_MEASURES), figsize=(3.4 * len(PID_MEASURES), 3.2), sharey=True)
    for ax, m in zip(axes, PID_MEASURES, strict=True):
        for term, ls in ((0, "-"), (1, "--")):
            name = "R" if term == 0 else "U1"
            ax.plot(rhos[order], [row[m]["discrete"][term] for row in rows], "k" + ls, label=f"exact {name}")
            ax.plot(rhos[order], [row[m]["engine"][term] for row in rows], "o" + ls, color="C0",
                    label=f"engine, mixture {name}")  # fmt: skip
            ax.plot(rhos[order], [row[m]["network"][term] for row in rows], "s" + ls, color="C3",
                    label=f"engine, trained net {name}")  # fmt: skip
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("prior correlation rho")
    axes[0].set_ylabel("bits")
    axes[-1].legend(fontsize=6)
    fig.suptitle("Bias sweep: exact mixture vs trained token network", fontsize=10)
    fig.tight_layout()
    caption = (
        "Bias sweep (only y1 depicted, y2 correlated with it by rho) as CPID given a correlation token r, "
        "on the exact mixture and on one MLP trained on all correlations at once (same samples, log-SNRs "
        f"and noise draws); final training loss {r.final_loss:.3f}."
    )
    return [Figure("cases_trained_bias", fig, caption)]


def trained_homonym(config: Any, r: Any) -> list[Figure]:
    """PID bars of the two trained networks on the same data, and the fraction of their samples that show
    the meaning the context word decides."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.3), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for ax, name, title in (
        (axes[0], "resolved", "network trained where the context decides"),
        (axes[1], "blind", "network trained where it does not"),
    ):
        rows = r.rows[name]
        row = {
            m: dict(rows[m], engine=rows[m]["network"], engine_orthogonal=rows[m]["network_orthogonal"])
            for m in PID_MEASURES
        }
        _bars(ax, row, title, estimate="network")
    axes[0].set_ylabel("bits")
    lo, hi = min(a.get_ylim()[0] for a in axes[:2]), max(a.get_ylim()[1] for a in axes[:2])
    for a in axes[:2]:
        a.set_ylim(lo, hi)
    axes[1].legend(fontsize=6, loc="upper right")
    pos = np.arange(2)
    for j, (name, colour) in enumerate((("resolved", "C2"), ("blind", "C3"))):
        axes[2].bar(pos - 0.2 + 0.4 * j, r.context_accuracy[name], 0.4, color=colour, label=f"{name} network")
    axes[2].axhline(0.5, color="k", lw=0.6, ls=":")
    axes[2].set_xticks(pos, ["y2 = 0 (meaning 1)", "y2 = 1 (meaning 2)"], fontsize=7)
    axes[2].set_ylim(0, 1.05)
    axes[2].set_title("samples: the meaning the context decides", fontsize=9)
    axes[2].legend(fontsize=6, loc="lower center")
    fig.suptitle("Homonym on trained networks: synergy with the context word, and its failure", fontsize=10)
    fig.tight_layout()
    caption = (
        "Two token MLPs of one architecture, trained on the homonym where the context word decides the "
        "meaning (resolved) and where it is not tied to it (blind), measured on the same resolved data: bars "
        "are the exact PID of the law each was trained on (resolved [1/2, 1/2, 0, 1/2], blind [0, 1, 0, 0] "
        "bits), dots "
        "the network (standard estimator, with the estimator's Monte-Carlo tolerance on the exact law), "
        "crosses the orthogonal estimator. Right: fraction of "
        f"{config.trained_homonym_samples} DDIM samples per context word given the homonym that show the "
        f"meaning the context decides (dotted: 1/2). Final training losses: resolved "
        f"{r.final_loss['resolved']:.3f}, blind {r.final_loss['blind']:.3f}."
    )
    return [Figure("cases_trained_homonym", fig, caption)]
