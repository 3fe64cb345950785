r"""The validated :func:`diffsim.simulate` call behind ``simulate`` and ``simulate_sharded``: :func:`prepare`
checks the arguments into a :class:`Run` (resolved by :mod:`._resolve`), whose chunks run on the compiled core
(:mod:`._scan`); :func:`run_chunked` assembles chunks into one :class:`Trajectory`.

Randomness, saving and chunking are described in :mod:`diffsim.sampling.simulate`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._validation import check_key, check_positive_int, is_concrete
from ..scores._base import AbstractScore
from ._registry import AbstractSampler
from ._resolve import _as_particles, _grid_and_sampler, _memo_sampler, _saved
from ._scan import run_chunk
from ._trajectory import Trajectory


__all__ = ["NOISE_SCHEMES", "Run", "prepare", "resolve_noise", "run_chunked"]

# =====================================================================================================
# a validated call
# =====================================================================================================
NOISE_SCHEMES = ("per_particle", "counter")


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


def _counter_obstacle(sampler: AbstractSampler, key: jax.Array, dtype) -> str | None:
    """Why ``noise="counter"`` cannot serve this call (``None`` if it can)."""
    if sampler.adaptive and sampler.is_stochastic():
        return (
            'noise="counter" applies to fixed-grid samplers; the Diffrax "sde" method draws '
            "its Brownian paths from per-particle keys."
        )
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    return _key_and_dtype_obstacle(key.dtype if typed else None, jax.config.jax_default_prng_impl, dtype)


@functools.lru_cache(maxsize=64)
def _key_and_dtype_obstacle(key_dtype, default_impl, dtype) -> str | None:
    """The key-implementation and dtype part of :func:`_counter_obstacle`, memoised (no work per call)."""
    impl = str(default_impl) if key_dtype is None else str(key_dtype)  # "threefry2x32" / "key<fry>", ...
    if "threefry" not in impl and impl != "key<fry>":
        return f'noise="counter" needs a threefry2x32 key, got {impl}.'
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        return f'noise="counter" supports float32 and float64 particles, got {np.dtype(dtype)}.'
    return None


def resolve_noise(noise: str | None, sampler: AbstractSampler, key: jax.Array, dtype) -> str:
    """The noise scheme of a call: ``noise`` when given (checked), else the default: ``"counter"`` where it
    applies (fixed-grid samplers, threefry keys, float32/float64 particles), ``"per_particle"`` otherwise
    (the Diffrax ``"sde"`` method, other key implementations, other dtypes)."""
    if noise is None:
        return "per_particle" if _counter_obstacle(sampler, key, dtype) else "counter"
    if noise not in NOISE_SCHEMES:
        raise ValueError(f"`noise` must be one of {NOISE_SCHEMES} or None (the default), got {noise!r}.")
    if noise == "counter":
        obstacle = _counter_obstacle(sampler, key, dtype)
        if obstacle is not None:
            raise ValueError(obstacle)
    return noise


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
    or the same grid array, ``save``) reuse the resolved sampler, grid and saved times (see
    :class:`~diffsim.sampling._resolve._Memo`).
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
    dtype = jax.dtypes.canonicalize_dtype(float) if x_init is None else x_init.dtype
    noise = resolve_noise(noise, sampler, key, dtype)
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
