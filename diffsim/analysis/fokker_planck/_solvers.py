"""Reverse (guided DDPM/DDIM and the lambda family) and forward Fokker-Planck solves of diffsim scores and
processes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ..._types import ArrayOrSequence
from ..._validation import as_float_array
from ...processes import AbstractProcess
from ...scores._base import AbstractScore
from ...scores.guidance import unwrap_mixture
from ._grid import FokkerPlanckGrid, FokkerPlanckSolution
from ._scheme import _finish, _prepare, _run, _solution, solve_fokker_planck


# drift / diffusion modules (pytrees: new parameter values do not recompile)
class _ReverseDynamics(eqx.Module):
    score: AbstractScore
    lam: Array
    t_start: Array

    def drift(self, u, x):
        t = self.t_start - u
        p = self.score.process
        return -p.drift(t, x) + 0.5 * (1.0 + self.lam) * p.beta(t) * self.score.score(t, x)

    def diffusion(self, u):
        return 0.5 * self.lam * self.score.process.beta(self.t_start - u)


class _ForwardDynamics(eqx.Module):
    process: AbstractProcess
    t_start: Array

    def drift(self, u, x):
        return self.process.drift(self.t_start + u, x)

    def diffusion(self, u):
        return 0.5 * self.process.beta(self.t_start + u)


def _density_on_grid(initial, grid, dtype):
    if callable(initial):
        pts = jnp.asarray(grid.points(), dtype)
        logp = jax.vmap(initial)(pts)
        return jnp.exp(logp).reshape(grid.n_cells)
    return as_float_array(initial, "initial")


def _as_grid(grid, lower, upper, n_cells):
    if grid is not None:
        if not isinstance(grid, FokkerPlanckGrid):
            raise TypeError(f"`grid` must be a FokkerPlanckGrid, got {type(grid).__name__}.")
        return grid
    if lower is None or upper is None or n_cells is None:
        raise ValueError("Pass `grid` or all of `lower`, `upper`, `n_cells`.")
    return FokkerPlanckGrid(lower, upper, n_cells)


def _dynamics_lambda(dynamics) -> float:
    if isinstance(dynamics, str):
        table = {"sde": 1.0, "ddpm": 1.0, "ode": 0.0, "ddim": 0.0}
        if dynamics not in table:
            raise ValueError(
                f"`dynamics` must be 'sde'/'ddpm', 'ode'/'ddim' or a number in [0, 1], got {dynamics!r}."
            )
        return table[dynamics]
    lam = float(dynamics)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"`dynamics` (lambda) must lie in [0, 1], got {lam}.")
    return lam


def _reverse_setup(score, grid, dynamics, t_start, t_end, save_times, min_cells_per_std):
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim score, got {type(score).__name__}.")
    if score.dim != grid.dim:
        raise ValueError(
            f"The grid is {grid.dim}-D but the score has d={score.dim}; the solver handles d = 1, 2 "
            "(project higher-dimensional problems first)."
        )
    lam = _dynamics_lambda(dynamics)
    p = score.process
    t0 = p.t_max if t_start is None else float(t_start)
    t1 = p.t_min if t_end is None else float(t_end)
    p.check_time(t0, "t_start", allow_zero=False)
    p.check_time(t1, "t_end")
    if not t0 > t1:
        raise ValueError(f"Need t_start > t_end, got {t0}, {t1}.")
    ts = np.array([t0, t1]) if save_times is None else np.asarray(save_times, dtype=float)
    if ts.ndim != 1 or ts.size < 1 or np.any(np.diff(ts) >= 0) or ts[0] > t0 + 1e-12 or ts[-1] < t1 - 1e-12:
        raise ValueError(f"`save_times` must decrease within [t_end, t_start] = [{t1:g}, {t0:g}].")
    if ts[0] < t0:
        ts = np.concatenate([[t0], ts])
    mix = unwrap_mixture(score)
    if mix is not None:
        a2 = float(p.alpha(t1)) ** 2
        narrow = math.sqrt(a2 * float(np.min(np.asarray(mix.eigvals))) + float(p.sigma2(t1)))
        if narrow < min_cells_per_std * max(grid.h):
            raise ValueError(
                f"Grid too coarse for the solver: the narrowest mixture component has std {narrow:.4g} "
                f"at t_end={t1:g} but the cell size is {max(grid.h):.4g} (need >= {min_cells_per_std:g} "
                "cells per std); increase `n_cells` or raise `t_end`."
            )
    return lam, t0, ts


def _reverse_initial(score, grid, initial, dtype):
    if initial is None:
        p = score.process
        return jnp.exp(p.prior_log_prob(jnp.asarray(grid.points(), dtype))).reshape(grid.n_cells)
    return _density_on_grid(initial, grid, dtype)


def reverse_fokker_planck(
    score: AbstractScore,
    grid: FokkerPlanckGrid | None = None,
    *,
    lower: float | Sequence[float] | None = None,
    upper: float | Sequence[float] | None = None,
    n_cells: int | Sequence[int] | None = None,
    dynamics: str | float = "sde",
    t_start: float | None = None,
    t_end: float | None = None,
    save_times: ArrayOrSequence | None = None,
    initial: ArrayLike | Callable[[Array], Array] | None = None,
    cfl: float = 0.8,
    mass_tol: float = 1e-6,
    boundary_fraction: float = 0.05,
    max_steps: int = 2_000_000,
    min_cells_per_std: float = 3.0,
) -> FokkerPlanckSolution:
    r"""Density of the reverse dynamics of ``score`` (1-D or 2-D) from ``t_start`` down to ``t_end``.

    ``dynamics``: ``"sde"``/``"ddpm"`` (``lambda = 1``: reverse SDE, continuous DDPM), ``"ode"``/``"ddim"``
    (``lambda = 0``: continuity equation of the PF-ODE, continuous DDIM) or ``lambda in [0, 1]``; drift
    ``-f x + (1 + lambda)/2 g^2 s``, diffusion ``lambda g^2 / 2`` (module docstring). ``score`` may be any
    score, e.g. a :class:`~diffsim.scores.guidance.ClassifierGuidance` (guided DDPM/DDIM; guidance scale
    ``w`` in diffsim's convention ``s_u + w grad log p_t(y|x)``). ``initial``: the density at ``t_start``
    (array on the cell centres or a log-density callable of one point); default the process prior.
    ``save_times``: decreasing diffusion times from ``t_start`` to ``t_end`` (default both ends).
    ``t_start``/``t_end`` default to ``t_max``/``t_min``.

    Errors: a grid that cannot hold the mass (boundary band above ``mass_tol``), too coarse for the
    initial density or (for mixture scores) for the narrowest component at ``t_end``
    (``min_cells_per_std``), or a stability limit needing more than ``max_steps`` steps.

    Args:
        score: a diffsim score of dimension 1 or 2 (the grid's dimension).
        grid: the :class:`FokkerPlanckGrid`; ``None`` builds one from ``lower``, ``upper``, ``n_cells``.
        lower: lower corner of the box (a float or one per axis); with ``upper`` and ``n_cells``, used
            when ``grid`` is ``None``.
        upper: upper corner of the box.
        n_cells: cells per axis (an int or one per axis, at least 16).
        dynamics: ``"sde"``/``"ddpm"``, ``"ode"``/``"ddim"`` or a number ``lambda`` in ``[0, 1]``.
        t_start: start time; ``None`` uses ``process.t_max``.
        t_end: end time, below ``t_start``; ``None`` uses ``process.t_min``.
        save_times: decreasing snapshot times within ``[t_end, t_start]`` (``t_start`` is prepended if
            missing); ``None`` saves both ends.
        initial: the density at ``t_start``: an array of shape ``grid.n_cells`` or a log-density callable
            of one point; ``None`` uses the process prior.
        cfl: CFL number in ``(0, 1)`` of the positivity-preserving time step.
        mass_tol: the most mass allowed in the boundary band at any time (else ``ValueError``).
        boundary_fraction: width of the boundary band, as a fraction in ``(0, 0.5)`` of each axis (at least
            one cell per side).
        max_steps: the step budget; reaching it before the last time raises ``ValueError``.
        min_cells_per_std: cells per standard deviation required of the initial density (and, for reverse
            solves of mixture scores, of the narrowest component at ``t_end``).

    Returns:
        A :class:`FokkerPlanckSolution`.
    """
    grid = _as_grid(grid, lower, upper, n_cells)
    lam, t0, ts = _reverse_setup(score, grid, dynamics, t_start, t_end, save_times, min_cells_per_std)
    dtype = jnp.result_type(float)
    p0 = _reverse_initial(score, grid, initial, dtype)
    dyn = _ReverseDynamics(score, jnp.asarray(lam, dtype), jnp.asarray(t0, dtype))
    out = solve_fokker_planck(
        dyn,
        grid,
        p0,
        t0 - ts,
        cfl=cfl,
        mass_tol=mass_tol,
        boundary_fraction=boundary_fraction,
        max_steps=max_steps,
        min_cells_per_std=min_cells_per_std,
    )
    return _solution(ts, out, grid)


def reverse_fokker_planck_batch(
    scores: Sequence[AbstractScore],
    grid: FokkerPlanckGrid,
    *,
    dynamics: str | float = "sde",
    t_start: float | None = None,
    t_end: float | None = None,
    save_times: ArrayOrSequence | None = None,
    cfl: float = 0.8,
    mass_tol: float = 1e-6,
    boundary_fraction: float = 0.05,
    max_steps: int = 2_000_000,
    min_cells_per_std: float = 3.0,
) -> list[FokkerPlanckSolution]:
    r""":func:`reverse_fokker_planck` for several scores (e.g. one guided mixture at several guidance scales
    ``w``, or mixtures with the same number of components), all started from the process prior on one grid,
    validated once for the grid and run one after the other through one compiled solver (scores that
    differ only in array values do not recompile; a ``vmap`` over them was measured ~20x slower on CPU).
    Each keeps its own stable time step. Returns one :class:`FokkerPlanckSolution` per score.

    Args:
        scores: a non-empty sequence of diffsim scores of the grid's dimension, sharing one process setup.
        grid: the :class:`FokkerPlanckGrid`.
        dynamics: ``"sde"``/``"ddpm"``, ``"ode"``/``"ddim"`` or a number ``lambda`` in ``[0, 1]``.
        t_start: start time; ``None`` uses ``process.t_max``.
        t_end: end time; ``None`` uses ``process.t_min``.
        save_times: decreasing snapshot times within ``[t_end, t_start]``; ``None`` saves both ends.
        cfl: CFL number in ``(0, 1)`` of the positivity-preserving time step.
        mass_tol: the most mass allowed in the boundary band at any time (else ``ValueError``).
        boundary_fraction: width of the boundary band, as a fraction in ``(0, 0.5)`` of each axis (at least
            one cell per side).
        max_steps: the step budget; reaching it before the last time raises ``ValueError``.
        min_cells_per_std: cells per standard deviation required of the initial density (and, for reverse
            solves of mixture scores, of the narrowest component at ``t_end``).
    """
    scores = list(scores)
    if not scores:
        raise ValueError("`scores` must not be empty.")
    setups = [
        _reverse_setup(s, grid, dynamics, t_start, t_end, save_times, min_cells_per_std) for s in scores
    ]
    lam, t0, ts = setups[0]
    dtype = jnp.result_type(float)
    p0 = _reverse_initial(scores[0], grid, None, dtype)
    p0, su, static = _prepare(
        grid, p0, t0 - ts, cfl, mass_tol, boundary_fraction, max_steps, min_cells_per_std
    )
    sols = []
    for score in scores:  # one compiled solver: scores differing only in array values do not recompile
        dyn = _ReverseDynamics(score, jnp.asarray(lam, dtype), jnp.asarray(t0, dtype))
        out = _run(dyn, p0, *static)
        _finish(out, su, grid, mass_tol, boundary_fraction, max_steps)
        sols.append(_solution(ts, out, grid))
    return sols


def forward_fokker_planck(
    process: AbstractProcess,
    initial: ArrayLike | Callable[[Array], Array],
    grid: FokkerPlanckGrid | None = None,
    *,
    lower: float | Sequence[float] | None = None,
    upper: float | Sequence[float] | None = None,
    n_cells: int | Sequence[int] | None = None,
    t_start: float = 0.0,
    t_end: float | None = None,
    save_times: ArrayOrSequence | None = None,
    cfl: float = 0.8,
    mass_tol: float = 1e-6,
    boundary_fraction: float = 0.05,
    max_steps: int = 2_000_000,
    min_cells_per_std: float = 3.0,
) -> FokkerPlanckSolution:
    r"""Density of the forward noising ``dx = f(t) x dt + g(t) dW`` of ``process`` from ``t_start`` to
    ``t_end`` (default ``t_max``): ``\partial_t p = -\nabla\cdot(f x p) + g^2/2 \Delta p``.
    ``initial``: density
    at ``t_start`` on the cell centres, or a log-density callable of one point. ``save_times`` increasing.

    Args:
        process: the forward process.
        initial: the density at ``t_start``: an array of shape ``grid.n_cells`` or a log-density callable
            of one point.
        grid: the :class:`FokkerPlanckGrid`; ``None`` builds one from ``lower``, ``upper``, ``n_cells``.
        lower: lower corner of the box (a float or one per axis); with ``upper`` and ``n_cells``, used
            when ``grid`` is ``None``.
        upper: upper corner of the box.
        n_cells: cells per axis (an int or one per axis, at least 16).
        t_start: start time (default 0).
        t_end: end time, above ``t_start``; ``None`` uses ``process.t_max``.
        save_times: increasing snapshot times within ``[t_start, t_end]`` (``t_start`` is prepended if
            missing); ``None`` saves both ends.
        cfl: CFL number in ``(0, 1)`` of the positivity-preserving time step.
        mass_tol: the most mass allowed in the boundary band at any time (else ``ValueError``).
        boundary_fraction: width of the boundary band, as a fraction in ``(0, 0.5)`` of each axis (at least
            one cell per side).
        max_steps: the step budget; reaching it before the last time raises ``ValueError``.
        min_cells_per_std: cells per standard deviation required of the initial density (and, for reverse
            solves of mixture scores, of the narrowest component at ``t_end``).

    Returns:
        A :class:`FokkerPlanckSolution`.
    """
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
    grid = _as_grid(grid, lower, upper, n_cells)
    t0 = float(t_start)
    t1 = process.t_max if t_end is None else float(t_end)
    process.check_time(t0, "t_start")
    process.check_time(t1, "t_end")
    if not t1 > t0:
        raise ValueError(f"Need t_end > t_start, got {t0}, {t1}.")
    ts = np.array([t0, t1]) if save_times is None else np.asarray(save_times, dtype=float)
    if ts.ndim != 1 or np.any(np.diff(ts) <= 0) or ts[0] < t0 - 1e-12 or ts[-1] > t1 + 1e-12:
        raise ValueError(f"`save_times` must increase within [t_start, t_end] = [{t0:g}, {t1:g}].")
    if ts[0] > t0:
        ts = np.concatenate([[t0], ts])
    dtype = jnp.result_type(float)
    p0 = _density_on_grid(initial, grid, dtype)
    dyn = _ForwardDynamics(process, jnp.asarray(t0, dtype))
    out = solve_fokker_planck(
        dyn,
        grid,
        p0,
        ts - t0,
        cfl=cfl,
        mass_tol=mass_tol,
        boundary_fraction=boundary_fraction,
        max_steps=max_steps,
        min_cells_per_std=min_cells_per_std,
    )
    return _solution(ts, out, grid)
