r"""The token-conditional score interface: :class:`AbstractTokenScore` (a network output in one
parametrisation, conditioned on discrete tokens with null ids), and the scores it hands to the samplers:
:class:`TokenBoundScore` (tokens fixed) and, for classifier-free guidance, a
:class:`~diffsim.scores.ClassifierFreeGuidance` of two of them (one batched network call).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ...processes import AbstractProcess
from .._base import AbstractScore
from .._conversions import check_parametrisation, convert_parametrisation
from ..guidance import ClassifierFreeGuidance
from ._checks import check_tokens


__all__ = ["AbstractTokenScore", "TokenBoundScore"]


class AbstractTokenScore(AbstractScore):
    r"""A learned score that conditions on ``n`` discrete tokens, each with a null id.

    Subclasses implement :meth:`raw` (the network output in :attr:`parametrisation`). Everything else --
    the score, Tweedie's denoiser, eps and v predictions, binding tokens, classifier-free guidance --
    derives from it through exact conversions.

    Attributes:
        process: the forward process the network was trained on.
        alphabet_sizes: ``(A_1, ..., A_n)``; slot ``j`` takes ids ``0 .. A_j - 1`` and the null id ``A_j``.
        parametrisation: what :meth:`raw` returns: ``"eps"``, ``"x0"``, ``"score"`` or ``"v"``.
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
        scale: ArrayLike,
        unconditional: Int[ArrayLike, " n"] | None = None,
    ) -> ClassifierFreeGuidance:
        """Classifier-free guidance ``s_u + w (s_c - s_u)`` with ``s_c = s(.|tokens)`` and ``s_u =
        s(.|unconditional)`` (default: all null), as a :class:`~diffsim.scores.ClassifierFreeGuidance` of
        two :class:`TokenBoundScore` (both evaluated in one batched network call, in every
        parametrisation). ``w = scale`` (diffsim convention: 0 unconditional, 1 conditional, ``>= 0``)."""
        tok = check_tokens(tokens, self.alphabet_sizes)
        unc = (
            self.null_tokens
            if unconditional is None
            else check_tokens(unconditional, self.alphabet_sizes, "unconditional")
        )
        if tok.ndim != 1 or unc.ndim != 1:
            raise ValueError("`tokens` and `unconditional` must be single token vectors.")
        return ClassifierFreeGuidance(TokenBoundScore(self, unc), TokenBoundScore(self, tok), scale)


class TokenBoundScore(AbstractScore):
    """A token-conditional network with its tokens fixed: ``score(t, x) = net.score(t, x, tokens)``.

    Args:
        net: the :class:`AbstractTokenScore`; its process is this score's.
        tokens: one token vector ``(n,)`` int32 (null ids allowed), used as given: build through
            :meth:`AbstractTokenScore.bind`, which checks it.
    """

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

    # --- classifier-free guidance pair protocol (see diffsim.scores.guidance._joint) ------------------
    def _pairs_with(self, unconditional) -> bool:
        """Two token sets of one network object: one batched network call serves both branches."""
        return isinstance(unconditional, TokenBoundScore) and unconditional.net is self.net

    def _guidance_pair(self, unconditional, scale, t, x, kind):
        """``u + w (c - u)`` of the prediction ``kind``, ``net.predict`` vmapped over both token sets."""
        both = jnp.stack([unconditional.tokens, self.tokens])
        out = jax.vmap(lambda tok: self.net.predict(t, x, tok, kind))(both)
        return out[0] + scale.astype(out.dtype) * (out[1] - out[0])
