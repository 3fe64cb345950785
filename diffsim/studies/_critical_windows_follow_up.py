"""Part ``follow-up`` of the ``critical-windows`` study: Li, Karan & Chen's (2025) dimension-free bound beside
diffsim's own bounds on every configuration of the study, and the eps-mixture tree against the exact windows.

For each configuration (a feature ``c`` inside its parent ``V``, exact critical window ``[keep, forget]`` at
tolerance ``eps``), both bound families certify ``TV <= eps`` on their interval:

- diffsim (``docs/critical-windows.md`` §4): ``T_upper(c, c) <= keep`` and ``forget <= T_lower(c, V)``;
- the follow-up (Theorem 2 of "Blink of an eye", ICML 2025), its tolerance calibrated so that its error
  ``eps' (1 + max(1, W) / sqrt 2)`` equals ``eps``: keep side ``S_init = S_targ = c`` gives ``T_start(c) <=
  keep``; forget side ``S_init = c, S_targ = V`` gives ``forget <= T_end(c, V)`` where the theorem window
  ``[T_end(c, V), T_start(V)]`` is non-empty (always at the root).
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax.random as jr
import numpy as np

from ..analysis import windows
from ..data import hierarchy_2d, random_two_clusters, symmetric_two_gaussians
from ._runner import Check, PartContext, check


Config = Any  # the study's Config, by name only (critical_windows imports this module, not back)


class FollowUp(eqx.Module):
    """Per configuration both bound families beside the exact window; closed form vs numerical route;
    the eps-mixture trees with their decisions against the exact per-node windows; bracketing counts."""

    configurations: list[dict]
    closed_form: list[dict]
    trees: list[dict]
    counts: dict


def _bounds(gm, c: list[int], v: list[int], eps: float, key, n_samples: int, is_root: bool) -> dict:
    """Follow-up keep side ``T_start(c)``, forget side ``[T_end(c, V), T_start(V)]``, at error ``eps``."""
    opts = {"key": key, "n_samples": n_samples}
    keep = windows.follow_up_bound(gm, c, c, windows.follow_up_eps(eps, windows.group_odds(gm, c)), **opts)
    forget = windows.follow_up_bound(gm, c, v, windows.follow_up_eps(eps, windows.group_odds(gm, v)), **opts)
    return {
        "keep": windows.follow_up_record(keep),
        "forget": windows.follow_up_record(forget),
        "forget_claimed": bool(is_root or forget.nonempty),
    }


def _row(config: str, keep: float, forget: float, dsim: dict, fu: dict, lichen: list | None) -> dict:
    fk, ff = fu["keep"], fu["forget"]
    row = {
        "config": config,
        "keep": keep,
        "forget": forget,
        "t_upper": dsim["t_upper"],
        "t_lower": dsim["t_lower"],
        "t_start": fk["t_start"],
        "t_end": ff["t_end"],
        "t_start_parent": ff["t_start"],
        "eps_keep": fk["eps"],
        "eps_forget": ff["eps"],
        "diffsim_keep_bracketed": bool(keep >= dsim["t_upper"]),
        "diffsim_forget_bracketed": bool(forget <= dsim["t_lower"]) if dsim["claimed"] else None,
        "follow_up_keep_bracketed": bool(keep >= fk["t_start"]),
        "follow_up_forget_bracketed": bool(forget <= ff["t_end"]) if fu["forget_claimed"] else None,
    }
    if lichen is not None and fu["forget_claimed"] and ff["t_end"] <= ff["t_start"]:
        row["lichen_window"] = lichen
        row["follow_up_window"] = [ff["t_end"], ff["t_start"]]
        row["follow_up_in_lichen"] = bool(
            np.isfinite(lichen[0]) and lichen[0] <= ff["t_end"] and lichen[1] >= ff["t_start"]
        )
    return row


def _tree_configs(tree: Any, gm, eps: float, key, n_samples: int, ctx: PartContext) -> list[dict]:
    root = max(tree.nodes, key=lambda n: len(n["node"]))
    rows = []
    for n_idx, n in enumerate(tree.nodes):
        is_root = n is root
        for c_idx, k in enumerate(n["children"]):
            tag = f"{tree.label} child {k['child']} in {n['node']}"
            kk = jr.fold_in(key, 10 * n_idx + c_idx)
            fu = ctx.cache(
                f"fu_{tree.label.split()[0]}_{n_idx}_{c_idx}",
                lambda k=k, n=n, kk=kk, is_root=is_root: _bounds(
                    gm, k["child"], n["node"], eps, kk, n_samples, is_root
                ),
            )
            fb = k["forget_bounds"]
            claimed = is_root or fb["t_lower"] <= fb["t_upper"]
            dsim = {"t_upper": k["keep_bounds"]["t_upper"], "t_lower": fb["t_lower"], "claimed": claimed}
            lc = None if is_root else [k["lichen"]["lower"], k["lichen"]["upper"]]
            rows.append(_row(tag, k["keep"], k["forget"], dsim, fu, lc))
    return rows


def _eps_tree_item(cfg: Config, tree: Any, gm, key, **curve_opts) -> dict:
    """The eps-mixture tree of ``gm``, its decisions (exact TV at each NoiseAmount) and the exact per-node
    windows of the agglomerative tree at the same nodes."""
    et = windows.eps_mixture_tree(gm, cfg.eps, key=key, n_samples=cfg.bound_samples)
    dec = windows.eps_tree_decisions(gm, et, key=jr.fold_in(key, 1), **curve_opts)
    rec = windows.eps_tree_record(et, dec)
    by_node = {tuple(sorted(n["node"])): n for n in tree.nodes}
    keep_in_parent = {tuple(sorted(k["child"])): k["keep"] for n in tree.nodes for k in n["children"]}
    exact = []
    for node in et.root.internal_nodes():
        comps = tuple(sorted(node.components))
        n = by_node.get(comps)
        if n is None:
            exact.append({"node": list(comps), "in_exact_tree": False})
            continue
        forget = max(k["forget"] for k in n["children"])
        keep = keep_in_parent.get(comps, math.inf)
        exact.append(
            {
                "node": list(comps),
                "in_exact_tree": True,
                "noise_amount": node.noise_amount,
                "exact_decision_time": n["decision_time"],
                "children_forget_max": forget,
                "keep_in_parent": keep,
                "inside": bool(forget <= node.noise_amount <= keep),
            }
        )
    return rec | {"label": tree.label, "exact_nodes": exact, "exact_tree": tree.tree}


def compute_follow_up(cfg: Config, ctx: PartContext) -> FollowUp:
    res, eps = ctx.results, cfg.eps
    key = jr.fold_in(jr.key(cfg.seed), 700)
    n_mc = cfg.bound_samples
    rows, closed = [], []
    for i, s in enumerate(res["symmetric"].mixtures):
        r = s["r"]
        gm = symmetric_two_gaussians(r, 1)  # the bounds are the same in every d (exact reduction)
        fu = ctx.cache(
            f"fu_sym_r{r:g}", lambda gm=gm, i=i: _bounds(gm, [0], [0, 1], eps, jr.fold_in(key, i), n_mc, True)
        )
        dsim = {
            "t_upper": s["keep_bounds"]["t_upper"],
            "t_lower": s["forget_bounds"]["t_lower"],
            "claimed": True,
        }
        rows.append(_row(f"sym r={r:g} (every d)", s["keep"], s["forget"], dsim, fu, None))
        means = np.asarray(gm.means, float)
        for side, c, v in (("keep", [0], [0]), ("forget", [0], [0, 1])):
            cf = windows.spherical_follow_up_bound(means, [0.5, 0.5], c, v, fu[side]["eps"])
            closed.append(
                {
                    "config": f"sym r={r:g}",
                    "side": side,
                    "exact": True,
                    "closed": windows.follow_up_record(cf),
                    "numerical": fu[side],
                }
            )
    o = res["sde-vs-ode"]
    gm = symmetric_two_gaussians(o.r, 1)
    fu = ctx.cache(f"fu_ode_r{o.r:g}", lambda: _bounds(gm, [0], [0, 1], eps, jr.fold_in(key, 50), n_mc, True))
    dsim = {
        "t_upper": o.ode_keep_bounds["t_upper"],
        "t_lower": o.ode_forget_bounds["t_lower"],
        "claimed": True,
    }
    rows.append(_row(f"ODE r={o.r:g}", o.ode["keep"], o.ode["forget"], dsim, fu, None))
    hier = hierarchy_2d(*cfg.hierarchy, cfg.hierarchy_weights)
    rand = random_two_clusters(cfg.random_dim, cfg.random_centre, cfg.random_offset, seed=cfg.seed + 16)
    h_rows = _tree_configs(res["hierarchy"], hier, eps, jr.fold_in(key, 60), n_mc, ctx)
    rows += h_rows + _tree_configs(res["random"], rand, eps, jr.fold_in(key, 70), n_mc, ctx)
    # closed forms on the hierarchy (one spherical covariance): inside the numerical window
    means, w = np.asarray(hier.means, float), np.asarray(hier.weights, float)
    for n in res["hierarchy"].nodes:
        for k in n["children"]:
            tag = f"hierarchy child {k['child']} in {n['node']}"
            row = next(x for x in h_rows if x["config"] == tag)
            for side, c, v, e in (
                ("keep", k["child"], k["child"], row["eps_keep"]),
                ("forget", k["child"], n["node"], row["eps_forget"]),
            ):
                cf = windows.spherical_follow_up_bound(means, w, c, v, e)
                num = {
                    "t_start": row["t_start"] if side == "keep" else row["t_start_parent"],
                    "t_end": 0.0 if side == "keep" else row["t_end"],
                }
                rest_v = [j for j in range(hier.n_components) if j not in v]
                se_key = jr.fold_in(key, 1000 + len(closed))
                num["t_start_se"] = (
                    _crossing_se(hier, v, rest_v, num["t_start"], se_key, n_mc) if rest_v else 0.0
                )
                num["t_end_se"] = _crossing_se(hier, c, v, num["t_end"], se_key, n_mc) if c != v else 0.0
                closed.append(
                    {
                        "config": tag,
                        "side": side,
                        "exact": False,
                        "closed": windows.follow_up_record(cf),
                        "numerical": num,
                    }
                )
    trees = [
        ctx.cache(
            "fu_tree_hierarchy",
            lambda: _eps_tree_item(
                cfg,
                res["hierarchy"],
                hier,
                jr.fold_in(key, 80),
                n_outer=cfg.hierarchy_n_outer,
                n_gh=cfg.hierarchy_n_gh,
            ),
        ),
        ctx.cache(
            "fu_tree_random",
            lambda: _eps_tree_item(
                cfg,
                res["random"],
                rand,
                jr.fold_in(key, 90),
                n_outer=cfg.random_n_outer,
                n_inner=cfg.random_n_inner,
            ),
        ),
    ]
    counts = _counts(rows)
    ctx.note(
        "Follow-up (Li, Karan & Chen 2025) bounds bracket the exact windows in "
        f"{counts['follow_up_bracketed']} of {counts['n']} configurations; "
        f"diffsim's in {counts['diffsim_bracketed']} (a non-claim counts as "
        "bracketing)."
    )
    return FollowUp(rows, closed, trees, counts)


def _crossing_se(gm, group_a, group_b, t: float, key, n_samples: int) -> float:
    """Standard error of a Monte Carlo forward-TV crossing time: ``se(TV) / |dTV/dt|`` (delta method)."""
    t_max = float(gm.process.t_max)
    if not (0.0 < t < t_max):
        return 0.0
    h = min(0.05, 0.5 * (t_max - t))
    est = windows.submixture_tv(gm, group_a, group_b, [t, t + h], key=key, n_samples=n_samples)
    slope = abs(float(est.value[1] - est.value[0])) / h
    return float(est.stderr[0]) / slope if slope > 0 else 0.0


def _counts(rows: list[dict]) -> dict:
    """How often each family brackets the exact window, how often it claims the forget side, and how often
    the follow-up's end is the tighter one (keep side: larger ``T_start``; forget side: smaller ``T_end``)."""

    def full(row, fam):
        return bool(row[f"{fam}_keep_bracketed"] and row[f"{fam}_forget_bracketed"] in (True, None))

    both = [r for r in rows if None not in (r["follow_up_forget_bracketed"], r["diffsim_forget_bracketed"])]
    out = {"n": len(rows)}
    for fam in ("diffsim", "follow_up"):
        out[f"{fam}_bracketed"] = sum(full(r, fam) for r in rows)
        out[f"{fam}_forget_claims"] = sum(r[f"{fam}_forget_bracketed"] is not None for r in rows)
    out["follow_up_keep_tighter"] = sum(r["t_start"] > r["t_upper"] for r in rows)
    out["follow_up_forget_tighter"] = sum(r["t_end"] < r["t_lower"] for r in both)
    out["both_forget_claims"] = len(both)
    return out


# fmt: off
def checks_follow_up(cfg: Config, r: Any) -> list[Check]:
    out = []
    for row in r.configurations:
        tag = f"follow-up {row['config']}"
        out.append(check(f"{tag}: keep >= T_start (Li-Karan-Chen)", row["t_start"], row["keep"], 0.0,
                         relation="ge", note=f"theorem tolerance {row['eps_keep']:.4g} (error = eps)"))
        if row["follow_up_forget_bracketed"] is not None:
            out.append(check(f"{tag}: forget <= T_end (Li-Karan-Chen)", row["t_end"], row["forget"], 0.0,
                             relation="le", note=f"theorem tolerance {row['eps_forget']:.4g} (error = eps)"))
        if "follow_up_in_lichen" in row:
            out.append(check(f"{tag}: exact Li-Chen window contains follow-up window",
                             row["follow_up_window"], row["lichen_window"], relation="true",
                             passed=row["follow_up_in_lichen"],
                             note="TV(p^{c,T}, p^V) <= eps on [T_end(c, V), T_start(V)]"))
    for c in r.closed_form:
        tag = f"follow-up closed form ({c['config']}, {c['side']})"
        cf, num = c["closed"], c["numerical"]
        if c["exact"]:
            out.append(check(f"{tag} = numerical route", [num["t_start"], num["t_end"]],
                             [cf["t_start"], cf["t_end"]], 2e-3,
                             note="two spherical Gaussians: closed form exact; numerical: TV crossing"))
        else:
            tol_s, tol_e = 4 * num["t_start_se"] + 1e-3, 4 * num["t_end_se"] + 1e-3
            inside = cf["t_start"] <= num["t_start"] + tol_s and cf["t_end"] >= num["t_end"] - tol_e
            out.append(check(f"{tag} inside numerical window", [num["t_end"], num["t_start"]],
                             [cf["t_end"], cf["t_start"]], relation="true", passed=bool(inside),
                             note="max/min pairwise distances: conservative; tol 4 s.e. of the Monte Carlo "
                             f"crossings ({tol_e:.3g}, {tol_s:.3g}) + 1e-3 (grid)"))
    for t in r.trees:
        lab = t["label"]
        groups = [sorted(sorted(_leaves(g)) for g in t[k]) for k in ("tree", "exact_tree")]
        same = groups[0] == groups[1]
        out.append(check(f"follow-up {lab}: eps-mixture tree has the groups of the agglomerative tree",
                         t["exact_tree"], t["tree"], relation="true", passed=bool(same)))
        out.append(check(f"follow-up {lab}: eps-mixture tree satisfies Definition 8", True,
                         t["satisfies_definition"], relation="true", passed=bool(t["satisfies_definition"])))
        for d in t["decisions"]:
            out.append(check(
                f"follow-up {lab}: TV(p^{{{d['start']}, NoiseAmount}}, p^{d['node']}) <= theorem error",
                d["error"], d["exact_tv"], 0.0, relation="le",
                note=f"error eps (1 + max(1, W)/sqrt 2); T_hat = NoiseAmount = {d['t_hat']:.3f}; "
                f"exact TV s.e. {d['exact_tv_stderr']:.2g}"))
    return out
# fmt: on


def _leaves(spec: Any) -> list[int]:
    return [spec] if isinstance(spec, int) else [x for s in spec for x in _leaves(s)]
