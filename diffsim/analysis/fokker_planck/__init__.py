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

from ._grid import (
    FokkerPlanckGrid as FokkerPlanckGrid,
    FokkerPlanckSolution as FokkerPlanckSolution,
    grid_entropy as grid_entropy,
)
from ._scheme import (
    solve_fokker_planck as solve_fokker_planck,
)
from ._solvers import (
    forward_fokker_planck as forward_fokker_planck,
    reverse_fokker_planck as reverse_fokker_planck,
    reverse_fokker_planck_batch as reverse_fokker_planck_batch,
)


__all__ = [
    "FokkerPlanckGrid",
    "FokkerPlanckSolution",
    "forward_fokker_planck",
    "grid_entropy",
    "reverse_fokker_planck",
    "reverse_fokker_planck_batch",
    "solve_fokker_planck",
]
