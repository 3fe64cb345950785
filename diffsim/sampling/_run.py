r"""The engine behind :func:`diffsim.simulate` and ``simulate_sharded``: argument resolution (plain Python,
before tracing), the validated :class:`Run`, and the compiled fixed-grid core (one ``lax.scan``).

Randomness, saving and chunking are described in :mod:`diffsim.sampling.simulate`.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections import OrderedDict
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array

from .._checks import check_particles, check_times, checks_enabled
from .._validation import as_float_array, check_key, check_positive_int, is_concrete
from ..scores._base import AbstractScore
from . import grids as _grids
from ._noise import StepNoise, counter_normals, particle_keys
from ._registry import AbstractSampler, get_sampler
from ._trajectory import Trajectory


__all__ = [
    "DEFAULT_STEPS",
    "NOISE_SCHEMES",
    "Run",
    "prepare",
    "prior_draws",
    "resolve_grid",
    "resolve_save",
    "run_chunk",
    "run_chunked",
]

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


@functools.lru_cache(maxsize=256)
def _slots(save_bytes: bytes, n_steps: int) -> np.ndarray:
    """Save slot of every grid index (``-1``: not saved), read-only."""
    save_idx = np.frombuffer(save_bytes, dtype=np.int64)
    slots = np.full(n_steps + 1, -1, dtype=np.int32)
    slots[save_idx] = np.arange(save_idx.size, dtype=np.int32)
    slots.flags.writeable = False
    return slots


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
# the compiled core
# =====================================================================================================
def final_step(sampler, key, state, t, score):
    """One particle's step from the last grid time ``t`` to ``sigma = 0`` (``simulate(final_denoise=True)``):
    the sampler's ``final_step(key, state, t, score)`` when it defines one (LMS's Adams step, Heun's churned
    last step), else the denoiser ``score.denoise(t, x)`` (k-diffusion's and diffusers' last step)."""
    custom = getattr(sampler, "final_step", None)
    if custom is not None:
        return custom(key, state, t, score)
    return score.denoise(t, sampler.position(state))


def _run_fixed_impl(
    score,
    sampler,
    grid,
    x,
    key,
    offset,
    n_particles,
    slots,
    n_save,
    final_only,
    stats_fn,
    save_states,
    noise,
    final_denoise=False,
    checked=False,
):
    """One ``lax.scan`` over the grid on a batched ``(N, d)`` state.

    ``x=None`` draws the prior inside the computation (no input buffer). States are written to the save
    buffer only at saved steps (``lax.cond``), and with ``final_only`` there is no buffer at all. With
    ``noise="counter"`` the step-``j`` normals are rows of ``jr.normal(fold_in(key_path, j), (M, draws, d))``
    (see :func:`~diffsim.sampling._noise.counter_normals`); otherwise particle ``i`` steps with
    ``fold_in(fold_in(key_path, i), j)``. The scan carry keeps the dtypes of the initial state: a step is
    cast back to them (a float64 process under ``jax_enable_x64`` would otherwise promote float32 particles).

    ``checked`` (checked mode, :mod:`diffsim._checks`, part of the compilation key) compiles guards on the
    grid (finite, inside the process, strictly monotone), the initial particles and the final particles.
    """
    d = score.dim
    if checked:
        grid = _guard_grid(grid, score.process, sampler.direction == "forward")
        if x is not None:
            x = check_particles(x, "x")
    key_init, key_path = jr.split(key)
    if x is None:
        prior_keys = particle_keys(key_init, offset, n_particles)
        x = jax.vmap(lambda k: score.process.prior_sample(k, (d,)))(prior_keys)
    grid = grid.astype(x.dtype)
    state = jax.vmap(sampler.init, in_axes=(None, 0))(grid[0], x)
    position = jax.vmap(sampler.position)
    draws = sampler.draws_per_step() if noise == "counter" else None
    if draws is None:
        pkeys = particle_keys(key_path, offset, n_particles)

    def step_noise(i):
        if draws is None:
            return jax.vmap(jr.fold_in, in_axes=(0, None))(pkeys, i)
        if draws == 0:
            return StepNoise(jnp.zeros((n_particles, 0, d), x.dtype))
        return StepNoise(counter_normals(jr.fold_in(key_path, i), offset, n_particles, (draws, d), x.dtype))

    def compute_stats(t, xb):
        return jax.vmap(stats_fn, in_axes=(None, 0))(t, xb)

    def advance(st, i, t, t_next):
        new = jax.vmap(sampler.step, in_axes=(0, 0, None, None, None))(step_noise(i), st, t, t_next, score)
        return jax.tree.map(lambda a, old: a.astype(old.dtype), new, st)

    n_steps = grid.shape[0] - 1
    steps = (jnp.arange(n_steps), grid[:-1], grid[1:])

    def finish(st):  # the last state: the position, or the step to sigma = 0 (noise index n_steps)
        if not final_denoise:
            xf = position(st)
        else:
            fin = jax.vmap(final_step, in_axes=(None, 0, 0, None, None))
            xf = fin(sampler, step_noise(n_steps), st, grid[-1], score).astype(x.dtype)
        return _guard_output(xf) if checked else xf

    if final_only:  # the common case: nothing to write while stepping
        state, _ = jax.lax.scan(lambda st, inp: (advance(st, *inp), None), state, steps)
        xf = finish(state)
        xs = xf[None] if save_states else None
        stats = None if stats_fn is None else jax.tree.map(lambda a: a[None], compute_stats(grid[-1], xf))
        return xs, stats, xf

    buf = jnp.zeros((n_save,) + x.shape, x.dtype) if save_states else None
    if stats_fn is not None:
        shapes = jax.eval_shape(compute_stats, grid[0], x)
        sbuf = jax.tree.map(lambda s: jnp.zeros((n_save,) + s.shape, s.dtype), shapes)
    else:
        sbuf = None

    def write(bufs, slot, t, xb):
        def do(bs):
            b, sb = bs
            if b is not None:
                b = jax.lax.dynamic_update_index_in_dim(b, xb, slot, 0)
            if sb is not None:
                sb = jax.tree.map(
                    lambda a, v: jax.lax.dynamic_update_index_in_dim(a, v, slot, 0), sb, compute_stats(t, xb)
                )
            return b, sb

        return jax.lax.cond(slot >= 0, do, lambda bs: bs, bufs)

    bufs = write((buf, sbuf), slots[0], grid[0], x)

    def body(carry, inp):
        st, bufs = carry
        i, t, t_next, slot = inp
        st = advance(st, i, t, t_next)
        return (st, write(bufs, slot, t_next, position(st))), None

    (state, (buf, sbuf)), _ = jax.lax.scan(body, (state, bufs), steps + (slots[1:],))
    if not final_denoise:
        return buf, sbuf, finish(state)
    xf = finish(state)  # the saved last index holds the final (denoised) state
    buf, sbuf = write((buf, sbuf), slots[-1], grid[-1], xf)
    return buf, sbuf, xf


def _guard_grid(grid, process, forward):
    """The grid, guarded in checked mode: finite, inside the process's time range, strictly monotone."""
    grid = check_times(grid, process, "grid", allow_zero=forward)
    diffs = jnp.diff(grid)
    wrong = jnp.any(diffs <= 0) if forward else jnp.any(diffs >= 0)
    order = "increasing" if forward else "decreasing (from t_max down to t_min)"
    return eqx.error_if(grid, wrong, f"`grid` must be strictly {order}.")


def _guard_output(x):
    return eqx.error_if(
        x,
        ~jnp.all(jnp.isfinite(x)),
        "simulate produced non-finite particles (NaN or inf): a score returned non-finite values or a step "
        "diverged (too few steps or an unstable sampler).",
    )


_run_fixed_eqx = eqx.filter_jit(_run_fixed_impl)
_JITTED: OrderedDict = OrderedDict()


def _call_flat(fn, treedef, mask, static, dynamic):
    """``fn`` on the arguments rebuilt from their array leaves (``dynamic``) and the others (``static``)."""
    dyn, stat = iter(dynamic), iter(static)
    leaves = [next(dyn) if is_arr else next(stat) for is_arr in mask]
    return fn(*jax.tree_util.tree_unflatten(treedef, leaves))


def _run_fixed(*args):
    """``eqx.filter_jit(_run_fixed_impl)(*args)`` with a leaner dispatch for repeated calls.

    The same split as :func:`equinox.filter_jit` (array leaves traced, every other leaf static and part of
    the compilation key), so the same computation and the same numbers; but the compiled function is looked
    up once per static configuration and then called through ``jax.jit``'s C++ fast path, which saves
    about 40 % of a small call's time on CPU. Static leaves that cannot be hashed take the Equinox path.
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    mask = tuple(eqx.is_array(leaf) for leaf in leaves)
    static = tuple(leaf for leaf, is_arr in zip(leaves, mask, strict=True) if not is_arr)
    key = (treedef, mask, static)
    try:
        jitted = _JITTED.get(key)
    except TypeError:  # an unhashable static leaf
        return _run_fixed_eqx(*args)
    if jitted is None:
        jitted = jax.jit(functools.partial(_call_flat, _run_fixed_impl, treedef, mask, static))
        _JITTED[key] = jitted
        while len(_JITTED) > 256:
            _JITTED.popitem(last=False)
    else:
        _JITTED.move_to_end(key)
    return jitted([leaf for leaf, is_arr in zip(leaves, mask, strict=True) if is_arr])


def run_chunk(
    score,
    sampler,
    grid,
    x,
    key,
    offset,
    n_particles,
    save_idx,
    stats,
    save_states,
    noise,
    final_denoise=False,
):
    n_steps = grid.shape[0] - 1
    if sampler.adaptive:
        if x is None:
            x = prior_draws(score, key, jnp.asarray(offset), n_particles)
        keys = particle_keys(jr.split(key)[1], offset, x.shape[0])
        xs, st, xf, _ = sampler.solve(score, grid, x, keys, save_idx, stats, save_states)
        if final_denoise:
            last_saved = bool(save_idx[-1] == n_steps)
            xs, st, xf = _denoise_last(score, grid[-1], xs, st, xf, last_saved, stats)
        return xs, st, xf
    slots = _slots(np.asarray(save_idx, np.int64).tobytes(), n_steps)
    final_only = bool(save_idx.size == 1 and save_idx[0] == n_steps)
    # NumPy arguments travel with the compiled call (no separate eager transfers: they cost on GPUs)
    return _run_fixed(
        score,
        sampler,
        grid,
        x,
        key,
        np.asarray(offset, np.int32),
        n_particles,
        slots,
        int(save_idx.size),
        final_only,
        stats,
        bool(save_states),
        noise,
        bool(final_denoise),
        checks_enabled(),
    )


@eqx.filter_jit
def _denoise_last(score, t, xs, st, xf, last_saved, stats_fn):
    """``final_denoise`` for adaptive samplers: the denoiser at the last time, also in the last saved slot."""
    xf = jax.vmap(score.denoise, in_axes=(None, 0))(t, xf).astype(xf.dtype)
    if last_saved and xs is not None:
        xs = xs.at[-1].set(xf)
    if last_saved and st is not None:
        new = jax.vmap(stats_fn, in_axes=(None, 0))(t, xf)
        st = jax.tree.map(lambda a, v: a.at[-1].set(v), st, new)
    return xs, st, xf


@eqx.filter_jit
def prior_draws(score, key, offset, n_particles):
    """Prior draws of particles ``offset .. offset + n_particles - 1`` (keys ``fold_in(k_init, i)``)."""
    keys = particle_keys(jr.split(key)[0], offset, n_particles)
    d = score.dim
    return jax.vmap(lambda k: score.process.prior_sample(k, (d,)))(keys)


# =====================================================================================================
# a validated call
# =====================================================================================================
NOISE_SCHEMES = ("per_particle", "counter")


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


@dataclasses.dataclass(frozen=True)
class Run:
    """A validated :func:`~diffsim.simulate` call (plain Python, before tracing); also used by sharding."""

    score: AbstractScore
    sampler: AbstractSampler
    ts: Array
    save_idx: np.ndarray
    x_init: Any
    n_particles: int
    key: jax.Array  # split into (k_init, k_path) inside the compiled run
    ts_saved: Array
    stats: Any
    save_states: bool
    noise: str
    nfe: int
    final_denoise: bool = False
    particle_offset: int = 0  # global index of the first particle (its prior draw and noise)

    def chunk(self, offset: int, size: int, pad_to: int | None = None):
        """Run particles ``offset .. offset + size`` of this call (padded to ``pad_to`` to reuse the compiled
        function); their randomness is that of global particles ``particle_offset + offset ..``."""
        n_run = size if pad_to is None else pad_to
        xc = None
        if self.x_init is not None:
            whole = offset == 0 and size == self.x_init.shape[0]
            xc = self.x_init if whole else self.x_init[offset : offset + size]  # no eager copy of all of x
            if n_run > size:
                xc = jnp.concatenate([xc, jnp.zeros((n_run - size, xc.shape[1]), xc.dtype)])
        return run_chunk(
            self.score,
            self.sampler,
            self.ts,
            xc,
            self.key,
            self.particle_offset + offset,
            n_run,
            self.save_idx,
            self.stats,
            self.save_states,
            self.noise,
            self.final_denoise,
        )


def prepare(
    score,
    method,
    grid,
    *,
    x,
    n,
    key,
    save,
    stats,
    save_states,
    chunk_size,
    noise,
    method_options,
    final_denoise=False,
    pad_to=None,
) -> tuple[Run, int | None]:
    """Validate the arguments of :func:`~diffsim.simulate` into a :class:`Run` and the chunk size.

    Repeated calls with the same static configuration (method and options, the process and number of steps
    or the same grid array, ``save``) reuse the resolved sampler, grid and saved times (see :class:`_Memo`).
    """
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim score (AbstractScore), got {type(score).__name__}.")
    sampler = _memo_sampler(method, method_options)
    key = check_key(key)
    sampler, ts = _grid_and_sampler(score, sampler, grid)
    n_steps = ts.shape[0] - 1
    if not isinstance(final_denoise, bool):
        raise TypeError(f"`final_denoise` must be a bool, got {final_denoise!r}.")
    if final_denoise and sampler.direction == "forward":
        raise ValueError(f"`final_denoise` applies to reverse samplers, not {sampler.name!r}.")
    check_grid = getattr(sampler, "check_grid", None)
    if check_grid is not None and is_concrete(ts):
        check_grid(score, np.asarray(ts))
    save_idx, ts_saved = _saved(ts, save, n_steps)
    if stats is not None and not callable(stats):
        raise TypeError("`stats` must be a callable stats(t, x) -> pytree.")
    if not save_states and stats is None and save not in ("final",):
        raise ValueError("With save_states=False there is nothing to save; pass `stats` as well.")

    if (x is None) == (n is None):
        raise ValueError("Pass exactly one of `x` (starting points) or `n` (number of prior draws).")
    if x is None:
        if sampler.direction == "forward":
            raise ValueError(f"Forward sampler {sampler.name!r} needs starting points `x` (data at grid[0]).")
        n_particles = check_positive_int(n, "n")
        x_init = None
    else:
        x_init = _as_particles(x)
        if x_init.shape[1] != score.dim:
            raise ValueError(f"`x` must have shape (N, {score.dim}) to match the score, got {x_init.shape}.")
        n_particles = x_init.shape[0]
        if n_particles < 1:
            raise ValueError("`x` must hold at least one particle.")
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    if noise not in NOISE_SCHEMES:
        raise ValueError(f"`noise` must be one of {NOISE_SCHEMES}, got {noise!r}.")
    if noise == "counter":
        if sampler.adaptive and sampler.is_stochastic():
            raise ValueError(
                'noise="counter" applies to fixed-grid samplers; the Diffrax "sde" method draws '
                "its Brownian paths from per-particle keys."
            )
        impl = (
            str(jr.key_impl(key))
            if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
            else str(jax.config.jax_default_prng_impl)
        )
        if "threefry" not in impl:
            raise ValueError(f'noise="counter" needs a threefry2x32 key, got {impl}.')
        per = max(sampler.draws_per_step(), 1) * score.dim
        n_counted = max(n_particles, pad_to or 0)
        if n_counted * per >= 2**32:
            raise ValueError(
                f'noise="counter" supports N * draws * d < 2**32 numbers per step, got '
                f"{n_counted} * {per}; split the run over keys."
            )
    run = Run(
        score,
        sampler,
        ts,
        save_idx,
        x_init,
        n_particles,
        key,
        ts_saved,
        stats,
        bool(save_states),
        noise,
        sampler.nfe(n_steps) + int(final_denoise),
        final_denoise,
    )
    return run, chunk_size


def run_chunked(run: Run, chunk_size: int) -> Trajectory:
    """Chunks of ``chunk_size`` particles, copied into preallocated host arrays as they finish (no
    concatenation, so the host holds the result once), returned as ``jax.Array`` s on the default device."""
    n = run.n_particles
    out = None
    for offset in range(0, n, chunk_size):
        size = min(chunk_size, n - offset)
        parts = run.chunk(offset, size, pad_to=chunk_size)
        parts = jax.tree.map(np.asarray, parts)
        if out is None:  # (xs (S, N, d) | None, stats leaves (S, N, ...) | None, xf (N, d))
            xs_c, st_c, xf_c = parts
            out = (
                None if xs_c is None else np.empty((xs_c.shape[0], n) + xs_c.shape[2:], xs_c.dtype),
                None
                if st_c is None
                else jax.tree.map(lambda a: np.empty((a.shape[0], n) + a.shape[2:], a.dtype), st_c),
                np.empty((n,) + xf_c.shape[1:], xf_c.dtype),
            )
        xs_c, st_c, xf_c = parts
        if xs_c is not None:
            out[0][:, offset : offset + size] = xs_c[:, :size]
        if st_c is not None:
            jax.tree.map(
                lambda dst, src, lo=offset, k=size: dst.__setitem__(
                    (slice(None), slice(lo, lo + k)), src[:, :k]
                ),
                out[1],
                st_c,
            )
        out[2][offset : offset + size] = xf_c[:size]
    xs, st, xf = jax.tree.map(jnp.asarray, out)
    return Trajectory(run.ts_saved, xs, st, xf, run.nfe)
