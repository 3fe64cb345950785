"""Residual MLP score network for low-dimensional data."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from ..._validation import check_key, check_positive_int
from ...processes import AbstractProcess
from .._conversions import check_parametrisation
from ._checks import check_alphabets, check_data_std, check_point, check_process
from ._embeddings import TimeTokenEmbedding, input_scale
from ._layers import Dense, init_rng
from ._token import AbstractTokenScore


__all__ = ["MLPScore"]


class MLPScore(AbstractTokenScore):
    r"""Residual MLP score network for low-dimensional data, token-conditional.

    ``h_0 = W_in [c_in x, fourier(lambda_t), sum_j E_j[token_j]]``, then ``depth`` residual blocks
    ``h <- h + W_2 silu(W_1 silu(h) + U c)`` (``c`` the time-token vector), and a linear read-out in
    :attr:`parametrisation`.

    Args:
        dim: the data dimension ``d`` (a positive integer).
        key: a concrete JAX PRNG key; the parameters are drawn from it (deterministically).
        process: the forward process; ``None`` takes :meth:`~diffsim.processes.VP.ou`.
        alphabet_sizes: the token alphabet sizes ``(A_1, ..., A_n)``; ``()`` (default) is unconditional.
        width: the hidden width (default 128).
        depth: the number of residual blocks (default 3; 0 allowed).
        n_freqs: the number of Fourier frequencies of the log-SNR features (default 8).
        embed_dim: the dimension of the time-token vector ``c`` (default 64).
        parametrisation: what the network outputs: ``"eps"`` (default), ``"x0"``, ``"score"`` or ``"v"``.
        data_std: the per-coordinate data std ``sigma_data`` of the input scale ``c_in`` (default 1.0).
    """

    embed: TimeTokenEmbedding
    inp: Dense
    blocks: tuple[tuple[Dense, Dense, Dense], ...]
    out: Dense
    process: AbstractProcess
    data_dim: int = eqx.field(static=True)
    alphabet_sizes: tuple[int, ...] = eqx.field(static=True)
    parametrisation: str = eqx.field(static=True)
    data_std: float = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        *,
        key: jax.Array,
        process: AbstractProcess | None = None,
        alphabet_sizes: Sequence[int] = (),
        width: int = 128,
        depth: int = 3,
        n_freqs: int = 8,
        embed_dim: int = 64,
        parametrisation: str = "eps",
        data_std: float = 1.0,
    ):
        self.data_dim = check_positive_int(dim, "dim")
        width = check_positive_int(width, "width")
        depth = check_positive_int(depth, "depth", minimum=0)
        n_freqs = check_positive_int(n_freqs, "n_freqs")
        embed_dim = check_positive_int(embed_dim, "embed_dim")
        self.alphabet_sizes = check_alphabets(alphabet_sizes)
        self.parametrisation = check_parametrisation(parametrisation)
        self.data_std = check_data_std(data_std)
        self.process = check_process(process)
        key = check_key(key)
        rng = init_rng(key)
        self.embed = TimeTokenEmbedding(self.alphabet_sizes, embed_dim, n_freqs, rng=rng)
        self.inp = Dense(self.data_dim + embed_dim, width, rng=rng)
        self.blocks = tuple(
            (Dense(width, width, rng=rng), Dense(width, width, rng=rng), Dense(embed_dim, width, rng=rng))
            for _ in range(depth)
        )
        self.out = Dense(width, self.data_dim, rng=rng)

    @property
    def dim(self) -> int:
        return self.data_dim

    def raw(self, t, x, tokens):
        check_point(x, self.data_dim)
        t = jnp.asarray(t, dtype=x.dtype)
        c, _ = self.embed(self.process, t, tokens)
        h = self.inp(jnp.concatenate([x * input_scale(self.process, t, self.data_std), c]))
        for lin1, lin2, cond in self.blocks:
            h = h + lin2(jax.nn.silu(lin1(jax.nn.silu(h)) + cond(c)))
        return self.out(jax.nn.silu(h))
