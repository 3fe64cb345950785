"""Items of the ``critical-windows`` study: the per-item experiments (each returns the JSON record the
study caches) and the bracket/route checks and table rows shared by its tree and summary parts."""

from __future__ import annotations

import math
from typing import Any

import jax.random as jr
import numpy as np

from ..analysis import windows
from ..data import symmetric_two_gaussians
from ._runner import Check, check


# the study's Config and Tree result, by name only (critical_windows imports this module, not back)
Config = Any
Tree = Any


def verify_times(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` route (b) times in ``[lo, hi]`` (the midpoint when ``n = 1``)."""
    return np.array([0.5 * (lo + hi)]) if n == 1 else np.linspace(lo, hi, n)


def symmetric_windows(cfg: Config, gm, r: float, key, sampler: str = "sde", bounds: bool = True) -> dict:
    """Keep/forget curves of ``+`` in ``1/2 N(±r e_1, I)``, its critical window and (if ``bounds``) bounds."""
    ts = np.linspace(0.02, math.log(r) + 2.6, cfg.n_t_hats)
    opts = {"key": key, "sampler": sampler}
    curves = [windows.window_curve(gm, [0], g, ts, n_outer=cfg.n_outer, **opts) for g in ([0], [0, 1])]
    out = windows.critical_window_record(*curves, cfg.eps)
    if not bounds:
        return out
    num = {"numerical": cfg.numerical_bounds, "n_samples": cfg.bound_samples}
    kb = windows.theorem_bounds(gm, [0], [0], cfg.eps, **opts, **num)
    fb = windows.theorem_bounds(gm, [0], [0, 1], cfg.eps, **opts)
    return out | {"keep_bounds": windows.bounds_record(kb), "forget_bounds": windows.bounds_record(fb)}


def symmetric_item(cfg: Config, r: float, key) -> dict:
    """Part ``symmetric``, one ``r``: windows, bounds (largest ``d``), GH retention oracle, ``t_S``."""
    gm = symmetric_two_gaussians(r, max(cfg.dims))
    out = {"r": r, "d": max(cfg.dims)} | symmetric_windows(cfg, gm, r, key)
    ts = out["keep_curve"]["t"]
    return out | {
        "oracle_retention": windows.symmetric_retention_oracle(r, ts),
        "t_speciation": windows.speciation_time(gm),
    }


def unreduced_item(cfg: Config, r: float, d: int, ref: dict, key) -> dict:
    """Part ``unreduced``, one ``d``: keep/forget ends in ``R^d`` (Monte Carlo inner expectation)."""
    gm, eps = symmetric_two_gaussians(r, d), cfg.eps
    opts = {"key": key, "n_outer": cfg.n_outer_unreduced, "n_inner": cfg.n_inner, "reduce": False}
    keep = windows.window_curve(gm, [0], [0], ref["keep"] + np.linspace(-0.3, 0.3, 7), **opts)
    forget = windows.window_curve(gm, [0], [0, 1], ref["forget"] + np.linspace(-0.3, 0.3, 7), **opts)
    wk, wf = windows.read_window(keep, eps), windows.read_window(forget, eps)
    return {
        "r": r,
        "d": d,
        "keep": wk.upper,
        "keep_se": wk.upper_stderr,
        "forget": wf.lower,
        "forget_se": wf.lower_stderr,
        "keep_curve": windows.curve_record(keep),
        "forget_curve": windows.curve_record(forget),
    }


def sde_vs_ode_item(cfg: Config, sym: dict | None, key) -> dict:
    """Part ``sde-vs-ode``: SDE (``sym`` if computed) and ODE windows, ODE bounds, routes (a) and (b)."""
    r = cfg.ode_separation
    gm = symmetric_two_gaussians(r, 1)
    ode = symmetric_windows(cfg, gm, r, key, "ode")
    keys = ("keep_curve", "forget_curve", "keep", "forget", "keep_se", "forget_se")
    sde = symmetric_windows(cfg, gm, r, key, bounds=False) if sym is None else sym
    out = {
        "r": r,
        "sde": {k: sde[k] for k in keys},
        "ode": {k: ode[k] for k in keys},
        "ode_keep_bounds": ode["keep_bounds"],
        "ode_forget_bounds": ode["forget_bounds"],
        "verify": {},
    }
    for sampler, crit in (("sde", out["sde"]), ("ode", out["ode"])):
        vt = verify_times(crit["keep"], crit["forget"], cfg.n_verify)
        opts = {"n_particles": cfg.n_particles, "n_steps": cfg.n_steps, "n_outer": cfg.n_outer}
        pairs = windows.compare_routes(gm, [0], [[0], [0, 1]], vt, key=key, sampler=sampler, **opts)
        for name, (a, b) in zip(("keep", "forget"), pairs, strict=True):
            out["verify"][f"{sampler}_{name}"] = {"a": windows.curve_record(a), "b": windows.curve_record(b)}
    return out


def tree_item(cfg: Config, gm, ts: np.ndarray, key, **curve_opts) -> dict:
    """Parts ``hierarchy``/``random``: per-node windows of the agglomerative tree and one route (b) check."""
    tree = windows.mixture_tree(gm)
    tw = windows.tree_windows(gm, tree, cfg.eps, ts, key=key, n_bound_samples=cfg.bound_samples, **curve_opts)
    out = windows.tree_windows_record(tw, cfg.eps) | {"tree": windows.tree_nested(tree)}
    if not cfg.verify_trees:
        return out
    # route (b) on (first leaf, its parent) inside its exact window region
    node = tree
    while not node.children[0].is_leaf:
        node = node.children[0]
    s_init, s_targ = node.children[0].components, node.components
    rec = next(n for n in out["nodes"] if n["node"] == list(s_targ))
    kid = next(k for k in rec["children"] if k["child"] == list(s_init))
    lo = kid["lichen"]["lower"] if np.isfinite(kid["lichen"]["lower"]) else kid["keep"]
    hi = kid["lichen"]["upper"] if np.isfinite(kid["lichen"]["upper"]) else kid["forget"]
    vt = verify_times(max(0.05, lo - 0.5), hi + 0.5, cfg.n_verify)
    opts = {"n_particles": cfg.n_particles, "n_steps": cfg.n_steps} | curve_opts
    ((a, b),) = windows.compare_routes(gm, s_init, [s_targ], vt, key=key, **opts)
    ab = {"a": windows.curve_record(a), "b": windows.curve_record(b)}
    return out | {"verify": {"s_init": list(s_init), "s_targ": list(s_targ)} | ab}


def cloning_item(cfg: Config, key) -> dict:
    """Part ``cloning``: measured ``phi(t)``, the two-Gaussian formula and the general Monte Carlo formula."""
    r, d = cfg.clone_separation, cfg.clone_dim
    gm = symmetric_two_gaussians(r, d)
    t_s = windows.speciation_time(gm)
    ts, fine = np.linspace(0.15, 2.2 * t_s, cfg.clone_times), np.linspace(0.02, 2.4 * t_s, 120)
    phi, se = windows.cloning_overlap(gm, ts, key=key, n=cfg.clone_particles, n_steps=cfg.clone_steps)
    general, general_se = windows.cloning_theory(gm, ts, key=jr.fold_in(key, 3), n_samples=20_000)

    def theory(t):
        return windows.two_gaussian_cloning(r, 1.0, t, gm.process)

    return {
        "r": r,
        "d": d,
        "t": ts,
        "phi": phi,
        "se": se,
        "fine_t": fine,
        "theory": theory(fine),
        "theory_at": theory(ts),
        "general": general,
        "general_se": general_se,
        "t_speciation": t_s,
        "phi_at_ts": float(theory(t_s)),
    }


def tree_children(tree: Tree):
    """``(tag, is_root, child record)`` for every (child, node) pair of a tree."""
    root = max(tree.nodes, key=lambda n: len(n["node"]))
    for n in tree.nodes:
        for k in n["children"]:
            yield f"{tree.label} child {k['child']} in {n['node']}", n is root, k


def lichen_contains(lc: dict, fb: dict) -> bool:
    """The exact Li-Chen window contains the theorem window ``[t_lower, t_upper]``."""
    return bool(np.isfinite(lc["lower"]) and lc["lower"] <= fb["t_lower"] and lc["upper"] >= fb["t_upper"])


def summary_row(config: str, w: dict, kb: dict, fb: dict, forget_ok: bool | None) -> dict:
    """One row of the configurations table: the window ``w`` (``keep``, ``forget``) beside its bounds."""
    keep, forget = w["keep"], w["forget"]
    bounds = {"t_upper": kb["t_upper"], "t_lower": fb["t_lower"], "t_lower_w2": fb["t_lower_w2"]}
    brackets = {"keep_bracketed": bool(keep >= kb["t_upper"]), "forget_bracketed": forget_ok}
    return {"config": config, "keep": keep, "forget": forget} | bounds | brackets


def tree_rows(tree: Tree) -> list[dict]:
    rows = []
    for tag, is_root, k in tree_children(tree):
        fb, lc = k["forget_bounds"], k["lichen"]
        nonempty = fb["t_lower"] <= fb["t_upper"]
        forget_ok = bool(k["forget"] <= fb["t_lower"]) if is_root or nonempty else None
        row = summary_row(tag, k, k["keep_bounds"], fb, forget_ok)
        if not is_root:
            if nonempty:
                row["lichen_bracketed"] = lichen_contains(lc, fb)
            row["lichen_window"] = [lc["lower"], lc["upper"]]
            row["theorem_window"] = [fb["t_lower"], fb["t_upper"]]
        rows.append(row)
    return rows


def route_checks(name: str, v: dict, note: str) -> list[Check]:
    """Route (a) vs route (b): ``|a - b| <= 4 sqrt(se_a^2 + se_b^2) + 0.005`` (discretisation allowance)."""
    a, b = v["a"], v["b"]
    return [
        check(
            name.replace("TV", what),
            np.asarray(a[k]),
            np.asarray(b[k]),
            4.0 * np.hypot(np.asarray(a[se]), np.asarray(b[se])) + 0.005,
            note=note,
        )
        for what, k, se in (("TV", "tv", "se"), ("retention", "ri", "ri_se"))
    ]


def tree_bracket_checks(tree: Tree) -> list[Check]:
    """Bracket checks for every (child, node) of a tree (the forget side only where the theorem claims)."""
    out = []
    for tag, is_root, k in tree_children(tree):
        kb, fb, lc = k["keep_bounds"], k["forget_bounds"], k["lichen"]
        nonempty = fb["t_lower"] <= fb["t_upper"]
        out.append(
            check(
                f"{tag}: keep >= T_upper (bound)",
                kb["t_upper"],
                k["keep"],
                0.0,
                relation="ge",
                note=f"keep s.e. {k['keep_se']:.3g}",
            )
        )
        if is_root or nonempty:
            why = "root: eps_lower = eps" if is_root else "non-root: eps/2 split, theorem window non-empty"
            out.append(
                check(
                    f"{tag}: forget <= T_lower (bound)",
                    fb["t_lower"],
                    k["forget"],
                    0.0,
                    relation="le",
                    note=why + f"; forget s.e. {k['forget_se']:.3g}",
                )
            )
        out.append(
            check(
                f"{tag}: T_lower <= T_lower_W2",
                fb["t_lower_w2"],
                fb["t_lower"],
                1e-6,
                relation="le",
                note="W2/KL closed form is an upper estimate of the forward TV",
            )
        )
        if not is_root and nonempty:
            out.append(
                check(
                    f"{tag}: exact Li-Chen window contains theorem window",
                    [fb["t_lower"], fb["t_upper"]],
                    [lc["lower"], lc["upper"]],
                    relation="true",
                    passed=lichen_contains(lc, fb),
                    note="TV(p^{c,T}, p^{node}) <= eps on [T_lower, T_upper] (eps split in halves)",
                )
            )
    return out
