r"""``simulate``: the one jit-compiled entry point for running samplers on particles.

A run is ``process + score -> sampler -> Trajectory``. Fixed-grid methods run as one ``lax.scan`` over
the grid on a batched ``(N, d)`` state; adaptive methods go through Diffrax (see
:mod:`diffsim.sampling.adaptive`) with the same signature.

**Randomness.** With ``k_init, k_path = split(key)``, particle ``i`` (global index, counting across
chunks) draws its prior sample from ``fold_in(k_init, i)``. Its step-``j`` normals are, by default
(``noise="counter"``), row ``i`` of ``jr.normal(fold_in(k_path, j), (N, draws, d))``, computed from threefry
counters without a key per particle (one hash per number); with ``noise="per_particle"`` they come from the
key ``fold_in(fold_in(k_path, i), j)`` (one hash per number plus one per particle and step: up to 2x the cost
at small ``d``; the default before diffsim 0.2, and the only scheme of the Diffrax ``"sde"`` method, which
falls back to it). Either way a particle's noise depends only on its global index, so the same key gives the
same particles whether the run is batched, chunked (``chunk_size``), padded, offset or sharded
(:mod:`diffsim.sampling.sharding`).

**Saving.** ``save`` picks grid indices (``0`` is the initial state, ``n_steps`` the final one):
``"final"``, ``"all"``, an ``int`` k (every k-th index plus the last), or an explicit sequence of indices.
States are written into a preallocated buffer only at the saved steps (a ``lax.cond`` in the scan; with
``"final"`` there is no buffer at all), and ``stats(t, x) -> pytree`` (per particle) is evaluated only at
saved times, so memory never grows with the number of steps. Prior draws (``n=``) happen inside the
compiled run, so no separate input buffer is held.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._types import SaveSpec, ScalarLike
from .._validation import as_float_array, check_key, check_positive_int, is_concrete
from ..scores._base import AbstractScore
from ._noise import particle_keys
from ._registry import AbstractAdaptiveSampler as AbstractAdaptiveSampler, AbstractSampler
from ._resolve import DEFAULT_STEPS, resolve_grid as resolve_grid
from ._run import NOISE_SCHEMES as NOISE_SCHEMES, prepare, run_chunked
from ._trajectory import Trajectory as Trajectory


__all__ = [
    "NOISE_SCHEMES",
    "AbstractAdaptiveSampler",
    "Trajectory",
    "clone",
    "noise_denoise",
    "resolve_grid",
    "simulate",
]


def simulate(
    score: AbstractScore,
    method: str | AbstractSampler = "euler_maruyama",
    grid: ArrayLike | int | None = None,
    *,
    x: Float[Array, "N d"] | None = None,
    n: int | None = None,
    key: jax.Array,
    save: SaveSpec = "final",
    stats: Callable[[Array, Array], PyTree] | None = None,
    save_states: bool = True,
    chunk_size: int | None = None,
    noise: str | None = None,
    final_denoise: bool = False,
    pad_to: int | None = None,
    particle_offset: int = 0,
    **method_options: Any,
) -> Trajectory:
    r"""Run a sampler on a batch of particles.

    Args:
        score: any :class:`~diffsim.scores.AbstractScore`; its ``process`` defines time.
        method: a registered sampler name (``"euler_maruyama"``, ``"ddpm"``, ``"ddim"``, ``"euler"``,
            ``"heun"``, ``"dpm_solver_2m"``, ``"pc"``, ``"forward"``, ``"forward_em"``, the adaptive
            ``"tsit5"``, ``"dopri5"``, ``"dopri8"``, ``"adaptive_ode"``, ``"sde"``, and any sampler class
            defined with a ``name``: see ``diffsim.sampling.SAMPLER_REGISTRY``) or a sampler instance;
            ``method_options`` go to its constructor (e.g. ``eta=0.5`` for DDIM).
        grid: array of times (decreasing for reverse samplers, increasing for forward ones), or a number
            of steps (uniform grid between ``t_max`` and ``t_min``, or from 0 to ``t_max`` forward);
            ``None`` (default): 100 steps. For adaptive methods the first and last times are the span and
            the grid indices pick the save times.
        x: starting points ``(N, d)`` at ``grid[0]``; give ``x`` or ``n``.
        n: draw ``n`` particles from the prior instead of passing ``x`` (reverse samplers only; drawn
            inside the compiled run, so no input buffer is held).
        key: PRNG key (required, also for deterministic samplers, which use it for prior draws).
        save: ``"final"`` (default), ``"all"``, an int stride, or grid indices to save.
        stats: optional ``stats(t, x) -> pytree`` per particle, recorded at the saved times. It is part
            of the compiled run's static key, so a fresh ``lambda`` or closure on every call recompiles;
            pass a module-level function or an ``equinox.Module`` with a ``__call__`` (its arrays are then
            traced).
        save_states: keep ``xs`` (set False to keep only ``stats`` and the final state).
        chunk_size: run the particles in chunks of this size (results identical; the chunks are
            assembled on the host and returned as ``jax.Array`` s on the default device).
        noise: the random-number scheme (both give the same particles whatever the batching, chunking,
            sharding or ``particle_offset``; they give different, equally valid, draws).
            ``"counter"``: step ``j``'s normals are the rows of ``jr.normal(fold_in(k_path, j), (N, draws,
            d))`` at the particles' global indices, computed from threefry counters without per-particle
            keys (as cheap as one batch-level ``jr.normal``). ``"per_particle"``: particle ``i`` draws step
            ``j``'s normals from the key ``fold_in(fold_in(k_path, i), j)`` (one more hash per particle and
            step: up to 2x slower at small ``d``; the default before diffsim 0.2 and the only scheme of the
            Diffrax ``"sde"`` method). ``None`` (default): ``"counter"`` wherever it applies (fixed-grid
            samplers, threefry keys, float32/float64 particles), else ``"per_particle"``.
        final_denoise: end with the step from the last grid time to ``sigma = 0``, as k-diffusion and
            diffusers do: the last state is the denoiser ``score.denoise(t_last, x)`` (LMS: its Adams step
            to ``sigma = 0``; Heun with ``convention="k_diffusion"``: the churned last step), costing one
            more score evaluation. Default ``False`` (the grid's last state, at ``t_last``); pass ``True``
            to reproduce the peers' numbers. The saved state at the last grid index is then the final one
            (``ts`` still lists ``t_last``).
        pad_to: run ``pad_to >= N`` particles and keep the first ``N`` (the extra ones, indices ``N ..
            pad_to - 1``, are prior draws or zeros and are dropped). Every ``N <= pad_to`` then reuses one
            compilation (a sweep over sizes up to a bucket), with the same particles as the unpadded run
            (to rounding, 1e-12, as for ``chunk_size``: XLA may vectorise a batch of another size
            differently), since particle ``i``'s randomness depends only on ``i``. Not with
            ``chunk_size`` (chunks are padded to ``chunk_size`` already).
        particle_offset: the global index of this call's first particle (default 0). Particle ``i`` of
            the call draws its prior sample and its noise as global particle ``particle_offset + i``, so a
            population split by hand over calls (or machines) with one key and consecutive offsets is the
            same population as one call: ``simulate(..., n=a + b)`` equals ``simulate(..., n=a)``
            followed by ``simulate(..., n=b, particle_offset=a)``.
        **method_options: constructor options of the sampler named by ``method`` (e.g. ``eta``,
            ``churn``); not allowed with a sampler instance.

    **What is exact.** With one key, the particles do not depend on the batch size, on ``chunk_size``, on
    ``pad_to``, on sharding or on ``particle_offset`` in the randomness they draw. The floating-point result
    is bit-identical in float64 and for the single-step samplers; in float32 a multistep or two-stage sampler
    (Heun, DPM-Solver++, ...) can differ by a few ulps (measured up to 4e-6 for Heun) between batch sizes,
    because XLA vectorises a batch of another size differently.

    Repeated calls with one static configuration are cheap: the sampler, the grid (a number of steps, or
    the same JAX array of times), the saved indices and a particle array's finiteness check are resolved
    once and memoised, so a call is the compiled run plus a few Python checks. Guidance scales, ``t_hat``,
    grid times, starting points and the key are traced: changing them does not recompile (see
    :func:`diffsim.sampling._sweep.sweep` to run a whole sweep as one ``vmap``-ed call).

    Returns:
        A :class:`Trajectory`: the saved times and states, the ``stats`` and the final states ``(N, d)``.
    """
    run, chunk_size = prepare(
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
        final_denoise=final_denoise,
        pad_to=pad_to,
    )
    if particle_offset:
        if isinstance(particle_offset, bool) or not isinstance(particle_offset, (int, np.integer)):
            raise TypeError(f"`particle_offset` must be an int, got {type(particle_offset).__name__}.")
        if particle_offset < 0:
            raise ValueError(f"`particle_offset` must be >= 0, got {particle_offset}.")
        run = dataclasses.replace(run, particle_offset=int(particle_offset))
    if pad_to is not None:
        pad_to = check_positive_int(pad_to, "pad_to")
        if chunk_size is not None:
            raise ValueError("Pass `pad_to` or `chunk_size`, not both (chunks are padded to `chunk_size`).")
        if pad_to < run.n_particles:
            raise ValueError(f"`pad_to` must be >= the number of particles {run.n_particles}, got {pad_to}.")
        if pad_to > run.n_particles:
            return _unpad(run, run.chunk(0, run.n_particles, pad_to=pad_to))
    if chunk_size is None or chunk_size >= run.n_particles:
        xs, st, xf = run.chunk(0, run.n_particles)
        return Trajectory(run.ts_saved, xs, st, xf, run.nfe)
    return run_chunked(run, chunk_size)


@eqx.filter_jit
def _first_particles(xs: PyTree, st: PyTree, xf: Array, n: int) -> tuple[PyTree, PyTree, Array]:
    """Particles ``0 .. n - 1`` (axis 1 of ``xs`` and ``stats`` leaves, axis 0 of ``xf``)."""
    first = lambda a, axis: jax.lax.slice_in_dim(a, 0, n, axis=axis)  # noqa: E731
    return jax.tree.map(lambda a: first(a, 1), xs), jax.tree.map(lambda a: first(a, 1), st), first(xf, 0)


def _unpad(run, parts) -> Trajectory:
    """The first ``run.n_particles`` particles of a padded run (one small compiled slice per ``N``)."""
    xs, st, xf = _first_particles(*parts, run.n_particles)
    return Trajectory(run.ts_saved, xs, st, xf, run.nfe)


def _end_time(process, t_end):
    """``t_end`` as a Python float when concrete (``t_min`` when None), else the traced value."""
    if t_end is None:
        return process.t_min
    return float(t_end) if is_concrete(t_end) else t_end


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
    t_end: ScalarLike | None = None,
    save: SaveSpec = "final",
    stats: Callable | None = None,
    chunk_size: int | None = None,
    **method_options: Any,
) -> Trajectory:
    r"""Noise clean points to ``t_hat`` exactly, then run the reverse process from ``t_hat`` to ``t_end``.

    ``x_{t_hat} = alpha(t_hat) x0 + sigma(t_hat) z`` (particle ``i`` uses ``fold_in(k_noise, i)``), then
    :func:`simulate` with ``n_steps`` on a ``"uniform"`` or ``"logsnr"`` grid from ``t_hat`` to ``t_end``
    (default ``t_min``). This is Li & Chen (2024)'s noising-denoising protocol; with ``x0`` drawn from a
    sub-mixture ``S`` and the exact score, the output law satisfies the reweighting identity
    ``E_out f = E[f(X_0) P(S | X_{t_hat})] / W_S`` (reverse SDE). ``t_hat`` and ``t_end`` may be traced:
    a loop over them does not recompile, and :func:`diffsim.sampling._sweep.sweep` runs a batch of them as
    one compiled, ``vmap``-ed call.

    Args:
        score: the score to run the reverse process with; its process does the noising.
        x0: clean points, shape ``(N, d)``.
        t_hat: the noising time, ``t_end < t_hat`` within the process's range (scalar, may be traced).
        key: PRNG key, split into the noising key and the reverse run's key.
        method: sampler name or instance for the reverse run (default ``"euler_maruyama"``).
        n_steps: steps of the reverse grid from ``t_hat`` to ``t_end`` (default 100).
        grid: the reverse grid's kind, ``"uniform"`` (default, in ``t``) or ``"logsnr"``.
        t_end: last time of the reverse run; ``None`` (default): ``process.t_min``.
        save: which grid indices to save, as for :func:`simulate` (default ``"final"``).
        stats: optional ``stats(t, x) -> pytree`` per particle at the saved times, as for :func:`simulate`.
        chunk_size: run the particles in chunks of this size, as for :func:`simulate`.
        **method_options: constructor options of the sampler named by ``method``.

    Returns:
        The reverse run's :class:`Trajectory` (its ``ts`` start at ``t_hat``).
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
    t1 = _end_time(p, t_end)
    if is_concrete((t_hat, t1)) and not float(t_hat) > t1:
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
    keys = particle_keys(key, 0, x0.shape[0])
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
    t_end: ScalarLike | None = None,
    save: SaveSpec = "final",
    stats: Callable | None = None,
    **method_options: Any,
) -> Trajectory:
    r"""Branch particles at time ``t`` and continue each branch with independent noise.

    ``x`` are states at time ``t`` (e.g. ``simulate(...).x`` run from ``t_max`` to ``t``). Clone ``c``
    continues from ``t`` to ``t_end`` with key ``fold_in(key, c)``: a shared past and independent futures
    (the cloning experiment of Biroli et al. 2024). Returns a :class:`Trajectory` whose ``x`` has shape
    ``(n_clones, N, d)`` (and ``xs`` ``(n_clones, S, N, d)``).

    Args:
        score: the score to run the branches with.
        x: the shared states at time ``t``, shape ``(N, d)``.
        t: the branch time, ``t > t_end`` (scalar, may be traced).
        key: PRNG key; clone ``c`` runs with ``fold_in(key, c)``.
        n_clones: number of branches (default 2).
        method: sampler name or instance for the branches (default ``"euler_maruyama"``; a deterministic
            sampler gives identical clones).
        n_steps: steps of each branch's grid from ``t`` to ``t_end`` (default 100).
        grid: the branch grid's kind, ``"uniform"`` (default, in ``t``) or ``"logsnr"``.
        t_end: last time of the branches; ``None`` (default): ``process.t_min``.
        save: which grid indices to save, as for :func:`simulate` (default ``"final"``).
        stats: optional ``stats(t, x) -> pytree`` per particle at the saved times, as for :func:`simulate`.
        **method_options: constructor options of the sampler named by ``method``.
    """
    n_clones = check_positive_int(n_clones, "n_clones")
    key = check_key(key)
    x = as_float_array(x, "x", ndim=2)
    if x.shape[1] != score.dim:
        raise ValueError(f"`x` must have shape (N, {score.dim}), got {x.shape}.")
    p = score.process
    p.check_time(t, "t", allow_zero=False)
    t1 = _end_time(p, t_end)
    if is_concrete((t, t1)) and not float(t) > t1:
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
