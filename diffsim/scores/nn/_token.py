r"""The token-conditional score interface: :class:`AbstractTokenScore` (a network output in one
parametrisation, conditioned on discrete tokens with null ids), and the two scores it hands to the
samplers: :class:`TokenBoundScore` (tokens fixed) and :class:`GuidedTokenScore` (classifier-free guidance).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ..._validation import is_concrete
from ...processes import AbstractProcess
from .._base import AbstractScore
from .._conversions import check_parametrisation, convert_parametrisation
from ._checks import check_tokens


__all__ = ["AbstractTokenScore", "GuidedTokenScore", "TokenBoundScore"]


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
        check_parametrisation(kind, "kind")
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
