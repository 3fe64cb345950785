r"""The compiled fixed-grid core of :func:`diffsim.simulate`: one ``lax.scan`` over the grid on a batched
state, its checked-mode guards, a lean dispatch for repeated calls, and one chunk of particles (fixed-grid
or adaptive).

Randomness, saving and chunking are described in :mod:`diffsim.sampling.simulate`.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._checks import check_particles, check_times, checks_enabled
from ._noise import StepNoise, counter_normals, particle_keys
from ._precision import in_particle_dtype


__all__ = ["final_step", "prior_draws", "run_chunk"]


# =====================================================================================================
# the compiled core
# =====================================================================================================
@functools.lru_cache(maxsize=256)
def _slots(save_bytes: bytes, n_steps: int) -> np.ndarray:
    """Save slot of every grid index (``-1``: not saved), read-only."""
    save_idx = np.frombuffer(save_bytes, dtype=np.int64)
    slots = np.full(n_steps + 1, -1, dtype=np.int32)
    slots[save_idx] = np.arange(save_idx.size, dtype=np.int32)
    slots.flags.writeable = False
    return slots


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
    ``fold_in(fold_in(key_path, i), j)``. The kernels step in the particles' dtype: they get the model as
    :func:`~diffsim.sampling._precision.in_particle_dtype` shows it, and the scan carry keeps the dtypes of
    the initial state (a step is cast back to them).

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
    model = in_particle_dtype(score, x.dtype)  # the kernels' arithmetic runs in the particles' dtype
    state = jax.vmap(sampler.init, in_axes=(None, 0))(grid[0], x)
    position = jax.vmap(sampler.position)
    draws = sampler.draws_per_step() if noise in _COUNTER else None
    if draws is None:
        pkeys = particle_keys(key_path, offset, n_particles)

    def step_noise(i):
        if draws is None:
            return jax.vmap(jr.fold_in, in_axes=(0, None))(pkeys, i)
        if draws == 0:
            return StepNoise(jnp.zeros((n_particles, 0, d), x.dtype))
        z = counter_normals(
            jr.fold_in(key_path, i), offset, n_particles, (draws, d), x.dtype, wide=noise == "counter_wide"
        )
        return StepNoise(z)

    def compute_stats(t, xb):
        return jax.vmap(stats_fn, in_axes=(None, 0))(t, xb)

    def advance(st, i, t, t_next):
        new = jax.vmap(sampler.step, in_axes=(0, 0, None, None, None))(step_noise(i), st, t, t_next, model)
        return jax.tree.map(lambda a, old: a.astype(old.dtype), new, st)

    n_steps = grid.shape[0] - 1
    steps = (jnp.arange(n_steps), grid[:-1], grid[1:])

    def finish(st):  # the last state: the position, or the step to sigma = 0 (noise index n_steps)
        if not final_denoise:
            xf = position(st)
        else:
            fin = jax.vmap(final_step, in_axes=(None, 0, 0, None, None))
            xf = fin(sampler, step_noise(n_steps), st, grid[-1], model).astype(x.dtype)
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


_COUNTER = ("counter", "counter_wide")  # the second: counters past 2**32 (see run_chunk)


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
        model = in_particle_dtype(score, x.dtype)
        xs, st, xf, _ = sampler.solve(model, grid, x, keys, save_idx, stats, save_states)
        if final_denoise:
            last_saved = bool(save_idx[-1] == n_steps)
            xs, st, xf = _denoise_last(score, grid[-1], xs, st, xf, last_saved, stats)
        return xs, st, xf
    if (
        noise == "counter"
        and (int(offset) + n_particles) * max(sampler.draws_per_step(), 1) * score.dim >= 2**32
    ):
        noise = "counter_wide"  # 64-bit counters: only where the 32-bit ones would wrap (same numbers)
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
