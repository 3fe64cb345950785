"""Argument checks shared by :mod:`diffsim.analysis.concepts`, :mod:`diffsim.analysis.probes` and
:mod:`diffsim.analysis.saliency`, and :func:`step_time`."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._validation import as_float_array
from ..processes import AbstractProcess
from ..scores.token_conditioned import _check_model as _check_model, _check_process as _check_process


def _check_time(process: AbstractProcess, t, name: str = "t") -> Array:
    """A scalar time inside ``(0, t_max]`` of ``process`` (ValueError otherwise)."""
    arr = jnp.asarray(t)
    if arr.ndim != 0:
        raise ValueError(f"`{name}` must be a scalar time, got shape {arr.shape}.")
    process.check_time(arr, name, allow_zero=False)
    return arr


def _image_shape(image_shape, d: int, name: str = "image_shape") -> tuple[int, int]:
    """``(H, W)`` with ``H W = d``; ``None`` means a 1 x d strip."""
    if image_shape is None:
        return (1, d)
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2 or shape[0] * shape[1] != d or min(shape) < 1:
        raise ValueError(
            f"`{name}` must be (H, W) with H * W = {d} (the dimension of x), got {tuple(image_shape)}."
        )
    return shape  # type: ignore[return-value]


def _point(x, name: str = "x", dim: int | None = None) -> Array:
    arr = as_float_array(x, name, ndim=1)
    if dim is not None and arr.shape[0] != dim:
        raise ValueError(f"`{name}` must have shape ({dim},), got {arr.shape}.")
    return arr


def step_time(grid: ArrayLike, step: int) -> float:
    """The time ``grid[step]`` of a sampler's grid, validating that ``step`` is a grid index.

    Raises ``ValueError`` for a step outside ``0 .. len(grid) - 1`` (negative indices are not accepted:
    "step" counts from the start of the grid, the noise end of a reverse grid).

    Args:
        grid: the sampler's time grid, 1-D with at least 2 times.
        step: a grid index in ``0 .. len(grid) - 1``.
    """
    ts = np.asarray(grid, float)
    if ts.ndim != 1 or ts.size < 2:
        raise ValueError(f"`grid` must be a 1-D array of at least 2 times, got shape {ts.shape}.")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"`step` must be an integer grid index, got {type(step).__name__}.")
    if not 0 <= int(step) < ts.size:
        raise ValueError(
            f"`step` {step} is outside the grid: it has {ts.size} times (steps 0..{ts.size - 1})."
        )
    return float(ts[int(step)])
