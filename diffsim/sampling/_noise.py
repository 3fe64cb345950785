r"""Randomness of a run: per-particle keys, the pre-drawn :class:`StepNoise`, and counter-based normals.

Particle ``i`` (global index) owns the key ``fold_in(key, i)`` (:func:`particle_keys`). With
``simulate(..., noise="counter")`` a step's normals are instead rows of a batch-level ``jr.normal`` computed
from threefry counters (:func:`counter_normals`) and handed to the kernel as a :class:`StepNoise`; the
kernel helpers :func:`normal_like` and :func:`split_noise` accept either source, so a sampler written with
them works with both schemes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Key


__all__ = ["StepNoise", "counter_normals", "counter_words", "normal_like", "particle_keys", "split_noise"]


class StepNoise(NamedTuple):
    """Pre-drawn standard normals of one particle for one step, shape ``(n_draws, d)``.

    ``simulate(..., noise="counter")`` passes this in place of the per-particle key; the helpers
    :func:`normal_like` and :func:`split_noise` hand out its rows in order, so a kernel written with them
    works with either source of randomness.

    Attributes:
        z: the normals, shape ``(n_draws, d)``; row ``i`` is the step's ``i``-th draw.
    """

    z: Array


def normal_like(key: Key[Array, ""] | StepNoise, x: Float[Array, " d"]) -> Float[Array, " d"]:
    """A standard normal vector shaped like ``x``: from ``key``, or the next row of a :class:`StepNoise`.

    Args:
        key: a PRNG key (draws ``jr.normal(key, x.shape)``) or a :class:`StepNoise` (returns its first row).
        x: the vector whose shape ``(d,)`` and dtype the draw takes.
    """
    if isinstance(key, StepNoise):
        return key.z[0].astype(x.dtype)
    return jr.normal(key, x.shape, dtype=x.dtype)


def split_noise(key: Key[Array, ""] | StepNoise, n: int) -> list:
    """``n`` independent noise sources from one: ``jr.split`` for keys, the rows of a :class:`StepNoise`.

    Args:
        key: a PRNG key or a :class:`StepNoise` with at least ``n`` rows.
        n: how many sources; a :class:`StepNoise` yields one single-row :class:`StepNoise` per row
            ``0 .. n - 1``.

    Returns:
        A list of ``n`` keys or single-row :class:`StepNoise`, each usable with :func:`normal_like`.
    """
    if isinstance(key, StepNoise):
        return [StepNoise(key.z[i : i + 1]) for i in range(n)]
    return list(jr.split(key, n))


def particle_keys(key: Key[Array, ""], offset: ArrayLike, n: int) -> Key[Array, " n"]:
    """The keys ``fold_in(key, offset + i)`` of particles ``offset .. offset + n - 1``."""
    idx = jnp.arange(n)
    return jax.vmap(lambda i: jr.fold_in(key, i))(jnp.asarray(offset).astype(idx.dtype) + idx)


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
        one, shift = np.uint32(0x3F800000), np.uint32(32 - 23)
    elif dtype == np.float64:
        bits = (b1.astype(jnp.uint64) << np.uint64(32)) | b2.astype(jnp.uint64)
        one, shift = np.uint64(0x3FF0000000000000), np.uint64(64 - 52)
    else:
        raise ValueError(f'noise="counter" supports float32 and float64 particles, got {dtype}.')
    lo = np.nextafter(np.array(-1.0, dtype), np.array(1.0, dtype))
    u = jax.lax.bitcast_convert_type((bits >> shift) | one, dtype) - np.array(1.0, dtype)
    u = jnp.maximum(lo, u * (np.array(1.0, dtype) - lo) + lo)
    return np.array(np.sqrt(2.0), dtype) * jax.lax.erf_inv(u)


def counter_words(offset: ArrayLike, n: int, per: int) -> tuple[Array, Array]:
    """The high and low uint32 words of the 64-bit counters ``(offset + i) * per + j`` (``i < n``,
    ``j < per``), shape ``(n, per)``: JAX's partitionable threefry hashes the flat index of an entry of
    ``jr.normal(key, shape)`` as these two words. The product is formed from 16-bit limbs, so it is exact
    for every global index ``offset + i < 2**32`` and ``per < 2**32`` without 64-bit integers."""
    if not 0 < per < 2**32:
        raise ValueError(f"counter noise needs 0 < draws * d < 2**32 numbers per particle, got {per}.")
    u32 = jnp.uint32
    g = jnp.asarray(offset).astype(u32) + jax.lax.iota(u32, n)  # global particle indices
    g_lo, g_hi = g & u32(0xFFFF), g >> u32(16)
    p_lo, p_hi = u32(per & 0xFFFF), u32(per >> 16)
    low, cross_a, cross_b, high = g_lo * p_lo, g_hi * p_lo, g_lo * p_hi, g_hi * p_hi  # each < 2**32
    cross = cross_a + cross_b
    cross_carry = (cross < cross_a).astype(u32)  # the cross sum's bit 32 (worth 2**48 in the product)
    base_lo = low + (cross << u32(16))
    base_hi = high + (cross >> u32(16)) + (cross_carry << u32(16)) + (base_lo < low).astype(u32)
    lo = base_lo[:, None] + jax.lax.iota(u32, per)[None, :]
    hi = base_hi[:, None] + (lo < base_lo[:, None]).astype(u32)
    return hi, lo


def counter_normals(
    key: Key[Array, ""], offset: ArrayLike, n: int, tail: tuple[int, ...], dtype, *, wide: bool = True
) -> Float[Array, " n *tail"]:
    """Rows ``offset .. offset + n`` of ``jr.normal(key, (M,) + tail)`` for any ``M >= offset + n``, computed
    without the other rows: entry ``(i, *j)`` hashes the 64-bit counter ``(offset + i) * prod(tail) +
    flat(j)`` (:func:`counter_words`) with threefry2x32 (JAX's partitionable scheme). One hash per number
    and no per-particle key, so the cost is that of a batch-level ``jr.normal``, while every particle's noise
    depends only on its global index (batching, chunking and sharding invariant).

    ``wide=False`` is for callers that know ``(offset + n) * prod(tail) < 2**32``: the high counter word is
    then zero and only the low one is formed (the same numbers, and the same compiled program as diffsim
    0.1's counter noise; what the 64-bit words cost on their own was not measured).
    :func:`~diffsim.sampling._scan.run_chunk` picks it from the concrete particle range of each call."""
    from jax.extend.random import threefry2x32_p

    per = int(np.prod(tail))
    k = _key_words(key)
    shape = (n,) + tuple(tail)
    if wide:
        hi, lo = (w.reshape(shape) for w in counter_words(offset, n, per))
    else:  # the counters are shaped before hashing: reshaping the hash output costs XLA a layout copy
        base = jnp.asarray(offset).astype(jnp.uint32) * np.uint32(per)
        lo = base + jax.lax.iota(jnp.uint32, n * per).reshape(shape)
        hi = jnp.zeros_like(lo)
    b1, b2 = threefry2x32_p.bind(k[0], k[1], hi, lo)
    return _bits_to_normal(b1, b2, dtype)
