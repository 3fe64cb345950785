r"""Study ``guidance``: confidence and diversity under guided DDPM and DDIM (Wu et al., ICML 2024).

Wu, Chen, Li, Wang & Wei, "Theoretical insights for diffusion guidance: a case study for Gaussian mixture
models": with the exact noisy classifier of a Gaussian mixture, guidance raises the classification
confidence ``E[p_0(y|X)]`` and lowers the differential entropy of the output, for DDPM (reverse SDE) and
DDIM (probability-flow ODE). Strength convention: the diffsim guidance scale ``w`` in
``s_u + w grad log p_t(y|x)``; the paper's ``eta = w - 1`` (``w = 1`` is plain conditional sampling).

Cases (OU process, ``t in [1e-3, 10]``, prior ``N(0, I)``):

- ``sym1d``: ``N(-r, 1)``, ``N(+r, 1)`` (``r = 2``), target ``+``;
- ``symd``: the same along a random unit direction in ``d = high_dim`` (projects exactly to 1-D);
- ``collinear_middle`` / ``collinear_end``: 1-D means ``(-3, 0, 3)``, target the middle / right one;
- ``obtuse2d``: target ``(0, 0)``, others ``(-3, 1)``, ``(3, 1)`` (violates the angle condition);
- a search over random three-component 1-D mixtures, with identity covariances and with unequal
  variances (log-uniform in ``[0.1, 4]``) and weights, for strong-guidance distortions (multimodal output
  of a unimodal target), recording whether a non-target component narrower than the target is present.

Besides the sweeps: a calibration of the kNN entropy estimator on Gaussians (``d = 1, 2, 4, 8``), the
unguided DDIM from the exact conditional prior (pathwise translation), and Fokker-Planck mass and
positivity on every solve.

Every theory statement is a check in ``results.json``; see docs/guidance.md for the theory and protocol.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis import guidance as A
from ..analysis.entropy import gaussian_entropy, knn_entropy
from ..analysis.fokker_planck import FokkerPlanckGrid
from ..processes import VP
from ..sampling import flow
from ..scores.guidance import guided_mixture
from ..scores.mixture import GaussianMixture
from ._runner import ResultCache, Results, progress_bar, register


CASES = ("sym1d", "symd", "collinear_middle", "collinear_end", "obtuse2d")
LOG_2PI_E = math.log(2 * math.pi * math.e)
# the obtuse 2-D Fokker-Planck box: guidance pushes the target's mass along -e_2, away from the others
_BOX_2D = ([-8.5, -10.5], [8.5, 6.5])
_BOX_2D_WIDTH = 17.0
_MIN_CELLS_2D = math.ceil(3 * _BOX_2D_WIDTH) + 1  # > 3 cells per unit standard deviation


@dataclass(frozen=True)
class Config:
    """Guidance study configuration (strengths are diffsim scales ``w``; ``eta = w - 1``)."""

    scales: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 5.0, 11.0)
    scales_2d: tuple[float, ...] = (1.0, 2.0, 5.0, 11.0)
    radius: float = 2.0
    high_dim: int = 8
    n_particles: int = 8_000
    n_pf_ode: int = 1_000
    steps: tuple[int, ...] = (10, 100, 1000)
    fp_cells_1d: int = 400
    fp_cells_2d: int = 64
    flow_rate_steps: int = 400
    cases: tuple[str, ...] = CASES
    search_trials: int = 16
    search_scales: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0, 11.0)
    seed: int = 0

    def __post_init__(self):
        for nm in ("scales", "scales_2d"):
            sc = getattr(self, nm)
            if len(sc) < 2 or any(b <= a for a, b in itertools.pairwise(sc)):
                raise ValueError(f"`{nm}` must hold at least two strictly increasing guidance scales w.")
            if min(sc) < 1.0:
                raise ValueError(
                    f"`{nm}` must be >= 1 (w = 1 is conditional sampling, eta = w - 1 >= 0: the "
                    "regime of Wu et al.'s theorems)."
                )
        unknown = set(self.cases) - set(CASES)
        if unknown:
            raise ValueError(f"Unknown cases {sorted(unknown)}; choose from {CASES}.")
        if self.n_particles < 100 or self.n_pf_ode < 50:
            raise ValueError("`n_particles` >= 100 and `n_pf_ode` >= 50 are needed.")
        if not self.steps or any(s < 1 for s in self.steps):
            raise ValueError("`steps` must be positive step counts.")
        if self.high_dim < 2:
            raise ValueError("`high_dim` must be >= 2.")
        if self.fp_cells_1d < 16:
            raise ValueError("`fp_cells_1d` must be >= 16 (the Fokker-Planck solver's minimum).")
        if self.fp_cells_2d < _MIN_CELLS_2D:
            raise ValueError(
                f"`fp_cells_2d` must be >= {_MIN_CELLS_2D}: the obtuse 2-D box is {_BOX_2D_WIDTH:g} wide and "
                "the unit-variance components need >= 3 cells per standard deviation."
            )
        if self.search_trials < 0 or len(self.search_scales) < 1 or min(self.search_scales) < 0:
            raise ValueError("`search_trials` must be >= 0 and `search_scales` non-empty and >= 0.")


def _mixtures(config: Config) -> dict[str, tuple[GaussianMixture, int, dict[str, Any]]]:
    r = config.radius
    p = VP.ou()
    rng = np.random.default_rng(config.seed)
    u = rng.normal(size=config.high_dim)
    u /= np.linalg.norm(u)
    half = jnp.array([0.5, 0.5])
    third = jnp.full((3,), 1.0 / 3.0)
    line = jnp.array([[-3.0], [0.0], [3.0]])
    return {
        "sym1d": (GaussianMixture(half, jnp.array([[-r], [r]]), 1.0, process=p), 1, {"theorem": True}),
        "symd": (
            GaussianMixture(half, jnp.asarray(np.stack([-r * u, r * u]), jnp.float32), 1.0, process=p),
            1,
            {"theorem": True},
        ),
        "collinear_middle": (GaussianMixture(third, line, 1.0, process=p), 1, {"theorem": False}),
        "collinear_end": (GaussianMixture(third, line, 1.0, process=p), 2, {"theorem": True}),
        "obtuse2d": (
            GaussianMixture(third, jnp.array([[0.0, 0.0], [-3.0, 1.0], [3.0, 1.0]]), 1.0, process=p),
            0,
            {"theorem": False},
        ),
    }


def _case_sweep(name: str, mix: GaussianMixture, label: int, config: Config, key) -> A.GuidanceSweep:
    """One case; 1-D problems run every step count, d >= 2 only those <= 100 (cost), and the 2-D
    Fokker-Planck solves (the most expensive part) use ``scales_2d`` on a box fitted to the obtuse case."""
    d = mix.dim
    steps = config.steps if d == 1 else tuple(s for s in config.steps if s <= 100) or config.steps[:1]
    fp_grid = None
    scales = config.scales
    if d == 2 and A.projected_problem(mix, label) is None:
        fp_grid = FokkerPlanckGrid(*_BOX_2D, config.fp_cells_2d)
        scales = config.scales_2d
    return A.guidance_sweep(
        mix,
        label,
        scales,
        key=key,
        n=config.n_particles,
        steps=steps,
        n_pf_ode=config.n_pf_ode,
        fp_grid=fp_grid,
        fp_cells=config.fp_cells_1d,
        flow_rate_steps=config.flow_rate_steps,
        map_entropy_max_dim=2,
        knn_max_n=min(config.n_particles, 4_000 if d > 2 else 20_000),
        keep_samples=(d <= 2),
    )


def _min_step(values: np.ndarray) -> float:
    return float(np.min(np.diff(values)))


def _max_step(values: np.ndarray) -> float:
    return float(np.max(np.diff(values)))


def _checks(
    res: Results,
    name: str,
    mix: GaussianMixture,
    label: int,
    sweep: A.GuidanceSweep,
    meta: dict,
    config: Config,
) -> None:
    laws = sweep.laws
    finest = [law for law in laws if "@" in law]
    ddim_fine = max((law for law in finest if law.startswith("ddim@")), key=lambda s: int(s.split("@")[1]))
    ddpm_fine = max((law for law in finest if law.startswith("ddpm@")), key=lambda s: int(s.split("@")[1]))
    scope = (
        "within the theorem's condition"
        if meta["theorem"]
        else "outside the theorem's condition (reported, not implied by Wu et al.)"
    )
    # confidence monotone in w (averages) and pathwise under shared noise
    for law in ("ddim", "ddpm", ddim_fine, ddpm_fine):
        if law not in laws:
            continue
        res.check(
            f"{name}: E[p0(y|X)] non-decreasing in w [{law}]",
            0.0,
            _min_step(laws[law]["confidence"]),
            1e-6,
            relation="ge",
            note=f"min successive difference; {scope}",
        )
        res.check(
            f"{name}: E[1/p0(y|X)] non-increasing in w [{law}]",
            0.0,
            _max_step(laws[law]["inv_confidence"]),
            1e-6,
            relation="le",
            note="max successive difference (Li & Jiao 2025)",
        )
    for law in sweep.log_confidence:
        frac = A.pathwise_monotone_fraction(sweep.log_confidence[law], atol=1e-6)
        res.metric(f"{name}/pathwise_fraction/{law}", frac)
        if meta["theorem"] and law in ("ddim", ddim_fine, ddpm_fine):
            res.check(
                f"{name}: pathwise confidence monotone under shared noise [{law}]",
                1.0,
                frac,
                0.0,
                relation="abs",
                note="fraction of particles whose p0(y|X) never decreases as w grows: the "
                "comparison theorem (K = 2, or collinear means with y extreme)",
            )
    # DDIM entropy decreases with w, by every route
    for route in (k.split("/", 1)[1] for k in laws["ddim"] if k.startswith("entropy/")):
        h = laws["ddim"][f"entropy/{route}"]
        se = laws["ddim"][f"entropy_se/{route}"]
        tol = float(3 * np.sqrt(2) * np.max(se)) if np.any(se > 0) else (0.03 if route == "knn" else 1e-6)
        extra = ""
        if route == "fokker_planck":  # only the strengths whose output the grid still resolves
            keep = laws["ddim"]["fp_resolved"] > 0.5
            extra = f"; strengths the grid resolves (>= 2 cells per std): {int(keep.sum())}/{keep.size}"
            h = h[keep]
            if h.size < 2:
                continue
        res.check(
            f"{name}: DDIM entropy decreasing in w [{route}]",
            0.0,
            _max_step(h),
            tol,
            relation="le",
            note="max successive difference (continuous-limit DDIM; tolerance: 3 sd of a difference for "
            "PF-ODE Monte Carlo, 0.03 nats for kNN (its sd at these sizes), 1e-6 for deterministic routes)"
            + extra,
        )
    if "entropy/map" in laws.get(ddim_fine, {}):
        res.check(
            f"{name}: DDIM entropy decreasing in w [{ddim_fine}, exact map Jacobian]",
            0.0,
            _max_step(laws[ddim_fine]["entropy/map"]),
            float(3 * np.sqrt(2) * np.max(laws[ddim_fine]["entropy_se/map"])),
            relation="le",
            note="finite-step DDIM, change of variables through the discrete map",
        )
    # unguided DDIM reproduces the class-conditional Gaussian (single unit-variance component)
    if "entropy/quadrature" in laws["ddim"] and len(mix.condition(label).weights) == 1:
        res.check(
            f"{name}: unguided DDIM output entropy = h(N(mu_y, I))",
            0.5 * mix.dim * LOG_2PI_E,
            float(laws["ddim"]["entropy/quadrature"][0]),
            1e-3,
            note="w = 1 (eta = 0), Gauss-Hermite",
        )
        res.check(
            f"{name}: unguided DDIM output variance along u = 1", 1.0, float(laws["ddim"]["var_u"][0]), 1e-3
        )
    # Fokker-Planck: conservative and positivity preserving on every solve of this case
    if sweep.fokker_planck:
        sols = [sol for dyn in sorted(sweep.fokker_planck) for sol in sweep.fokker_planck[dyn]]
        mass_err = max(float(np.max(np.abs(np.asarray(sol.mass, np.float64) - 1.0))) for sol in sols)
        min_dens = min(float(sol.min_density) for sol in sols)
        n_max = max(int(sol.n_steps) for sol in sols)
        eps = float(np.finfo(np.asarray(sols[0].density).dtype).eps)
        res.check(
            f"{name}: Fokker-Planck solver conserves mass",
            0.0,
            mass_err,
            10 * eps * math.sqrt(n_max),
            note=f"max |mass - 1| over every snapshot of {len(sols)} solves (DDIM and DDPM, every w). The fluxes "
            "telescope exactly; what remains is the rounding of p + dt rhs, a random walk of ~eps per step: "
            f"tolerance 10 eps sqrt(n_steps) with eps = {eps:.2g}, n_steps = {n_max} (the same solves in "
            "float64 conserve mass to 1e-14)",
        )
        res.check(
            f"{name}: Fokker-Planck solver stays non-negative",
            0.0,
            min_dens,
            0.0,
            relation="ge",
            note="smallest cell value met at any stage of any step",
        )
    # Fokker-Planck vs the other routes
    if "entropy/fokker_planck" in laws["ddim"]:
        ref_route = "quadrature" if "entropy/quadrature" in laws["ddim"] else "pf_ode"
        ref = laws["ddim"][f"entropy/{ref_route}"]
        se = laws["ddim"][f"entropy_se/{ref_route}"]
        fp = laws["ddim"]["entropy/fokker_planck"]
        resolved = laws["ddim"]["fp_resolved"] > 0.5
        well = laws["ddim"]["fp_cells_per_std"] >= 8.0
        tol = 0.05 + 4 * float(np.max(se))
        err = np.abs(fp - ref)
        res.metric(
            f"{name}/fp_ode_entropy_error",
            {"error": err.tolist(), "cells_per_std": laws["ddim"]["fp_cells_per_std"].tolist()},
        )
        if well.any():
            res.check(
                f"{name}: Fokker-Planck (ODE) entropy = PF-ODE entropy [{ref_route}]",
                0.0,
                float(err[well].max()),
                tol,
                note=f"max over the {int(well.sum())}/{well.size} strengths whose output spans >= 8 cells "
                "per std (the solver's numerical diffusion grows as the DDIM output narrows; errors at every "
                "w are in the metrics); 0.05 nats: discretisation error at >= 8 cells per std (docs)",
            )
        else:
            res.note(
                f"{name}: no strength spans >= 8 cells per std on the Fokker-Planck grid (cells per std "
                f"{np.round(laws['ddim']['fp_cells_per_std'], 2).tolist()}), so the grid entropy is not "
                "compared with the PF-ODE one here; the densities are used for the figure and the DDPM "
                "summaries."
            )
        if not resolved.all():
            res.note(
                f"{name}: the DDIM output collapses below the grid resolution at w = "
                f"{sweep.scales[~resolved].tolist()}: the continuous DDIM law concentrates (entropy -> -inf)."
            )
    if (
        "ddpm" in laws
        and "entropy/knn" in laws.get(ddpm_fine, {})
        and mix.dim <= 2
        and int(ddpm_fine.split("@")[1]) >= 1000
    ):
        err = np.abs(laws["ddpm"]["entropy/fokker_planck"] - laws[ddpm_fine]["entropy/knn"])
        res.check(
            f"{name}: Fokker-Planck (SDE) entropy = kNN of {ddpm_fine} particles",
            0.0,
            float(err.max()),
            0.08,
            note="max over w; tolerance: kNN sd ~0.01-0.02 plus the finite-step DDPM bias at >= 1000 steps "
            "(docs)",
        )
    if "ddpm" in laws:
        res.check(
            f"{name}: DDPM (continuous) entropy decreasing in w [fokker_planck]",
            0.0,
            _max_step(laws["ddpm"]["entropy/fokker_planck"]),
            1e-6,
            relation="le",
            note="not a theorem of Wu et al. for general mixtures (reported)",
        )
        v_ode, v_sde = laws["ddim"]["var_u"], laws["ddpm"]["var_u"]
        shrink_ode, shrink_sde = float(v_ode[-1] / v_ode[0]), float(v_sde[-1] / v_sde[0])
        res.metric(f"{name}/variance_shrink", {"ddim": shrink_ode, "ddpm": shrink_sde})
        if name.startswith("sym"):
            res.check(
                f"{name}: DDPM shrinks the variance along u much less than DDIM",
                2.0,
                shrink_sde / max(shrink_ode, 1e-12),
                0.0,
                relation="ge",
                note=f"var(w_max)/var(w=1): DDPM {shrink_sde:.3f} vs DDIM {shrink_ode:.3f}; 'much less' "
                "read as a ratio >= 2",
            )
    # finite steps vs the continuous limit
    for sampler, cont in (("ddim", "ddim"), ("ddpm", "ddpm")):
        ns = sorted(int(law.split("@")[1]) for law in finest if law.startswith(sampler + "@"))
        if cont not in laws or len(ns) < 2:
            continue
        err = [float(np.max(np.abs(laws[f"{sampler}@{n}"]["var_u"] - laws[cont]["var_u"]))) for n in ns]
        res.metric(f"{name}/{sampler}_var_error_vs_steps", dict(zip(map(str, ns), err, strict=False)))
        res.check(
            f"{name}: {sampler} finite-step variance error shrinks with steps",
            err[0],
            err[-1],
            0.0,
            relation="le",
            note=f"max over w of |var(N steps) - var(continuous)|, N = {ns}: {np.round(err, 4).tolist()}",
        )


def _conditional_prior_check(res: Results, name: str, mix: GaussianMixture, label: int, key, n: int) -> None:
    r"""Unguided (``w = 1``, ``eta = 0``) continuous DDIM started from the *exact* conditional prior
    ``p_T(. | y) = N(a_T mu_y, I)``: with identity covariances the guided PF-ODE is the translation
    ``x -> x + (a_end - a_T) mu_y`` (reference note 2.3), so it lands exactly on ``p_{t_min}(. | y) =
    N(a_end mu_y, I)``, particle by particle."""
    cond = mix.condition(label)
    ev = np.asarray(cond.eigvals, float)
    if len(cond.weights) != 1 or not np.allclose(ev, 1.0) or not np.any(np.asarray(cond.means)):
        return  # (a target at the origin makes the map the identity: nothing to check)
    p = mix.process
    x_t, _ = cond.sample(key, n, p.t_max)
    out = flow(guided_mixture(mix, label, 1.0), x_t, p.t_max, p.t_min)
    mu = np.asarray(cond.means[0], np.float64)
    shift = float(p.alpha(p.t_min)) - float(p.alpha(p.t_max))
    err = float(np.max(np.abs(np.asarray(out, np.float64) - np.asarray(x_t, np.float64) - shift * mu)))
    res.check(
        f"{name}: unguided DDIM from the exact conditional prior lands on N(mu_y, I) pathwise",
        0.0,
        err,
        1e-4,
        note=f"max |x_out - x_T - (a_end - a_T) mu_y| over {n} particles in d = {mix.dim} (adaptive Tsit5, "
        "rtol = atol = 1e-6, float32); the output law is then exactly p_{t_min}(.|y) = N(a_end mu_y, I)",
    )


def _knn_calibration(res: Results, key) -> None:
    """Kozachenko-Leonenko (k = 1) on Gaussian samples against the closed form, d = 1, 2, 4, 8 (n = 10^4)."""
    # |bias| + 3 sd of the float32 estimator over 20 seeds at n = 10^4 (bias/sd: d = 1 0.007/0.019,
    # d = 2 0.005/0.018, d = 4 -0.020/0.019, d = 8 0.002/0.029)
    for d, tol in ((1, 0.065), (2, 0.06), (4, 0.08), (8, 0.09)):
        scales = np.linspace(0.5, 2.0, d) if d > 1 else np.array([0.5])
        x = jr.normal(jr.fold_in(key, d), (10_000, d)) * jnp.asarray(scales, jnp.float32)
        h = float(knn_entropy(x, ties="resolution"))
        truth = float(gaussian_entropy(jnp.asarray(scales**2)))
        res.check(
            f"kNN entropy = Gaussian closed form (d = {d})",
            truth,
            h,
            tol,
            note="n = 10^4, k = 1, covariance diag(linspace(0.5, 2, d))^2; tolerance |bias| + 3 sd measured "
            "over 20 seeds (docs/guidance.md); the d log 2 error of a radius/diameter mix-up would be "
            f"{d * math.log(2):.2f}",
        )


def _search(config: Config, res: Results, progress: bool, cache: ResultCache) -> dict[str, Any]:
    """Random three-component 1-D mixtures: does strong guidance split a unimodal target? Each trial is
    cached (resumable)."""
    rng = np.random.default_rng(config.seed + 1)
    p = VP.ou()
    out: dict[str, Any] = {"identity": [], "unequal": []}
    trials = [(family, i) for family in ("identity", "unequal") for i in range(config.search_trials)]
    for family, i in progress_bar(trials, "distortion search", progress):
        mu = np.sort(rng.uniform(-4.0, 4.0, 3))
        if family == "identity":
            var = np.ones(3)
        else:
            var = np.exp(rng.uniform(math.log(0.1), math.log(4.0), 3))
        w = rng.dirichlet(np.ones(3) * 2.0)
        target = int(rng.integers(3))
        mix = GaussianMixture(
            jnp.asarray(w, jnp.float32),
            jnp.asarray(mu[:, None], jnp.float32),
            jnp.asarray(var, jnp.float32),
            process=p,
        )

        def trial(mix=mix, mu=mu, var=var, w=w, target=target):
            rec = {"means": mu.tolist(), "vars": var.tolist(), "weights": w.tolist(), "target": target}
            rec.update(_neighbour_flags(mu, var, target))
            try:
                modes = A.output_modes_1d(mix, target, config.search_scales, **_search_options(config))
                rec.update(ddim_modes=modes["ddim"].tolist(), ddpm_modes=modes["ddpm"].tolist())
            except ValueError as err:  # a grid that cannot hold the strongly guided mass
                rec["error"] = str(err)[:120]
            return rec

        out[family].append(cache.get_or_compute(f"search/{family}/{i}", trial))
    return out


def _neighbour_flags(mu: np.ndarray, var: np.ndarray, target: int) -> dict[str, bool]:
    r"""Whether a non-target component is narrower than the target (``narrow``), and whether one such lies
    within two target standard deviations of the target mean (``narrow_near``). In 1-D,
    ``phi_t'' = -1/C_y + sum_k r_k / C_k - Var_r(s_k)`` (docs section 2.6), so ``log p_t(y|x)`` can fail to be
    concave only if some ``C_k(t) < C_y(t)``, i.e. a narrower non-target component (the OU map
    ``var -> a^2 var + sigma^2`` keeps the order)."""
    others = [k for k in range(len(mu)) if k != target]
    narrow = [k for k in others if var[k] < var[target]]
    near = [k for k in narrow if abs(mu[k] - mu[target]) < 2.0 * math.sqrt(var[target])]
    return {"narrow": bool(narrow), "narrow_near": bool(near)}


def _search_options(config: Config) -> dict[str, Any]:
    # node and cell counts equal to the sweeps' (PF-ODE: Monte Carlo + 96 quadrature nodes; Fokker-Planck
    # 1-D cells) so that the search reuses their compiled solvers
    return {"n_nodes": config.n_pf_ode + 96, "fp_grid": FokkerPlanckGrid(-20.0, 20.0, config.fp_cells_1d)}


def _split(rec: dict, key: str) -> bool:
    return "error" not in rec and max(rec[key]) > 1


def _law_style(law: str) -> tuple[str, str]:
    """Colour and line style of a law, identical in every panel."""
    if "@" not in law:
        return ("C0" if law == "ddim" else "C1"), "-o"
    sampler, n = law.split("@")
    shades = {
        "ddim": ["#9ecae1", "#4292c6", "#08519c", "#08306b"],
        "ddpm": ["#fdae6b", "#f16913", "#a63603", "#7f2704"],
    }
    level = min(3, max(0, round(math.log10(int(n))) - 1))
    return shades[sampler][level], ":."


def _figures(
    res: Results, sweeps: dict[str, A.GuidanceSweep], search: dict, designed: dict, config: Config
) -> None:
    import matplotlib.pyplot as plt

    # output histograms per strength with Fokker-Planck densities (1-D cases)
    for name in ("sym1d", "collinear_middle", "collinear_end"):
        if name not in sweeps:
            continue
        sw = sweeps[name]
        ddim_law = max((k for k in sw.samples if k.startswith("ddim@")), key=lambda s: int(s.split("@")[1]))
        ddpm_law = max((k for k in sw.samples if k.startswith("ddpm@")), key=lambda s: int(s.split("@")[1]))
        n_w = len(sw.scales)
        fig, axes = plt.subplots(2, n_w, figsize=(2.6 * n_w, 5.0), sharex=True)
        for j, w in enumerate(sw.scales):
            for i, (law, dyn, color) in enumerate(((ddim_law, "ode", "C0"), (ddpm_law, "sde", "C1"))):
                ax = axes[i, j]
                x = sw.samples[law][j][:, 0]
                ax.hist(x, bins=80, range=(-7, 9), density=True, color=color, alpha=0.5, label=law)
                if dyn in sw.fokker_planck:
                    sol = sw.fokker_planck[dyn][j]
                    ax.plot(
                        sol.grid.centers()[0], np.asarray(sol.density[-1]), "k-", lw=1, label=f"FP ({dyn})"
                    )
                ax.set_title(f"w={w:g} (eta={w - 1:g})", fontsize=8)
                ax.set_xlim(-7, 9)
                if j == 0:
                    ax.legend(fontsize=6)
        fig.suptitle(f"{name}: outputs per strength (histograms) with the Fokker-Planck density")
        res.figure(
            fig,
            f"histograms_{name}",
            f"{name}: DDIM (top) and DDPM (bottom) outputs per guidance scale w, "
            "Fokker-Planck density of the continuous limit overlaid.",
        )

    names = list(sweeps)
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6), squeeze=False)
    for j, name in enumerate(names):
        sw = sweeps[name]
        for law, q in sw.laws.items():
            color, style = _law_style(law)
            axes[0, j].plot(sw.scales, q["confidence"], style, color=color, ms=3, label=law)
            axes[1, j].plot(sw.scales, q["inv_confidence"], style, color=color, ms=3, label=law)
            axes[1, j].set_yscale("log")
        axes[0, j].set_title(name, fontsize=9)
        axes[1, j].set_xlabel("guidance scale w")
        for ax in axes[:, j]:
            ax.set_xscale("log")
        axes[0, j].legend(fontsize=5)
    axes[0, 0].set_ylabel("E[p0(y|X)]")
    axes[1, 0].set_ylabel("E[1/p0(y|X)] (log scale)")
    res.figure(
        fig,
        "confidence_vs_strength",
        "Confidence E[p0(y|X)] (top) and E[1/p0(y|X)] (bottom) vs w, per case "
        "and law (solid: continuous limits; dotted: finite steps).",
    )

    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.6), squeeze=False)
    for j, name in enumerate(names):
        sw = sweeps[name]
        ax = axes[0, j]
        for law, q in sw.laws.items():
            for k, v in q.items():
                if k.startswith("entropy/") and (law in ("ddim", "ddpm") or k == "entropy/map"):
                    ls = "-" if law == "ddim" else ("--" if law == "ddpm" else ":")
                    v = np.asarray(v, float).copy()
                    if k == "entropy/fokker_planck":  # hide strengths the grid no longer resolves
                        v[np.asarray(q["fp_cells_per_std"]) < 2.0] = np.nan
                    ax.plot(sw.scales, v, ls, marker=".", label=f"{law} {k.split('/')[1]}")
        ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("guidance scale w")
    axes[0, 0].set_ylabel("differential entropy (nats)")
    axes[0, 0].legend(fontsize=6)
    res.figure(
        fig,
        "entropy_vs_strength",
        "Output entropy vs w by every route: DDIM (solid: PF-ODE Monte Carlo, "
        "Gauss-Hermite quadrature, Liouville flow rate, Fokker-Planck, kNN), finite-step DDIM map Jacobian "
        "(dotted), DDPM Fokker-Planck (dashed).",
    )

    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6), squeeze=False)
    for j, name in enumerate(names):
        sw = sweeps[name]
        for law, q in sw.laws.items():
            color, style = _law_style(law)
            axes[0, j].plot(sw.scales, q["mean_u"], style, color=color, ms=3, label=law, alpha=0.9)
            axes[1, j].plot(sw.scales, np.sqrt(q["var_u"]), style, color=color, ms=3, label=law, alpha=0.9)
        axes[0, j].set_title(name, fontsize=9)
        axes[1, j].set_xlabel("guidance scale w")
        for ax in axes[:, j]:
            ax.set_xscale("log")
    axes[0, 0].set_ylabel("mean of <X, u>")
    axes[1, 0].set_ylabel("std of <X, u>")
    axes[0, 0].legend(fontsize=6)
    res.figure(
        fig,
        "ddpm_vs_ddim",
        "DDPM (orange) vs DDIM (blue): mean and standard deviation along the "
        "class-separating direction u; solid continuous limits, dotted finite step counts.",
    )

    if "obtuse2d" in sweeps and sweeps["obtuse2d"].fokker_planck:
        sw = sweeps["obtuse2d"]
        n_w = len(sw.scales)
        fig, axes = plt.subplots(2, n_w, figsize=(2.4 * n_w, 4.8))
        for i, dyn in enumerate(("ode", "sde")):
            for j, sol in enumerate(sw.fokker_planck[dyn]):
                cx, cy = sol.grid.centers()
                axes[i, j].contourf(cx, cy, np.asarray(sol.density[-1]).T, levels=12)
                axes[i, j].plot([0, -3, 3], [0, 1, 1], "r+")
                axes[i, j].set_xlim(-5, 5)
                axes[i, j].set_ylim(-6, 4)
                axes[i, j].set_title(f"{'DDIM' if dyn == 'ode' else 'DDPM'} w={sw.scales[j]:g}", fontsize=8)
        res.figure(
            fig,
            "obtuse2d_densities",
            "Obtuse 2-D configuration: Fokker-Planck output densities of DDIM (top) "
            "and DDPM (bottom) per w; red crosses: component means (target at the origin).",
        )

    if designed:
        fig, axes = plt.subplots(1, len(designed), figsize=(4.6 * len(designed), 3.8), squeeze=False)
        for ax, (title, item) in zip(axes[0], designed.items(), strict=False):
            top, lo, hi = 0.0, np.inf, -np.inf
            for j, w in enumerate(config.search_scales):
                x, q = item["x"][j], item["q"][j]
                (line,) = ax.plot(x, q, "-", lw=1.2, label=f"DDIM w={w:g}")
                if q.max() < 5.0:
                    top = max(top, q.max())
                mass = q > 1e-3 * q.max()
                lo, hi = min(lo, x[mass].min()), max(hi, x[mass].max())
                if item["fp"] is not None:
                    sol = item["fp"][j]
                    ax.plot(
                        sol.grid.centers()[0], np.asarray(sol.density[-1]), "--", lw=1, color=line.get_color()
                    )
                    if np.asarray(sol.density[-1]).max() < 5.0:
                        top = max(top, float(np.asarray(sol.density[-1]).max()))
            ax.set_xlim(max(lo, -20.0) - 0.5, min(hi, 20.0) + 0.5)
            ax.set_ylim(0, 1.15 * top if top > 0 else None)
            ax.set_title(title.replace(": ", ":\n", 1), fontsize=8)
        axes[0, 0].legend(fontsize=6)
        res.figure(
            fig,
            "distortion_search",
            "Strong-guidance distortions: output densities of continuous DDIM (solid, change of variables) "
            "and DDPM (dashed, Fokker-Planck) per w for a designed splitting example, the first random split "
            "found with unequal variances, and an identity-covariance control (whose DDIM output collapses "
            "to a point at large w: the spike is cut off).",
        )


@register(
    "guidance",
    Config,
    quick={
        "scales": (1.0, 2.0, 5.0, 11.0),
        "n_particles": 3000,
        "n_pf_ode": 300,
        "steps": (200,),
        "fp_cells_1d": 400,
        "fp_cells_2d": 56,
        "flow_rate_steps": 200,
        "cases": ("sym1d", "collinear_end"),
        "search_trials": 4,
        "search_scales": (1.0, 3.0, 11.0),
    },
    description="Guidance (Wu et al. 2024): confidence up, entropy down, DDPM vs DDIM, exact entropy routes",
)
def run(config: Config, out_dir: Path, *, progress: bool = True) -> Results:
    """Run the guidance study (see the module docstring)."""
    res = Results("guidance", config, out_dir)
    key = jr.key(config.seed)
    mixtures = _mixtures(config)
    sweeps: dict[str, A.GuidanceSweep] = {}
    timings: dict[str, float] = {}
    for name in progress_bar([c for c in CASES if c in config.cases], "cases", progress):
        mix, label, meta = mixtures[name]
        start = time.perf_counter()
        sw = _case_sweep(name, mix, label, config, jr.fold_in(key, CASES.index(name)))
        timings[name] = round(time.perf_counter() - start, 2)
        sweeps[name] = sw
        res.metric(f"{name}/sweep", sw.to_dict())
        _checks(res, name, mix, label, sw, meta, config)
        _conditional_prior_check(res, name, mix, label, jr.fold_in(key, 100 + CASES.index(name)), 1000)
        if name == "obtuse2d" and "ode" in sw.fokker_planck:
            modes = [
                A.count_modes_2d(np.asarray(s.density[-1]))
                for s in sw.fokker_planck["ode"] + sw.fokker_planck["sde"]
            ]
            res.check(
                "obtuse2d: guided output stays unimodal (DDIM and DDPM, Fokker-Planck)",
                1,
                max(modes),
                0,
                relation="abs",
                note=f"modes per strength: {modes} (reference note 2.3)",
            )

    _knn_calibration(res, jr.fold_in(key, 200))

    # distortion search
    start = time.perf_counter()
    search = _search(config, res, progress, ResultCache(out_dir, config))
    timings["search"] = round(time.perf_counter() - start, 2)
    res.metric("search", search)
    n_id = sum(_split(r, "ddim_modes") or _split(r, "ddpm_modes") for r in search["identity"])
    n_un_ode = sum(_split(r, "ddim_modes") for r in search["unequal"])
    n_un_sde = sum(_split(r, "ddpm_modes") for r in search["unequal"])
    n_err = sum("error" in r for fam in search.values() for r in fam)
    res.check(
        "search: no splitting with identity covariances (exact classifier)",
        0,
        n_id,
        0,
        relation="abs",
        note=f"{len(search['identity'])} random 3-component 1-D mixtures, target random, w in "
        f"{list(config.search_scales)} (reference note 2.3: concave log-classifier)",
    )
    split_recs = [r for r in search["unequal"] if _split(r, "ddim_modes") or _split(r, "ddpm_modes")]
    n_narrow = sum(r["narrow"] for r in search["unequal"])
    n_near = sum(r["narrow_near"] for r in search["unequal"])
    res.metric(
        "search/unequal_splits",
        {
            "ddim": n_un_ode,
            "ddpm": n_un_sde,
            "trials": len(search["unequal"]),
            "grid_errors": n_err,
            "trials_with_narrow_other": n_narrow,
            "trials_with_narrow_other_near_target": n_near,
            "splits_with_narrow_other": sum(r["narrow"] for r in split_recs),
            "splits_with_narrow_other_near_target": sum(r["narrow_near"] for r in split_recs),
        },
    )
    res.check(
        "search: every split has a non-target component narrower than the target",
        len(split_recs),
        sum(r["narrow"] for r in split_recs),
        0,
        relation="abs",
        note=f"{len(split_recs)} unequal-variance trials split (DDIM or DDPM); a narrower other component is "
        "necessary for log p_t(y|x) to lose concavity (docs section 2.6). Trials with a narrower other "
        f"component: {n_narrow}/{len(search['unequal'])}; with one within 2 target std of the target mean: "
        f"{n_near}",
    )

    # a designed example: wide target with a narrow other class at its centre
    p = VP.ou()
    designed_mix = GaussianMixture(
        jnp.array([0.5, 0.25, 0.25]), jnp.array([[0.0], [0.0], [4.0]]), jnp.array([4.0, 0.25, 1.0]), process=p
    )
    designed: dict[str, Any] = {}
    dm = A.output_modes_1d(designed_mix, 0, config.search_scales, **_search_options(config))
    designed["designed: target N(0,4), others N(0,0.25), N(4,1)"] = dm
    res.metric(
        "designed_example",
        {
            "ddim_modes": dm["ddim"].tolist(),
            "ddpm_modes": dm["ddpm"].tolist(),
            "scales": list(config.search_scales),
        },
    )
    res.check(
        "strong guidance can split a unimodal target (three components, unequal variances)",
        1,
        int(max(dm["ddim"]) > 1) + int(n_un_ode > 0),
        0,
        relation="ge",
        note=f"designed example DDIM modes per w {dm['ddim'].tolist()}, DDPM {dm['ddpm'].tolist()}; random "
        f"unequal-variance trials with a split: DDIM {n_un_ode}, DDPM {n_un_sde} of {len(search['unequal'])} "
        "(Wu et al. 2024, section 6: 'a curious example of strong guidance')",
    )
    first = next((r for r in search["unequal"] if _split(r, "ddim_modes") or _split(r, "ddpm_modes")), None)
    if first is not None:
        mix = GaussianMixture(
            jnp.asarray(first["weights"], jnp.float32),
            jnp.asarray(np.array(first["means"])[:, None], jnp.float32),
            jnp.asarray(first["vars"], jnp.float32),
            process=p,
        )
        designed[
            f"random: mu={np.round(first['means'], 2).tolist()}, var={np.round(first['vars'], 2).tolist()}, "
            f"pi={np.round(first['weights'], 2).tolist()}, y={first['target']}"
        ] = A.output_modes_1d(mix, first["target"], config.search_scales, **_search_options(config))
    control = GaussianMixture(jnp.full((3,), 1 / 3), jnp.array([[-3.0], [0.0], [3.0]]), 1.0, process=p)
    designed["control: identity covariances, means (-3, 0, 3), target middle"] = A.output_modes_1d(
        control, 1, config.search_scales, **_search_options(config)
    )
    res.note(
        f"Distortion search: with identity covariances {n_id} of {len(search['identity'])} random "
        f"three-component mixtures gave a multimodal output at some w in {list(config.search_scales)}; with "
        f"unequal variances (log-uniform in [0.1, 4]) and weights DDIM split in {n_un_ode} and DDPM in "
        f"{n_un_sde} of {len(search['unequal'])} trials ({n_err} trials left out because the strongly guided "
        "mass left the [-20, 20] grid). Splits with a non-target component narrower than the target: "
        f"{sum(r['narrow'] for r in split_recs)} of {len(split_recs)} "
        f"({sum(r['narrow_near'] for r in split_recs)} with it within two target standard deviations), "
        f"against {n_narrow} and {n_near} of all {len(search['unequal'])} trials. The designed example "
        "(a wide target N(0, 4) with a narrow other class N(0, 0.25) "
        "at its centre) splits: the log-classifier is no longer concave, its gradient pushes mass away from "
        "the narrow class on both sides. At larger w the third class at +4 pushes everything left and the "
        "output becomes unimodal again. A narrow other component is necessary, not sufficient: most trials "
        "that have one do not split at these strengths."
    )
    res.metric("timings_s", timings)
    _figures(res, sweeps, search, designed, config)
    return res
