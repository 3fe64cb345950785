"""A small conv UNet score network for images, with token cross-attention and feature hooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from ..._validation import check_key, check_positive_int
from ...processes import AbstractProcess
from .._conversions import check_parametrisation
from ._checks import check_alphabets, check_data_std, check_point, check_process
from ._embeddings import TimeTokenEmbedding, input_scale
from ._layers import Conv2d, GroupNorm, ResBlock, TokenCrossAttention, avg_pool2, init_rng, param, upsample2
from ._token import AbstractTokenScore


__all__ = ["UNetScore"]


class UNetScore(AbstractTokenScore):
    r"""A small conv UNet score network for ``C x H x W`` images, token-conditional.

    At the score interface an image is flattened to ``x`` of shape ``(d,) = (C H W,)`` in channel-first
    row-major order (``x.reshape(C, H, W)``; for one channel simply ``x.reshape(H, W)``). Internally the
    network is channel-last. Architecture (``L = len(channel_mults)`` levels, ``ch_i = base_channels *
    channel_mults[i]``)::

        conv_in 3x3 -> [ResBlock(ch_i) -> feature "down{i}" -> avg-pool 2x2 (i < L-1)]_i
        -> ResBlock -> token cross-attention (feature "attention", weights "attention_weights")
        -> ResBlock -> feature "mid"
        -> [upsample x2 (i < L-1) -> concat skip -> ResBlock(ch_i) -> feature "up{i}"]_{i = L-1..0}
        -> GroupNorm -> silu -> conv_out 3x3

    Every ResBlock receives the conditioning vector ``c = MLP(fourier(lambda_t)) + sum_j E_j[token_j]``
    (additive FiLM shift, Dhariwal & Nichol 2021). The cross-attention layer exists when the network has
    tokens and ``attention=True``. ``H`` and ``W`` must be divisible by ``2^{L-1}`` (8x8 digits:
    ``L <= 4``; 28x28 MNIST: ``L <= 3``).

    Args:
        image_shape: ``(H, W)`` (one channel) or ``(C, H, W)``.
        key: a concrete JAX PRNG key; the parameters are drawn from it (deterministically).
        process: the forward process; ``None`` takes :meth:`~diffsim.processes.VP.ou`.
        alphabet_sizes: the token alphabet sizes ``(A_1, ..., A_n)``; ``()`` (default) is unconditional.
        base_channels: the channel count of the first level (default 32).
        channel_mults: the per-level channel multipliers (default ``(1, 2)``: ``L = 2`` levels).
        embed_dim: the dimension of the conditioning vector ``c`` (default 64).
        n_freqs: the number of Fourier frequencies of the log-SNR features (default 8).
        attention: add the token cross-attention layer when there are tokens (default ``True``).
        n_heads: the attention heads (default 2); the deepest channel count must be divisible by it.
        parametrisation: what the network outputs: ``"eps"`` (default), ``"x0"``, ``"score"`` or ``"v"``.
        data_std: the per-coordinate data std ``sigma_data`` of the input scale ``c_in`` (default 0.5).
    """

    embed: TimeTokenEmbedding
    conv_in: Conv2d
    down: tuple[ResBlock, ...]
    mid1: ResBlock
    attn: TokenCrossAttention | None
    time_key: Array | None
    mid2: ResBlock
    up: tuple[ResBlock, ...]
    norm_out: GroupNorm
    conv_out: Conv2d
    process: AbstractProcess
    image_shape: tuple[int, int, int] = eqx.field(static=True)
    alphabet_sizes: tuple[int, ...] = eqx.field(static=True)
    parametrisation: str = eqx.field(static=True)
    data_std: float = eqx.field(static=True)

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        key: jax.Array,
        process: AbstractProcess | None = None,
        alphabet_sizes: Sequence[int] = (),
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        embed_dim: int = 64,
        n_freqs: int = 8,
        attention: bool = True,
        n_heads: int = 2,
        parametrisation: str = "eps",
        data_std: float = 0.5,
    ):
        shape = tuple(int(s) for s in image_shape)
        if len(shape) == 2:
            shape = (1,) + shape
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(
                f"`image_shape` must be (H, W) or (C, H, W) with positive sizes, got {tuple(image_shape)}."
            )
        mults = tuple(check_positive_int(m, "channel_mults[i]") for m in channel_mults)
        if not mults:
            raise ValueError("`channel_mults` must have at least one level.")
        factor = 2 ** (len(mults) - 1)
        if shape[1] % factor or shape[2] % factor:
            raise ValueError(
                f"`image_shape` {shape[1:]} must be divisible by 2^(levels-1) = {factor} "
                f"for channel_mults={mults}; use fewer levels."
            )
        base = check_positive_int(base_channels, "base_channels")
        embed_dim = check_positive_int(embed_dim, "embed_dim")
        n_heads = check_positive_int(n_heads, "n_heads")
        chans = [base * m for m in mults]
        if attention and chans[-1] % n_heads:
            raise ValueError(f"The deepest channel count {chans[-1]} must be divisible by n_heads={n_heads}.")
        self.image_shape = shape
        self.alphabet_sizes = check_alphabets(alphabet_sizes)
        self.parametrisation = check_parametrisation(parametrisation)
        self.data_std = check_data_std(data_std)
        self.process = check_process(process)
        key = check_key(key)
        use_attn = bool(attention) and len(self.alphabet_sizes) > 0
        rng = init_rng(key)
        c_img = shape[0]
        self.embed = TimeTokenEmbedding(
            self.alphabet_sizes, embed_dim, check_positive_int(n_freqs, "n_freqs"), rng=rng
        )
        self.conv_in = Conv2d(c_img, base, 3, rng=rng)
        down, prev = [], base
        for ch in chans:
            down.append(ResBlock(prev, ch, embed_dim, rng=rng))
            prev = ch
        self.down = tuple(down)
        self.mid1 = ResBlock(prev, prev, embed_dim, rng=rng)
        self.attn = TokenCrossAttention(prev, embed_dim, n_heads, rng=rng) if use_attn else None
        self.time_key = param(0.02 * rng.standard_normal(embed_dim)) if use_attn else None
        self.mid2 = ResBlock(prev, prev, embed_dim, rng=rng)
        up = []
        for i in reversed(range(len(chans))):
            up.append(ResBlock(prev + chans[i], chans[i], embed_dim, rng=rng))
            prev = chans[i]
        self.up = tuple(up)
        self.norm_out = GroupNorm(prev)
        self.conv_out = Conv2d(prev, c_img, 3, rng=rng, scale=0.1)  # small initial output

    @property
    def dim(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the feature maps returned by :meth:`features` (and accepted by ``feature_offsets``)."""
        n = len(self.down)
        names = [f"down{i}" for i in range(n)]
        if self.attn is not None:
            names.append("attention")
        names.append("mid")
        names += [f"up{i}" for i in reversed(range(n))]
        return tuple(names)

    def _forward(self, t, x, tokens, offsets):
        check_point(x, self.dim)
        offsets = {} if offsets is None else offsets
        unknown = set(offsets) - set(self.feature_names)
        if unknown:
            raise ValueError(f"Unknown feature names {sorted(unknown)}; the UNet has {self.feature_names}.")
        feats: dict[str, Array] = {}

        def tap(name, h):
            if name in offsets:
                h = h + offsets[name]
            feats[name] = h
            return h

        t = jnp.asarray(t, dtype=x.dtype)
        c, emb = self.embed(self.process, t, tokens)
        h = (x * input_scale(self.process, t, self.data_std)).reshape(self.image_shape)
        h = jnp.transpose(h, (1, 2, 0))  # channel-last
        h = self.conv_in(h)
        skips = []
        for i, block in enumerate(self.down):
            h = tap(f"down{i}", block(h, c))
            skips.append(h)
            if i < len(self.down) - 1:
                h = avg_pool2(h)
        h = self.mid1(h, c)
        if self.attn is not None:
            keys = jnp.concatenate([emb, self.time_key[None, :].astype(emb.dtype)], axis=0)
            h, weights = self.attn(h, keys)
            h = tap("attention", h)
            feats["attention_weights"] = weights
        h = tap("mid", self.mid2(h, c))
        for j, block in enumerate(self.up):
            i = len(self.down) - 1 - j
            if j > 0:
                h = upsample2(h)
            h = tap(f"up{i}", block(jnp.concatenate([h, skips[i]], axis=-1), c))
        out = self.conv_out(jax.nn.silu(self.norm_out(h)))
        return jnp.transpose(out, (2, 0, 1)).reshape(-1), feats

    def raw(self, t, x, tokens, *, feature_offsets: Mapping[str, ArrayLike] | None = None):
        """Network output (in :attr:`parametrisation`, flattened to ``(d,)``). ``feature_offsets`` adds
        arrays to named feature maps (see :attr:`feature_names`), for gradients w.r.t. activations."""
        return self._forward(t, x, tokens, feature_offsets)[0]

    def features(
        self, t: ArrayLike, x: Float[Array, " d"], tokens: Int[ArrayLike, " n"] | None = None
    ) -> dict[str, Array]:
        """Intermediate feature maps by name, channel-last ``(H_l, W_l, C_l)``, plus
        ``"attention_weights"`` ``(heads, H_l W_l, n_slots + 1)`` when the network has token attention
        (last key: time / no token), and ``"output"`` (the raw output ``(d,)``)."""
        out, feats = self._forward(t, x, self._tokens(tokens), None)
        feats["output"] = out
        return feats
