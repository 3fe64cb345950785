r"""``simulate``: the one jit-compiled entry point for running samplers on particles.

A run is ``process + score -> sampler -> Trajectory``. Fixed-grid methods run as one ``lax.scan`` over
the grid on a batched ``(N, d)`` state; adaptive methods go through Diffrax (see
:mod:`diffsim.sampling.adaptive`) with the same signature.

**Randomness.** Particle ``i`` (global index, counting across chunks) owns the key ``fold_in(k_path, i)``
and draws its step-``j`` noise from ``fold_in(that key, j)``; prior draws use ``fold_in(k_init, i)``, with
``k_init, k_path = split(key)``. Hence the same key gives the same particles whether the run is batched,
chunked (``chunk_size``) or sharded.

**Saving.** ``save`` picks grid indices (``0`` is the initial state, ``n_steps`` the final one):
``"final"``, ``"all"``, an ``int`` k (every k-th index plus the last), or an explicit sequence of indices.
States are written into a preallocated buffer, and ``stats(t, x) -> pytree`` (per particle) is evaluated
only at saved times, so memory never grows with the number of steps.
"""

from __future__ import annotations

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
from ._kernels import AbstractFixedSampler, AbstractSampler, get_sampler


__all__ = ["AbstractAdaptiveSampler", "Trajectory", "clone", "noise_denoise", "resolve_grid", "simulate"]

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

    def solve(self, score: AbstractScore, grid: Array, x: Array, keys: Array, save_idx: np.ndarray,
              stats: Callable | None, save_states: bool) -> tuple[Any, Any, Array, Array]:
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
        raise TypeError("`grid` must be an array of times or a number of steps; build named grids with "
                        "`diffsim.sampling.grids` (e.g. grids.karras(process, 50)).")
    ts = as_float_array(grid, "grid", ndim=1)
    if ts.shape[0] < 2:
        raise ValueError(f"`grid` must hold at least 2 times (one step), got {ts.shape[0]}.")
    if is_concrete(ts):
        arr = np.asarray(ts)
        diffs = np.diff(arr)
        if forward and not np.all(diffs > 0):
            raise ValueError(f"Forward sampler {sampler.name!r} needs a strictly increasing `grid`.")
        if not forward and not np.all(diffs < 0):
            raise ValueError(f"Reverse sampler {sampler.name!r} needs a strictly decreasing `grid` "
                             f"(from t_max down to t_min), got {arr[:3]}...")
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


# =====================================================================================================
# the compiled core
# =====================================================================================================
@eqx.filter_jit
def _run_fixed(score, sampler, grid, x, key_path, offset, slots, n_save, stats_fn, save_states):
    n_particles = x.shape[0]
    pkeys = _particle_keys(key_path, offset, n_particles)
    grid = grid.astype(x.dtype)
    state = jax.vmap(sampler.init, in_axes=(None, 0))(grid[0], x)
    position = jax.vmap(sampler.position)

    def compute_stats(t, xb):
        return jax.vmap(stats_fn, in_axes=(None, 0))(t, xb)

    buf = jnp.zeros((n_save + 1,) + x.shape, x.dtype) if save_states else None
    if stats_fn is not None:
        shapes = jax.eval_shape(compute_stats, grid[0], x)
        sbuf = jax.tree.map(lambda s: jnp.zeros((n_save + 1,) + s.shape, s.dtype), shapes)
    else:
        sbuf = None

    def write(bufs, slot, t, xb):
        b, sb = bufs
        target = jnp.where(slot >= 0, slot, n_save)  # slot n_save is a scratch row
        if b is not None:
            b = jax.lax.dynamic_update_index_in_dim(b, xb, target, 0)
        if sb is not None:
            sb = jax.lax.cond(
                slot >= 0,
                lambda s: jax.tree.map(lambda a, v: jax.lax.dynamic_update_index_in_dim(a, v, slot, 0), s,
                                       compute_stats(t, xb)),
                lambda s: s,
                sb,
            )
        return b, sb

    bufs = write((buf, sbuf), slots[0], grid[0], x)

    def body(carry, inp):
        st, bufs = carry
        i, t, t_next = inp
        keys = jax.vmap(jr.fold_in, in_axes=(0, None))(pkeys, i)
        st = jax.vmap(sampler.step, in_axes=(0, 0, None, None, None))(keys, st, t, t_next, score)
        bufs = write(bufs, slots[i + 1], t_next, position(st))
        return (st, bufs), None

    n_steps = grid.shape[0] - 1
    (state, (buf, sbuf)), _ = jax.lax.scan(body, (state, bufs), (jnp.arange(n_steps), grid[:-1], grid[1:]))
    xs = None if buf is None else buf[:n_save]
    stats = None if sbuf is None else jax.tree.map(lambda a: a[:n_save], sbuf)
    return xs, stats, position(state)


@eqx.filter_jit
def _prior(score, key_init, offset, n_particles):
    keys = _particle_keys(key_init, offset, n_particles)
    d = score.dim
    return jax.vmap(lambda k: score.process.prior_sample(k, (d,)))(keys)


def _run_chunk(score, sampler, grid, x, key_path, offset, save_idx, stats, save_states):
    n_steps = grid.shape[0] - 1
    if isinstance(sampler, AbstractAdaptiveSampler):
        keys = _particle_keys(key_path, offset, x.shape[0])
        xs, st, xf, _ = sampler.solve(score, grid, x, keys, save_idx, stats, save_states)
        return xs, st, xf
    slots = np.full(n_steps + 1, -1, dtype=np.int32)
    slots[save_idx] = np.arange(save_idx.size, dtype=np.int32)
    return _run_fixed(score, sampler, grid, x, key_path, jnp.asarray(offset), jnp.asarray(slots),
                      int(save_idx.size), stats, bool(save_states))


# =====================================================================================================
# public API
# =====================================================================================================
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
      (reverse samplers only).
    - ``key``: PRNG key (required, also for deterministic samplers, which use it for prior draws).
    - ``save``: ``"final"`` (default), ``"all"``, an int stride, or grid indices to save.
    - ``stats``: optional ``stats(t, x) -> pytree`` per particle, recorded at the saved times.
    - ``save_states``: keep ``xs`` (set False to keep only ``stats`` and the final state).
    - ``chunk_size``: run the particles in chunks of this size (results identical; arrays on host).

    Returns a :class:`Trajectory`.
    """
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

    key_init, key_path = jr.split(key)
    if (x is None) == (n is None):
        raise ValueError("Pass exactly one of `x` (starting points) or `n` (number of prior draws).")
    if x is None:
        if sampler.direction == "forward":
            raise ValueError(f"Forward sampler {sampler.name!r} needs starting points `x` (data at grid[0]).")
        n_particles = check_positive_int(n, "n")
        x_init = None
    else:
        x_init = as_float_array(x, "x", ndim=2)
        if x_init.shape[1] != score.dim:
            raise ValueError(f"`x` must have shape (N, {score.dim}) to match the score, got {x_init.shape}.")
        n_particles = x_init.shape[0]
        if n_particles < 1:
            raise ValueError("`x` must hold at least one particle.")
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size")

    def start(offset, size):
        if x_init is None:
            return _prior(score, key_init, jnp.asarray(offset), size)
        return x_init[offset:offset + size]

    nfe = sampler.nfe(n_steps)
    if chunk_size is None or chunk_size >= n_particles:
        xs, st, xf = _run_chunk(score, sampler, ts, start(0, n_particles), key_path, 0, save_idx, stats,
                                save_states)
        return Trajectory(ts[save_idx], xs, st, xf, nfe)

    pieces = []
    for offset in range(0, n_particles, chunk_size):
        size = min(chunk_size, n_particles - offset)
        xc = start(offset, size)
        if size < chunk_size:  # pad to reuse the compiled function
            xc = jnp.concatenate([xc, jnp.zeros((chunk_size - size, score.dim), xc.dtype)])
        xs_c, st_c, xf_c = _run_chunk(score, sampler, ts, xc, key_path, offset, save_idx, stats, save_states)
        xs_c = None if xs_c is None else np.asarray(xs_c)[:, :size]
        st_c = None if st_c is None else jax.tree.map(lambda a: np.asarray(a)[:, :size], st_c)
        pieces.append((xs_c, st_c, np.asarray(xf_c)[:size]))

    def cat(axis, *parts):
        if parts[0] is None:
            return None
        return jax.tree.map(lambda *a: np.concatenate(a, axis=axis), *parts)

    xs = cat(1, *[p[0] for p in pieces])
    st = cat(1, *[p[1] for p in pieces])
    xf = cat(0, *[p[2] for p in pieces])
    return Trajectory(np.asarray(ts)[save_idx], xs, st, xf, nfe)


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
    return simulate(score, method, ts, x=x_t, key=k_rev, save=save, stats=stats, chunk_size=chunk_size,
                    **method_options)


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
    runs = [simulate(score, method, ts, x=x, key=jr.fold_in(key, c), save=save, stats=stats, **method_options)
            for c in range(n_clones)]
    stack = lambda *a: None if a[0] is None else jax.tree.map(lambda *b: jnp.stack(b), *a)  # noqa: E731
    return Trajectory(runs[0].ts, stack(*[r.xs for r in runs]), stack(*[r.stats for r in runs]),
                      stack(*[r.x for r in runs]), runs[0].nfe)
