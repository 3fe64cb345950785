"""Argument checks shared by the score networks: tokens, points, alphabets, data std, process."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..._validation import is_concrete
from ...processes import VP, AbstractProcess


def check_tokens(
    tokens: Any, alphabet_sizes: Sequence[int], name: str = "tokens", *, allow_null: bool = True
) -> Array:
    """Validate a token vector ``(n,)`` or table ``(N, n)`` against ``alphabet_sizes`` and return it as an
    integer array. Slot ``j`` accepts ``0 .. A_j - 1`` and, with ``allow_null``, the null id ``A_j``.

    Concrete values are range-checked (``ValueError`` naming the slot); tracers are accepted unchecked.

    Args:
        tokens: integer token ids, shape ``(n,)`` or ``(N, n)``; ``None`` or a float dtype raises
            ``TypeError``.
        alphabet_sizes: the ``n`` alphabet sizes ``(A_1, ..., A_n)``.
        name: the argument's name, used in error messages.
        allow_null: whether the null id ``A_j`` (an unconditioned slot) is accepted (default ``True``).

    Returns:
        ``tokens`` as an int32 array of the same shape.
    """
    n = len(alphabet_sizes)
    if tokens is None:
        raise TypeError(f"`{name}` must be an integer array of shape ({n},), got None.")
    arr = jnp.asarray(tokens)
    if arr.size == 0 and n == 0:
        return jnp.zeros(arr.shape[:-1] + (0,), jnp.int32) if arr.ndim >= 1 else jnp.zeros((0,), jnp.int32)
    if not (jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(f"`{name}` must hold integer token ids, got dtype {arr.dtype}.")
    if arr.ndim not in (1, 2) or arr.shape[-1] != n:
        raise ValueError(
            f"`{name}` must have shape ({n},) or (N, {n}) for alphabet sizes {tuple(alphabet_sizes)}, "
            f"got shape {arr.shape}."
        )
    if is_concrete(arr):
        vals = np.asarray(arr).reshape(-1, n)
        for j, a in enumerate(alphabet_sizes):
            hi = a if allow_null else a - 1
            bad = (vals[:, j] < 0) | (vals[:, j] > hi)
            if np.any(bad):
                v = int(vals[:, j][bad][0])
                extra = f" or the null id {a}" if allow_null else ""
                raise ValueError(f"`{name}` slot {j} must lie in [0, {a - 1}]{extra}; got {v}.")
    return arr.astype(jnp.int32)


def check_point(x: Array, dim: int, name: str = "x") -> None:
    if jnp.ndim(x) != 1 or jnp.shape(x)[0] != dim:
        raise ValueError(
            f"`{name}` must be one point of shape ({dim},) (batch with jax.vmap), got shape {jnp.shape(x)}."
        )


def check_alphabets(alphabet_sizes) -> tuple[int, ...]:
    sizes = tuple(alphabet_sizes)
    for j, a in enumerate(sizes):
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 1:
            raise ValueError(f"`alphabet_sizes[{j}]` must be a positive integer, got {a!r}.")
    return tuple(int(a) for a in sizes)


def check_data_std(data_std) -> float:
    v = float(data_std)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"`data_std` must be positive and finite, got {data_std}.")
    return v


def check_process(process) -> AbstractProcess:
    if process is None:
        return VP.ou()
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
    return process
