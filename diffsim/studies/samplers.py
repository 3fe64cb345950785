r"""Study ``samplers``: every fixed-grid sampler at several step counts against a mixture of known law.

For a 2-D and a 16-D Gaussian mixture (VP-linear process, log-SNR-uniform grids) each sampler is run from
the same prior draws at every step count, and its output is compared with the exact law:

- **mode-weight error** ``max_k |mean_i r_k(x_i) - w_k|`` with ``r`` the exact posterior at ``t = 0``;
- **energy distance** to an equally large set of exact samples (its noise floor is the energy distance
  between two independent exact sets, reported beside it);
- **NLL gap** ``mean_i[-log p_0(x_i)] - H(p_0)``, with ``H(p_0)`` estimated from 200k exact samples; it
  vanishes for exact samples and is a weak-error functional of the sampler's law;
- **pathwise error** of the deterministic (PF-ODE) samplers against an adaptive Tsit5 solve from the same
  starting points: its slope in ``log(steps)`` is the sampler's order (Euler and DDIM 1, Heun and
  DPM-Solver++(2M) 2, UniPC(bh2) 3, LMS 2 as k-diffusion starts it, 4 only from exact starting values),
  free of Monte-Carlo noise. Every order is read from the sampler class
  (``SAMPLER_REGISTRY[name].order``).

For the stochastic samplers the weak order is fitted on the NLL gap over the finest step counts whose gap
exceeds four Monte-Carlo standard errors with a consistent sign (theory: weak order 1 for Euler-Maruyama,
DDPM, predictor-corrector and the ancestral / SDE samplers of k-diffusion: Euler ancestral, DPM-Solver++(2S)
ancestral, DPM-Solver++(2M) SDE and (3M) SDE). The NLL gap is not a divergence and can change sign at
coarse grids (DDPM's ancestral steps lose variance there), so convergence itself is checked on the energy
distance. Orders are fitted on the three finest grids (the asymptotic regime).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.convergence import fit_order, significant_tail
from ..analysis.metrics import energy_distance, mode_weight_error
from ..data import sampler_test_mixture
from ..sampling import SAMPLER_REGISTRY, grids, simulate
from ._config import check_fields
from ._figures import samplers as figures
from ._runner import Check, Figure, Part, PartContext, Study, check, register_study
from ._samplers_gaussian import compute_gaussian, gaussian_checks


def _fixed_grid_samplers() -> tuple[dict[str, float], dict[str, float]]:
    """Theoretical orders read from the sampler classes: (pathwise orders of the deterministic reverse
    samplers, weak orders of the stochastic ones)."""
    ode, sde = {}, {}
    for name, cls in SAMPLER_REGISTRY.items():
        if cls.adaptive or cls.direction != "reverse" or cls.order is None:
            continue
        (sde if cls.stochastic else ode)[name] = float(cls.order)
    return ode, sde


ODE_ORDERS, SDE_WEAK_ORDERS = _fixed_grid_samplers()


@dataclass(frozen=True)
class Config:
    """Configuration of the ``samplers`` study (defaults run in a few CPU minutes)."""

    dims: tuple[int, ...] = (2, 16)
    n_components: int = 4
    samplers: tuple[str, ...] = (
        "euler_maruyama",
        "ddpm",
        "pc",
        "euler",
        "ddim",
        "heun",
        "dpm_solver_2m",
        "euler_ancestral",
        "dpmpp_2s_ancestral",
        "dpmpp_2m_sde",
        "dpmpp_3m_sde",
        "unipc",
        "lms",
    )
    steps: tuple[int, ...] = (8, 16, 32, 64, 128)
    n_particles: int = 20_000
    n_energy: int = 3_000
    n_entropy: int = 200_000
    order_tolerance: float = 0.3
    gaussian_order_tolerance: float = 0.1
    seed: int = 0

    def __post_init__(self):
        check_fields(
            self,
            counts=("n_components", "n_particles", "n_energy", "n_entropy"),
            positive=("order_tolerance", "gaussian_order_tolerance"),
        )
        unknown = [s for s in self.samplers if s not in ODE_ORDERS and s not in SDE_WEAK_ORDERS]
        if unknown:
            raise ValueError(f"Config.samplers: unknown or unsupported samplers {unknown}.")
        if len(self.steps) < 2 or any(k < 1 for k in self.steps):
            raise ValueError("Config.steps needs at least two positive step counts.")


class Convergence(eqx.Module):
    """One dimension: the exact law's entropy, the energy-distance floor and, per ``sampler/steps``, the
    mode-weight error, energy distance, NLL gap (with its standard error), NFE and pathwise error."""

    dim: int
    entropy: float
    energy_distance_floor: float
    runs: dict[str, dict[str, float]]
    mixture: Any = field(default=None, metadata={"json": False})


def _nll(mixture, x, t_end):
    return -jax.vmap(lambda xi: mixture.log_prob(t_end, xi))(x)


_nll_jit = jax.jit(_nll)


def convergence(dim: int, config: Config, ctx: PartContext) -> Convergence:
    mix = sampler_test_mixture(dim, config.n_components, config.seed)
    p = mix.process
    k_ref, k_ent, k_run, _ = jr.split(jr.key(config.seed + dim), 4)
    n = config.n_particles

    # exact law: entropy and an exact sample for the energy distance, with its noise floor
    x_ent, _ = mix.sample(k_ent, config.n_entropy)
    nll_exact = np.asarray(_nll_jit(mix, x_ent, p.t_min))
    entropy = float(nll_exact.mean())
    x_exact, _ = mix.sample(k_ref, 2 * config.n_energy)
    ed_floor = float(energy_distance(x_exact[: config.n_energy], x_exact[config.n_energy :]))

    # pathwise reference: adaptive PF-ODE from the same prior draws the fixed-grid samplers use
    ref = simulate(mix, "tsit5", grids.uniform(p, 1), n=n, key=k_run, rtol=1e-5, atol=1e-5).x

    def run_one(sampler: str, steps: int) -> dict[str, float]:
        traj = simulate(mix, sampler, grids.logsnr_uniform(p, steps), n=n, key=k_run)
        x = traj.x
        _, werr = mode_weight_error(mix, x)
        nll = np.asarray(_nll_jit(mix, x, p.t_min))
        out = {
            "mode_weight_error": float(werr),
            "energy_distance": float(energy_distance(x[: config.n_energy], x_exact[: config.n_energy])),
            "nll_gap": float(nll.mean() - entropy),
            "nll_se": float(np.sqrt(nll.var() / n + nll_exact.var() / nll_exact.size)),
            "nfe": traj.nfe,
        }
        if sampler in ODE_ORDERS:
            out["pathwise_error"] = float(jnp.sqrt(jnp.mean(jnp.sum((x - ref) ** 2, -1))))
        return out

    runs = [(s, k) for s in config.samplers for k in config.steps]
    table = {
        f"{s}/{k}": ctx.cache(f"d{dim}-{s}-{k}", lambda s=s, k=k: run_one(s, k))
        for s, k in ctx.progress(runs, f"samplers d={dim}")
    }
    return Convergence(dim, entropy, ed_floor, table, mix)


def convergence_checks(config: Config, r: Convergence) -> list[Check]:
    steps = np.asarray(config.steps)
    out = []
    for sampler in config.samplers:
        rows = [r.runs[f"{sampler}/{k}"] for k in config.steps]
        if sampler in ODE_ORDERS:
            order = fit_order(steps, [row["pathwise_error"] for row in rows])
            out.append(
                check(
                    f"d={r.dim} {sampler}: pathwise order of the PF-ODE solution",
                    ODE_ORDERS[sampler],
                    order,
                    config.order_tolerance,
                    note="slope of log RMS error vs log steps against adaptive Tsit5 from the same draws",
                )
            )
        gaps = np.array([row["nll_gap"] for row in rows])
        ses = np.array([row["nll_se"] for row in rows])
        if sampler in SDE_WEAK_ORDERS:
            usable = significant_tail(gaps, ses)
            order = fit_order(steps, np.abs(gaps), usable)
            n_used = min(int(usable.sum()), 3)
            out.append(
                check(
                    f"d={r.dim} {sampler}: weak order (NLL gap)",
                    SDE_WEAK_ORDERS[sampler],
                    order,
                    config.order_tolerance + 0.1,
                    note=f"fitted on the finest {n_used} step counts whose gap exceeds 4 standard errors "
                    "with a consistent sign"
                    + ("" if n_used >= 2 else "; too few such points to fit an order"),
                )
            )
        eds = [row["energy_distance"] for row in rows]
        out.append(
            check(
                f"d={r.dim} {sampler}: energy distance to the exact law shrinks "
                f"({steps[0]} -> {steps[-1]} steps)",
                eds[0],
                eds[-1],
                abs(r.energy_distance_floor),
                relation="le",
                note="the energy distance is a divergence: it must fall towards the exact-vs-exact floor",
            )
        )
    return out


def convergence_figures(config: Config, r: Convergence) -> list[Figure]:
    figs = [figures.convergence(config, r, frozenset(ODE_ORDERS))]
    if r.dim == 2:
        figs.append(figures.scatter(config, r.mixture))
    return figs


def _parts(config: Config) -> list[Part]:
    def part(dim: int) -> Part:
        return Part(
            f"d{dim}",
            functools.partial(convergence, dim),
            convergence_checks,
            convergence_figures,
        )

    return [part(dim) for dim in config.dims] + [Part("gaussian", compute_gaussian, gaussian_checks)]


def _answer(config: Config, results: dict[str, Convergence]) -> str:
    finest = config.steps[-1]
    parts = []
    for r in results.values():
        if not isinstance(r, Convergence):
            continue
        errs = ", ".join(
            f"{s} {r.runs[f'{s}/{finest}']['pathwise_error']:.2g}" for s in config.samplers if s in ODE_ORDERS
        )
        parts.append(f"d={r.dim}: pathwise error at {finest} steps {errs}")
    return (
        "Each sampler's error against the exact law falls with the number of steps at the rate its theory "
        "states (first order for Euler, DDIM and the SDE samplers, second for Heun and DPM-Solver++(2M)); "
        + "; ".join(parts)
        + ". Grids are uniform in log-SNR between t_max = 1 and t_min = 1e-3 (VP-linear); all samplers of "
        "one dimension start from the same prior draws."
    )


STUDY = register_study(
    Study(
        name="samplers",
        config=Config,
        parts=_parts,
        quick=dict(steps=(8, 32), n_particles=4000, n_energy=1000, n_entropy=20000),
        description="Every sampler at several step counts against a 2-D and a 16-D mixture of known law.",
        question="Does every sampler converge to the exact law at its theoretical order?",
        answer=_answer,
        headline="convergence_d16",
    )
)
