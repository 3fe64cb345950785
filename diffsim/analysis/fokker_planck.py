r"""Finite-volume solver for the Fokker-Planck equation of score-driven SDEs in 1-D and 2-D.

**Equations.** On a solver clock ``u`` (increasing) the density ``p(u, x)`` of ``dX = b(u, X) du +
sqrt(2 D(u)) dW`` obeys

    \partial_u p = -\nabla \cdot (b p) + D(u) \Delta p.

- *Reverse dynamics of a score* ``s`` (guided scores included) on ``u = t_start - t``, with
  ``lambda in [0, 1]``:

      b(u, x) = -f(t) x + (1 + lambda)/2 g(t)^2 s(t, x),      D(u) = lambda g(t)^2 / 2.

  ``lambda = 1`` is the reverse SDE (the continuous limit of DDPM; Anderson 1982), ``lambda = 0`` the
  probability-flow ODE, whose Fokker-Planck equation is the continuity equation of DDIM (Song et al.
  2021); intermediate values are the family of SDEs sharing the same marginals when ``s`` is exact. For
  guided scores this is the equation Wu et al. (ICML 2024) use to compare entropies.
- *Forward noising* of :mod:`diffsim.processes` on ``u = t``: ``b = f(t) x``, ``D = g(t)^2 / 2``; the exact
  marginals are known, which is how the solver is tested.

**Scheme** (conservative, positivity preserving). Cell averages on a uniform grid; the drift is evaluated
once per stage at the cell centres and averaged onto the faces (second order; the second-stage drift of
one step is the first-stage drift of the next); the flux through each interior face is

    F = max(b, 0) p^L + min(b, 0) p^R - D (p_{i+1} - p_i) / h,

with ``p^L, p^R`` the MUSCL reconstructions ``p_i +/- slope_i / 2``, ``slope_i = minmod(p_{i+1} - p_i,
p_i - p_{i-1})``; boundary faces carry zero flux, so ``sum_i p_i h^dim`` is conserved exactly (up to
rounding). Minmod keeps every face value in ``[p_i/2, 3 p_i/2]``, so one forward-Euler step keeps
``p >= 0`` whenever

    dt * sum_axes ( 3 max|b_a| / h_a + 2 D / h_a^2 ) <= 1,

and the step is ``dt = cfl / sum_axes(...)`` (``cfl < 1``; advection CFL and diffusion limit in one),
recomputed every step from the drift at both stage times (the step is shortened if the drift at the end of
the step demands it), capped at 1/400 of the time span (a vanishing drift, e.g. the reverse ODE near the
prior, must not take one huge step), and shortened to land on the snapshot times. Time stepping is
SSP-RK2 (Heun; a convex combination of two forward-Euler steps), which inherits positivity. 2-D fluxes are
computed per axis with the drift component at that axis's faces.

**Validation at the boundary** (plain Python errors, before and after the run): a grid must have at least
16 cells per axis; the initial density, and for mixture scores the narrowest class component at
``t_end``, must be resolved by ``min_cells_per_std`` cells per standard deviation ("grid too coarse");
and at most ``mass_tol`` of the mass may ever sit in the boundary band (the outer ``boundary_fraction``
of each axis), otherwise the domain cannot hold the mass and a ``ValueError`` names ``lower``/``upper``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import as_float_array, check_positive_int
from ..processes import AbstractProcess
from ..scores._base import AbstractScore
from ..scores.guidance import unwrap_mixture


__all__ = [
    "FokkerPlanckGrid",
    "FokkerPlanckSolution",
    "forward_fokker_planck",
    "grid_entropy",
    "reverse_fokker_planck",
    "reverse_fokker_planck_batch",
    "solve_fokker_planck",
]


# =====================================================================================================
# grid and solution containers
# =====================================================================================================
class FokkerPlanckGrid(eqx.Module):
    """A uniform cell-centred grid on the box ``[lower, upper]`` (1-D or 2-D), ``n_cells`` per axis."""

    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)
    n_cells: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self, lower: float | Sequence[float], upper: float | Sequence[float], n_cells: int | Sequence[int]
    ):
        lo = tuple(float(v) for v in np.atleast_1d(np.asarray(lower, dtype=float)))
        hi = tuple(float(v) for v in np.atleast_1d(np.asarray(upper, dtype=float)))
        if isinstance(n_cells, (int, np.integer)):
            nc = (int(n_cells),) * len(lo)
        else:
            nc = tuple(
                check_positive_int(int(v) if isinstance(v, np.integer) else v, "n_cells") for v in n_cells
            )
        if not (len(lo) == len(hi) == len(nc)) or len(lo) not in (1, 2):
            raise ValueError(
                f"`lower`, `upper`, `n_cells` must describe a 1-D or 2-D box, got {lo}, {hi}, {nc}."
            )
        if (
            not all(np.isfinite(lo))
            or not all(np.isfinite(hi))
            or any(a >= b for a, b in zip(lo, hi, strict=False))
        ):
            raise ValueError(f"Need finite lower < upper on every axis, got lower={lo}, upper={hi}.")
        for n in nc:
            if n < 16:
                raise ValueError(
                    f"`n_cells` must be >= 16 per axis for the Fokker-Planck solver (grid too coarse), "
                    f"got {nc}."
                )
        self.lower, self.upper, self.n_cells = lo, hi, nc

    @property
    def dim(self) -> int:
        return len(self.n_cells)

    @property
    def h(self) -> tuple[float, ...]:
        return tuple((b - a) / n for a, b, n in zip(self.lower, self.upper, self.n_cells, strict=False))

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.h))

    def centers(self) -> tuple[np.ndarray, ...]:
        return tuple(
            a + (np.arange(n) + 0.5) * h for a, n, h in zip(self.lower, self.n_cells, self.h, strict=False)
        )

    def points(self) -> np.ndarray:
        """Cell centres as ``(M, dim)`` (C order: the last axis varies fastest)."""
        mesh = np.meshgrid(*self.centers(), indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=-1)

    def face_points(self, axis: int) -> np.ndarray:
        """Interior faces normal to ``axis`` as ``(M_a, dim)`` points (C order of the face array)."""
        axes = list(self.centers())
        a, h, n = self.lower[axis], self.h[axis], self.n_cells[axis]
        axes[axis] = a + h * np.arange(1, n)
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=-1)

    def face_shape(self, axis: int) -> tuple[int, ...]:
        shape = list(self.n_cells)
        shape[axis] -= 1
        return tuple(shape)

    def boundary_mask(self, fraction: float) -> np.ndarray:
        """Cells in the outer ``fraction`` of any axis (at least one cell per side)."""
        mask = np.zeros(self.n_cells, bool)
        for ax, n in enumerate(self.n_cells):
            m = max(1, math.ceil(fraction * n))
            sl = [slice(None)] * self.dim
            sl[ax] = slice(0, m)
            mask[tuple(sl)] = True
            sl[ax] = slice(n - m, n)
            mask[tuple(sl)] = True
        return mask


class FokkerPlanckSolution(eqx.Module):
    """Density snapshots of a Fokker-Planck solve.

    - ``times``: diffusion times ``t`` of the snapshots ``(S,)`` (decreasing for reverse dynamics);
    - ``density``: ``(S, n_1[, n_2])`` cell averages (integrate with ``cell_volume``);
    - ``mass``, ``entropy`` (``-sum p log p dV``), ``boundary_mass`` at each snapshot ``(S,)``;
    - ``min_density``: the smallest value met at any stage of any step (positivity check);
    - ``n_steps``: time steps taken; ``grid``: the :class:`FokkerPlanckGrid`.
    """

    times: Float[Array, " S"]
    density: Float[Array, "S ..."]
    mass: Float[Array, " S"]
    entropy: Float[Array, " S"]
    boundary_mass: Float[Array, " S"]
    min_density: Float[Array, ""]
    n_steps: Array
    grid: FokkerPlanckGrid

    @property
    def cell_volume(self) -> float:
        return self.grid.cell_volume

    def expectation(self, fn: Callable[[Array], Array], index: int = -1) -> Array:
        """``E[fn(X)]`` under snapshot ``index``; ``fn`` maps points ``(M, dim)`` to values ``(M,)``."""
        pts = jnp.asarray(self.grid.points(), self.density.dtype)
        vals = fn(pts)
        return jnp.sum(self.density[index].ravel() * vals) * self.cell_volume

    def mean(self, index: int = -1) -> Array:
        """Mean of snapshot ``index``, shape ``(dim,)``."""
        return jnp.stack([self.expectation(lambda x, a=a: x[:, a], index) for a in range(self.grid.dim)])

    def variance(self, index: int = -1) -> Array:
        """Per-axis variance of snapshot ``index``, shape ``(dim,)``."""
        m = self.mean(index)
        return jnp.stack(
            [self.expectation(lambda x, a=a: (x[:, a] - m[a]) ** 2, index) for a in range(self.grid.dim)]
        )

    def resolved(self, index: int = -1, cells_per_std: float = 2.0) -> bool:
        """Whether snapshot ``index`` still spans at least ``cells_per_std`` cells per standard deviation
        on every axis (a collapsing density, e.g. strongly guided DDIM, eventually is not)."""
        sd = np.sqrt(np.asarray(self.variance(index)))
        return bool(np.all(sd >= cells_per_std * np.asarray(self.grid.h)))


def grid_entropy(density: ArrayLike, cell_volume: float) -> Array:
    """``-sum_i p_i log p_i dV`` over cells with ``p_i > 0`` (the entropy of the piecewise-constant
    density)."""
    p = jnp.asarray(density)
    safe = jnp.where(p > 0, p, 1.0)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(safe), 0.0)) * cell_volume


# =====================================================================================================
# drift / diffusion modules (pytrees: new parameter values do not recompile)
# =====================================================================================================
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


# =====================================================================================================
# the scheme
# =====================================================================================================
_MIN_STEPS = 400  # at most (u_end - u_start) / 400 per step, so a vanishing drift cannot take one huge step


def _minmod(a, b):
    return 0.5 * (jnp.sign(a) + jnp.sign(b)) * jnp.minimum(jnp.abs(a), jnp.abs(b))


def _axis_flux_divergence(p, b, diff, h, axis):
    """``-(F_{i+1/2} - F_{i-1/2}) / h`` along ``axis`` with zero-flux boundaries."""
    q = jnp.moveaxis(p, axis, 0)
    bb = jnp.moveaxis(b, axis, 0)
    dq = q[1:] - q[:-1]
    slope = jnp.zeros_like(q).at[1:-1].set(_minmod(dq[:-1], dq[1:]))
    p_left = q[:-1] + 0.5 * slope[:-1]
    p_right = q[1:] - 0.5 * slope[1:]
    flux = jnp.maximum(bb, 0.0) * p_left + jnp.minimum(bb, 0.0) * p_right - diff * dq / h
    zero = jnp.zeros_like(flux[:1])
    full = jnp.concatenate([zero, flux, zero], axis=0)
    return jnp.moveaxis(-(full[1:] - full[:-1]) / h, 0, axis)


def _rhs(p, drifts, diff, hs):
    out = jnp.zeros_like(p)
    for ax, (b, h) in enumerate(zip(drifts, hs, strict=False)):
        out = out + _axis_flux_divergence(p, b, diff, h, ax)
    return out


def _center_drift(dynamics, u, centers, shape):
    """Drift at the cell centres, shape ``(*n_cells, dim)``."""
    b = jax.vmap(lambda x: dynamics.drift(u, x))(centers)
    return b.reshape(shape + (len(shape),))


def _face_drifts(b_center):
    """Interior-face drift per axis: the mean of the two adjacent cell-centre drifts (second order)."""
    dim = b_center.shape[-1]
    out = []
    for ax in range(dim):
        b = jnp.moveaxis(b_center[..., ax], ax, 0)
        out.append(jnp.moveaxis(0.5 * (b[1:] + b[:-1]), 0, ax))
    return out


def _stable_dt(drifts, diff, hs, cfl):
    rate = 0.0
    for b, h in zip(drifts, hs, strict=False):
        rate = rate + 3.0 * jnp.max(jnp.abs(b)) / h + 2.0 * diff / h**2
    return cfl / jnp.maximum(rate, 1e-30)


def _run_impl(dynamics, p0, centers, shape, hs, save_u, cfl, max_steps, band, vol):
    dtype = p0.dtype
    max_dt = (save_u[-1] - save_u[0]) / _MIN_STEPS
    floor = jnp.finfo(dtype).tiny * 1e8

    def entropy(p):
        return grid_entropy(p, vol)

    def interval(carry, u_next):
        def cond(c):
            _p, u, _b_c, n, _bmax, _pmin = c
            return (u < u_next) & (n < max_steps)

        def body(c):
            p, u, b_c, n, bmax, pmin = c
            d0 = dynamics.diffusion(u)
            b0 = _face_drifts(b_c)  # the drift at u, carried over from the previous step's second stage
            # the limit must hold at both stage times: take it at u, probe u + dt, and shorten if needed
            dt = jnp.minimum(jnp.minimum(_stable_dt(b0, d0, hs, cfl), max_dt), u_next - u)
            bc_probe = _center_drift(dynamics, u + dt, centers, shape)
            d_probe = dynamics.diffusion(u + dt)
            dt_short = jnp.minimum(dt, _stable_dt(_face_drifts(bc_probe), d_probe, hs, cfl))
            bc1, d1 = jax.lax.cond(
                dt_short < dt,
                lambda: (
                    _center_drift(dynamics, u + dt_short, centers, shape),
                    dynamics.diffusion(u + dt_short),
                ),
                lambda: (bc_probe, d_probe),
            )
            dt = dt_short
            p1 = p + dt * _rhs(p, b0, d0, hs)
            p2 = p1 + dt * _rhs(p1, _face_drifts(bc1), d1, hs)
            p_new = 0.5 * (p + p2)
            # flush values below tiny * 1e8 (about 1e-30 in float32) to zero: subnormal floats make CPU
            # arithmetic ~30x slower; the mass this removes is below n_cells * 1e-30
            p_new = jnp.where(p_new < floor, 0.0, p_new)
            u_new = jnp.where(u_next - (u + dt) <= 1e-12 * jnp.maximum(1.0, jnp.abs(u_next)), u_next, u + dt)
            bm = jnp.sum(jnp.where(band, p_new, 0.0)) * vol
            pm = jnp.minimum(pmin, jnp.minimum(jnp.min(p1), jnp.min(p_new)))
            return p_new, u_new, bc1, n + 1, jnp.maximum(bmax, bm), pm

        carry = jax.lax.while_loop(cond, body, carry)
        p = carry[0]
        snap = (p, jnp.sum(p) * vol, entropy(p), jnp.sum(jnp.where(band, p, 0.0)) * vol)
        return carry, snap

    u0 = jnp.zeros((), dtype)
    init = (
        p0,
        u0,
        _center_drift(dynamics, u0, centers, shape),
        jnp.zeros((), jnp.int32),
        jnp.sum(jnp.where(band, p0, 0.0)) * vol,
        jnp.min(p0),
    )
    carry, (ps, masses, ents, bms) = jax.lax.scan(interval, init, save_u[1:])
    first = (
        p0[None],
        (jnp.sum(p0) * vol)[None],
        entropy(p0)[None],
        (jnp.sum(jnp.where(band, p0, 0.0)) * vol)[None],
    )
    ps, masses, ents, bms = (
        jnp.concatenate([a, b]) for a, b in zip(first, (ps, masses, ents, bms), strict=False)
    )
    return ps, masses, ents, bms, carry[1], carry[3], carry[4], carry[5]


_run = eqx.filter_jit(_run_impl)


def _prepare(grid, initial, save_u, cfl, mass_tol, boundary_fraction, max_steps, min_cells_per_std):
    """Validate the inputs of a solve (plain Python, before tracing); return normalised arrays."""
    if not isinstance(grid, FokkerPlanckGrid):
        raise TypeError(f"`grid` must be a FokkerPlanckGrid, got {type(grid).__name__}.")
    if not (0.0 < float(cfl) < 1.0):
        raise ValueError(f"`cfl` must lie in (0, 1) for positivity, got {cfl}.")
    if not (0.0 < float(boundary_fraction) < 0.5):
        raise ValueError(f"`boundary_fraction` must lie in (0, 0.5), got {boundary_fraction}.")
    if not float(mass_tol) > 0:
        raise ValueError(f"`mass_tol` must be positive, got {mass_tol}.")
    check_positive_int(max_steps, "max_steps")
    p0 = as_float_array(initial, "initial")
    if p0.shape != grid.n_cells:
        raise ValueError(f"`initial` must have the grid shape {grid.n_cells}, got {p0.shape}.")
    p0n = np.asarray(p0, dtype=float)
    if np.any(p0n < 0):
        raise ValueError("`initial` density must be non-negative.")
    vol = grid.cell_volume
    total = float(p0n.sum() * vol)
    if not total > 0:
        raise ValueError("`initial` density has zero mass.")
    p0 = p0 / total
    p0n = p0n / total
    band = grid.boundary_mask(boundary_fraction)
    edge = float(p0n[band].sum() * vol)
    if edge > mass_tol:
        raise ValueError(
            f"The grid cannot hold the mass: the initial density has {edge:.3g} of its mass in the boundary "
            "band "
            f"(outer {boundary_fraction:.0%} of each axis) > mass_tol={mass_tol:g}. Enlarge `lower`/`upper` "
            f"(now {grid.lower}, {grid.upper})."
        )
    _check_resolution(p0n, grid, min_cells_per_std, "the initial density")
    su = np.asarray(save_u, dtype=float)
    if su.ndim != 1 or su.size < 2 or su[0] != 0.0 or np.any(np.diff(su) <= 0):
        raise ValueError("`save_u` must hold at least two increasing solver times starting at 0.")
    dtype = p0.dtype
    centers = jnp.asarray(grid.points(), dtype)
    # cell sizes and volume as arrays (not static floats): grids differing only in their box share one
    # compilation
    static = (
        centers,
        tuple(grid.n_cells),
        tuple(jnp.asarray(h, dtype) for h in grid.h),
        jnp.asarray(su, dtype),
        jnp.asarray(cfl, dtype),
        int(max_steps),
        jnp.asarray(band),
        jnp.asarray(vol, dtype),
    )
    return p0, su, static


def _finish(out, su, grid, mass_tol, boundary_fraction, max_steps):
    """Post-run checks of one solve (step budget, mass at the boundary)."""
    u_reached, max_edge = float(out[4]), float(out[6])
    if u_reached < su[-1] * (1 - 1e-6):
        raise ValueError(
            f"The Fokker-Planck solve hit max_steps={max_steps} at u={u_reached:.4g} < {su[-1]:.4g}: "
            "the stability limit needs more steps (use fewer cells or raise `max_steps`)."
        )
    if max_edge > mass_tol:
        raise ValueError(
            f"The grid cannot hold the mass: up to {max_edge:.3g} of the mass reached the boundary band "
            "(outer "
            f"{boundary_fraction:.0%} of each axis) during the solve, > mass_tol={mass_tol:g}. Enlarge "
            f"`lower`/`upper` (now {grid.lower}, {grid.upper})."
        )


def solve_fokker_planck(
    dynamics: Any,
    grid: FokkerPlanckGrid,
    initial: ArrayLike,
    save_u: ArrayLike,
    *,
    cfl: float = 0.8,
    mass_tol: float = 1e-6,
    boundary_fraction: float = 0.05,
    max_steps: int = 2_000_000,
    min_cells_per_std: float = 3.0,
) -> tuple[Any, ...]:
    r"""Solve ``\partial_u p = -\nabla\cdot(b p) + D \Delta p`` on ``grid`` from ``u = 0``.

    ``dynamics`` is an Equinox module with ``drift(u, x) -> (dim,)`` for one point and ``diffusion(u) -> D``;
    ``initial`` the density on the cell centres (normalised here); ``save_u`` increasing solver times
    starting at 0 (at least two). Returns the raw arrays ``(densities, masses, entropies, boundary_masses,
    u_reached, n_steps, max_boundary_mass, min_density)`` after the validation described in the module
    docstring. Most users want :func:`reverse_fokker_planck` or :func:`forward_fokker_planck`.
    """
    p0, su, static = _prepare(
        grid, initial, save_u, cfl, mass_tol, boundary_fraction, max_steps, min_cells_per_std
    )
    out = _run(dynamics, p0, *static)
    _finish(out, su, grid, mass_tol, boundary_fraction, max_steps)
    return out


def _solution(ts, out, grid) -> FokkerPlanckSolution:
    """Wrap the raw arrays of :func:`solve_fokker_planck` (see its docstring for their order)."""
    densities, masses, entropies, boundary, _, n_steps, _, min_density = out
    return FokkerPlanckSolution(
        jnp.asarray(ts), densities, masses, entropies, boundary, min_density, n_steps, grid
    )


def _check_resolution(p: np.ndarray, grid: FokkerPlanckGrid, cells_per_std: float, what: str) -> None:
    pts = grid.points()
    w = p.ravel() * grid.cell_volume
    w = w / w.sum()
    mean = w @ pts
    sd = np.sqrt(np.maximum(w @ (pts - mean) ** 2, 0.0))
    h = np.asarray(grid.h)
    if np.any(sd < cells_per_std * h):
        raise ValueError(
            f"Grid too coarse for the solver: {what} has standard deviation {sd.round(4).tolist()} "
            f"but the cell size is {h.round(4).tolist()} (need >= {cells_per_std:g} cells per std); "
            "increase `n_cells`."
        )


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
    save_times: ArrayLike | None = None,
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
    save_times: ArrayLike | None = None,
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
    Each keeps its own stable time step. Returns one :class:`FokkerPlanckSolution` per score."""
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
    save_times: ArrayLike | None = None,
    cfl: float = 0.8,
    mass_tol: float = 1e-6,
    boundary_fraction: float = 0.05,
    max_steps: int = 2_000_000,
    min_cells_per_std: float = 3.0,
) -> FokkerPlanckSolution:
    r"""Density of the forward noising ``dx = f(t) x dt + g(t) dW`` of ``process`` from ``t_start`` to
    ``t_end`` (default ``t_max``): ``\partial_t p = -\nabla\cdot(f x p) + g^2/2 \Delta p``.
    ``initial``: density
    at ``t_start`` on the cell centres, or a log-density callable of one point. ``save_times`` increasing."""
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
