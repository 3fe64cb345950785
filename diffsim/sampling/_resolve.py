r"""Argument resolution of :func:`diffsim.simulate` (plain Python, before tracing): the time grid, the saved
indices, the sampler and the particle array, memoised for repeated calls with one static configuration.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._validation import as_float_array, check_positive_int, is_concrete
from ..scores._base import AbstractScore
from . import grids as _grids
from ._registry import AbstractSampler, get_sampler


__all__ = ["DEFAULT_STEPS", "clear_memos", "resolve_grid", "resolve_save"]

DEFAULT_STEPS = 100


# =====================================================================================================
# memo of the argument resolution of repeated calls
# =====================================================================================================
class _Memo:
    """A small LRU memo for the plain-Python resolution of repeated calls with one static configuration.

    Keys are hashable tuples; objects that take part by identity (a score's process, a grid array, a sampler
    instance, a particle array) enter the key through ``id`` and are held by weak reference, so an entry is
    used only while those very objects are alive (JAX arrays and Equinox modules are immutable) and the
    memo never keeps arrays alive. Only concrete results are stored (never tracers).
    """

    def __init__(self, maxsize: int = 128):
        self._entries: OrderedDict = OrderedDict()
        self._maxsize = maxsize

    def get(self, key: tuple, objs: tuple) -> Any:
        try:
            entry = self._entries.get(key)
        except TypeError:  # an unhashable option value: no memo
            return None
        if entry is None:
            return None
        refs, value = entry
        if any(r() is not o for r, o in zip(refs, objs, strict=True)):
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: tuple, objs: tuple, value: Any) -> None:
        try:
            refs = tuple(weakref.ref(o) for o in objs)
            self._entries[key] = (refs, value)
        except TypeError:  # unhashable key or an object without weak references: no memo
            return
        self._entries.move_to_end(key)
        while len(self._entries) > self._maxsize:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


_SAMPLERS = _Memo()
_STATIC = _Memo()
_FINITE = _Memo(maxsize=16)


def clear_memos() -> None:
    """Forget the memoised argument resolution (samplers, grids, saved indices, checked particle arrays)."""
    for memo in (_SAMPLERS, _STATIC, _FINITE):
        memo.clear()


def _option_key(options: dict) -> tuple:
    # the type enters the key: eta=1 and eta=1.0 build modules with different static structure
    return tuple(sorted((k, type(v).__name__, v) for k, v in options.items()))


def _memo_sampler(method: Any, options: dict) -> AbstractSampler:
    """:func:`get_sampler`, memoised for a name with hashable options (or an instance, by identity)."""
    if isinstance(method, str):
        key, objs = ("name", method, _option_key(options)), ()
    else:
        key, objs = ("instance", id(method), _option_key(options)), (method,)
    hit = _SAMPLERS.get(key, objs)
    if hit is not None:
        return hit
    sampler = get_sampler(method, **options)
    if is_concrete(sampler):
        _SAMPLERS.put(key, objs, sampler)
    return sampler


def _save_key(save: Any) -> Any:
    """A hashable form of a ``save`` specification, or ``None`` when it should not be memoised."""
    if isinstance(save, str) or (isinstance(save, (int, np.integer)) and not isinstance(save, bool)):
        return ("spec", save)
    if isinstance(save, (list, tuple)) and all(
        isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in save
    ):
        return ("seq", tuple(int(i) for i in save))
    return None


# =====================================================================================================
# argument resolution (plain Python, before tracing)
# =====================================================================================================
def resolve_grid(score: AbstractScore, sampler: AbstractSampler, grid: Any) -> Array:
    """Turn ``grid`` (None, an int number of steps, or an array of times) into a validated time array."""
    p = score.process
    forward = sampler.direction == "forward"
    if grid is None:
        grid = DEFAULT_STEPS
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        n = check_positive_int(grid, "grid (number of steps)")
        return _grids.forward_uniform(p, n) if forward else _grids.uniform(p, n)
    if isinstance(grid, str):
        raise TypeError(
            "`grid` must be an array of times or a number of steps; build named grids with "
            "`diffsim.sampling.grids` (e.g. grids.karras(process, 50))."
        )
    ts = as_float_array(grid, "grid", ndim=1)
    if ts.shape[0] < 2:
        raise ValueError(f"`grid` must hold at least 2 times (one step), got {ts.shape[0]}.")
    if is_concrete(ts):
        arr = np.asarray(ts)
        diffs = np.diff(arr)
        if forward and not np.all(diffs > 0):
            raise ValueError(f"Forward sampler {sampler.name!r} needs a strictly increasing `grid`.")
        if not forward and not np.all(diffs < 0):
            raise ValueError(
                f"Reverse sampler {sampler.name!r} needs a strictly decreasing `grid` "
                f"(from t_max down to t_min), got {arr[:3]}..."
            )
        p.check_time(ts, "grid", allow_zero=forward)
    return ts


def resolve_save(save: Any, n_steps: int) -> np.ndarray:
    """Grid indices to save (sorted, unique) from a save specification."""
    if isinstance(save, str):
        if save == "final":
            return np.array([n_steps])
        if save == "all":
            return np.arange(n_steps + 1)
        raise ValueError(f"Unknown `save` {save!r}; use 'final', 'all', an int stride or a list of indices.")
    if isinstance(save, (int, np.integer)) and not isinstance(save, bool):
        k = check_positive_int(save, "save (stride)")
        return np.unique(np.append(np.arange(0, n_steps + 1, k), n_steps))
    idx = np.asarray(save)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError("`save` as a sequence must be a non-empty 1-D list of integer grid indices.")
    if np.any(idx < 0) or np.any(idx > n_steps):
        raise ValueError(f"`save` indices must lie in [0, {n_steps}] (grid indices), got {idx.tolist()}.")
    return np.unique(idx)


# =====================================================================================================
# the memoised resolution of one call (particles, grid and sampler, saved indices)
# =====================================================================================================
@jax.jit
def _all_finite(a):
    return jnp.all(jnp.isfinite(a))


def _as_particles(x) -> Array:
    """``as_float_array(x, "x", ndim=2)`` with the finiteness check done where ``x`` lives: one device-side
    reduction and a scalar read-back instead of copying the whole array to the host on every call."""
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating):
        if x.ndim != 2:
            raise ValueError(f"`x` must have 2 dimensions, got shape {x.shape}.")
        if is_concrete(x) and x.size and _FINITE.get(("x", id(x)), (x,)) is None:
            with jax.ensure_compile_time_eval():  # also when a concrete x is closed over inside a trace
                finite = bool(_all_finite(x))
            if not finite:
                raise ValueError("`x` contains non-finite values (NaN or inf).")
            _FINITE.put(("x", id(x)), (x,), True)  # checked once per array (JAX arrays are immutable)
        return x
    return as_float_array(x, "x", ndim=2)


def _grid_and_sampler(
    score: AbstractScore, sampler: AbstractSampler, grid: Any
) -> tuple[AbstractSampler, Array]:
    """:func:`resolve_grid` and ``sampler.configure(n_steps)``, memoised for a number of steps (by the
    process) or a JAX array of times (by identity: the checks ran on its values once)."""
    process = score.process
    if grid is None or (isinstance(grid, (int, np.integer)) and not isinstance(grid, bool)):
        key, objs = ("steps", id(sampler), id(process), grid), (sampler, process)
    elif isinstance(grid, jax.Array) and is_concrete(grid):
        key, objs = ("array", id(sampler), id(process), id(grid)), (sampler, process, grid)
    else:
        key = objs = None
    if key is not None:
        hit = _STATIC.get(key, objs)
        if hit is not None:
            return hit
    ts = resolve_grid(score, sampler, grid)
    configured = sampler.configure(ts.shape[0] - 1)
    if key is not None and is_concrete((ts, configured)):
        _STATIC.put(key, objs, (configured, ts))
    return configured, ts


def _saved(ts: Array, save: Any, n_steps: int) -> tuple[np.ndarray, Array]:
    """The saved grid indices and times, memoised by the grid's identity and the save specification."""
    skey = _save_key(save)
    key = None if skey is None or not is_concrete(ts) else ("save", id(ts), skey)
    if key is not None:
        hit = _STATIC.get(key, (ts,))
        if hit is not None:
            return hit
    save_idx = resolve_save(save, n_steps)
    # saved times from the host copy of a concrete grid (no eager gather on the device)
    ts_saved = jnp.asarray(np.asarray(ts)[save_idx]) if is_concrete(ts) else ts[save_idx]
    if key is not None and is_concrete(ts_saved):
        save_idx.flags.writeable = False
        _STATIC.put(key, (ts,), (save_idx, ts_saved))
    return save_idx, ts_saved
