r"""Sweeps in one compiled call: a function of one sweep point, ``vmap``-ed over a batch of points.

Everything a researcher sweeps over and that is a number is traced in :func:`diffsim.simulate` and
:func:`diffsim.noise_denoise`: the guidance scale (an array leaf of
:class:`~diffsim.scores.ClassifierGuidance` / :class:`~diffsim.scores.ClassifierFreeGuidance`), ``t_hat``,
``t_end``, the grid's times, the starting points and the key. Hence a loop of calls over such values
compiles once, and the whole sweep can also run as one compiled, ``vmap``-ed call::

    from diffsim.sampling._sweep import sweep

    def final(w):  # one sweep point -> what to keep
        score = guided_mixture(mix, label=0, scale=w)
        return ds.simulate(score, "euler_maruyama", 100, n=10_000, key=key).x

    xs = sweep(final, jnp.linspace(0.0, 4.0, 10))  # (10, N, d): one compilation, one call

Particle ``i`` of sweep point ``b`` is bit-for-bit what the single call ``final(values[b])`` returns up
to XLA's reordering of floating-point operations under ``vmap`` (equal to ``1e-12`` in float64 in the
tests; most often identical). What must stay static (the method, the number of steps, ``save``, ``n``,
``stats``) is fixed by the function. Numeric sampler options (DDIM's and the
ancestral / SDE samplers' ``eta`` and ``s_noise``, Heun's ``churn``, ``s_tmin``, ``s_tmax``, ``s_noise``,
PC's ``snr``) are traced when passed as JAX arrays (``simulate(score, "ddim", 50, eta=jnp.asarray(0.3))``):
a loop over such values compiles once, and they can be swept in one call. Passed as Python numbers they
are compile-time constants (one compilation per value, the numbers diffsim has always produced); the two
agree to 1e-12 in float64 (``tests/test_sweeps.py``). Whether a step draws noise at all (``eta > 0``,
``churn > 0``) is structure, read from the value when it is concrete; an option traced inside a sweep
keeps the noisy kernel, which at a value of 0 adds exactly zero noise.

The compiled sweep is memoised per function object: pass the same (module-level) function again and no
new compilation happens; a fresh ``lambda`` on every call compiles every time.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar, no_type_check

import equinox as eqx
import jax
from jaxtyping import ArrayLike, PyTree


__all__ = ["sweep", "sweep_fn"]

T = TypeVar("T")

_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BATCH_ARRAYS = eqx.if_array(0)


@no_type_check  # checks `fn` itself, with a clearer message than a runtime type checker
def sweep_fn(fn: Callable[..., T], in_axes: Any = _BATCH_ARRAYS) -> Callable[..., T]:
    """``fn`` ``vmap``-ed over the leading axis of its array arguments and compiled once:
    ``eqx.filter_jit(eqx.filter_vmap(fn, in_axes=in_axes))``, memoised per ``fn`` (and ``in_axes``).

    Non-array arguments are static (part of the compilation key); array arguments are traced, so calling
    the result again with new values of the same shapes does not recompile.

    Args:
        fn: a function of one sweep point returning a pytree of arrays; the memo is keyed on this object
            (a fresh ``lambda`` per call compiles every time).
        in_axes: as for :func:`equinox.filter_vmap` (default: the leading axis of every array argument).

    Returns:
        The compiled, batched function.
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable, got {type(fn).__name__}.")
    try:
        per_fn = _COMPILED.setdefault(fn, {})
        memo_key = (in_axes,)
        hash(memo_key)
    except TypeError:  # fn not weak-referenceable or in_axes unhashable: no memo
        return eqx.filter_jit(eqx.filter_vmap(fn, in_axes=in_axes))
    compiled = per_fn.get(memo_key)
    if compiled is None:
        compiled = per_fn[memo_key] = eqx.filter_jit(eqx.filter_vmap(fn, in_axes=in_axes))
    return compiled


def sweep(fn: Callable[..., T], *values: PyTree[ArrayLike], in_axes: Any = _BATCH_ARRAYS, **kwargs: Any) -> T:
    r"""``fn(values[0][b], values[1][b], ..., **kwargs)`` for every sweep point ``b``, in one compiled call.

    Args:
        fn: a function of one sweep point returning a pytree of arrays (e.g. ``simulate(...).x`` or a
            whole :class:`~diffsim.sampling.Trajectory`); keep it a module-level function (or the same
            object) so that repeated sweeps reuse the compilation.
        *values: the sweep points, arrays (or pytrees of arrays) with a leading batch axis of the same
            size ``B``: guidance scales ``(B,)``, ``t_hat`` values ``(B,)``, keys ``(B,)``
            (``jr.split(key, B)``), starting points ``(B, N, d)``.
        in_axes: as for :func:`equinox.filter_vmap` (default: the leading axis of every array argument,
            ``kwargs`` included).
        **kwargs: further arguments; arrays among them are batched like ``values`` under the default
            ``in_axes``, other values are static.

    Returns:
        ``fn``'s output with a leading axis of size ``B`` on every array.
    """
    if not values and not kwargs:
        raise ValueError("`sweep` needs at least one batch of sweep values.")
    sizes = {int(leaf.shape[0]) for leaf in jax.tree.leaves(values) if hasattr(leaf, "shape") and leaf.ndim}
    if len(sizes) > 1:
        raise ValueError(f"The sweep values must share one leading batch size, got sizes {sorted(sizes)}.")
    return sweep_fn(fn, in_axes)(*values, **kwargs)
