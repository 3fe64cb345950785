"""Building blocks of the score networks: parameter initialisation, ``Dense``, same-padded convolution,
group normalisation, the conditioned residual block, token cross-attention, 2x pooling and upsampling.

Every block acts on ONE point (a vector, or a channel-last map ``(H, W, C)``); batching is ``jax.vmap``'s.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..._validation import check_key, is_concrete


__all__ = ["Dense", "init_rng"]


# Parameters are drawn with a NumPy generator seeded by the JAX key (deterministic given the key). Drawing
# them with jax.random instead compiles one small XLA program per new parameter shape, about 10 s of CPU
# for a small UNet; NumPy draws cost nothing.
def init_rng(key: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded by a concrete JAX key (its raw key data).

    Args:
        key: a concrete JAX PRNG key (typed or legacy ``uint32[2]``); a traced key raises ``ValueError``.
    """
    key = check_key(key)
    if not is_concrete(key):
        raise ValueError("Network constructors need a concrete `key` (not a traced value).")
    data = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
    return np.random.default_rng([int(v) for v in data.ravel()])


def param(arr: np.ndarray) -> Array:
    # cast on the host: a device-side cast would compile one program per shape
    return jnp.asarray(np.asarray(arr, dtype=jnp.dtype(jnp.result_type(float))))


def uniform(rng, shape, bound) -> Array:
    return param(rng.uniform(-bound, bound, shape))


class Dense(eqx.Module):
    """Affine map ``W x + b`` of one vector, ``W`` of shape ``(d_out, d_in)`` and ``b`` drawn from
    ``U(-1/sqrt(d_in), 1/sqrt(d_in))`` (the PyTorch / Equinox default); ``zero=True`` starts at zero.

    Args:
        d_in: the input dimension.
        d_out: the output dimension.
        rng: the NumPy generator the weights are drawn from (see :func:`init_rng`); it advances.
        use_bias: whether to add a bias ``b`` (default ``True``; ``False`` stores ``None``).
        zero: start ``W`` and ``b`` at zero instead of drawing them (default ``False``).
    """

    weight: Array
    bias: Array | None

    def __init__(
        self, d_in: int, d_out: int, *, rng: np.random.Generator, use_bias: bool = True, zero: bool = False
    ):
        bound = 0.0 if zero else 1.0 / math.sqrt(d_in)
        self.weight = uniform(rng, (d_out, d_in), bound)
        self.bias = uniform(rng, (d_out,), bound) if use_bias else None

    def __call__(self, x: Array | np.ndarray) -> Array:
        y = self.weight.astype(x.dtype) @ x
        return y if self.bias is None else y + self.bias.astype(x.dtype)


# --- convolutional blocks (channel-last: XLA:CPU runs NCHW convolutions inside loops -- such as the
# sampler's lax.scan -- an order of magnitude slower than NHWC ones, jax-ml/jax#12868) ------------------
def n_groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class Conv2d(eqx.Module):
    """Same-padded 2-D convolution of one channel-last image ``(H, W, C_in) -> (H, W, C_out)``.

    Weights ``(k, k, C_in, C_out)`` and bias drawn from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (the
    PyTorch / Equinox default)."""

    weight: Array
    bias: Array

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, *, rng, scale: float = 1.0):
        bound = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.weight = uniform(rng, (kernel, kernel, c_in, c_out), scale * bound)
        self.bias = uniform(rng, (c_out,), bound)

    def __call__(self, h):
        out = jax.lax.conv_general_dilated(
            h[None], self.weight.astype(h.dtype), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )[0]
        return out + self.bias.astype(h.dtype)[None, None, :]


class GroupNorm(eqx.Module):
    """Group normalisation (Wu & He 2018) of one channel-last map ``(H, W, C)`` with a learned affine."""

    scale: Array
    shift: Array
    groups: int = eqx.field(static=True)

    def __init__(self, channels: int):
        self.groups = n_groups(channels)
        self.scale = param(np.ones(channels))
        self.shift = param(np.zeros(channels))

    def __call__(self, h):
        hh, ww, c = h.shape
        g = h.reshape(hh, ww, self.groups, c // self.groups)
        mean = jnp.mean(g, axis=(0, 1, 3), keepdims=True)
        var = jnp.var(g, axis=(0, 1, 3), keepdims=True)
        g = (g - mean) * jax.lax.rsqrt(var + 1e-5)
        return (
            g.reshape(hh, ww, c) * self.scale.astype(h.dtype)[None, None, :]
            + self.shift.astype(h.dtype)[None, None, :]
        )


class ResBlock(eqx.Module):
    """``skip(h) + conv(silu(GN(conv(silu(GN(h))) + W c)))``; ``skip`` a 1x1 conv when channels change."""

    norm1: GroupNorm
    conv1: Conv2d
    cond: Dense
    norm2: GroupNorm
    conv2: Conv2d
    skip: Conv2d | None

    def __init__(self, c_in, c_out, embed_dim, *, rng):
        self.norm1 = GroupNorm(c_in)
        self.conv1 = Conv2d(c_in, c_out, 3, rng=rng)
        self.cond = Dense(embed_dim, c_out, rng=rng)
        self.norm2 = GroupNorm(c_out)
        self.conv2 = Conv2d(c_out, c_out, 3, rng=rng)
        self.skip = None if c_in == c_out else Conv2d(c_in, c_out, 1, rng=rng)

    def __call__(self, h, c):
        y = self.conv1(jax.nn.silu(self.norm1(h)))
        y = y + self.cond(c)[None, None, :]
        y = self.conv2(jax.nn.silu(self.norm2(y)))
        return y + (h if self.skip is None else self.skip(h))


class TokenCrossAttention(eqx.Module):
    """Cross-attention from the pixels of a feature map (queries) to the token-slot embeddings plus one
    learned "time" key (keys/values): ``h <- h + W_o softmax(Q K^T / sqrt(d_h)) V``.

    The weights ``(heads, H W, n_slots + 1)`` (pixels in row-major order) are returned for attention
    relevance; the last key is the time/no-token key, so a pixel may attend to no token at all.
    """

    norm: GroupNorm
    q: Dense
    k: Dense
    v: Dense
    o: Dense
    n_heads: int = eqx.field(static=True)

    def __init__(self, channels, embed_dim, n_heads, *, rng):
        self.n_heads = n_heads
        self.norm = GroupNorm(channels)
        self.q = Dense(channels, channels, use_bias=False, rng=rng)
        self.k = Dense(embed_dim, channels, use_bias=False, rng=rng)
        self.v = Dense(embed_dim, channels, use_bias=False, rng=rng)
        self.o = Dense(channels, channels, rng=rng, zero=True)  # the block starts as the identity

    def __call__(self, h, keys):
        hh, ww, ch = h.shape
        dh = ch // self.n_heads
        pix = self.norm(h).reshape(hh * ww, ch)
        q = jax.vmap(self.q)(pix).reshape(hh * ww, self.n_heads, dh)
        k = jax.vmap(self.k)(keys).reshape(keys.shape[0], self.n_heads, dh)
        v = jax.vmap(self.v)(keys).reshape(keys.shape[0], self.n_heads, dh)
        logits = jnp.einsum("phd,khd->hpk", q, k) / math.sqrt(dh)
        attn = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("hpk,khd->phd", attn, v).reshape(hh * ww, ch)
        out = jax.vmap(self.o)(out).reshape(hh, ww, ch)
        return h + out, attn


def avg_pool2(h):
    hh, ww, c = h.shape
    return h.reshape(hh // 2, 2, ww // 2, 2, c).mean(axis=(1, 3))


def upsample2(h):
    return jnp.repeat(jnp.repeat(h, 2, axis=0), 2, axis=1)
