"""Time and token conditioning: Fourier features of the log-SNR, the input scale ``c_in`` and the
time-token embedding shared by the MLP and the UNet."""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ...processes import AbstractProcess
from ._layers import Dense, param


__all__ = ["fourier_time_features", "input_scale"]


def fourier_time_features(process: AbstractProcess, t: ArrayLike, n_freqs: int) -> Float[Array, " f"]:
    r"""Fourier features of the log-SNR: ``[u, sin(pi f_k u), cos(pi f_k u)]_k`` with ``u = lambda_t / 8``
    and ``f_k = 2^{k}`` for ``k`` evenly spaced in ``[-3, 3]`` (``2 n_freqs + 1`` features).

    The log-SNR is clipped to ``[-40, 40]`` so that ``t`` at the ends of the process stays finite.

    Args:
        process: the process that gives ``lambda_t``.
        t: one time (a scalar).
        n_freqs: the number of frequencies.

    Returns:
        The ``2 n_freqs + 1`` features, shape ``(2 n_freqs + 1,)``.
    """
    lam = jnp.clip(process.log_snr(t), -40.0, 40.0)
    u = lam / 8.0
    freqs = jnp.asarray(2.0 ** np.linspace(-3.0, 3.0, n_freqs), dtype=u.dtype)
    arg = math.pi * freqs * u
    return jnp.concatenate([u[None], jnp.sin(arg), jnp.cos(arg)])


def input_scale(process: AbstractProcess, t: ArrayLike, data_std: float) -> Array:
    r"""``c_in(t) = 1 / sqrt(alpha_t^2 sigma_data^2 + sigma_t^2)``: the inverse std of ``x_t`` for data of
    per-coordinate std ``sigma_data`` (Karras et al. 2022, Table 1).

    Args:
        process: the process that gives ``alpha_t`` and ``sigma_t``.
        t: the time, any shape.
        data_std: the per-coordinate std ``sigma_data`` of the data.

    Returns:
        ``c_in(t)``, with the shape of ``t``.
    """
    return jax.lax.rsqrt(process.alpha(t) ** 2 * data_std**2 + process.sigma2(t))


class TokenEmbeddings(eqx.Module):
    """One embedding table per token slot, each with ``A_j + 1`` rows (the last is the null token),
    initialised ``N(0, 1)``."""

    tables: tuple[Array, ...]

    def __init__(self, alphabet_sizes: Sequence[int], dim: int, *, rng):
        self.tables = tuple(param(rng.standard_normal((a + 1, dim))) for a in alphabet_sizes)

    def __call__(self, tokens: Int[Array, " n"]) -> Float[Array, "n e"] | None:
        if not self.tables:
            return None
        return jnp.stack([tab[tokens[j]] for j, tab in enumerate(self.tables)])


class TimeTokenEmbedding(eqx.Module):
    """Conditioning vector ``c = W_2 silu(W_1 fourier(lambda_t)) + sum_j E_j[token_j]`` (and the per-slot
    embeddings, used as attention keys)."""

    time_in: Dense
    time_out: Dense
    tokens: TokenEmbeddings
    n_freqs: int = eqx.field(static=True)

    def __init__(self, alphabet_sizes, dim, n_freqs, *, rng):
        self.n_freqs = n_freqs
        self.time_in = Dense(2 * n_freqs + 1, dim, rng=rng)
        self.time_out = Dense(dim, dim, rng=rng)
        self.tokens = TokenEmbeddings(alphabet_sizes, dim, rng=rng)

    def __call__(self, process, t, tokens):
        f = fourier_time_features(process, t, self.n_freqs)
        c = self.time_out(jax.nn.silu(self.time_in(f)))
        emb = self.tokens(tokens)
        if emb is not None:
            emb = emb.astype(c.dtype)
            c = c + jnp.sum(emb, axis=0)
        return c, emb
