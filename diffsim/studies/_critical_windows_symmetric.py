"""Parts ``symmetric``, ``unreduced`` and ``sde-vs-ode`` of the ``critical-windows`` study (see
:mod:`diffsim.studies.critical_windows`): the two-Gaussian mixture ``1/2 N(±r e_1, I_d)`` of Li & Chen
(ICML 2024). Exact keep/forget curves and critical windows over separations ``r`` against the Girsanov and
forward-TV bounds, the window's ``log r`` shift and constant width, their invariance in ``d`` without the
exact dimension reduction, and the reverse SDE against the probability-flow ODE (whose forget time is the
forward-TV crossing)."""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

import equinox as eqx
import jax.random as jr
import numpy as np

from ..analysis import windows
from . import _critical_windows_items as items
from ._runner import Check, PartContext, check


Config = Any  # the study's Config, by name only (critical_windows imports this module, not back)


class Symmetric(eqx.Module):
    """Per ``r``: curves, critical window, bounds, GH retention oracle, ``t_S``; large-``r`` asymptotes."""

    mixtures: list[dict]
    a_keep: float
    a_forget: float


class Unreduced(eqx.Module):
    """Windows computed in ``R^d`` without the reduction (``rows``) beside the reduced ``reference``."""

    r: float
    rows: list[dict]
    reference: dict = field(metadata={"json": False})
    symmetric: list[dict] = field(metadata={"json": False})


class SdeVsOde(eqx.Module):
    """SDE and ODE windows at one ``r``, the ODE bounds and route (a) beside route (b) (``verify``)."""

    r: float
    sde: dict
    ode: dict
    ode_keep_bounds: dict
    ode_forget_bounds: dict
    verify: dict


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
# fmt: on
