"""The result of a run: :class:`Trajectory`."""

from __future__ import annotations

import equinox as eqx
import jax
from jaxtyping import Array, Float, PyTree


__all__ = ["Trajectory"]


class Trajectory(eqx.Module):
    """Result of :func:`diffsim.simulate` (and of ``simulate_sharded``, ``noise_denoise``, ``clone``).

    :func:`~diffsim.clone` returns the same structure with a leading clone axis on ``xs``, ``stats`` and
    ``x``. Every array is a ``jax.Array``, whatever the run's chunking or sharding (a chunked run
    assembles its chunks on the host and returns them as arrays on the default device).

    Attributes:
        ts: saved times, shape ``(S,)``.
        xs: saved states, shape ``(S, N, d)`` (``None`` with ``save_states=False``).
        stats: per-particle statistics at the saved times, each leaf shaped ``(S, N, ...)``, or ``None``
            when no ``stats`` function was given.
        x: final states, shape ``(N, d)``.
        nfe: score evaluations per particle (``-1`` when data dependent: adaptive ODE solvers).
    """

    ts: Float[Array, " S"]
    xs: Float[Array, "*clones S N d"] | None
    stats: PyTree[Array] | None  # leaves shaped (*clones, S, N, ...)
    x: Float[Array, "*clones N d"]
    nfe: int = eqx.field(static=True)

    def __check_init__(self):
        leaves = [("ts", self.ts), ("x", self.x), ("xs", self.xs)]
        leaves += [("stats", leaf) for leaf in jax.tree.leaves(self.stats)]
        for field, value in leaves:
            if value is not None and not isinstance(value, jax.Array):
                raise TypeError(f"Trajectory.{field} must hold jax.Array leaves, got {type(value).__name__}.")
