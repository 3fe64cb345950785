"""Explicit dtype promotion.

diffsim runs under ``jax_numpy_dtype_promotion="strict"`` (the test suite sets it, as Equinox and Lineax
do), where an operation between, say, a float32 and a float64 array is an error rather than a silent
upcast. Where mixing dtypes is supported on purpose (float32 particles with a float64 process or model
under ``jax_enable_x64``), the code promotes explicitly with these helpers, to exactly the dtype JAX's
standard promotion lattice would have chosen, so results are the same under either setting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike


def common_dtype(*values: ArrayLike | jnp.dtype) -> jnp.dtype:
    """The dtype JAX's standard promotion gives ``values`` (arrays, scalars or dtypes), whatever the
    ``jax_numpy_dtype_promotion`` setting."""
    with jax.numpy_dtype_promotion("standard"):
        return jnp.result_type(*values)


def promote(*arrays: ArrayLike) -> tuple[jax.Array, ...]:
    """``arrays`` cast to their :func:`common_dtype` (a no-op for those already of that dtype)."""
    dtype = common_dtype(*arrays)
    return tuple(jnp.asarray(a, dtype=dtype) for a in arrays)
