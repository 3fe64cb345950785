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
  DPM-Solver++(2M) 2), free of Monte-Carlo noise.

For the stochastic samplers the weak order is fitted on the NLL gap over the finest step counts whose gap
exceeds four Monte-Carlo standard errors with a consistent sign (theory: weak order 1 for Euler-Maruyama,
DDPM and predictor-corrector). The NLL gap is not a divergence and can change sign at coarse grids (DDPM's
ancestral steps lose variance there), so convergence itself is checked on the energy distance. Orders are
fitted on the three finest grids (the asymptotic regime).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..analysis.metrics import energy_distance, mode_weight_error
from ..processes import VP
from ..sampling import grids, simulate
from ..scores import GaussianMixture
from ._runner import ResultCache, Results, progress_bar, register


ODE_ORDERS = {"euler": 1.0, "ddim": 1.0, "heun": 2.0, "dpm_solver_2m": 2.0}
SDE_WEAK_ORDERS = {"euler_maruyama": 1.0, "ddpm": 1.0, "pc": 1.0}


@dataclass(frozen=True)
class Config:
    """Configuration of the ``samplers`` study (defaults run in a few CPU minutes)."""

    dims: tuple[int, ...] = (2, 16)
    n_components: int = 4
    samplers: tuple[str, ...] = ("euler_maruyama", "ddpm", "pc", "euler", "ddim", "heun", "dpm_solver_2m")
    steps: tuple[int, ...] = (8, 16, 32, 64, 128)
    n_particles: int = 20_000
    n_energy: int = 3_000
    n_entropy: int = 200_000
    order_tolerance: float = 0.3
    seed: int = 0


def make_mixture(dim: int, n_components: int, seed: int) -> GaussianMixture:
    """A fixed, well-separated mixture with unequal weights and full (2-D) or diagonal covariances."""
    rng = np.random.default_rng(seed + 1000 * dim)
    w = np.arange(1, n_components + 1, dtype=float)
    w /= w.sum()
    means = rng.normal(size=(n_components, dim))
    means *= 3.0 / np.linalg.norm(means, axis=1, keepdims=True) * np.sqrt(min(dim, 4) / 2)
    if dim == 2:
        a = rng.normal(size=(n_components, dim, dim)) * 0.4
        covs = np.einsum("kij,klj->kil", a, a) + 0.15 * np.eye(dim)
    else:
        covs = rng.uniform(0.3, 1.2, size=(n_components, dim))
    return GaussianMixture(w, means, covs, process=VP.linear())


def _nll(mixture, x, t_end):
    return -jax.vmap(lambda xi: mixture.log_prob(t_end, xi))(x)


_nll_jit = jax.jit(_nll)


def _fit_order(steps, errors, mask=None, last: int = 3) -> float:
    """Slope of ``-log(error)`` vs ``log(steps)`` over the finest ``last`` usable step counts."""
    steps, errors = np.asarray(steps, float), np.asarray(errors, float)
    if mask is not None:
        steps, errors = steps[mask], errors[mask]
    steps, errors = steps[-last:], errors[-last:]
    if steps.size < 2 or np.any(errors <= 0):
        return float("nan")
    return float(-np.polyfit(np.log(steps), np.log(errors), 1)[0])


def _trailing_same_sign_above_floor(gaps, ses, n_se: float = 4.0) -> np.ndarray:
    """Mask of the contiguous run of step counts, ending at the finest, whose signed gap exceeds
    ``n_se`` standard errors with the sign of the finest such gap (pre-asymptotic sign changes, as in
    DDPM's variance deficit at coarse grids, end the run)."""
    above = np.abs(gaps) > n_se * ses
    mask = np.zeros(gaps.shape, bool)
    idx = np.flatnonzero(above)
    if idx.size == 0:
        return mask
    sign = np.sign(gaps[idx[-1]])
    for i in range(idx[-1], -1, -1):
        if not above[i] or np.sign(gaps[i]) != sign:
            break
        mask[i] = True
    return mask


def _run_dim(dim, config, cache, res, progress):
    mix = make_mixture(dim, config.n_components, config.seed)
    p = mix.process
    key = jr.key(config.seed + dim)
    k_ref, k_ent, k_run, k_ed = jr.split(key, 4)
    n = config.n_particles

    # exact law: entropy and an exact sample for the energy distance, with its noise floor
    x_ent, _ = mix.sample(k_ent, config.n_entropy)
    nll_exact = np.asarray(_nll_jit(mix, x_ent, p.t_min))
    entropy = float(nll_exact.mean())
    x_exact, _ = mix.sample(k_ref, 2 * config.n_energy)
    ed_floor = float(energy_distance(x_exact[: config.n_energy], x_exact[config.n_energy :]))

    # pathwise reference: adaptive PF-ODE from the same prior draws the fixed-grid samplers use
    ref = simulate(mix, "tsit5", grids.uniform(p, 1), n=n, key=k_run, rtol=1e-5, atol=1e-5).x

    table = {}
    runs = [(s, k) for s in config.samplers for k in config.steps]
    for sampler, steps in progress_bar(runs, f"samplers d={dim}", progress):

        def compute(sampler=sampler, steps=steps):
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

        table[f"{sampler}/{steps}"] = cache.get_or_compute(f"d{dim}-{sampler}-{steps}", compute)

    res.metric(f"d{dim}", {"entropy": entropy, "energy_distance_floor": ed_floor, "runs": table})
    steps = np.asarray(config.steps)
    for sampler in config.samplers:
        rows = [table[f"{sampler}/{k}"] for k in config.steps]
        if sampler in ODE_ORDERS:
            order = _fit_order(steps, [r["pathwise_error"] for r in rows])
            res.check(
                f"d={dim} {sampler}: pathwise order of the PF-ODE solution",
                ODE_ORDERS[sampler],
                order,
                config.order_tolerance,
                note="slope of log RMS error vs log steps against adaptive Tsit5 from the same draws",
            )
        gaps = np.array([r["nll_gap"] for r in rows])
        ses = np.array([r["nll_se"] for r in rows])
        if sampler in SDE_WEAK_ORDERS:
            usable = _trailing_same_sign_above_floor(gaps, ses)
            order = _fit_order(steps, np.abs(gaps), usable)
            n_used = min(int(usable.sum()), 3)
            res.check(
                f"d={dim} {sampler}: weak order (NLL gap)",
                SDE_WEAK_ORDERS[sampler],
                order,
                config.order_tolerance + 0.1,
                note=f"fitted on the finest {n_used} step counts whose gap exceeds 4 standard errors with "
                "a consistent sign" + ("" if n_used >= 2 else "; too few such points to fit an order"),
            )
        eds = [r["energy_distance"] for r in rows]
        res.check(
            f"d={dim} {sampler}: energy distance to the exact law shrinks ({steps[0]} -> {steps[-1]} steps)",
            eds[0],
            eds[-1],
            abs(ed_floor),
            relation="le",
            note="the energy distance is a divergence: it must fall towards the exact-vs-exact floor",
        )
    return mix, table, ed_floor, entropy


def _figure(res, dim, config, table, ed_floor):
    import matplotlib.pyplot as plt

    steps = np.asarray(config.steps)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for sampler in config.samplers:
        rows = [table[f"{sampler}/{k}"] for k in config.steps]
        ls = "-" if sampler in ODE_ORDERS else "--"
        axes[0].loglog(
            steps, [max(r["mode_weight_error"], 1e-6) for r in rows], ls, marker="o", label=sampler
        )
        axes[1].plot(steps, [r["energy_distance"] for r in rows], ls, marker="o")
        axes[2].loglog(steps, [max(abs(r["nll_gap"]), 1e-6) for r in rows], ls, marker="o")
        if sampler in ODE_ORDERS:
            axes[3].loglog(steps, [r["pathwise_error"] for r in rows], marker="o", label=sampler)
    axes[1].axhline(ed_floor, color="k", lw=0.8, ls=":", label="exact-vs-exact floor")
    axes[1].set_xscale("log")
    axes[1].set_yscale("symlog", linthresh=max(abs(ed_floor), 1e-5))
    se = np.mean([table[f"{s}/{steps[-1]}"]["nll_se"] for s in config.samplers])
    axes[2].axhline(4 * se, color="k", lw=0.8, ls=":", label="4 SE")
    for order, c in [(1, "grey"), (2, "k")]:
        ref_err = (
            table[f"{'ddim' if order == 1 else 'heun'}/{steps[0]}"].get("pathwise_error")
            if (("ddim" if order == 1 else "heun") in config.samplers)
            else None
        )
        if ref_err:
            axes[3].loglog(
                steps,
                ref_err * (steps / steps[0]) ** (-order),
                color=c,
                lw=0.8,
                ls=":",
                label=f"slope -{order}",
            )
    titles = [
        "mode-weight error",
        "energy distance to exact samples",
        "|NLL gap| (weak error)",
        "pathwise error vs adaptive PF-ODE",
    ]
    for ax, title in zip(axes, titles, strict=False):
        ax.set_title(f"d={dim}: {title}", fontsize=9)
        ax.set_xlabel("steps")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    axes[3].legend(fontsize=7)
    res.figure(
        fig,
        f"convergence_d{dim}",
        f"d={dim}: error against the exact law vs number of steps (solid: PF-ODE samplers, dashed: SDE).",
    )


def _scatter_figure(res, mix, config):
    import matplotlib.pyplot as plt

    p = mix.process
    k = jr.key(config.seed + 99)
    x_exact, _ = mix.sample(k, 3000)
    coarse, fine = config.steps[0], config.steps[-1]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
    axes[0].scatter(*np.asarray(x_exact).T, s=2, alpha=0.4)
    axes[0].set_title("exact samples")
    for ax, (sampler, steps) in zip(axes[1:], [("ddim", coarse), ("ddim", fine)], strict=False):
        x = simulate(mix, sampler, grids.logsnr_uniform(p, steps), n=3000, key=k).x
        ax.scatter(*np.asarray(x).T, s=2, alpha=0.4, color="C1")
        ax.set_title(f"{sampler}, {steps} steps")
    res.figure(fig, "samples_d2", "2-D mixture: exact samples vs DDIM at the coarsest and finest grids.")


@register(
    "samplers",
    Config,
    quick=dict(steps=(8, 32), n_particles=4000, n_energy=1000, n_entropy=20000),
    description="Every sampler at several step counts against a 2-D and a 16-D mixture of known law.",
)
def run(config: Config, out_dir: Path, *, progress: bool = True) -> Results:
    """Run the ``samplers`` study."""
    if any(s not in ODE_ORDERS and s not in SDE_WEAK_ORDERS for s in config.samplers):
        unknown = [s for s in config.samplers if s not in ODE_ORDERS and s not in SDE_WEAK_ORDERS]
        raise ValueError(f"Config.samplers: unknown or unsupported samplers {unknown}.")
    if len(config.steps) < 2 or any(k < 1 for k in config.steps):
        raise ValueError("Config.steps needs at least two positive step counts.")
    res = Results("samplers", config, out_dir)
    cache = ResultCache(out_dir, config)
    for dim in config.dims:
        mix, table, ed_floor, _ = _run_dim(dim, config, cache, res, progress)
        _figure(res, dim, config, table, ed_floor)
        if dim == 2:
            _scatter_figure(res, mix, config)
    res.note(
        "Grids are uniform in log-SNR between t_max = 1 and t_min = 1e-3 (VP-linear). All samplers of one "
        "dimension start from the same prior draws; pathwise errors are RMS distances to an adaptive Tsit5 "
        "solve (rtol = atol = 1e-5) of the PF-ODE from those draws, so ODE orders carry no Monte-Carlo noise. "
        "Weak orders of SDE samplers are fitted only where the NLL gap exceeds 4 standard errors."
    )
    return res
