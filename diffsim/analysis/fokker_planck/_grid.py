"""The Fokker-Planck grid (uniform, cell-centred, 1-D or 2-D) and the solution container."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validation import check_positive_int


class FokkerPlanckGrid(eqx.Module):
    """A uniform cell-centred grid on the box ``[lower, upper]`` (1-D or 2-D), ``n_cells`` per axis.

    Args:
        lower: lower corner of the box: a float (1-D) or one finite value per axis.
        upper: upper corner of the box, above ``lower`` on every axis.
        n_cells: cells per axis: one int for every axis, or one per axis; at least 16 each.
    """

    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)
    n_cells: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        lower: float | Sequence[float] | np.ndarray,
        upper: float | Sequence[float] | np.ndarray,
        n_cells: int | Sequence[int],
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

    Attributes:
        times: diffusion times ``t`` of the snapshots ``(S,)`` (decreasing for reverse dynamics).
        density: ``(S, n_1[, n_2])`` cell averages (integrate with ``cell_volume``).
        mass: total mass at each snapshot ``(S,)`` (1 up to rounding).
        entropy: ``-sum p log p dV`` at each snapshot ``(S,)``.
        boundary_mass: mass in the boundary band at each snapshot ``(S,)``.
        min_density: the smallest value met at any stage of any step (positivity check).
        n_steps: time steps taken.
        grid: the :class:`FokkerPlanckGrid`.
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


def grid_entropy(density: ArrayLike, cell_volume: float | Float[ArrayLike, ""]) -> Array:
    """``-sum_i p_i log p_i dV`` over cells with ``p_i > 0`` (the entropy of the piecewise-constant
    density).

    Args:
        density: cell averages ``p_i`` (any shape; not renormalised).
        cell_volume: the cell volume ``dV``.
    """
    p = jnp.asarray(density)
    safe = jnp.where(p > 0, p, 1.0)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(safe), 0.0)) * cell_volume
