"""The conservative, positivity-preserving finite-volume scheme (MUSCL/minmod fluxes, SSP-RK2 steps) and
the validation around one solve (see the package docstring)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from ..._validation import as_float_array, check_positive_int
from ._grid import FokkerPlanckGrid, FokkerPlanckSolution, grid_entropy


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

    Args:
        dynamics: an Equinox module with ``drift(u, x)`` and ``diffusion(u)``, as above.
        grid: the :class:`FokkerPlanckGrid`.
        initial: the initial density, shape ``grid.n_cells``, non-negative with positive mass.
        save_u: increasing solver times starting at 0 (at least two).
        cfl: CFL number in ``(0, 1)`` of the positivity-preserving time step.
        mass_tol: the most mass allowed in the boundary band at any time (else ``ValueError``).
        boundary_fraction: width of the boundary band, as a fraction in ``(0, 0.5)`` of each axis (at least
            one cell per side).
        max_steps: the step budget; reaching it before the last time raises ``ValueError``.
        min_cells_per_std: cells per standard deviation required of the initial density (and, for reverse
            solves of mixture scores, of the narrowest component at ``t_end``).
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
