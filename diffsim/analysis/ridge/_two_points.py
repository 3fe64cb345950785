r"""Closed forms for the two-point training set ``{(-a, 0), (a, 0)}`` under the VP (OU) process, whose
1-ridge is the x-axis: the distance to the ridge is ``|y|`` and the ``y``-dynamics are linear.

With ``h_t = sigma_t^2`` and the exact empirical score, the normal coordinate obeys
``s_y = -y / h_t``; a constant denoiser-level error ``(0, c)`` adds ``c / h_t``. Then

- reverse SDE, Euler-Maruyama step ``dt`` from ``t``: ``y <- a_t y + 2 c dt / h_t + sqrt(2 dt) z`` with
  ``a_t = 1 - (2 / h_t - 1) dt``, so the variance and the mean offset follow exact recursions
  (:func:`two_point_em_recursions`); in continuous time ``E y^2 = h_t``;
- the quasi-static (linearised align) mean offset is ``2 c / (2 - h_t)`` (:func:`linearised_normal_offset`);
- PF-ODE: ``y_t = y_T sigma_t / sigma_T`` (:func:`two_point_ode_distance`), so ``d log|y| / dt =
  1 / h_t - 1`` (:func:`ode_normal_relaxation_rate`) and a tube of radius ``r`` is entered when
  ``h_{t*} = r^2 h_T / y_T^2`` (:func:`two_point_tube_entry_time`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from ...processes import AbstractProcess


def two_point_em_recursions(
    grid: Float[ArrayLike, " S"], process: AbstractProcess, shift: float
) -> tuple[Float[np.ndarray, " S"], Float[np.ndarray, " S"]]:
    """Exact variance of ``y`` and exact mean offset under a denoiser shift ``(0, shift)``, at every node
    of the Euler-Maruyama chain on ``grid`` (decreasing times; ``Var = 1``, offset 0 at the first node).

    Args:
        grid: ``(S,)`` the chain's decreasing times.
        process: the VP process (its ``sigma2`` gives ``h_t``).
        shift: ``c``, the constant denoiser-level error in the normal direction.

    Returns:
        ``(variance, offset)``, each ``(S,)``.
    """
    g = np.asarray(grid, float)
    h = np.asarray(process.sigma2(jnp.asarray(g)), float)
    v, m = [1.0], [0.0]
    for i in range(len(g) - 1):
        dt = g[i] - g[i + 1]
        a = 1.0 - (2.0 / h[i] - 1.0) * dt
        v.append(a * a * v[-1] + 2.0 * dt)
        m.append(a * m[-1] + 2.0 * shift * dt / h[i])
    return np.asarray(v), np.asarray(m)


def linearised_normal_offset(shift: float, h: Float[ArrayLike, ...]) -> Float[np.ndarray, ...]:
    """Quasi-static normal offset ``2 c / (2 - h)`` caused by a constant denoiser-level normal error
    ``c`` (score error ``c / h``) at noise variance ``h``.

    Args:
        shift: ``c``, the denoiser-level normal error.
        h: noise variances ``h_t = sigma_t^2`` (below 2), any shape.
    """
    return 2 * shift / (2 - h)


def linearised_ridge_distance(
    h: Float[ArrayLike, ...], error_normal: Float[ArrayLike, ...], codim: int
) -> Float[np.ndarray, ...]:
    """Linearised align theory for a learned score: normal offset ``r = 2 h e_perp / (2 - h)`` on top of
    the exact normal fluctuation (variance ``h`` per normal direction), ``sqrt(r^2 + codim h)``.

    Args:
        h: noise variances ``h_t = sigma_t^2``, any shape.
        error_normal: ``e_perp``, the normal score-error norm at ``h`` (broadcast with ``h``).
        codim: the ridge's codimension (number of normal directions).
    """
    return np.sqrt((2 * h * error_normal / (2 - h)) ** 2 + codim * h)


def two_point_ode_distance(
    y_T: Float[ArrayLike, " N"], h: Float[ArrayLike, " S"]
) -> Float[np.ndarray, "S N"]:
    """PF-ODE distance law ``|y_t| = |y_T| sigma_t / sigma_T`` at the variances ``h`` (``h[0] = h_T``).

    Args:
        y_T: ``(N,)`` the starting normal coordinates.
        h: ``(S,)`` the variances ``h_t`` along the path, starting at ``h_T``.

    Returns:
        ``(S, N)`` the distances.
    """
    h = np.asarray(h, float)
    return np.abs(np.asarray(y_T, float))[None] * np.sqrt(h / h[0])[:, None]


def ode_normal_relaxation_rate(h: Float[ArrayLike, ...]) -> Float[np.ndarray, ...]:
    """PF-ODE normal relaxation rate ``d log dist / dt = 1 / h_t - 1``.

    Args:
        h: noise variances ``h_t = sigma_t^2``, any shape.
    """
    return 1 / np.asarray(h, float) - 1


def two_point_tube_entry_time(
    radius: float, h_T: float, y_T: Float[ArrayLike, " N"]
) -> Float[np.ndarray, " N"]:
    """Time ``t*`` at which the PF-ODE enters a tube of ``radius`` around the ridge from ``y_T``:
    ``h_{t*} = r^2 h_T / y_T^2`` and ``t* = -log(1 - h_{t*}) / 2`` (OU process, ``h_t = 1 - e^{-2t}``).

    Args:
        radius: ``r``, the tube radius.
        h_T: the variance at the start time ``T``.
        y_T: ``(N,)`` the starting normal coordinates.

    Returns:
        ``(N,)`` entry times (``h_{t*}`` is capped just below 1, so they are finite; a path that starts
        inside the tube gets ``t* >= T``).
    """
    h_star = radius**2 * h_T / np.asarray(y_T, float) ** 2
    return -0.5 * np.log1p(-np.minimum(h_star, 1 - 1e-12))
