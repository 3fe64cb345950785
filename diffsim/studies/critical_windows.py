r"""Study ``critical-windows``: exact critical windows of Gaussian mixtures against the theorem's bounds.

Reproduces the setting of Li & Chen, "Critical windows: non-asymptotic theory for feature emergence in
diffusion models" (ICML 2024), with the speciation/cloning picture of Biroli, Bonnaire, de Bortoli & Mézard
(2024) as a cross-check. All windows are *exact* (reweighting identity, route (a) of
:mod:`diffsim.analysis.windows`), verified against direct simulation (route (b)) and quadrature oracles.

Parts:

- ``symmetric``: ``1/2 N(±r e_1, I_d)`` over separations ``r``: keep/forget curves, the critical window
  ``[keep, forget]``, the bounds, the shift of the window with ``log r`` and its constant width;
  Gauss-Hermite oracle for the retention;
- ``unreduced``: the same windows *without* the exact dimension reduction for each ``d`` (Monte Carlo inner
  expectations in ``R^d``): invariance in ``d``;
- ``sde-vs-ode``: reverse SDE vs probability-flow ODE (the ODE forgets more slowly; its forget time equals
  the forward-TV crossing exactly) with route (b) simulations at a few ``T_hat``;
- ``hierarchy``: a 4-component two-level hierarchy ``±A e_1 ± B e_2`` with unequal weights: per-node
  windows of the agglomerative mixture tree, two distinct windows, decision times;
- ``random``: a random well-conditioned mixture in ``d = 16`` with unequal covariances: per-node windows
  and bounds, route (b) check;
- ``cloning``: ``phi(t)`` measured with :func:`diffsim.clone` against Biroli et al.'s two-Gaussian formula;
- ``summary``: the per-configuration table of windows and bounds;
- ``follow-up``: Li, Karan & Chen's (2025) dimension-free bound beside diffsim's on every configuration, its
  closed forms, and the eps-mixture tree against the exact per-node windows
  (:mod:`._critical_windows_follow_up`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import jax.random as jr
import numpy as np

from ..analysis import windows
from ..data import hierarchy_2d, random_two_clusters
from . import _critical_windows_follow_up as follow_up, _critical_windows_items as items
from ._figures import critical_windows as figures, critical_windows_follow_up as follow_up_figures
from ._runner import Check, Part, PartContext, Study, check, register_study


@dataclass(frozen=True)
class Config:
    """Configuration of the ``critical-windows`` study (OU process, tolerance ``eps``)."""

    eps: float = 0.05
    # A/B: symmetric two-Gaussian mixtures
    separations: tuple[float, ...] = (4.0, 8.0, 16.0)
    dims: tuple[int, ...] = (1, 4, 16)
    n_t_hats: int = 49
    n_outer: int = 20_000
    n_outer_unreduced: int = 8000
    n_inner: int = 32
    # C: SDE vs ODE
    ode_separation: float = 8.0
    # D: two-level hierarchy
    hierarchy: tuple[float, float] = (400.0, 4.0)
    hierarchy_weights: tuple[float, float, float, float] = (0.4, 0.2, 0.25, 0.15)
    hierarchy_n_outer: int = 4000
    hierarchy_n_gh: int = 12
    hierarchy_n_t_hats: int = 37
    # E: random mixture
    random_dim: int = 16
    random_centre: float = 300.0
    random_offset: float = 3.0
    random_n_outer: int = 3000
    random_n_inner: int = 16
    random_n_t_hats: int = 29
    bound_samples: int = 8000
    # route (b) simulations
    n_particles: int = 8000
    n_steps: int = 100
    n_verify: int = 3
    verify_trees: bool = True
    numerical_bounds: bool = True
    # F: cloning
    clone_separation: float = 4.0
    clone_dim: int = 4
    clone_times: int = 10
    clone_particles: int = 2000
    clone_steps: int = 200
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < self.eps < 0.5:
            raise ValueError(f"`eps` must lie in (0, 0.5), got {self.eps}.")
        if len(self.separations) < 2 or min(self.separations) <= 0:
            raise ValueError(
                "`separations` needs at least two positive values (the log r shift is a comparison)."
            )
        if not self.dims or min(self.dims) < 1:
            raise ValueError("`dims` must be positive integers.")
        if self.n_verify < 1 or self.n_t_hats < 8 or self.hierarchy_n_t_hats < 8 or self.random_n_t_hats < 8:
            raise ValueError("`n_verify` >= 1 and every `*n_t_hats` >= 8 are required.")
        if len(self.hierarchy) != 2 or not self.hierarchy[0] > self.hierarchy[1] > 0:
            raise ValueError("`hierarchy` must be (A, B) with A > B > 0.")
        if abs(sum(self.hierarchy_weights) - 1.0) > 1e-9 or min(self.hierarchy_weights) <= 0:
            raise ValueError("`hierarchy_weights` must be four positive weights summing to one.")
        if self.random_dim < 2 or self.clone_dim < 1:
            raise ValueError("`random_dim` must be >= 2 and `clone_dim` >= 1.")


QUICK = {
    "separations": (4.0, 8.0),
    "dims": (1, 8),
    "n_t_hats": 17,
    "n_outer": 4000,
    "n_outer_unreduced": 2000,
    "n_inner": 16,
    "hierarchy_n_outer": 1000,
    "hierarchy_n_gh": 10,
    "hierarchy_n_t_hats": 13,
    "random_n_outer": 800,
    "random_n_inner": 8,
    "random_n_t_hats": 11,
    "bound_samples": 1500,
    "n_particles": 2000,
    "n_steps": 50,
    "n_verify": 1,
    "verify_trees": False,
    "numerical_bounds": False,
    "clone_times": 3,
    "clone_particles": 800,
    "clone_steps": 60,
}


# =====================================================================================================
# part results (per-item records are the JSON dicts of :mod:`diffsim.analysis.windows` ``*_record``)
# =====================================================================================================
@dataclass(frozen=True)
class Symmetric:
    """Per ``r``: curves, critical window, bounds, GH retention oracle, ``t_S``; large-``r`` asymptotes."""

    mixtures: list[dict]
    a_keep: float
    a_forget: float


@dataclass(frozen=True)
class Unreduced:
    """Windows computed in ``R^d`` without the reduction (``rows``) beside the reduced ``reference``."""

    r: float
    rows: list[dict]
    reference: dict = field(metadata={"json": False})
    symmetric: list[dict] = field(metadata={"json": False})


@dataclass(frozen=True)
class SdeVsOde:
    """SDE and ODE windows at one ``r``, the ODE bounds and route (a) beside route (b) (``verify``)."""

    r: float
    sde: dict
    ode: dict
    ode_keep_bounds: dict
    ode_forget_bounds: dict
    verify: dict


@dataclass(frozen=True)
class Tree:
    """Per-node windows of a mixture tree, the tree as nested lists, decision order/times, route check."""

    label: str
    nodes: list[dict]
    order: list[str]
    times: list[float]
    tree: Any
    verify: dict | None = None


@dataclass(frozen=True)
class Cloning:
    """Measured overlap ``phi`` (s.e. ``se``) at ``t``, two-Gaussian theory, general Monte Carlo formula."""

    r: float
    d: int
    t: list[float]
    phi: list[float]
    se: list[float]
    fine_t: list[float]
    theory: list[float]
    theory_at: list[float]
    general: list[float]
    general_se: list[float]
    t_speciation: float
    phi_at_ts: float


@dataclass(frozen=True)
class Summary:
    """One row per configuration: exact window, bounds and whether the bounds bracket it."""

    configurations: list[dict]
    n_bracketed: int
    trees: list = field(default_factory=list, metadata={"json": False})


# =====================================================================================================
# compute
# =====================================================================================================
def compute_symmetric(cfg: Config, ctx: PartContext) -> Symmetric:
    key, seps = jr.key(cfg.seed), ctx.progress(cfg.separations, "symmetric r")
    sym = [
        ctx.cache(f"sym_r{r:g}", lambda r=r, i=i: items.symmetric_item(cfg, r, jr.fold_in(key, 100 + i)))
        for i, r in enumerate(seps)
    ]
    return Symmetric(sym, *windows.symmetric_window_asymptotes(cfg.eps))


def compute_unreduced(cfg: Config, ctx: PartContext) -> Unreduced:
    key, sym = jr.key(cfg.seed), ctx.results["symmetric"].mixtures
    r = cfg.separations[len(cfg.separations) // 2]
    ref = next(s for s in sym if s["r"] == r)
    dims = ctx.progress([d for d in cfg.dims if d > 1], "unreduced d")
    rows = [
        ctx.cache(
            f"unreduced_r{r:g}_d{d}",
            lambda d=d, j=j: items.unreduced_item(cfg, r, d, ref, jr.fold_in(key, 200 + j)),
        )
        for j, d in enumerate(dims)
    ]
    if 1 in cfg.dims:
        ctx.note("d = 1 needs no reduction: the reduced computation *is* the 1-D computation.")
    return Unreduced(r, rows, ref, sym)


def compute_sde_vs_ode(cfg: Config, ctx: PartContext) -> SdeVsOde:
    sym = next((s for s in ctx.results["symmetric"].mixtures if s["r"] == cfg.ode_separation), None)
    key = jr.fold_in(jr.key(cfg.seed), 300)
    return SdeVsOde(**ctx.cache(f"ode_r{cfg.ode_separation:g}", lambda: items.sde_vs_ode_item(cfg, sym, key)))


def _tree_part(cfg: Config, ctx: PartContext, label: str, gm, ts, salt: int, **opts) -> Tree:
    key = jr.fold_in(jr.key(cfg.seed), salt)
    tree = Tree(label, **ctx.cache(label.split()[0], lambda: items.tree_item(cfg, gm, ts, key, **opts)))
    for tag, is_root, k in items.tree_children(tree):
        lo, up = k["forget_bounds"]["t_lower"], k["forget_bounds"]["t_upper"]
        if not (is_root or lo <= up):
            ctx.note(
                f"{tag}: theorem window [{lo:.3f}, {up:.3f}] is empty (the sufficient separation condition "
                "fails), so the forget side makes no claim."
            )
    return tree


def compute_hierarchy(cfg: Config, ctx: PartContext) -> Tree:
    gm = hierarchy_2d(*cfg.hierarchy, cfg.hierarchy_weights)
    ts = np.linspace(0.02, math.log(cfg.hierarchy[0]) + 3.2, cfg.hierarchy_n_t_hats)
    opts = {"n_outer": cfg.hierarchy_n_outer, "n_gh": cfg.hierarchy_n_gh}
    return _tree_part(cfg, ctx, "hierarchy", gm, ts, 400, **opts)


def compute_random(cfg: Config, ctx: PartContext) -> Tree:
    gm = random_two_clusters(cfg.random_dim, cfg.random_centre, cfg.random_offset, seed=cfg.seed + 16)
    ts = np.linspace(0.02, math.log(cfg.random_centre) + 3.0, cfg.random_n_t_hats)
    opts = {"n_outer": cfg.random_n_outer, "n_inner": cfg.random_n_inner}
    return _tree_part(cfg, ctx, f"random d={cfg.random_dim}", gm, ts, 500, **opts)


def compute_cloning(cfg: Config, ctx: PartContext) -> Cloning:
    return Cloning(**ctx.cache("cloning", lambda: items.cloning_item(cfg, jr.fold_in(jr.key(cfg.seed), 600))))


# =====================================================================================================
# checks (hand-laid tables of predictions: one check per statement)
# =====================================================================================================
# fmt: off
def checks_symmetric(cfg: Config, r: Symmetric) -> list[Check]:
    out = []
    for s in r.mixtures:
        tag, kb, fb, ri = f"sym r={s['r']:g}", s["keep_bounds"], s["forget_bounds"], s["keep_curve"]["ri"]
        out += [
            check(f"{tag}: keep >= T_upper (Girsanov, closed form)", kb["t_upper"], s["keep"], 0.0,
                  relation="ge", note=f"keep s.e. {s['keep_se']:.3g}"),
            check(f"{tag}: forget <= T_lower (exact forward TV)", fb["t_lower"], s["forget"], 0.0,
                  relation="le", note=f"forget s.e. {s['forget_se']:.3g}"),
            check(f"{tag}: T_lower <= T_lower_W2", fb["t_lower_w2"], fb["t_lower"], 1e-6, relation="le"),
        ]
        if cfg.numerical_bounds:
            out.append(check(f"{tag}: keep >= T_upper (Girsanov, Monte Carlo integral)",
                             kb["t_upper_numerical"], s["keep"], 0.0, relation="ge",
                             note="same Girsanov-Pinsker bound without the Bhattacharyya step"))
        out += [
            check(f"{tag}: retention vs Gauss-Hermite oracle", np.asarray(s["oracle_retention"]),
                  np.asarray(ri), 4.0 * np.asarray(s["keep_curve"]["ri_se"]) + 2e-4,
                  note="oracle R = 2 E[P(+|X_0) P(+|X_T)] by 200x200 Gauss-Hermite; tol 4 s.e. + 2e-4 "
                  "(quadrature)"),
            check(f"{tag}: speciation time inside [keep, forget]", [s["keep"], s["forget"]],
                  s["t_speciation"], relation="true",
                  passed=bool(s["keep"] <= s["t_speciation"] <= s["forget"]),
                  note="Biroli et al. t_S = 1/2 log(1 + r^2)"),
        ]
    errs = [math.hypot(s["keep_se"], s["forget_se"]) for s in r.mixtures]
    for name, fn in (("keep - log r", lambda s: s["keep"] - math.log(s["r"])),
                     ("forget - log r", lambda s: s["forget"] - math.log(s["r"])),
                     ("width forget - keep", lambda s: s["forget"] - s["keep"])):
        out.append(check(f"sym: {name} independent of r", fn(r.mixtures[0]), [fn(s) for s in r.mixtures],
                         [0.03 + 4 * math.hypot(e, errs[0]) for e in errs],
                         note="window location shifts like log r, width constant; tol 0.03 for O(e^{-r^2}) "
                         "corrections"))
    for end, a, tv in (("keep", r.a_keep, "1 - R with R = E sigmoid(2a(a+Z)) (well-separated limit)"),
                       ("forget", r.a_forget, "R - 1/2")):
        out.append(check(f"sym: {end} - log r vs large-r asymptote -log a_{end}", -math.log(a),
                         [s[end] - math.log(s["r"]) for s in r.mixtures], 0.05,
                         note=f"asymptote uses TV ~ {tv}"))
    return out


def checks_unreduced(cfg: Config, r: Unreduced) -> list[Check]:
    ref = r.reference
    return [
        check(f"sym r={r.r:g} d={u['d']}: {name} (unreduced MC in R^d) = reduced value", ref[name], u[name],
              4 * math.hypot(u[f"{name}_se"], ref[f"{name}_se"]) + 0.01,
              note="d-invariance; Monte Carlo inner expectation with split-half bias correction; "
              "tol 4 s.e. + 0.01 (grid interpolation)")
        for u in r.rows for name in ("keep", "forget")
    ]


def checks_sde_vs_ode(cfg: Config, r: SdeVsOde) -> list[Check]:
    ode, kb, fb = r.ode, r.ode_keep_bounds, r.ode_forget_bounds
    tol = 4 * ode["forget_se"] + 0.01
    out = [
        check("ODE forgets more slowly: forget_ODE > forget_SDE", r.sde["forget"], ode["forget"], 0.0,
              relation="ge", note="SDE forget ~ log(r/sqrt(2 eps)), ODE ~ log(r/(eps sqrt(2 pi)))"),
        check("ODE forget = forward-TV crossing (bijection identity)", fb["t_lower"], ode["forget"], tol,
              note="TV(Phi_# p^+_T, Phi_# p_T) = TV(p^+_T, p_T): the T_lower bound is attained by the ODE"),
        check("ODE keep >= T_upper (posterior transport, closed form)", kb["t_upper"], ode["keep"], 0.0,
              relation="ge"),
    ]
    if cfg.numerical_bounds:
        out.append(check("ODE keep >= T_upper (posterior transport, Monte Carlo integral)",
                         kb["t_upper_numerical"], ode["keep"], 4 * ode["keep_se"] + 0.02, relation="ge",
                         note="equality is expected here: the posterior is monotone along each flow line of "
                         "the symmetric mixture, so int |dP/dt| = |int dP/dt| and the bound is attained "
                         "(tol: MC + t-grid)"))
    out.append(check("ODE: forget <= T_lower (exact forward TV)", fb["t_lower"], ode["forget"], tol,
                     relation="le"))
    note = f"{cfg.n_particles} particles, {cfg.n_steps} steps; route (b) measures q(A) - p^targ(A)"
    for name, v in r.verify.items():
        out += items.route_checks(f"routes agree ({name}, r={r.r:g}): TV identity vs simulation", v, note)
    return out


def checks_tree(cfg: Config, r: Tree) -> list[Check]:
    out = []
    if r.label == "hierarchy":
        root = max(r.nodes, key=lambda n: len(n["node"]))
        inner = [n for n in r.nodes if n is not root]
        fine_forget = max(k["forget"] for n in inner for k in n["children"])
        out = [
            check("hierarchy: agglomerative tree recovers the two levels", [[0, 1], [2, 3]], r.tree,
                  relation="true", passed=sorted(sorted(g) for g in r.tree) == [[0, 1], [2, 3]]),
            check("hierarchy: two distinct windows (fine forgotten before coarse decided)",
                  min(k["keep"] for k in root["children"]), fine_forget, 0.0, relation="le",
                  note="max forget of the B-level features < min keep of the A-level feature"),
            check("hierarchy: decision times ordered coarse -> fine", root["decision_time"],
                  [n["decision_time"] for n in inner], relation="true",
                  passed=all(root["decision_time"] > n["decision_time"] for n in inner)),
        ]
    out += items.tree_bracket_checks(r)
    if r.verify is not None:
        v = r.verify
        how = ("2-D Gauss-Hermite inner quadrature" if r.label == "hierarchy"
               else "Monte Carlo inner expectation (bias corrected)")
        out += items.route_checks(f"routes agree ({r.label} {v['s_init']} -> {v['s_targ']}): TV identity vs "
                             "simulation", v, f"SDE, {how} vs ddpm simulation")
    return out


def checks_cloning(cfg: Config, r: Cloning) -> list[Check]:
    return [
        check("cloning phi(t) vs Biroli et al. two-Gaussian formula", r.theory_at, r.phi,
              4 * np.asarray(r.se) + 0.01,
              note=f"euler_maruyama, {cfg.clone_steps} steps; tol 4 s.e. + 0.01 (discretisation)"),
        check("cloning theory: formula = E[sum_g P(g|x_t)^2] by Monte Carlo", r.theory_at, r.general,
              4 * np.asarray(r.general_se) + 1e-4),
    ]
# fmt: on


# =====================================================================================================
# summary and the study
# =====================================================================================================
def compute_summary(cfg: Config, ctx: PartContext) -> Summary:
    """The per-configuration table: exact windows beside the bounds that must bracket them."""
    res, rows = ctx.results, []
    for s in res["symmetric"].mixtures:
        ok = bool(s["forget"] <= s["forget_bounds"]["t_lower"])
        rows.append(
            items.summary_row(f"sym r={s['r']:g} (every d)", s, s["keep_bounds"], s["forget_bounds"], ok)
        )
    o = res["sde-vs-ode"]
    ok = bool(o.ode["forget"] <= o.ode_forget_bounds["t_lower"] + 4 * o.ode["forget_se"] + 0.01)
    rows.append(items.summary_row(f"ODE r={o.r:g}", o.ode, o.ode_keep_bounds, o.ode_forget_bounds, ok))
    rows += items.tree_rows(res["hierarchy"]) + items.tree_rows(res["random"])
    n_br = sum(1 for row in rows if row.get("keep_bracketed") and row.get("forget_bracketed") in (True, None))
    ctx.note(
        f"Bounds bracket the exact windows in {n_br} of {len(rows)} configurations "
        "(a non-claim on an empty theorem window counts as bracketing)."
    )
    return Summary(rows, n_br, [(t.label, asdict(t)) for t in (res["hierarchy"], res["random"])])


def _answer(cfg: Config, results: dict[str, Any]) -> str:
    sym, ode, s = results["symmetric"], results["sde-vs-ode"], results["summary"]
    ends = "; ".join(f"r={m['r']:g}: [{m['keep']:.2f}, {m['forget']:.2f}]" for m in sym.mixtures)
    return (
        f"At eps = {cfg.eps:g} the exact critical windows [keep, forget] (OU time) of 1/2 N(±r e_1, I) are "
        f"{ends}: they shift like log r with a constant width, the same in every dimension. The "
        f"probability-flow ODE forgets later ({ode.ode['forget']:.2f} vs {ode.sde['forget']:.2f} for the SDE "
        f"at r = {ode.r:g}). The theorem's bounds bracket the exact windows in {s.n_bracketed} of "
        f"{len(s.configurations)} configurations, the two-level hierarchy and a random mixture in "
        f"d = {cfg.random_dim} included."
    )


STUDY = register_study(
    Study(
        name="critical-windows",
        config=Config,
        parts=[
            Part("symmetric", compute_symmetric, checks_symmetric, figures.symmetric),
            Part("unreduced", compute_unreduced, checks_unreduced, figures.collapse),
            Part("sde-vs-ode", compute_sde_vs_ode, checks_sde_vs_ode, figures.sde_vs_ode),
            Part("hierarchy", compute_hierarchy, checks_tree, figures.hierarchy),
            Part("random", compute_random, checks_tree, figures.random_mixture),
            Part("cloning", compute_cloning, checks_cloning, figures.cloning),
            Part("summary", compute_summary, None, figures.decision_trees),
            Part(
                "follow-up",
                follow_up.compute_follow_up,
                follow_up.checks_follow_up,
                follow_up_figures.follow_up,
            ),
        ],
        quick=QUICK,
        description="Critical windows (Li & Chen 2024): exact windows vs bounds, hierarchy, SDE vs ODE, "
        "cloning",
        question="Do the theorem's bounds bracket the exact critical windows of Gaussian mixtures, and how "
        "do the windows move with separation, dimension, sampler and hierarchy?",
        answer=_answer,
        headline="windows_symmetric",
    )
)
