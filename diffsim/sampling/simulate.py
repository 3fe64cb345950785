r"""``simulate``: the one jit-compiled entry point for running samplers on particles.

A run is ``process + score -> sampler -> Trajectory``. Fixed-grid methods run as one ``lax.scan`` over
the grid on a batched ``(N, d)`` state; adaptive methods go through Diffrax (see
:mod:`diffsim.sampling.adaptive`) with the same signature.

**Randomness.** Particle ``i`` (global index, counting across chunks) owns the key ``fold_in(k_path, i)``
and draws its step-``j`` noise from ``fold_in(that key, j)``; prior draws use ``fold_in(k_init, i)``, with
``k_init, k_path = split(key)``. Hence the same key gives the same particles whether the run is batched,
chunked (``chunk_size``) or sharded (:mod:`diffsim.sampling.sharding`). ``noise="counter"`` is a cheaper
scheme with the same invariance: step ``j``'s normals are the rows, at the particles' global indices, of
``jr.normal(fold_in(k_path, j), (N, draws, d))``, computed from threefry counters without a key per particle
(one hash per number instead of one per number plus one per particle and step; it matters at small ``d``).

**Saving.** ``save`` picks grid indices (``0`` is the initial state, ``n_steps`` the final one):
``"final"``, ``"all"``, an ``int`` k (every k-th index plus the last), or an explicit sequence of indices.
States are written into a preallocated buffer only at the saved steps (a ``lax.cond`` in the scan; with
``"final"`` there is no buffer at all), and ``stats(t, x) -> pytree`` (per particle) is evaluated only at
saved times, so memory never grows with the number of steps. Prior draws (``n=``) happen inside the
compiled run, so no separate input buffer is held.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._validation import as_float_array, check_key, check_positive_int, is_concrete
from ..scores._base import AbstractScore
from . import grids as _grids
from ._kernels import AbstractSampler, StepNoise, get_sampler


__all__ = [
    "NOISE_SCHEMES",
    "AbstractAdaptiveSampler",
    "Trajectory",
    "clone",
    "noise_denoise",
    "resolve_grid",
    "simulate",
]

DEFAULT_STEPS = 100


class Trajectory(eqx.Module):
    """Result of :func:`simulate`.

    - ``ts``: saved times, shape ``(S,)``;
    - ``xs``: saved states, shape ``(S, N, d)`` (``None`` with ``save_states=False``);
    - ``stats``: per-particle statistics at the saved times, each leaf shaped ``(S, N, ...)``, or ``None``;
    - ``x``: final states, shape ``(N, d)``;
    - ``nfe``: score evaluations per particle.

    :func:`clone` returns the same structure with a leading clone axis on ``xs``, ``stats`` and ``x``.
    With ``chunk_size`` the arrays are NumPy arrays on the host.
    """

    ts: Float[Array, " S"]
    xs: Any
    stats: Any
    x: Any
    nfe: int = eqx.field(static=True)


class AbstractAdaptiveSampler(AbstractSampler):
    """A sampler whose steps are chosen by Diffrax; implements :meth:`solve` instead of ``step``."""

    def solve(
        self,
        score: AbstractScore,
        grid: Array,
        x: Array,
        keys: Array,
        save_idx: np.ndarray,
        stats: Callable | None,
        save_states: bool,
    ) -> tuple[Any, Any, Array, Array]:
        """Return ``(xs, stats, x_final, nfe_per_particle)`` for particles ``x`` with keys ``keys``."""
        raise NotImplementedError


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


def _particle_keys(key, offset, n):
    return jax.vmap(lambda i: jr.fold_in(key, i))(offset + jnp.arange(n))


# --- counter-based noise (simulate(..., noise="counter")) ----------------------------------------------
def _key_words(key):
    """The two uint32 words of a threefry key (typed or raw)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jr.key_data(key)
    return key


def _bits_to_normal(b1, b2, dtype):
    """``jax.random.normal``'s map from threefry output words to N(0, 1) (partitionable threefry):
    uniform bits -> a float in ``[nextafter(-1, 1), 1)`` through the mantissa -> ``sqrt(2) erfinv(u)``."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        bits = b1 ^ b2
        one, shift, uint = np.uint32(0x3F800000), np.uint32(32 - 23), np.uint32
    elif dtype == np.float64:
        bits = (b1.astype(jnp.uint64) << np.uint64(32)) | b2.astype(jnp.uint64)
        one, shift, uint = np.uint64(0x3FF0000000000000), np.uint64(64 - 52), np.uint64
    else:
        raise ValueError(f'noise="counter" supports float32 and float64 particles, got {dtype}.')
    del uint
    lo = np.nextafter(np.array(-1.0, dtype), np.array(1.0, dtype))
    u = jax.lax.bitcast_convert_type((bits >> shift) | one, dtype) - np.array(1.0, dtype)
    u = jnp.maximum(lo, u * (np.array(1.0, dtype) - lo) + lo)
    return np.array(np.sqrt(2.0), dtype) * jax.lax.erf_inv(u)


def _counter_normals(key, offset, n, tail, dtype):
    """Rows ``offset .. offset + n`` of ``jr.normal(key, (M,) + tail)`` for any ``M >= offset + n``, computed
    without the other rows: entry ``(i, *j)`` hashes the counter ``(offset + i) * prod(tail) + flat(j)``
    with threefry2x32 (JAX's partitionable scheme). One hash per number and no per-particle key, so the
    cost is that of a batch-level ``jr.normal``, while every particle's noise depends only on its global
    index (batching, chunking and sharding invariant). Needs ``(offset + n) * prod(tail) < 2**32``."""
    from jax.extend.random import threefry2x32_p

    per = int(np.prod(tail))
    k = _key_words(key)
    base = jnp.asarray(offset).astype(jnp.uint32) * np.uint32(per)
    lo = base + jax.lax.iota(jnp.uint32, n * per).reshape((n,) + tuple(tail))
    b1, b2 = threefry2x32_p.bind(k[0], k[1], jnp.zeros_like(lo), lo)
    return _bits_to_normal(b1, b2, dtype)


def _noise_draws(sampler) -> int | None:
    draws = getattr(sampler, "noise_draws", None)
    return None if draws is None else int(draws)


# =====================================================================================================
# the compiled core
# =====================================================================================================
@eqx.filter_jit
def _run_fixed(
    score, sampler, grid, x, key, offset, n_particles, slots, n_save, final_only, stats_fn, save_states, noise
):
    """One ``lax.scan`` over the grid on a batched ``(N, d)`` state.

    ``x=None`` draws the prior inside the computation (no input buffer). States are written to the save
    buffer only at saved steps (``lax.cond``), and with ``final_only`` there is no buffer at all. With
    ``noise="counter"`` the step-``j`` normals are rows of ``jr.normal(fold_in(key_path, j), (M, draws, d))``
    (see :func:`_counter_normals`); otherwise particle ``i`` steps with ``fold_in(fold_in(key_path, i), j)``.
    """
    d = score.dim
    key_init, key_path = jr.split(key)
    if x is None:
        prior_keys = _particle_keys(key_init, offset, n_particles)
        x = jax.vmap(lambda k: score.process.prior_sample(k, (d,)))(prior_keys)
    grid = grid.astype(x.dtype)
    state = jax.vmap(sampler.init, in_axes=(None, 0))(grid[0], x)
    position = jax.vmap(sampler.position)
    draws = _noise_draws(sampler) if noise == "counter" else None
    if draws is None:
        pkeys = _particle_keys(key_path, offset, n_particles)

    def step_noise(i):
        if draws is None:
            return jax.vmap(jr.fold_in, in_axes=(0, None))(pkeys, i)
        if draws == 0:
            return StepNoise(jnp.zeros((n_particles, 0, d), x.dtype))
        return StepNoise(_counter_normals(jr.fold_in(key_path, i), offset, n_particles, (draws, d), x.dtype))

    def compute_stats(t, xb):
        return jax.vmap(stats_fn, in_axes=(None, 0))(t, xb)

    def advance(st, i, t, t_next):
        return jax.vmap(sampler.step, in_axes=(0, 0, None, None, None))(step_noise(i), st, t, t_next, score)

    n_steps = grid.shape[0] - 1
    steps = (jnp.arange(n_steps), grid[:-1], grid[1:])
    if final_only:  # the common case: nothing to write while stepping
        state, _ = jax.lax.scan(lambda st, inp: (advance(st, *inp), None), state, steps)
        xf = position(state)
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
    return buf, sbuf, position(state)


def _run_chunk(score, sampler, grid, x, key, offset, n_particles, save_idx, stats, save_states, noise):
    n_steps = grid.shape[0] - 1
    if isinstance(sampler, AbstractAdaptiveSampler):
        if x is None:
            x = _prior(score, key, jnp.asarray(offset), n_particles)
        keys = _particle_keys(jr.split(key)[1], offset, x.shape[0])
        xs, st, xf, _ = sampler.solve(score, grid, x, keys, save_idx, stats, save_states)
        return xs, st, xf
    slots = np.full(n_steps + 1, -1, dtype=np.int32)
    slots[save_idx] = np.arange(save_idx.size, dtype=np.int32)
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
    )


@eqx.filter_jit
def _prior(score, key, offset, n_particles):
    keys = _particle_keys(jr.split(key)[0], offset, n_particles)
    d = score.dim
    return jax.vmap(lambda k: score.process.prior_sample(k, (d,)))(keys)


# =====================================================================================================
# public API
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
        if is_concrete(x) and x.size and not bool(_all_finite(x)):
            raise ValueError("`x` contains non-finite values (NaN or inf).")
        return x
    return as_float_array(x, "x", ndim=2)


@dataclasses.dataclass(frozen=True)
class _Run:
    """A validated :func:`simulate` call (plain Python, before tracing); shared with ``sharding.py``."""

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

    def chunk(self, offset: int, size: int, pad_to: int | None = None):
        """Run particles ``offset .. offset + size`` (padded to ``pad_to`` to reuse the compiled function)."""
        n_run = size if pad_to is None else pad_to
        xc = None
        if self.x_init is not None:
            xc = self.x_init[offset : offset + size]
            if n_run > size:
                xc = jnp.concatenate([xc, jnp.zeros((n_run - size, xc.shape[1]), xc.dtype)])
        return _run_chunk(
            self.score,
            self.sampler,
            self.ts,
            xc,
            self.key,
            offset,
            n_run,
            self.save_idx,
            self.stats,
            self.save_states,
            self.noise,
        )


def _prepare(
    score, method, grid, *, x, n, key, save, stats, save_states, chunk_size, noise, method_options
) -> tuple[_Run, int | None]:
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim score (AbstractScore), got {type(score).__name__}.")
    sampler = _resolve_method(method, method_options)
    key = check_key(key)
    ts = resolve_grid(score, sampler, grid)
    n_steps = ts.shape[0] - 1
    sampler = sampler.configure(n_steps)
    save_idx = resolve_save(save, n_steps)
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
        if isinstance(sampler, AbstractAdaptiveSampler) and sampler.stochastic:
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
        per = max(_noise_draws(sampler) or 0, 1) * score.dim
        if n_particles * per >= 2**32:
            raise ValueError(
                f'noise="counter" supports N * draws * d < 2**32 numbers per step, got '
                f"{n_particles} * {per}; split the run over keys."
            )
    # saved times from the host copy of a concrete grid (no eager gather on the device)
    ts_saved = jnp.asarray(np.asarray(ts)[save_idx]) if is_concrete(ts) else ts[save_idx]
    run = _Run(
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
        sampler.nfe(n_steps),
    )
    return run, chunk_size


def _run_chunked(run: _Run, chunk_size: int) -> Trajectory:
    """Chunks of ``chunk_size`` particles, copied into preallocated host arrays as they finish (no
    concatenation, so the host holds the result once)."""
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
                lambda dst, src: dst.__setitem__((slice(None), slice(offset, offset + size)), src[:, :size]),
                out[1],
                st_c,
            )
        out[2][offset : offset + size] = xf_c[:size]
    return Trajectory(np.asarray(run.ts)[run.save_idx], out[0], out[1], out[2], run.nfe)


def simulate(
    score: AbstractScore,
    method: str | AbstractSampler = "euler_maruyama",
    grid: ArrayLike | int | None = None,
    *,
    x: Float[Array, "N d"] | None = None,
    n: int | None = None,
    key: jax.Array,
    save: str | int | Sequence[int] = "final",
    stats: Callable[[Array, Array], PyTree] | None = None,
    save_states: bool = True,
    chunk_size: int | None = None,
    noise: str = "per_particle",
    **method_options: Any,
) -> Trajectory:
    r"""Run a sampler on a batch of particles.

    **Arguments:**

    - ``score``: any :class:`~diffsim.scores.AbstractScore`; its ``process`` defines time.
    - ``method``: a sampler name (``"euler_maruyama"``, ``"ddpm"``, ``"ddim"``, ``"euler"``, ``"heun"``,
      ``"dpm_solver_2m"``, ``"pc"``, ``"forward"``, ``"forward_em"``, and the adaptive ``"tsit5"``,
      ``"dopri5"``, ``"sde"``) or a sampler instance; ``method_options`` go to its constructor
      (e.g. ``eta=0.5`` for DDIM).
    - ``grid``: array of times (decreasing for reverse samplers, increasing for forward ones), or a number
      of steps (uniform grid between ``t_max`` and ``t_min``, or from 0 to ``t_max`` forward). For adaptive
      methods the first and last times are the span and the grid indices pick the save times.
    - ``x``: starting points ``(N, d)`` at ``grid[0]``; or ``n``: draw ``n`` particles from the prior
      (reverse samplers only; drawn inside the compiled run, so no input buffer is held).
    - ``key``: PRNG key (required, also for deterministic samplers, which use it for prior draws).
    - ``save``: ``"final"`` (default), ``"all"``, an int stride, or grid indices to save.
    - ``stats``: optional ``stats(t, x) -> pytree`` per particle, recorded at the saved times. It is part
      of the compiled run's static key, so a fresh ``lambda`` or closure on every call recompiles; pass a
      module-level function or an ``equinox.Module`` with a ``__call__`` (its arrays are then traced).
    - ``save_states``: keep ``xs`` (set False to keep only ``stats`` and the final state).
    - ``chunk_size``: run the particles in chunks of this size (results identical; arrays on host).
    - ``noise``: ``"per_particle"`` (default): particle ``i`` draws step ``j``'s normals from the key
      ``fold_in(fold_in(k_path, i), j)``. ``"counter"``: step ``j``'s normals are the rows of
      ``jr.normal(fold_in(k_path, j), (N, draws, d))`` for the particles' global indices, computed from
      counters without per-particle keys (as cheap as one batch-level ``jr.normal``; also invariant under
      batching, chunking and sharding, but different numbers from ``"per_particle"``).

    Returns a :class:`Trajectory`.
    """
    run, chunk_size = _prepare(
        score,
        method,
        grid,
        x=x,
        n=n,
        key=key,
        save=save,
        stats=stats,
        save_states=save_states,
        chunk_size=chunk_size,
        noise=noise,
        method_options=method_options,
    )
    if chunk_size is None or chunk_size >= run.n_particles:
        xs, st, xf = run.chunk(0, run.n_particles)
        return Trajectory(run.ts_saved, xs, st, xf, run.nfe)
    return _run_chunked(run, chunk_size)


def _resolve_method(method, options) -> AbstractSampler:
    """A sampler from a name (fixed-grid or adaptive) with options, or an instance passed through."""
    if isinstance(method, str):
        from . import adaptive  # the adaptive names live there
        from ._kernels import SAMPLERS

        key = method.lower().replace("-", "_")
        if key in adaptive.ADAPTIVE:
            try:
                return adaptive.ADAPTIVE[key](**options)
            except TypeError as err:
                raise TypeError(f"Bad options for sampler {method!r}: {err}") from err
        if key not in SAMPLERS:
            known = sorted(set(adaptive.ADAPTIVE) | set(SAMPLERS))
            raise ValueError(f"Unknown sampler {method!r}; known samplers: {', '.join(known)}.")
    return get_sampler(method, **options)


def _reverse_grid(score, n_steps, t_start, t_end, kind):
    """A reverse grid from a possibly traced ``t_start`` (for vmapping over the start time)."""
    p = score.process
    t1 = p.t_min if t_end is None else t_end
    if kind == "uniform":
        return jnp.linspace(t_start, t1, n_steps + 1)
    if kind == "logsnr":
        lam = jnp.linspace(p.log_snr(t_start), p.log_snr(jnp.asarray(t1)), n_steps + 1)
        return p.t_from_log_snr(lam).at[0].set(t_start).at[-1].set(t1)
    raise ValueError(f"Unknown grid kind {kind!r}; use 'uniform' or 'logsnr'.")


def noise_denoise(
    score: AbstractScore,
    x0: Float[Array, "N d"],
    t_hat: ArrayLike,
    *,
    key: jax.Array,
    method: str | AbstractSampler = "euler_maruyama",
    n_steps: int = DEFAULT_STEPS,
    grid: str = "uniform",
    t_end: float | None = None,
    save: str | int | Sequence[int] = "final",
    stats: Callable | None = None,
    chunk_size: int | None = None,
    **method_options: Any,
) -> Trajectory:
    r"""Noise clean points to ``t_hat`` exactly, then run the reverse process from ``t_hat`` to ``t_end``.

    ``x_{t_hat} = alpha(t_hat) x0 + sigma(t_hat) z`` (particle ``i`` uses ``fold_in(k_noise, i)``), then
    :func:`simulate` with ``n_steps`` on a ``"uniform"`` or ``"logsnr"`` grid from ``t_hat`` to ``t_end``
    (default ``t_min``). This is Li & Chen (2024)'s noising-denoising protocol; with ``x0`` drawn from a
    sub-mixture ``S`` and the exact score, the output law satisfies the reweighting identity
    ``E_out f = E[f(X_0) P(S | X_{t_hat})] / W_S`` (reverse SDE). ``t_hat`` may be traced (vmap over it).
    """
    if not isinstance(score, AbstractScore):
        raise TypeError(f"`score` must be a diffsim score, got {type(score).__name__}.")
    key = check_key(key)
    n_steps = check_positive_int(n_steps, "n_steps")
    x0 = as_float_array(x0, "x0", ndim=2)
    if x0.shape[1] != score.dim:
        raise ValueError(f"`x0` must have shape (N, {score.dim}), got {x0.shape}.")
    p = score.process
    p.check_time(t_hat, "t_hat", allow_zero=False)
    if t_end is not None:
        p.check_time(t_end, "t_end", allow_zero=False)
    t1 = p.t_min if t_end is None else float(t_end)
    if is_concrete(t_hat) and not float(t_hat) > t1:
        raise ValueError(f"`t_hat` must exceed t_end={t1:g}, got {float(t_hat):g}.")
    k_noise, k_rev = jr.split(key)
    t_hat = jnp.asarray(t_hat, dtype=x0.dtype)
    x_t = _renoise(p, x0, t_hat, k_noise)
    ts = _reverse_grid(score, n_steps, t_hat, t1, grid)
    return simulate(
        score, method, ts, x=x_t, key=k_rev, save=save, stats=stats, chunk_size=chunk_size, **method_options
    )


@eqx.filter_jit
def _renoise(process, x0, t, key):
    keys = _particle_keys(key, 0, x0.shape[0])
    return jax.vmap(lambda k, xi: process.sample_marginal(k, xi, t))(keys, x0)


def clone(
    score: AbstractScore,
    x: Float[Array, "N d"],
    t: ArrayLike,
    *,
    key: jax.Array,
    n_clones: int = 2,
    method: str | AbstractSampler = "euler_maruyama",
    n_steps: int = DEFAULT_STEPS,
    grid: str = "uniform",
    t_end: float | None = None,
    save: str | int | Sequence[int] = "final",
    stats: Callable | None = None,
    **method_options: Any,
) -> Trajectory:
    r"""Branch particles at time ``t`` and continue each branch with independent noise.

    ``x`` are states at time ``t`` (e.g. ``simulate(...).x`` run from ``t_max`` to ``t``). Clone ``c``
    continues from ``t`` to ``t_end`` with key ``fold_in(key, c)``: a shared past and independent futures
    (the cloning experiment of Biroli et al. 2024). Returns a :class:`Trajectory` whose ``x`` has shape
    ``(n_clones, N, d)`` (and ``xs`` ``(n_clones, S, N, d)``).
    """
    n_clones = check_positive_int(n_clones, "n_clones")
    key = check_key(key)
    x = as_float_array(x, "x", ndim=2)
    if x.shape[1] != score.dim:
        raise ValueError(f"`x` must have shape (N, {score.dim}), got {x.shape}.")
    p = score.process
    p.check_time(t, "t", allow_zero=False)
    t1 = p.t_min if t_end is None else float(t_end)
    if is_concrete(t) and not float(t) > t1:
        raise ValueError(f"Branch time `t` must exceed t_end={t1:g}, got {float(t):g}.")
    ts = _reverse_grid(score, check_positive_int(n_steps, "n_steps"), jnp.asarray(t, x.dtype), t1, grid)
    runs = [
        simulate(score, method, ts, x=x, key=jr.fold_in(key, c), save=save, stats=stats, **method_options)
        for c in range(n_clones)
    ]
    stack = lambda *a: None if a[0] is None else jax.tree.map(lambda *b: jnp.stack(b), *a)  # noqa: E731
    return Trajectory(
        runs[0].ts,
        stack(*[r.xs for r in runs]),
        stack(*[r.stats for r in runs]),
        stack(*[r.x for r in runs]),
        runs[0].nfe,
    )
