r"""Trained score networks: token-conditional MLP and conv UNet, and a Flax adapter.

Every network here is an :class:`~diffsim.scores.AbstractScore`, so :func:`diffsim.simulate` runs it
like any analytic score. A network outputs one of four **parametrisations** of the same quantity,
converted exactly through the process ``x_t = alpha_t x_0 + sigma_t eps`` (Tweedie; Salimans & Ho 2022
for ``v``) with the functions of :mod:`diffsim.scores._base`:

    "eps":   eps_hat = -sigma_t s,
    "x0":    x0_hat  = (x + sigma_t^2 s) / alpha_t,
    "score": s,
    "v":     v_hat   = alpha_t eps_hat - sigma_t x0_hat.

**Tokens.** A network may condition on ``n`` discrete tokens (slot ``j`` takes values ``0 .. A_j - 1``,
``A = alphabet_sizes``). Each slot has one extra *null* id ``A_j`` meaning "this token is not given".
Trained with independent per-slot dropout to the null id (classifier-free guidance, Ho & Salimans 2022),
ONE network then provides the score conditioned on every subset of its tokens:

    net.score(t, x, tokens)           # tokens[j] == net.null_tokens[j]  ->  slot j unconditioned
    net.score(t, x)                   # all slots null: the unconditional score
    net.bind(tokens)                  # an AbstractScore of the conditional, for diffsim.simulate
    net.guided(tokens, w)             # classifier-free guidance  s_u + w (s_c - s_u)
    net.mask_tokens(tokens, keep)     # null the slots where keep is False (subset conditioning)

The guidance convention is the one of issue 4 (``diffsim.scores.guidance``): ``w = 0`` is unconditional,
``w = 1`` conditional, ``w > 1`` guided; Ho & Salimans' ``w_HS = w - 1``.

**Time input.** Networks see the noise level through Fourier features of the log-SNR
``lambda_t = log(alpha_t^2 / sigma_t^2)`` (process independent), and their input is rescaled by
``c_in = 1 / sqrt(alpha_t^2 sigma_data^2 + sigma_t^2)`` (Karras et al. 2022, Table 1) so that it has unit
scale at every noise level.

**Interpretability hooks** (for Grad-CAM and attention relevance): :meth:`UNetScore.features` returns the
intermediate feature maps (by name) and the cross-attention weights over the token slots; the keyword
``feature_offsets`` of :meth:`UNetScore.raw` adds arrays to named feature maps, so the gradient of any
output with respect to an activation is ``jax.grad`` with respect to a zero offset (Selvaraju et al. 2017).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from .._validation import check_key, check_positive_int, is_concrete
from ..processes import VP, AbstractProcess
from ._base import (
    AbstractScore,
    eps_from_score,
    score_from_eps,
    score_from_v,
    score_from_x0,
    v_from_score,
    x0_from_score,
)


__all__ = [
    "PARAMETRISATIONS",
    "AbstractTokenScore",
    "Dense",
    "FlaxScore",
    "GuidedTokenScore",
    "MLPScore",
    "TokenBoundScore",
    "UNetScore",
    "check_tokens",
    "convert_parametrisation",
    "fourier_time_features",
    "init_rng",
    "input_scale",
]

PARAMETRISATIONS = ("eps", "x0", "score", "v")

_TO_SCORE = {"eps": score_from_eps, "x0": score_from_x0, "score": lambda p, t, x, s: s, "v": score_from_v}
_FROM_SCORE = {"eps": eps_from_score, "x0": x0_from_score, "score": lambda p, t, x, s: s, "v": v_from_score}


# =====================================================================================================
# parametrisations, time features, validation
# =====================================================================================================
def _check_parametrisation(kind: str, name: str = "parametrisation") -> str:
    if kind not in PARAMETRISATIONS:
        raise ValueError(f"`{name}` must be one of {PARAMETRISATIONS}, got {kind!r}.")
    return kind


def convert_parametrisation(
    process: AbstractProcess,
    t: ArrayLike,
    x: Float[Array, " d"],
    value: Float[Array, " d"],
    from_kind: str,
    to_kind: str,
) -> Float[Array, " d"]:
    r"""Convert a prediction between ``"eps"``, ``"x0"``, ``"score"`` and ``"v"`` at ``(t, x)``.

    Exact (linear, through the score): ``to(from^{-1}(value))`` with the conversions of
    :mod:`diffsim.scores._base`; the identity when ``from_kind == to_kind``.
    """
    _check_parametrisation(from_kind, "from_kind")
    _check_parametrisation(to_kind, "to_kind")
    if from_kind == to_kind:
        return value
    s = _TO_SCORE[from_kind](process, t, x, value)
    return _FROM_SCORE[to_kind](process, t, x, s)


def fourier_time_features(process: AbstractProcess, t: ArrayLike, n_freqs: int) -> Float[Array, " f"]:
    r"""Fourier features of the log-SNR: ``[u, sin(pi f_k u), cos(pi f_k u)]_k`` with ``u = lambda_t / 8``
    and ``f_k = 2^{k}`` for ``k`` evenly spaced in ``[-3, 3]`` (``2 n_freqs + 1`` features).

    The log-SNR is clipped to ``[-40, 40]`` so that ``t`` at the ends of the process stays finite.
    """
    lam = jnp.clip(process.log_snr(t), -40.0, 40.0)
    u = lam / 8.0
    freqs = jnp.asarray(2.0 ** np.linspace(-3.0, 3.0, n_freqs), dtype=u.dtype)
    arg = math.pi * freqs * u
    return jnp.concatenate([u[None], jnp.sin(arg), jnp.cos(arg)])


def input_scale(process: AbstractProcess, t: ArrayLike, data_std: float) -> Array:
    r"""``c_in(t) = 1 / sqrt(alpha_t^2 sigma_data^2 + sigma_t^2)``: the inverse std of ``x_t`` for data of
    per-coordinate std ``sigma_data`` (Karras et al. 2022, Table 1)."""
    return jax.lax.rsqrt(process.alpha(t) ** 2 * data_std**2 + process.sigma2(t))


def check_tokens(
    tokens: Any, alphabet_sizes: Sequence[int], name: str = "tokens", *, allow_null: bool = True
) -> Array:
    """Validate a token vector ``(n,)`` or table ``(N, n)`` against ``alphabet_sizes`` and return it as an
    integer array. Slot ``j`` accepts ``0 .. A_j - 1`` and, with ``allow_null``, the null id ``A_j``.

    Concrete values are range-checked (``ValueError`` naming the slot); tracers are accepted unchecked.
    """
    n = len(alphabet_sizes)
    if tokens is None:
        raise TypeError(f"`{name}` must be an integer array of shape ({n},), got None.")
    arr = jnp.asarray(tokens)
    if arr.size == 0 and n == 0:
        return jnp.zeros(arr.shape[:-1] + (0,), jnp.int32) if arr.ndim >= 1 else jnp.zeros((0,), jnp.int32)
    if not (jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(f"`{name}` must hold integer token ids, got dtype {arr.dtype}.")
    if arr.ndim not in (1, 2) or arr.shape[-1] != n:
        raise ValueError(
            f"`{name}` must have shape ({n},) or (N, {n}) for alphabet sizes {tuple(alphabet_sizes)}, "
            f"got shape {arr.shape}."
        )
    if is_concrete(arr):
        vals = np.asarray(arr).reshape(-1, n)
        for j, a in enumerate(alphabet_sizes):
            hi = a if allow_null else a - 1
            bad = (vals[:, j] < 0) | (vals[:, j] > hi)
            if np.any(bad):
                v = int(vals[:, j][bad][0])
                extra = f" or the null id {a}" if allow_null else ""
                raise ValueError(f"`{name}` slot {j} must lie in [0, {a - 1}]{extra}; got {v}.")
    return arr.astype(jnp.int32)


def _check_point(x: Array, dim: int, name: str = "x") -> None:
    if jnp.ndim(x) != 1 or jnp.shape(x)[0] != dim:
        raise ValueError(
            f"`{name}` must be one point of shape ({dim},) (batch with jax.vmap), got shape {jnp.shape(x)}."
        )


# =====================================================================================================
# the token-conditional score interface
# =====================================================================================================
class AbstractTokenScore(AbstractScore):
    r"""A learned score that conditions on ``n`` discrete tokens, each with a null id.

    Subclasses implement :meth:`raw` (the network output in :attr:`parametrisation`). Everything else --
    the score, Tweedie's denoiser, eps and v predictions, binding tokens, classifier-free guidance --
    derives from it through exact conversions.
    """

    process: eqx.AbstractVar[AbstractProcess]
    alphabet_sizes: eqx.AbstractVar[tuple[int, ...]]
    parametrisation: eqx.AbstractVar[str]

    @abc.abstractmethod
    def raw(self, t: ArrayLike, x: Float[Array, " d"], tokens: Int[Array, " n"]) -> Float[Array, " d"]:
        """Network output at ``(t, x)`` given ``tokens`` (null ids allowed), in :attr:`parametrisation`."""

    # --- tokens -------------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return len(self.alphabet_sizes)

    @property
    def null_tokens(self) -> Int[Array, " n"]:
        """The all-null token vector ``(A_0, ..., A_{n-1})`` (the unconditional model)."""
        return jnp.asarray(self.alphabet_sizes, dtype=jnp.int32).reshape(self.n_tokens)

    def _tokens(self, tokens) -> Array:
        if tokens is None:
            return self.null_tokens
        return check_tokens(tokens, self.alphabet_sizes)

    def mask_tokens(
        self, tokens: Int[ArrayLike, "*b n"], keep: Bool[ArrayLike, "*b n"]
    ) -> Int[Array, "*b n"]:
        """Replace the slots where ``keep`` is False by their null id (condition on a subset of tokens)."""
        tok = check_tokens(tokens, self.alphabet_sizes)
        return jnp.where(jnp.asarray(keep, bool), tok, self.null_tokens)

    # --- predictions --------------------------------------------------------------------------------
    def predict(
        self,
        t: ArrayLike,
        x: Float[Array, " d"],
        tokens: Int[ArrayLike, " n"] | None = None,
        kind: str = "score",
    ) -> Float[Array, " d"]:
        """The prediction ``kind`` (``"eps"``, ``"x0"``, ``"score"``, ``"v"``) given ``tokens``
        (``None``: unconditional). The raw output is returned untouched when ``kind`` is the network's own
        parametrisation; otherwise it is converted exactly through the process."""
        _check_parametrisation(kind, "kind")
        out = self.raw(t, x, self._tokens(tokens))
        return convert_parametrisation(self.process, t, x, out, self.parametrisation, kind)

    def score(
        self, t: ArrayLike, x: Float[Array, " d"], tokens: Int[ArrayLike, " n"] | None = None
    ) -> Float[Array, " d"]:
        r"""``\nabla_x log p_t(x | tokens)`` (``tokens=None`` or null ids: unconditioned slots)."""
        return self.predict(t, x, tokens, "score")

    def denoise(self, t, x, tokens=None):
        """Tweedie posterior mean ``E[x_0 | x_t = x, tokens]``."""
        return self.predict(t, x, tokens, "x0")

    def eps(self, t, x, tokens=None):
        """Noise prediction ``E[eps | x_t = x, tokens]``."""
        return self.predict(t, x, tokens, "eps")

    def v_prediction(self, t, x, tokens=None):
        """v-prediction ``alpha eps_hat - sigma x0_hat``."""
        return self.predict(t, x, tokens, "v")

    # --- scores for the samplers ---------------------------------------------------------------------
    def bind(self, tokens: Int[ArrayLike, " n"]) -> TokenBoundScore:
        """The conditional score ``s(t, x | tokens)`` as an :class:`AbstractScore` (null ids allowed)."""
        tok = check_tokens(tokens, self.alphabet_sizes)
        if tok.ndim != 1:
            raise ValueError(
                f"`tokens` must be one token vector of shape ({self.n_tokens},), got {tok.shape}."
            )
        return TokenBoundScore(self, tok)

    def guided(
        self,
        tokens: Int[ArrayLike, " n"],
        strength: ArrayLike,
        unconditional: Int[ArrayLike, " n"] | None = None,
    ) -> GuidedTokenScore:
        """Classifier-free guidance ``s_u + w (s_c - s_u)`` with ``s_c = s(.|tokens)`` and ``s_u =
        s(.|unconditional)`` (default: all null). ``w = strength`` (0: unconditional, 1: conditional)."""
        tok = check_tokens(tokens, self.alphabet_sizes)
        unc = (
            self.null_tokens
            if unconditional is None
            else check_tokens(unconditional, self.alphabet_sizes, "unconditional")
        )
        if tok.ndim != 1 or unc.ndim != 1:
            raise ValueError("`tokens` and `unconditional` must be single token vectors.")
        w = jnp.asarray(strength)
        if is_concrete(w) and not np.all(np.isfinite(np.asarray(w))):
            raise ValueError(f"`strength` must be finite, got {strength}.")
        return GuidedTokenScore(self, tok, unc, w)


class TokenBoundScore(AbstractScore):
    """A token-conditional network with its tokens fixed: ``score(t, x) = net.score(t, x, tokens)``."""

    net: AbstractTokenScore
    tokens: Int[Array, " n"]
    process: AbstractProcess

    def __init__(self, net: AbstractTokenScore, tokens: Int[Array, " n"]):
        self.net = net
        self.tokens = tokens
        self.process = net.process

    @property
    def dim(self) -> int:
        return self.net.dim

    def score(self, t, x):
        return self.net.predict(t, x, self.tokens, "score")

    def denoise(self, t, x):
        return self.net.predict(t, x, self.tokens, "x0")

    def eps(self, t, x):
        return self.net.predict(t, x, self.tokens, "eps")

    def v_prediction(self, t, x):
        return self.net.predict(t, x, self.tokens, "v")


class GuidedTokenScore(AbstractScore):
    r"""Classifier-free guidance from one network (Ho & Salimans 2022):

        s_w(t, x) = s(t, x | u) + w (s(t, x | c) - s(t, x | u)),

    ``c = tokens``, ``u = unconditional`` (all null by default). Because every parametrisation is affine
    in the score at fixed ``(t, x)``, the same combination holds for eps, x0 and v; both evaluations run
    as one batched network call. ``strength`` is an array leaf, so sweeping it does not recompile.
    """

    net: AbstractTokenScore
    tokens: Int[Array, " n"]
    unconditional: Int[Array, " n"]
    strength: Array
    process: AbstractProcess

    def __init__(
        self,
        net: AbstractTokenScore,
        tokens: Int[Array, " n"],
        unconditional: Int[Array, " n"],
        strength: Array,
    ):
        self.net = net
        self.tokens = tokens
        self.unconditional = unconditional
        self.strength = strength
        self.process = net.process

    @property
    def dim(self) -> int:
        return self.net.dim

    def _combine(self, t, x, kind):
        both = jnp.stack([self.unconditional, self.tokens])
        out = jax.vmap(lambda tok: self.net.predict(t, x, tok, kind))(both)
        return out[0] + self.strength * (out[1] - out[0])

    def score(self, t, x):
        return self._combine(t, x, "score")

    def denoise(self, t, x):
        return self._combine(t, x, "x0")

    def eps(self, t, x):
        return self._combine(t, x, "eps")

    def v_prediction(self, t, x):
        return self._combine(t, x, "v")


# =====================================================================================================
# building blocks
# =====================================================================================================
# Parameters are drawn with a NumPy generator seeded by the JAX key (deterministic given the key). Drawing
# them with jax.random instead compiles one small XLA program per new parameter shape, about 10 s of CPU
# for a small UNet; NumPy draws cost nothing.
def init_rng(key: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded by a concrete JAX key (its raw key data)."""
    key = check_key(key)
    if not is_concrete(key):
        raise ValueError("Network constructors need a concrete `key` (not a traced value).")
    data = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
    return np.random.default_rng([int(v) for v in data.ravel()])


def _param(arr: np.ndarray) -> Array:
    # cast on the host: a device-side cast would compile one program per shape
    return jnp.asarray(np.asarray(arr, dtype=jnp.dtype(jnp.result_type(float))))


def _uniform(rng, shape, bound) -> Array:
    return _param(rng.uniform(-bound, bound, shape))


class Dense(eqx.Module):
    """Affine map ``W x + b`` of one vector, ``W`` of shape ``(d_out, d_in)`` and ``b`` drawn from
    ``U(-1/sqrt(d_in), 1/sqrt(d_in))`` (the PyTorch / Equinox default); ``zero=True`` starts at zero."""

    weight: Array
    bias: Array | None

    def __init__(
        self, d_in: int, d_out: int, *, rng: np.random.Generator, use_bias: bool = True, zero: bool = False
    ):
        bound = 0.0 if zero else 1.0 / math.sqrt(d_in)
        self.weight = _uniform(rng, (d_out, d_in), bound)
        self.bias = _uniform(rng, (d_out,), bound) if use_bias else None

    def __call__(self, x: Array) -> Array:
        y = self.weight.astype(x.dtype) @ x
        return y if self.bias is None else y + self.bias.astype(x.dtype)


class _TokenEmbeddings(eqx.Module):
    """One embedding table per token slot, each with ``A_j + 1`` rows (the last is the null token),
    initialised ``N(0, 1)``."""

    tables: tuple[Array, ...]

    def __init__(self, alphabet_sizes: Sequence[int], dim: int, *, rng):
        self.tables = tuple(_param(rng.standard_normal((a + 1, dim))) for a in alphabet_sizes)

    def __call__(self, tokens: Int[Array, " n"]) -> Float[Array, "n e"] | None:
        if not self.tables:
            return None
        return jnp.stack([tab[tokens[j]] for j, tab in enumerate(self.tables)])


class _TimeTokenEmbedding(eqx.Module):
    """Conditioning vector ``c = W_2 silu(W_1 fourier(lambda_t)) + sum_j E_j[token_j]`` (and the per-slot
    embeddings, used as attention keys)."""

    time_in: Dense
    time_out: Dense
    tokens: _TokenEmbeddings
    n_freqs: int = eqx.field(static=True)

    def __init__(self, alphabet_sizes, dim, n_freqs, *, rng):
        self.n_freqs = n_freqs
        self.time_in = Dense(2 * n_freqs + 1, dim, rng=rng)
        self.time_out = Dense(dim, dim, rng=rng)
        self.tokens = _TokenEmbeddings(alphabet_sizes, dim, rng=rng)

    def __call__(self, process, t, tokens):
        f = fourier_time_features(process, t, self.n_freqs)
        c = self.time_out(jax.nn.silu(self.time_in(f)))
        emb = self.tokens(tokens)
        if emb is not None:
            emb = emb.astype(c.dtype)
            c = c + jnp.sum(emb, axis=0)
        return c, emb


# =====================================================================================================
# MLP score for low-dimensional data
# =====================================================================================================
class MLPScore(AbstractTokenScore):
    r"""Residual MLP score network for low-dimensional data, token-conditional.

    ``h_0 = W_in [c_in x, fourier(lambda_t), sum_j E_j[token_j]]``, then ``depth`` residual blocks
    ``h <- h + W_2 silu(W_1 silu(h) + U c)`` (``c`` the time-token vector), and a linear read-out in
    :attr:`parametrisation`.

    **Arguments:** ``dim``; ``key``; ``process`` (default :meth:`VP.ou`); ``alphabet_sizes`` (default
    ``()``: unconditional); ``width`` (128); ``depth`` (3); ``n_freqs`` (8 Fourier frequencies);
    ``embed_dim`` (64); ``parametrisation`` (``"eps"``); ``data_std`` (1.0, for ``c_in``).
    """

    embed: _TimeTokenEmbedding
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
        self.alphabet_sizes = _check_alphabets(alphabet_sizes)
        self.parametrisation = _check_parametrisation(parametrisation)
        self.data_std = _check_data_std(data_std)
        self.process = _check_process(process)
        key = check_key(key)
        rng = init_rng(key)
        self.embed = _TimeTokenEmbedding(self.alphabet_sizes, embed_dim, n_freqs, rng=rng)
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
        _check_point(x, self.data_dim)
        t = jnp.asarray(t, dtype=x.dtype)
        c, _ = self.embed(self.process, t, tokens)
        h = self.inp(jnp.concatenate([x * input_scale(self.process, t, self.data_std), c]))
        for lin1, lin2, cond in self.blocks:
            h = h + lin2(jax.nn.silu(lin1(jax.nn.silu(h)) + cond(c)))
        return self.out(jax.nn.silu(h))


# =====================================================================================================
# conv UNet for images (channel-last inside: XLA:CPU runs NCHW convolutions inside loops -- such as the
# sampler's lax.scan -- an order of magnitude slower than NHWC ones, jax-ml/jax#12868)
# =====================================================================================================
def _groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class _Conv2d(eqx.Module):
    """Same-padded 2-D convolution of one channel-last image ``(H, W, C_in) -> (H, W, C_out)``.

    Weights ``(k, k, C_in, C_out)`` and bias drawn from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (the
    PyTorch / Equinox default)."""

    weight: Array
    bias: Array

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, *, rng, scale: float = 1.0):
        bound = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.weight = _uniform(rng, (kernel, kernel, c_in, c_out), scale * bound)
        self.bias = _uniform(rng, (c_out,), bound)

    def __call__(self, h):
        out = jax.lax.conv_general_dilated(
            h[None], self.weight.astype(h.dtype), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )[0]
        return out + self.bias.astype(h.dtype)


class _GroupNorm(eqx.Module):
    """Group normalisation (Wu & He 2018) of one channel-last map ``(H, W, C)`` with a learned affine."""

    scale: Array
    shift: Array
    groups: int = eqx.field(static=True)

    def __init__(self, channels: int):
        self.groups = _groups(channels)
        self.scale = _param(np.ones(channels))
        self.shift = _param(np.zeros(channels))

    def __call__(self, h):
        hh, ww, c = h.shape
        g = h.reshape(hh, ww, self.groups, c // self.groups)
        mean = jnp.mean(g, axis=(0, 1, 3), keepdims=True)
        var = jnp.var(g, axis=(0, 1, 3), keepdims=True)
        g = (g - mean) * jax.lax.rsqrt(var + 1e-5)
        return g.reshape(hh, ww, c) * self.scale.astype(h.dtype) + self.shift.astype(h.dtype)


class _ResBlock(eqx.Module):
    """``skip(h) + conv(silu(GN(conv(silu(GN(h))) + W c)))``; ``skip`` a 1x1 conv when channels change."""

    norm1: _GroupNorm
    conv1: _Conv2d
    cond: Dense
    norm2: _GroupNorm
    conv2: _Conv2d
    skip: _Conv2d | None

    def __init__(self, c_in, c_out, embed_dim, *, rng):
        self.norm1 = _GroupNorm(c_in)
        self.conv1 = _Conv2d(c_in, c_out, 3, rng=rng)
        self.cond = Dense(embed_dim, c_out, rng=rng)
        self.norm2 = _GroupNorm(c_out)
        self.conv2 = _Conv2d(c_out, c_out, 3, rng=rng)
        self.skip = None if c_in == c_out else _Conv2d(c_in, c_out, 1, rng=rng)

    def __call__(self, h, c):
        y = self.conv1(jax.nn.silu(self.norm1(h)))
        y = y + self.cond(c)[None, None, :]
        y = self.conv2(jax.nn.silu(self.norm2(y)))
        return y + (h if self.skip is None else self.skip(h))


class _TokenCrossAttention(eqx.Module):
    """Cross-attention from the pixels of a feature map (queries) to the token-slot embeddings plus one
    learned "time" key (keys/values): ``h <- h + W_o softmax(Q K^T / sqrt(d_h)) V``.

    The weights ``(heads, H W, n_slots + 1)`` (pixels in row-major order) are returned for attention
    relevance; the last key is the time/no-token key, so a pixel may attend to no token at all.
    """

    norm: _GroupNorm
    q: Dense
    k: Dense
    v: Dense
    o: Dense
    n_heads: int = eqx.field(static=True)

    def __init__(self, channels, embed_dim, n_heads, *, rng):
        self.n_heads = n_heads
        self.norm = _GroupNorm(channels)
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

    **Arguments:** ``image_shape`` ``(H, W)`` or ``(C, H, W)``; ``key``; ``process`` (default VP.ou);
    ``alphabet_sizes`` (``()``); ``base_channels`` (32); ``channel_mults`` (``(1, 2)``); ``embed_dim``
    (64); ``n_freqs`` (8); ``attention`` (True); ``n_heads`` (2); ``parametrisation`` (``"eps"``);
    ``data_std`` (0.5).
    """

    embed: _TimeTokenEmbedding
    conv_in: _Conv2d
    down: tuple[_ResBlock, ...]
    mid1: _ResBlock
    attn: _TokenCrossAttention | None
    time_key: Array | None
    mid2: _ResBlock
    up: tuple[_ResBlock, ...]
    norm_out: _GroupNorm
    conv_out: _Conv2d
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
        self.alphabet_sizes = _check_alphabets(alphabet_sizes)
        self.parametrisation = _check_parametrisation(parametrisation)
        self.data_std = _check_data_std(data_std)
        self.process = _check_process(process)
        key = check_key(key)
        use_attn = bool(attention) and len(self.alphabet_sizes) > 0
        rng = init_rng(key)
        c_img = shape[0]
        self.embed = _TimeTokenEmbedding(
            self.alphabet_sizes, embed_dim, check_positive_int(n_freqs, "n_freqs"), rng=rng
        )
        self.conv_in = _Conv2d(c_img, base, 3, rng=rng)
        down, prev = [], base
        for ch in chans:
            down.append(_ResBlock(prev, ch, embed_dim, rng=rng))
            prev = ch
        self.down = tuple(down)
        self.mid1 = _ResBlock(prev, prev, embed_dim, rng=rng)
        self.attn = _TokenCrossAttention(prev, embed_dim, n_heads, rng=rng) if use_attn else None
        self.time_key = _param(0.02 * rng.standard_normal(embed_dim)) if use_attn else None
        self.mid2 = _ResBlock(prev, prev, embed_dim, rng=rng)
        up = []
        for i in reversed(range(len(chans))):
            up.append(_ResBlock(prev + chans[i], chans[i], embed_dim, rng=rng))
            prev = chans[i]
        self.up = tuple(up)
        self.norm_out = _GroupNorm(prev)
        self.conv_out = _Conv2d(prev, c_img, 3, rng=rng, scale=0.1)  # small initial output

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
        _check_point(x, self.dim)
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
                h = _avg_pool2(h)
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
                h = _upsample2(h)
            h = tap(f"up{i}", block(jnp.concatenate([h, skips[i]], axis=-1), c))
        out = self.conv_out(jax.nn.silu(self.norm_out(h)))
        return jnp.transpose(out, (2, 0, 1)).reshape(-1), feats

    def raw(self, t, x, tokens, *, feature_offsets: Mapping[str, Array] | None = None):
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


def _avg_pool2(h):
    hh, ww, c = h.shape
    return h.reshape(hh // 2, 2, ww // 2, 2, c).mean(axis=(1, 3))


def _upsample2(h):
    return jnp.repeat(jnp.repeat(h, 2, axis=0), 2, axis=1)


# =====================================================================================================
# Flax adapter
# =====================================================================================================
class FlaxScore(AbstractTokenScore):
    r"""Any Flax module (linen or nnx) with its parameters as a diffsim score.

    The module is called on ONE point, ``module(t_in, x)`` or, when ``alphabet_sizes`` is non-empty,
    ``module(t_in, x, tokens)``, with ``t_in`` the time ``t`` (``time_input="t"``) or the log-SNR
    (``time_input="log_snr"``), and must return an array of shape ``(d,)`` in :attr:`parametrisation`.

    The parameters are a pytree field (:attr:`params`), so :func:`diffsim.scores.training.train`
    trains them like any Equinox model. Build with :meth:`from_linen` or :meth:`from_nnx`.
    """

    params: PyTree
    apply_fn: Callable = eqx.field(static=True)
    process: AbstractProcess
    data_dim: int = eqx.field(static=True)
    alphabet_sizes: tuple[int, ...] = eqx.field(static=True)
    parametrisation: str = eqx.field(static=True)
    time_input: str = eqx.field(static=True)

    def __init__(
        self,
        params: PyTree,
        apply_fn: Callable,
        dim: int,
        *,
        process: AbstractProcess | None = None,
        alphabet_sizes: Sequence[int] = (),
        parametrisation: str = "eps",
        time_input: str = "log_snr",
    ):
        if not callable(apply_fn):
            raise TypeError(
                f"`apply_fn` must be callable apply_fn(params, t, x[, tokens]), got {type(apply_fn).__name__}."
            )
        if time_input not in ("t", "log_snr"):
            raise ValueError(f"`time_input` must be 't' or 'log_snr', got {time_input!r}.")
        self.params = params
        self.apply_fn = apply_fn
        self.data_dim = check_positive_int(dim, "dim")
        self.process = _check_process(process)
        self.alphabet_sizes = _check_alphabets(alphabet_sizes)
        self.parametrisation = _check_parametrisation(parametrisation)
        self.time_input = time_input

    @classmethod
    def from_linen(cls, module: Any, variables: PyTree, dim: int, **kwargs) -> FlaxScore:
        """Wrap a ``flax.linen.Module`` and its ``variables`` (the dict returned by ``module.init``)."""
        if not hasattr(module, "apply"):
            raise TypeError(f"`module` must be a flax.linen Module, got {type(module).__name__}.")
        return cls(variables, _LinenApply(module), dim, **kwargs)

    @classmethod
    def from_nnx(cls, model: Any, dim: int, **kwargs) -> FlaxScore:
        """Wrap a ``flax.nnx.Module`` (split into a static graph definition and a state pytree)."""
        from flax import nnx

        graphdef, state = nnx.split(model)
        return cls(state, _NnxApply(graphdef), dim, **kwargs)

    @property
    def dim(self) -> int:
        return self.data_dim

    def raw(self, t, x, tokens):
        _check_point(x, self.data_dim)
        t = jnp.asarray(t, dtype=x.dtype)
        t_in = t if self.time_input == "t" else self.process.log_snr(t)
        args = (t_in, x) if self.n_tokens == 0 else (t_in, x, tokens)
        out = self.apply_fn(self.params, *args)
        if jnp.shape(out) != (self.data_dim,):
            raise ValueError(f"The Flax module must return shape ({self.data_dim},), got {jnp.shape(out)}.")
        return out.astype(x.dtype)


class _LinenApply(eqx.Module):
    """Hashable static wrapper around a linen module's ``apply`` (compared by identity)."""

    module: Any = eqx.field(static=True)

    def __call__(self, variables, *args):
        return self.module.apply(variables, *args)

    def __hash__(self):
        return id(self.module)

    def __eq__(self, other):
        return isinstance(other, _LinenApply) and other.module is self.module


class _NnxApply(eqx.Module):
    graphdef: Any = eqx.field(static=True)

    def __call__(self, state, *args):
        from flax import nnx

        return nnx.merge(self.graphdef, state)(*args)


# =====================================================================================================
# helpers
# =====================================================================================================
def _check_alphabets(alphabet_sizes) -> tuple[int, ...]:
    sizes = tuple(alphabet_sizes)
    for j, a in enumerate(sizes):
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 1:
            raise ValueError(f"`alphabet_sizes[{j}]` must be a positive integer, got {a!r}.")
    return tuple(int(a) for a in sizes)


def _check_data_std(data_std) -> float:
    v = float(data_std)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"`data_std` must be positive and finite, got {data_std}.")
    return v


def _check_process(process) -> AbstractProcess:
    if process is None:
        return VP.ou()
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"`process` must be a diffsim process, got {type(process).__name__}.")
    return process
