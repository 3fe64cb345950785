"""Boundary validation helpers.

diffsim validates user input *before tracing*: with plain Python errors that name the offending argument.
Inside jit-compiled code the values are tracers and cannot be inspected, so every helper here silently
accepts tracers (the check then happened, or should happen, at the boundary that built them).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds concrete values (not a JAX tracer inside a transformation).

    Args:
        x: any value or pytree; it is concrete when none of its leaves is a ``jax.core.Tracer``.
    """
    leaves = jax.tree_util.tree_leaves(x)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def as_float_array(x: Any, name: str, *, ndim: int | tuple[int, ...] | None = None) -> jax.Array:
    """Convert ``x`` to a floating JAX array, checking its rank and finiteness when concrete.

    Args:
        x: numbers (array, sequence or scalar); integers and booleans are cast to the default float dtype;
            strings, ``None`` and complex values raise ``TypeError``.
        name: the argument's name, used in error messages.
        ndim: the allowed rank, or a tuple of allowed ranks; ``None`` accepts any rank.
    """
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"`{name}` must be an array of numbers, got {type(x).__name__}.")
    if np.iscomplexobj(x):
        raise TypeError(f"`{name}` must be real, got complex values (the imaginary part would be lost).")
    try:
        arr = jnp.asarray(x)
    except TypeError as err:  # pragma: no cover - depends on jax's message
        raise TypeError(f"`{name}` must be an array of numbers, got {type(x).__name__}.") from err
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(
            f"`{name}` must be real, got complex dtype {arr.dtype} (the imaginary part would be lost)."
        )
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        if jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == jnp.bool_:
            arr = arr.astype(jnp.result_type(float))
        else:
            raise TypeError(f"`{name}` must be numeric, got dtype {arr.dtype}.")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise ValueError(
                f"`{name}` must have {' or '.join(map(str, allowed))} dimensions, got shape {arr.shape}."
            )
    check_finite(arr, name)
    return arr


def check_finite(x: Any, name: str) -> None:
    """Raise ``ValueError`` if a concrete array contains NaN or infinity."""
    if is_concrete(x):
        arr = np.asarray(x)
        if arr.size and not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` contains non-finite values (NaN or inf).")


def check_positive_int(n: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``n`` as a Python int, raising if it is not an integer ``>= minimum``.

    Args:
        n: the value; Python or NumPy integers only (``bool`` and floats raise ``TypeError``).
        name: the argument's name, used in error messages.
        minimum: the smallest value accepted (``ValueError`` below it); default 1.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer, got {type(n).__name__}.")
    if n < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {n}.")
    return int(n)


def check_probability(x: float, name: str, *, open_interval: bool = True) -> float:
    """Check a scalar lies in (0, 1) (or [0, 1] when ``open_interval`` is False)."""
    x = float(x)
    ok = (0.0 < x < 1.0) if open_interval else (0.0 <= x <= 1.0)
    if not ok:
        interval = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"`{name}` must lie in {interval}, got {x}.")
    return x


def check_key(key: Any, name: str = "key") -> jax.Array:
    """Check ``key`` is a JAX PRNG key (new-style typed or legacy uint32[2]).

    Args:
        key: the key; ``None``, integers, batches of keys and other arrays raise.
        name: the argument's name, used in error messages.

    Returns:
        ``key`` as a JAX array, unchanged.
    """
    if key is None:
        raise TypeError(f"`{name}` is required: pass a PRNG key such as `jax.random.key(0)`.")
    if isinstance(key, (int, np.integer)):
        raise TypeError(f"`{name}` must be a PRNG key, not an integer; use `jax.random.key({int(key)})`.")
    arr = key if isinstance(key, jax.Array) else jnp.asarray(key)
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        if arr.shape != ():
            raise ValueError(f"`{name}` must be a single PRNG key, got a batch of shape {arr.shape}.")
        return arr
    if arr.dtype == jnp.uint32 and arr.shape == (2,):
        return arr
    raise TypeError(
        f"`{name}` must be a PRNG key (e.g. `jax.random.key(0)`), got {arr.dtype}{list(arr.shape)}."
    )


def check_point(x: Any, dim: int, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is one point of shape ``(dim,)`` (checked at trace time, so it
    also guards jitted and vmapped calls: under ``vmap`` the shape seen is the per-point shape).

    The one-point methods of the scores (``score``, ``denoise``, ``log_prob``, ``hessian``, ...) would
    broadcast a batch ``(N, d)`` into wrong numbers without an error; batching is ``jax.vmap``'s job.
    """
    shape = tuple(np.shape(x))
    if len(shape) == 1 and shape[0] == dim:
        return
    hint = (
        " For a batch of points use `jax.vmap`, e.g. `jax.vmap(lambda xi: score.score(t, xi))(xs)`."
        if len(shape) >= 2
        else ""
    )
    raise ValueError(f"`{name}` must be one point of shape ({dim},), got shape {shape}.{hint}")
